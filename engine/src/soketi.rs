//! soketi's JSON for an app's webhooks, as its app stores keep it in the `webhooks` column, read
//! into the engine's own endpoints: a database shared with soketi is read unchanged.

use crate::config::{WebhookConfig, WebhookFilter};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One webhook object as soketi keeps it. Other keys (soketi's Lambda settings) are ignored.
#[derive(Deserialize)]
struct SoketiWebhook {
    url: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    filter: Option<SoketiFilter>,
    #[serde(default)]
    lambda_function: Option<serde::de::IgnoredAny>,
}

/// A webhook's `filter` object.
#[derive(Deserialize)]
struct SoketiFilter {
    #[serde(default)]
    channel_name_starts_with: Option<String>,
    #[serde(default)]
    channel_name_ends_with: Option<String>,
}

impl SoketiWebhook {
    /// The engine's endpoint; one with no URL (a Lambda-only one) cannot be delivered here,
    /// so it is an error rather than silently dropped.
    fn into_config(self) -> Result<WebhookConfig, String> {
        let url = match (self.url, self.lambda_function) {
            (Some(url), _) => url,
            (None, Some(_)) => {
                return Err("Lambda webhooks are not supported, only ones with a url".into())
            }
            (None, None) => return Err("url is missing".into()),
        };
        Ok(WebhookConfig {
            url,
            event_types: self.event_types.unwrap_or_default(),
            headers: self.headers.unwrap_or_default(),
            filter: self.filter.map(|f| WebhookFilter {
                channel_name_starts_with: f.channel_name_starts_with,
                channel_name_ends_with: f.channel_name_ends_with,
            }),
        })
    }
}

/// Reads soketi's `webhooks` JSON (an array of `{url, event_types, headers, filter}` objects);
/// the error says which entry is wrong and why.
pub fn webhooks_from_json(text: &str) -> Result<Vec<WebhookConfig>, String> {
    let hooks: Vec<SoketiWebhook> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON array of webhooks: {e}"))?;
    hooks
        .into_iter()
        .enumerate()
        .map(|(i, hook)| hook.into_config().map_err(|why| format!("[{i}]: {why}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soketi_webhooks_become_endpoints_and_bad_ones_say_which() {
        let hooks = webhooks_from_json(
            r#"[{"url":"http://h/a","event_types":["channel_occupied"],"headers":{"X-T":"1"},
                "filter":{"channel_name_starts_with":"private-"}},{"url":"http://h/b"}]"#,
        )
        .unwrap();
        assert_eq!(hooks.len(), 2);
        assert_eq!(hooks[0].event_types, ["channel_occupied"]);
        assert_eq!(hooks[0].headers["X-T"], "1");
        let filter = hooks[0].filter.as_ref().unwrap();
        assert_eq!(filter.channel_name_starts_with.as_deref(), Some("private-"));
        assert_eq!(
            hooks[1],
            WebhookConfig {
                url: "http://h/b".into(),
                ..WebhookConfig::default()
            }
        );

        let lambda = webhooks_from_json(r#"[{"url":"http://h"},{"lambda_function":"f"}]"#);
        assert_eq!(
            lambda.unwrap_err(),
            "[1]: Lambda webhooks are not supported, only ones with a url"
        );
        assert!(webhooks_from_json("{}")
            .unwrap_err()
            .starts_with("not a JSON array"));
    }
}
