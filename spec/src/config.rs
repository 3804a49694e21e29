//! Server configurations for vectors: the defaults plus a vector's overrides, as JSON for the
//! engine and as TOML for a live `ferrocast` binary.

use crate::template::App;
use serde_json::{Map, Value};

/// The placeholder a config string may use for the runner's webhook receiver.
pub const WEBHOOK_URL: &str = "{{webhook_url}}";

/// Builds the full configuration a vector runs under: one app with `app`'s credentials, the
/// vector's `server` settings on top, its `app` settings merged into that app, and its extra
/// `apps` after it. `webhook_url` replaces `{{webhook_url}}` anywhere.
pub fn build(app: &App, overrides: Option<&Value>, webhook_url: &str) -> Result<Value, String> {
    let mut primary = Map::new();
    primary.insert("id".into(), Value::String(app.id.clone()));
    primary.insert("key".into(), Value::String(app.key.clone()));
    primary.insert("secret".into(), Value::String(app.secret.clone()));
    let mut root = Map::new();
    let mut extra_apps = Vec::new();
    if let Some(overrides) = overrides {
        let map = overrides
            .as_object()
            .ok_or("config must be an object with server, app and apps")?;
        for (key, value) in map {
            match (key.as_str(), value) {
                ("server", Value::Object(server)) => {
                    for (k, v) in server {
                        if k == "apps" {
                            return Err("config.server cannot set apps; use config.apps".into());
                        }
                        root.insert(k.clone(), v.clone());
                    }
                }
                ("app", Value::Object(settings)) => {
                    for (k, v) in settings {
                        primary.insert(k.clone(), v.clone());
                    }
                }
                ("apps", Value::Array(apps)) => extra_apps.extend(apps.iter().cloned()),
                (other, _) => {
                    return Err(format!(
                        "config.{other}: expected server (object), app (object) or apps (array)"
                    ))
                }
            }
        }
    }
    let mut apps = vec![Value::Object(primary)];
    apps.extend(extra_apps);
    root.insert("apps".into(), Value::Array(apps));
    Ok(replace_strings(
        Value::Object(root),
        WEBHOOK_URL,
        webhook_url,
    ))
}

fn replace_strings(value: Value, from: &str, to: &str) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace(from, to)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| replace_strings(v, from, to))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, replace_strings(v, from, to)))
                .collect(),
        ),
        other => other,
    }
}

/// The configuration as a TOML document for `ferrocast --config`.
pub fn to_toml(config: &Value) -> Result<String, String> {
    toml::to_string(config).map_err(|e| format!("config cannot be written as TOML: {e}"))
}

/// Whether a vector's overrides leave the default configuration unchanged.
pub fn is_default(overrides: Option<&Value>) -> bool {
    match overrides {
        None => true,
        Some(Value::Object(map)) => map.values().all(|v| match v {
            Value::Object(m) => m.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        }),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_merge_and_render_as_toml() {
        let app = App {
            id: "1".into(),
            key: "k".into(),
            secret: "s".into(),
        };
        let overrides = json!({"server": {"activity_timeout_secs": 5},
            "app": {"client_events": false, "webhook": "{{webhook_url}}/x"},
            "apps": [{"id": "2", "key": "k2", "secret": "s2"}]});
        let config = build(&app, Some(&overrides), "http://127.0.0.1:9").unwrap();
        assert_eq!(config["activity_timeout_secs"], 5);
        assert_eq!(config["apps"][0]["client_events"], false);
        assert_eq!(config["apps"][0]["webhook"], "http://127.0.0.1:9/x");
        assert_eq!(config["apps"][1]["key"], "k2");
        let toml = to_toml(&config).unwrap();
        assert!(toml.contains("[[apps]]"), "{toml}");
        assert!(is_default(None));
        assert!(!is_default(Some(&overrides)));
        assert!(build(&app, Some(&json!({"nope": 1})), "").is_err());
    }
}
