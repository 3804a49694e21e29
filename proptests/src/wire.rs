//! Turning frames into comparable values: decode the JSON, drop what legitimately varies.
//!
//! Both the engine's frames and the model's expectations go through [`normalise`], so the
//! comparison sees event, channel, `user_id` and decoded data, and never error wording.

use ferrocast_engine::wire::websocket::Opcode;
use ferrocast_engine::Frame;
use serde_json::Value;

/// What a frame from the engine says, checked for the basic shape every client relies on.
pub fn decode(frame: &Frame) -> Result<Value, String> {
    let opcode = frame.opcode();
    if opcode != Opcode::Text {
        return Err(format!(
            "frame with opcode {opcode:?} sent as a message: {frame:?}"
        ));
    }
    let value: Value = serde_json::from_slice(frame.payload())
        .map_err(|e| format!("frame is not JSON ({e}): {frame:?}"))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("frame is not a JSON object: {frame:?}"))?;
    if !object.get("event").is_some_and(Value::is_string) {
        return Err(format!("frame without a string event: {frame:?}"));
    }
    for key in object.keys() {
        if !["event", "channel", "data", "user_id"].contains(&key.as_str()) {
            return Err(format!("frame with unexpected field {key:?}: {frame:?}"));
        }
    }
    Ok(value)
}

/// The socket id of a `pusher:connection_established` message, checked against `^\d+\.\d+$`.
pub fn socket_id_of(message: &Value) -> Result<String, String> {
    let data = decoded_data(message);
    let id = data
        .get("socket_id")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("connection_established without socket_id: {message}"))?;
    let ok = id
        .split_once('.')
        .is_some_and(|(a, b)| digits(a) && digits(b));
    if !ok {
        return Err(format!(
            "socket id {id:?} is not two integers joined by a dot"
        ));
    }
    Ok(id.to_owned())
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// `data`, decoded from its string form when the string holds JSON.
pub fn decoded_data(message: &Value) -> Value {
    match message.get("data") {
        Some(Value::String(s)) => serde_json::from_str(s).unwrap_or_else(|_| s.clone().into()),
        Some(other) => other.clone(),
        None => Value::Null,
    }
}

/// The comparable form of a message (or close marker): data decoded, volatile text blanked,
/// presence ids sorted.
pub fn normalise(message: &Value) -> Value {
    let Some(event) = message.get("event").and_then(Value::as_str) else {
        return message.clone();
    };
    let mut data = decoded_data(message);
    match event {
        "pusher:error" => {
            let code = data.get("code").cloned().unwrap_or(Value::Null);
            data = serde_json::json!({ "code": code });
        }
        "pusher:subscription_error" => {
            if let Some(obj) = data.as_object_mut() {
                obj.remove("error");
            }
        }
        "pusher:connection_established" => {
            if let Some(obj) = data.as_object_mut() {
                obj.remove("socket_id");
            }
        }
        "pusher_internal:subscription_succeeded" => {
            if let Some(ids) = data
                .pointer_mut("/presence/ids")
                .and_then(Value::as_array_mut)
            {
                ids.sort_by_key(Value::to_string);
            }
        }
        _ => {}
    }
    let mut out = serde_json::json!({ "event": event, "data": data });
    for key in ["channel", "user_id"] {
        if let Some(v) = message.get(key) {
            out[key] = v.clone();
        }
    }
    out
}

/// The event name of a normalised message, or `#close`.
pub fn event_of(message: &Value) -> &str {
    if message.get("#close").is_some() {
        return "#close";
    }
    message.get("event").and_then(Value::as_str).unwrap_or("")
}
