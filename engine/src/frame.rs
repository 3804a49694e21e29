//! Outgoing WebSocket frames, encoded once and shared by every recipient.
//!
//! A [`Frame`] holds the complete wire bytes (header and payload) of one unmasked server
//! frame, so the shell copies it into each recipient's buffer without touching it again.

use serde::Serialize;
use std::fmt;
use std::sync::Arc;

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PONG: u8 = 0xA;
const FIN: u8 = 0x80;

/// One complete, pre-encoded WebSocket frame; cloning shares the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Arc<[u8]>,
    header_len: u8,
}

impl Frame {
    /// A text frame carrying `payload` (which must be UTF-8 JSON made by the engine).
    pub fn text(payload: &[u8]) -> Self {
        Self::encode(OPCODE_TEXT, payload)
    }

    /// A pong control frame echoing a ping's payload (at most 125 bytes are kept).
    pub fn pong(payload: &[u8]) -> Self {
        Self::encode(OPCODE_PONG, &payload[..payload.len().min(125)])
    }

    /// A close frame with a status code and a short reason.
    pub fn close(code: u16, reason: &str) -> Self {
        let mut payload = code.to_be_bytes().to_vec();
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        Self::encode(OPCODE_CLOSE, &payload)
    }

    fn encode(opcode: u8, payload: &[u8]) -> Self {
        let len = payload.len();
        let mut bytes = Vec::with_capacity(len + 10);
        bytes.push(FIN | opcode);
        if len < 126 {
            bytes.push(len as u8);
        } else if len <= u16::MAX as usize {
            bytes.push(126);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            bytes.push(127);
            bytes.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let header_len = bytes.len() as u8;
        bytes.extend_from_slice(payload);
        Frame {
            bytes: bytes.into(),
            header_len,
        }
    }

    /// The bytes to write to the socket.
    pub fn wire_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The frame's payload (the JSON text for a text frame).
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.header_len as usize..]
    }

    /// The payload as text (lossy for non-text frames).
    pub fn payload_text(&self) -> String {
        String::from_utf8_lossy(self.payload()).into_owned()
    }

    /// Whether this is a close frame.
    pub fn is_close(&self) -> bool {
        self.bytes[0] & 0x0F == OPCODE_CLOSE
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({:?})", self.payload_text())
    }
}

/// Builds the JSON of one server → client message: `{"event","channel"?,"data", "user_id"?}`.
///
/// `data` is already-serialized JSON text, placed verbatim (an app event's string, or an
/// object for `pusher:error` / ping / pong where the SDKs expect an object).
pub fn message(event: &str, channel: Option<&str>, data: &RawJson, user_id: Option<&str>) -> Frame {
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
pub struct RawJson(pub String);

impl RawJson {
    /// JSON text of `value`.
    pub fn of<T: Serialize + ?Sized>(value: &T) -> Self {
        RawJson(serde_json::to_string(value).expect("engine values always serialize"))
    }

    /// JSON text of a string holding the JSON text of `value` (Pusher's double encoding).
    pub fn stringified<T: Serialize + ?Sized>(value: &T) -> Self {
        Self::string(&Self::of(value).0)
    }

    /// JSON text of the string `text`.
    pub fn string(text: &str) -> Self {
        let mut out = Vec::with_capacity(text.len() + 2);
        push_json_string(&mut out, text);
        RawJson(String::from_utf8(out).expect("escaping keeps UTF-8"))
    }
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_payloads_get_the_right_headers() {
        let short = Frame::text(b"hi");
        assert_eq!(short.wire_bytes(), b"\x81\x02hi");
        let medium = Frame::text(&[b'a'; 300]);
        assert_eq!(&medium.wire_bytes()[..4], &[0x81, 126, 1, 44]);
        assert_eq!(medium.payload().len(), 300);
        let long = Frame::text(&vec![b'a'; 70_000]);
        assert_eq!(long.wire_bytes()[1], 127);
        assert_eq!(long.payload().len(), 70_000);
    }

    #[test]
    fn length_boundaries_switch_header_forms_exactly() {
        assert_eq!(Frame::text(&[b'a'; 125]).wire_bytes()[..2], [0x81, 125]);
        assert_eq!(
            Frame::text(&[b'a'; 126]).wire_bytes()[..4],
            [0x81, 126, 0, 126]
        );
        assert_eq!(
            Frame::text(&[b'a'; 65_535]).wire_bytes()[..4],
            [0x81, 126, 0xFF, 0xFF]
        );
        assert_eq!(Frame::text(&[b'a'; 65_536]).wire_bytes()[..2], [0x81, 127]);
        assert_eq!(Frame::pong(b"p").wire_bytes(), b"\x8a\x01p");
        let text = Frame::text(b"x");
        assert!(!text.is_close());
        assert_eq!(format!("{text:?}"), "Frame(\"x\")");
    }

    #[test]
    fn close_frame_carries_code_and_truncated_reason() {
        let close = Frame::close(4001, &"é".repeat(100));
        assert!(close.is_close());
        assert_eq!(&close.payload()[..2], &4001u16.to_be_bytes());
        assert!(close.payload().len() <= 125);
        assert!(std::str::from_utf8(&close.payload()[2..]).is_ok());
    }

    #[test]
    fn messages_escape_names_and_embed_data() {
        let frame = message("ev\"", Some("ch"), &RawJson::string("{\"a\":1}"), Some("u"));
        let value: serde_json::Value = serde_json::from_slice(frame.payload()).unwrap();
        assert_eq!(value["event"], "ev\"");
        assert_eq!(value["channel"], "ch");
        assert_eq!(value["data"], "{\"a\":1}");
        assert_eq!(value["user_id"], "u");
    }
}
