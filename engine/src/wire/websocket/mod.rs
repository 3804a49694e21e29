//! The WebSocket wire format (RFC 6455) of a server: frames it sends (here), frames it
//! receives ([`decoder`]).
//!
//! Encoding: a [`Frame`] holds the complete wire bytes (header and payload) of one unmasked
//! server frame, so the shell copies it into each recipient's buffer without touching it again.
//!
//! Decoding: a [`Decoder`] is fed whatever bytes a `read` produced and keeps only what it must
//! between reads: at most one partial frame header (≤ 14 bytes), the message being
//! reassembled, and the payload of one control frame (≤ 125 bytes). Payload bytes are unmasked
//! straight from the read buffer into the message, so a connection never holds a copy of a
//! whole frame. It enforces the rules a server must: masked client frames, no reserved bits
//! (but RSV1 marking a compressed message where permessage-deflate was negotiated) or
//! opcodes, unfragmented control frames of at most 125 bytes, a cap on message size, and UTF-8
//! in text messages and close reasons (checked as the bytes arrive, so a fragmented message
//! fails at the first fragment that can no longer be valid).

mod decoder;

pub use decoder::{Decoder, WsEvent};

use std::fmt;
use std::sync::{Arc, OnceLock};

/// The FIN bit: this frame ends its message.
const FIN: u8 = 0x80;
/// RSV1: with permessage-deflate negotiated, set on the first frame of a compressed message.
const RSV1: u8 = 0x40;
/// RSV2 and RSV3, meaningful only with an extension this server never negotiates.
const RSV23: u8 = 0x30;
/// The MASK bit of the second header byte.
const MASKED: u8 = 0x80;
/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;
/// Control frames carry at most this many payload bytes (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;
/// The largest 64-bit payload length: the most significant bit must be 0 (RFC 6455 §5.2).
const MAX_PAYLOAD_LEN: u64 = i64::MAX as u64;

/// The kind of a WebSocket frame, from the low four bits of its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    /// `0x0`: a later fragment of the message in progress.
    Continuation,
    /// `0x1`: the first frame of a UTF-8 text message.
    Text,
    /// `0x2`: the first frame of a binary message.
    Binary,
    /// `0x8`: the closing handshake.
    Close,
    /// `0x9`: a ping, which the peer must answer with a pong.
    Ping,
    /// `0xA`: a pong.
    Pong,
    /// Any other value: reserved for extensions, so a protocol error here.
    Reserved(u8),
}

impl Opcode {
    /// The opcode in the low four bits of `first_byte` (the other bits are ignored).
    pub fn of_first_byte(first_byte: u8) -> Self {
        match first_byte & 0x0F {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xA => Opcode::Pong,
            other => Opcode::Reserved(other),
        }
    }

    /// The four-bit value on the wire.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
            Opcode::Reserved(bits) => bits & 0x0F,
        }
    }

    /// Whether this is a control opcode (close, ping, pong, or a reserved `0xB`–`0xF`).
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

/// One complete, pre-encoded WebSocket frame; cloning shares the bytes.
///
/// A data frame may also carry its permessage-deflate form (RFC 7692), computed once by the
/// first writer that needs it ([`Frame::deflated`]) and shared by every later recipient:
/// with `server_no_context_takeover` a compressed message depends on nothing but its payload.
#[derive(Clone)]
pub struct Frame {
    encoded: Arc<Encoded>,
    /// Whether a deflate connection may get the compressed form (an app can turn it off).
    compressible: bool,
}

/// The wire forms of one frame.
struct Encoded {
    bytes: Box<[u8]>,
    header_len: u8,
    /// The compressed frame (RSV1 set), or `None` when compression did not pay.
    deflated: OnceLock<Option<Box<[u8]>>>,
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.encoded.bytes == other.encoded.bytes && self.compressible == other.compressible
    }
}

impl Eq for Frame {}

