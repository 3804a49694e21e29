//! Turning what a vector says into what goes on the wire: `{{placeholders}}` in strings,
//! `{"$json": v}` for JSON-encoded strings and `{"$auth": {..}}` for signatures.

use crate::sign;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// An app's credentials as the runner knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// The id in HTTP API paths.
    pub id: String,
    /// The public key.
    pub key: String,
    /// The secret.
    pub secret: String,
}

/// What placeholders resolve against: the app and every socket id seen so far.
#[derive(Clone, Debug)]
pub struct Context {
    /// The app under test.
    pub app: App,
    /// Socket id of each named client, captured from `connection_established`.
    pub socket_ids: BTreeMap<String, String>,
}

impl Context {
    /// A context with no client yet.
    pub fn new(app: App) -> Self {
        Context {
            app,
            socket_ids: BTreeMap::new(),
        }
    }

    /// The socket id of `client`, or why there is none.
    pub fn socket_id(&self, client: &str) -> Result<&str, String> {
        self.socket_ids
            .get(client)
            .map(String::as_str)
            .ok_or_else(|| format!("no socket id known for client {client:?}"))
    }

    /// Replaces every `{{..}}` in `text`; matcher placeholders are an error here.
    pub fn substitute(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed placeholder in {text:?}"))?;
            out.push_str(&self.placeholder(&after[..end])?);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn placeholder(&self, name: &str) -> Result<String, String> {
        if let Some(client) = name.strip_prefix("socket_id:") {
            return self.socket_id(client).map(str::to_owned);
        }
        if let Some(spec) = name.strip_prefix("repeat:") {
            let (count, text) = spec
                .split_once(':')
                .ok_or("repeat takes {{repeat:N:TEXT}}")?;
            let count: usize = count.parse().map_err(|_| "repeat count is a number")?;
            return Ok(text.repeat(count));
        }
        match name {
            "app_id" => Ok(self.app.id.clone()),
            "app_key" => Ok(self.app.key.clone()),
            "app_secret" => Ok(self.app.secret.clone()),
            other => Err(format!("unknown placeholder {{{{{other}}}}}")),
        }
    }

    /// Resolves a value to send; `sender` is the default socket for `$auth`.
    pub fn resolve(&self, value: &Value, sender: Option<&str>) -> Result<Value, String> {
        match value {
            Value::String(s) => Ok(Value::String(self.substitute(s)?)),
            Value::Array(items) => items
                .iter()
                .map(|v| self.resolve(v, sender))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(map) => self.resolve_object(map, sender),
            other => Ok(other.clone()),
        }
    }

    fn resolve_object(
        &self,
        map: &Map<String, Value>,
        sender: Option<&str>,
    ) -> Result<Value, String> {
        if map.len() == 1 {
            if let Some(inner) = map.get("$json") {
                let resolved = self.resolve(inner, sender)?;
                return Ok(Value::String(resolved.to_string()));
            }
            if let Some(spec) = map.get("$auth") {
                return self.auth(spec, &Map::new(), sender).map(Value::String);
            }
        }
        let mut out = Map::new();
        let mut deferred = Vec::new();
        for (key, value) in map {
            match value.as_object().and_then(|o| o.get("$auth")) {
                Some(spec) if value.as_object().is_some_and(|o| o.len() == 1) => {
                    deferred.push((key.clone(), spec.clone()))
                }
                _ => {
                    out.insert(key.clone(), self.resolve(value, sender)?);
                }
            }
        }
        for (key, spec) in deferred {
            let auth = self.auth(&spec, &out, sender)?;
            out.insert(key, Value::String(auth));
        }
        Ok(Value::Object(out))
    }

    /// Builds an `auth` value from a `$auth` spec, taking `channel`, `channel_data` and
    /// `user_data` from the spec or else from the sibling fields of the message.
    fn auth(
        &self,
        spec: &Value,
        siblings: &Map<String, Value>,
        sender: Option<&str>,
    ) -> Result<String, String> {
        let spec = match spec {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            _ => return Err("$auth takes an object".into()),
        };
        const KNOWN: &[&str] = &[
            "socket",
            "socket_id",
            "channel",
            "channel_data",
            "user_data",
            "key",
            "secret",
            "string",
            "omit_channel_data",
        ];
        if let Some(unknown) = spec.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("unknown $auth field {unknown:?}"));
        }
        let field = |name: &str| -> Result<Option<String>, String> {
            let value = match spec.get(name) {
                Some(v) => Some(self.resolve(v, sender)?),
                None => siblings.get(name).cloned(),
            };
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(format!("$auth {name} must be a string, got {other}")),
            }
        };
        let socket_id = match (
            field("socket_id")?,
            spec.get("socket").and_then(Value::as_str),
        ) {
            (Some(literal), _) => literal,
            (None, Some(client)) => self.socket_id(client)?.to_owned(),
            (None, None) => {
                let client = sender.ok_or("$auth outside a send needs socket or socket_id")?;
                self.socket_id(client)?.to_owned()
            }
        };
        let omit_channel_data = spec
            .get("omit_channel_data")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let message = match field("string")? {
            Some(literal) => literal,
            None => match (
                field("user_data")?,
                field("channel")?,
                field("channel_data")?,
            ) {
                (Some(user_data), _, _) => sign::signin_string(&socket_id, &user_data),
                (None, Some(channel), Some(data)) if !omit_channel_data => {
                    sign::presence_string(&socket_id, &channel, &data)
                }
                (None, Some(channel), _) => sign::private_string(&socket_id, &channel),
                (None, None, _) => return Err("$auth needs a channel or user_data".into()),
            },
        };
        let key = field("key")?.unwrap_or_else(|| self.app.key.clone());
        let secret = field("secret")?.unwrap_or_else(|| self.app.secret.clone());
        Ok(sign::client_auth(&key, &secret, &message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        let mut ctx = Context::new(App {
            id: "app-id".into(),
            key: "app-key".into(),
            secret: "app-secret".into(),
        });
        ctx.socket_ids.insert("alice".into(), "1234.5678".into());
        ctx
    }

    #[test]
    fn placeholders_are_substituted() {
        let ctx = ctx();
        assert_eq!(
            ctx.substitute("/apps/{{app_id}}/x").unwrap(),
            "/apps/app-id/x"
        );
        assert_eq!(ctx.substitute("{{socket_id:alice}}").unwrap(), "1234.5678");
        assert_eq!(ctx.substitute("a{{repeat:3:bc}}").unwrap(), "abcbcbc");
        assert!(ctx.substitute("{{socket_id:bob}}").is_err());
        assert!(ctx.substitute("{{nope}}").is_err());
    }

    #[test]
    fn auth_takes_siblings_and_matches_the_sdk() {
        let ctx = ctx();
        let data = json!({"channel": "presence-room",
            "channel_data": "{\"user_id\":\"u1\",\"user_info\":{\"name\":\"Alice\"}}",
            "auth": {"$auth": {}}});
        let resolved = ctx.resolve(&data, Some("alice")).unwrap();
        assert_eq!(
            resolved["auth"],
            "app-key:8da8a274fe7cf8f5bde5e8c764fe1c4e1df1e323b9e8ea3687d0055ef7502f6e"
        );
        let private = json!({"channel": "private-foo", "auth": {"$auth": {}}});
        assert_eq!(
            ctx.resolve(&private, Some("alice")).unwrap()["auth"],
            "app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d"
        );
    }

    #[test]
    fn json_wrapper_encodes() {
        let v = ctx()
            .resolve(&json!({"$json": {"id": "{{app_id}}"}}), None)
            .unwrap();
        assert_eq!(v, json!("{\"id\":\"app-id\"}"));
    }
}
