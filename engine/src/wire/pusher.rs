//! The Pusher JSON envelope: `{"event","channel"?,"data","user_id"?}` messages the engine
//! builds for clients, and the client messages it parses (the envelope first, then the
//! payload of each `pusher:` event).

use super::websocket::Frame;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;

/// Builds the text frame of one server → client message: `{"event","channel"?,"data", "user_id"?}`.
///
/// `data` is already-serialized JSON text, placed verbatim (an app event's string, or an
/// object for `pusher:error` / ping / pong where the SDKs expect an object).
pub(crate) fn message(
    event: &str,
    channel: Option<&str>,
    data: &RawJson,
    user_id: Option<&str>,
) -> Frame {
    let mut out = Vec::with_capacity(32 + event.len() + data.0.len());
    out.extend_from_slice(b"{\"event\":");
    push_json_string(&mut out, event);
    if let Some(channel) = channel {
        out.extend_from_slice(b",\"channel\":");
        push_json_string(&mut out, channel);
    }
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.0.as_bytes());
    if let Some(user_id) = user_id {
        out.extend_from_slice(b",\"user_id\":");
        push_json_string(&mut out, user_id);
    }
    out.push(b'}');
    Frame::text(&out)
}

/// A fragment of valid JSON text, placed verbatim into a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RawJson(pub String);

impl RawJson {
    /// JSON text of `value`.
    pub(crate) fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        RawJson(serde_json::to_string(value).expect("engine values always serialize"))
    }

    /// JSON text of a string holding the JSON text of `value` (Pusher's double encoding).
    pub(crate) fn stringified<T: Serialize + ?Sized>(value: &T) -> Self {
        Self::string(&Self::of(value).0)
    }

    /// JSON text of the string `text`.
    pub(crate) fn string(text: &str) -> Self {
        let mut out = Vec::with_capacity(text.len() + 2);
        push_json_string(&mut out, text);
        RawJson(String::from_utf8(out).expect("escaping keeps UTF-8"))
    }
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

/// The envelope every client message shares.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    /// The event name.
    #[serde(borrow)]
    pub event: std::borrow::Cow<'a, str>,
    /// The channel, for client events.
    #[serde(default, borrow)]
    pub channel: Option<std::borrow::Cow<'a, str>>,
    /// The payload, kept as raw JSON text.
    #[serde(default, borrow)]
    pub data: Option<&'a RawValue>,
}

/// Why a client message could not be understood.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub String);

/// Parses the envelope of a text message.
pub(crate) fn parse_envelope(text: &[u8]) -> Result<Envelope<'_>, Malformed> {
    let text =
        std::str::from_utf8(text).map_err(|_| Malformed("message is not valid UTF-8".into()))?;
    // Serde would also read a struct from a JSON array, positionally; a message is an object.
    if !text.trim_start().starts_with('{') {
        let what = if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() {
            "message has the wrong shape: expected a JSON object"
        } else {
            "message is not valid JSON"
        };
        return Err(Malformed(what.into()));
    }
    serde_json::from_str(text).map_err(|e| {
        let what = if e.is_data() {
            "message has the wrong shape"
        } else {
            "message is not valid JSON"
        };
        Malformed(format!("{what}: {e}"))
    })
}

/// `pusher:subscribe` data.
#[derive(Debug, Deserialize)]
pub(crate) struct Subscribe {
    /// The channel to join.
    pub channel: String,
    /// `"{key}:{signature}"` for authenticated channels.
    #[serde(default)]
    pub auth: Option<String>,
    /// The signed presence member JSON, as a string.
    #[serde(default)]
    pub channel_data: Option<String>,
}

/// `pusher:unsubscribe` data.
#[derive(Debug, Deserialize)]
pub(crate) struct Unsubscribe {
    /// The channel to leave.
    pub channel: String,
}

/// `pusher:signin` data.
#[derive(Debug, Deserialize)]
pub(crate) struct Signin {
    /// `"{key}:{signature}"` over `socket_id::user::user_data`.
    pub auth: String,
    /// The signed user JSON, as a string.
    pub user_data: String,
}

/// Decodes a `pusher:` payload, accepting an object or a string holding one (some clients
/// double-encode).
pub(crate) fn parse_data<'a, T: Deserialize<'a>>(
    data: Option<&'a RawValue>,
) -> Result<T, Malformed> {
    let raw = data.ok_or_else(|| Malformed("data is missing".into()))?;
    let bad = |e: serde_json::Error| Malformed(format!("data has the wrong shape: {e}"));
    match serde_json::from_str::<T>(raw.get()) {
        Ok(value) => Ok(value),
        Err(first) => match serde_json::from_str::<String>(raw.get()) {
            Ok(inner) => parse_owned(&inner).map_err(bad),
            Err(_) => Err(bad(first)),
        },
    }
}