/// The header of an unmasked server frame: first byte and payload length.
fn push_header(bytes: &mut Vec<u8>, first: u8, len: usize) {
    bytes.push(first);
    if len < 126 {
        bytes.push(len as u8);
    } else if len <= u16::MAX as usize {
        bytes.push(126);
        bytes.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        bytes.push(127);
        bytes.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

impl Frame {
    /// A text frame carrying `payload` (which must be UTF-8 JSON made by the engine).
    pub fn text(payload: &[u8]) -> Self {
        Self::encode(Opcode::Text, payload)
    }

    /// A binary frame carrying `payload` (only the echo server sends these).
    pub fn binary(payload: &[u8]) -> Self {
        Self::encode(Opcode::Binary, payload)
    }

    /// A pong control frame echoing a ping's payload (at most 125 bytes are kept).
    pub fn pong(payload: &[u8]) -> Self {
        Self::encode(Opcode::Pong, &payload[..payload.len().min(125)])
    }

    /// A close frame with a status code and a short reason.
    pub fn close(code: u16, reason: &str) -> Self {
        let mut payload = code.to_be_bytes().to_vec();
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        payload.extend_from_slice(&reason.as_bytes()[..end]);
        Self::encode(Opcode::Close, &payload)
    }

    fn encode(opcode: Opcode, payload: &[u8]) -> Self {
        let mut bytes = Vec::with_capacity(payload.len() + 10);
        push_header(&mut bytes, FIN | opcode.bits(), payload.len());
        let header_len = bytes.len() as u8;
        bytes.extend_from_slice(payload);
        Frame {
            encoded: Arc::new(Encoded {
                bytes: bytes.into(),
                header_len,
                deflated: OnceLock::new(),
            }),
            // Control frames must never be compressed (RFC 7692 §6.1).
            compressible: !opcode.is_control(),
        }
    }

    /// The same frame, never sent compressed (for an app with compression turned off).
    pub fn uncompressed(mut self) -> Self {
        self.compressible = false;
        self
    }

    /// Whether a permessage-deflate connection may get this frame compressed.
    pub fn is_compressible(&self) -> bool {
        self.compressible
    }

    /// The bytes to write to a connection that negotiated permessage-deflate: the compressed
    /// frame (RSV1 set) when `compress` made the payload smaller, else the plain frame.
    ///
    /// `compress` turns a payload into its compressed message bytes (raw deflate without the
    /// trailing `00 00 FF FF`), or `None` when it is not worth it. It runs at most once per
    /// frame, whichever thread asks first; every clone shares the result.
    pub fn deflated(&self, compress: impl FnOnce(&[u8]) -> Option<Vec<u8>>) -> &[u8] {
        if !self.compressible {
            return self.wire_bytes();
        }
        let deflated = self.encoded.deflated.get_or_init(|| {
            let payload = self.payload();
            let compressed = compress(payload).filter(|c| c.len() < payload.len())?;
            let mut bytes = Vec::with_capacity(compressed.len() + 10);
            push_header(
                &mut bytes,
                FIN | RSV1 | self.opcode().bits(),
                compressed.len(),
            );
            bytes.extend_from_slice(&compressed);
            Some(bytes.into())
        });
        deflated.as_deref().unwrap_or(self.wire_bytes())
    }

    /// The bytes a deflate connection gets once [`Frame::deflated`] has run: the compressed
    /// frame if there is one, else the plain frame.
    pub fn deflated_wire_bytes(&self) -> &[u8] {
        match self.encoded.deflated.get() {
            Some(Some(bytes)) if self.compressible => bytes,
            _ => self.wire_bytes(),
        }
    }

    /// The bytes to write to the socket.
    pub fn wire_bytes(&self) -> &[u8] {
        &self.encoded.bytes
    }

    /// The frame's payload (the JSON text for a text frame).
    pub fn payload(&self) -> &[u8] {
        &self.encoded.bytes[self.encoded.header_len as usize..]
    }

    /// The payload as text (lossy for non-text frames).
    pub fn payload_text(&self) -> String {
        String::from_utf8_lossy(self.payload()).into_owned()
    }

    /// The frame's opcode.
    pub fn opcode(&self) -> Opcode {
        Opcode::of_first_byte(self.encoded.bytes[0])
    }

    /// Whether this is a close frame.
    pub fn is_close(&self) -> bool {
        self.opcode() == Opcode::Close
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({:?})", self.payload_text())
    }
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
    fn opcodes_round_trip_through_their_four_bits() {
        for bits in 0..16u8 {
            let opcode = Opcode::of_first_byte(0xF0 | bits);
            assert_eq!(opcode.bits(), bits);
            assert_eq!(opcode.is_control(), bits >= 8);
        }
        assert_eq!(Opcode::of_first_byte(0x81), Opcode::Text);
        assert_eq!(Opcode::of_first_byte(0x03), Opcode::Reserved(3));
        assert_eq!(Frame::pong(b"").opcode(), Opcode::Pong);
        assert_eq!(Frame::close(1000, "").opcode(), Opcode::Close);
    }

    #[test]
    fn a_frame_is_compressed_once_and_shared_by_its_clones() {
        let frame = Frame::text(&[b'x'; 300]);
        let copy = frame.clone();
        let mut calls = 0;
        let deflated = frame
            .deflated(|payload| {
                calls += 1;
                assert_eq!(payload, &[b'x'; 300][..]);
                Some(vec![7; 5])
            })
            .to_vec();
        assert_eq!(deflated, [0xC1, 5, 7, 7, 7, 7, 7]);
        // The clone finds the result; its closure never runs.
        assert_eq!(copy.deflated(|_| unreachable!()), &deflated[..]);
        assert_eq!(copy.deflated_wire_bytes(), &deflated[..]);
        assert_eq!(calls, 1);
        // The plain form is untouched.
        assert_eq!(frame.wire_bytes()[0], 0x81);
    }

    #[test]
    fn compression_that_does_not_pay_or_is_off_leaves_the_plain_frame() {
        let frame = Frame::text(b"short");
        assert_eq!(frame.deflated(|_| None), frame.wire_bytes());
        let frame = Frame::text(b"short");
        assert_eq!(frame.deflated(|p| Some(p.to_vec())), frame.wire_bytes());
        let frame = Frame::text(&[b'x'; 300]).uncompressed();
        assert!(!frame.is_compressible());
        assert_eq!(frame.deflated(|_| Some(vec![1])), frame.wire_bytes());
        let pong = Frame::pong(&[b'x'; 100]);
        assert!(!pong.is_compressible());
        assert_eq!(pong.deflated(|_| Some(vec![1])), pong.wire_bytes());
        assert_eq!(Frame::text(b"a").deflated_wire_bytes(), b"\x81\x01a");
    }
}