fn parse_owned<'a, T: Deserialize<'a>>(text: &str) -> Result<T, serde_json::Error> {
    // Re-parse through an owned Value so the result does not borrow the temporary string.
    let value: Value = serde_json::from_str(text)?;
    T::deserialize(value).map_err(|e| serde::de::Error::custom(e.to_string()))
}

/// The longest user id Pusher accepts, in characters.
pub(crate) const MAX_USER_ID_CHARS: usize = 128;

/// The raw JSON of each top-level field of the object `json`, so numbers can be read as written.
pub(crate) fn raw_fields(json: &str) -> Result<BTreeMap<String, &RawValue>, serde_json::Error> {
    serde_json::from_str(json)
}

/// A user id from presence `channel_data` or sign-in `user_data`: a non-empty string of at most
/// [`MAX_USER_ID_CHARS`] characters, or a number kept exactly as written (going through `f64`
/// would merge distinct ids above 2^53). The error says why the id is refused.
pub(crate) fn user_id_of(raw: &RawValue) -> Result<String, String> {
    let text = raw.get().trim();
    let id = if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        // Valid JSON starting so is a number.
        text.to_owned()
    } else {
        match serde_json::from_str::<String>(text) {
            Ok(id) if !id.is_empty() => id,
            _ => return Err("must be a non-empty string or a number".into()),
        }
    };
    let chars = id.chars().count();
    if chars > MAX_USER_ID_CHARS {
        return Err(format!(
            "is {chars} characters; the limit is {MAX_USER_ID_CHARS}"
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_escape_names_and_embed_data() {
        let frame = message("ev\"", Some("ch"), &RawJson::string("{\"a\":1}"), Some("u"));
        let value: Value = serde_json::from_slice(frame.payload()).unwrap();
        assert_eq!(value["event"], "ev\"");
        assert_eq!(value["channel"], "ch");
        assert_eq!(value["data"], "{\"a\":1}");
        assert_eq!(value["user_id"], "u");
    }

    #[test]
    fn envelope_keeps_data_raw() {
        let env =
            parse_envelope(br#"{"event":"client-a","channel":"private-x","data":{"k":[1,2]}}"#)
                .unwrap();
        assert_eq!(env.event, "client-a");
        assert_eq!(env.channel.as_deref(), Some("private-x"));
        assert_eq!(env.data.unwrap().get(), r#"{"k":[1,2]}"#);
    }

    #[test]
    fn bad_json_and_bad_shapes_are_told_apart() {
        assert!(parse_envelope(b"{")
            .unwrap_err()
            .0
            .contains("not valid JSON"));
        assert!(parse_envelope(br#"{"event":1}"#)
            .unwrap_err()
            .0
            .contains("wrong shape"));
        assert!(parse_envelope(b"\xff").unwrap_err().0.contains("UTF-8"));
        assert!(parse_envelope(br#"["pusher:ping"]"#)
            .unwrap_err()
            .0
            .contains("JSON object"));
    }

    #[test]
    fn subscribe_data_as_object_or_string() {
        let env =
            parse_envelope(br#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#).unwrap();
        assert_eq!(parse_data::<Subscribe>(env.data).unwrap().channel, "a");
        let env = parse_envelope(br#"{"event":"pusher:subscribe","data":"{\"channel\":\"b\"}"}"#)
            .unwrap();
        assert_eq!(parse_data::<Subscribe>(env.data).unwrap().channel, "b");
        let env = parse_envelope(br#"{"event":"pusher:subscribe","data":{"channel":5}}"#).unwrap();
        assert!(parse_data::<Subscribe>(env.data).is_err());
        assert!(parse_data::<Subscribe>(None).is_err());
    }

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn user_ids_are_stringified() {
        assert_eq!(user_id_of(&raw("42")), Ok("42".into()));
        assert_eq!(user_id_of(&raw(r#""u""#)), Ok("u".into()));
        assert!(user_id_of(&raw(r#""""#)).is_err());
        assert!(user_id_of(&raw("null")).is_err());
        assert!(user_id_of(&raw("[1]")).is_err());
    }

    #[test]
    fn numeric_user_ids_keep_every_digit() {
        assert_eq!(
            user_id_of(&raw("18446744073709551617")),
            Ok("18446744073709551617".into())
        );
        let fields = raw_fields(r#"{"user_id": 18446744073709551616 }"#).unwrap();
        assert_eq!(
            user_id_of(fields["user_id"]),
            Ok("18446744073709551616".into())
        );
    }

    #[test]
    fn user_ids_are_at_most_128_characters() {
        let at_limit = "é".repeat(MAX_USER_ID_CHARS);
        assert_eq!(user_id_of(&raw(&format!("{at_limit:?}"))), Ok(at_limit));
        let over = "u".repeat(MAX_USER_ID_CHARS + 1);
        assert!(user_id_of(&raw(&format!("{over:?}"))).is_err());
    }
}
