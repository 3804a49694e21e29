//! Incremental decoding of client WebSocket frames into whole messages.
//!
//! The decoder is fed whatever bytes a `read` produced and keeps only what it must between
//! reads: at most one partial frame header (≤ 14 bytes), the message being reassembled, and the
//! payload of one control frame (≤ 125 bytes). Payload bytes are unmasked straight from the
//! read buffer into the message, so a connection never holds a copy of a whole frame.
//!
//! Header parsing is delegated to tungstenite's `FrameHeader::parse`; everything after it —
//! unmasking, reassembly, limits and the RFC 6455 rules a server must enforce — lives here.

use std::io::Cursor;
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// The longest frame header: 2 bytes, an 8-byte length and a 4-byte mask.
const MAX_HEADER: usize = 14;
/// Control frames carry at most this many payload bytes (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// One thing a client said at the WebSocket level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete text message (UTF-8 is the engine's business).
    Text(Vec<u8>),
    /// A complete binary message; its bytes are not kept since the protocol has no use for them.
    Binary,
    /// A ping with the payload the pong must echo.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close frame, with its status code when it carried one.
    Close(Option<u16>),
    /// A message grew past the size cap; its remaining bytes are skipped, not buffered.
    Oversized,
    /// The client broke RFC 6455 framing; the connection must close with 1002.
    ProtocolError(&'static str),
}

/// What the current frame's payload bytes are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    /// Append to the message under reassembly.
    Message,
    /// Collect into the control frame buffer.
    Control,
    /// Skip: part of an oversized message.
    Discard,
}

/// A frame whose header has been read and whose payload is still arriving.
#[derive(Clone, Copy, Debug)]
struct InFrame {
    opcode: OpCode,
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes already consumed, for the mask phase.
    done: u64,
    remaining: u64,
    sink: Sink,
}

/// The kind of the data message being reassembled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

/// Streaming decoder for the frames of one client connection.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    header: Vec<u8>,
    frame: Option<InFrame>,
    /// The data message in progress (its first frame arrived without FIN).
    message: Option<MessageKind>,
    /// Payload bytes of the message in progress, counted even while discarding.
    message_len: u64,
    /// Whether the message in progress went over the cap and is being skipped.
    discarding: bool,
    text: Vec<u8>,
    control: Vec<u8>,
    /// Set after a close frame or a protocol error: nothing more will be decoded.
    finished: bool,
}

impl Decoder {
    /// A decoder refusing messages larger than `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Decoder {
            max_message,
            header: Vec::new(),
            frame: None,
            message: None,
            message_len: 0,
            discarding: false,
            text: Vec::new(),
            control: Vec::new(),
            finished: false,
        }
    }

    /// Whether the decoder has seen a close frame or a protocol error and ignores further bytes.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Bytes held between reads (for memory accounting in tests).
    pub fn buffered(&self) -> usize {
        self.header.capacity() + self.text.capacity() + self.control.capacity()
    }

    /// Decodes everything `input` holds, appending events to `out`.
    ///
    /// All of `input` is always consumed: incomplete headers and payloads are kept inside.
    /// After a [`WsEvent::Close`] or [`WsEvent::ProtocolError`] the rest is ignored.
    pub fn decode(&mut self, mut input: &[u8], out: &mut Vec<WsEvent>) {
        while !self.finished && !input.is_empty() {
            match self.frame {
                None => input = self.read_header(input, out),
                Some(frame) => input = self.read_payload(frame, input, out),
            }
        }
    }

    fn fail(&mut self, reason: &'static str, out: &mut Vec<WsEvent>) {
        self.finished = true;
        self.text = Vec::new();
        self.control = Vec::new();
        out.push(WsEvent::ProtocolError(reason));
    }

    /// Consumes header bytes; returns the unconsumed rest of `input`.
    fn read_header<'a>(&mut self, input: &'a [u8], out: &mut Vec<WsEvent>) -> &'a [u8] {
        let before = self.header.len();
        let take = (MAX_HEADER - before).min(input.len());
        self.header.extend_from_slice(&input[..take]);
        let mut cursor = Cursor::new(&self.header[..]);
        let parsed = FrameHeader::parse(&mut cursor);
        let used = cursor.position() as usize;
        match parsed {
            Ok(None) => &input[take..],
            Err(_) => {
                self.fail("invalid opcode", out);
                &[]
            }
            Ok(Some((header, len))) => {
                self.header.clear();
                let rest = &input[used - before..];
                self.start_frame(header, len, out);
                rest
            }
        }
    }

    fn start_frame(&mut self, header: FrameHeader, len: u64, out: &mut Vec<WsEvent>) {
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return self.fail("reserved bits set without an extension", out);
        }
        let Some(mask) = header.mask else {
            return self.fail("client frames must be masked", out);
        };
        let sink = match header.opcode {
            OpCode::Control(_) => {
                if !header.is_final {
                    return self.fail("fragmented control frame", out);
                }
                if len > MAX_CONTROL_PAYLOAD {
                    return self.fail("control frame payload over 125 bytes", out);
                }
                self.control.clear();
                Sink::Control
            }
            OpCode::Data(Data::Continue) => {
                if self.message.is_none() {
                    return self.fail("continuation frame without a message", out);
                }
                self.data_sink(len, out)
            }
            OpCode::Data(data) => {
                if self.message.is_some() {
                    return self.fail("new message before the last one finished", out);
                }
                self.message = Some(if data == Data::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                });
                self.message_len = 0;
                self.discarding = false;
                self.data_sink(len, out)
            }
        };
        let frame = InFrame {
            opcode: header.opcode,
            fin: header.is_final,
            mask,
            done: 0,
            remaining: len,
            sink,
        };
        if len == 0 {
            self.finish_frame(frame, out);
        } else {
            self.frame = Some(frame);
        }
    }

    /// Where a data frame of `len` bytes goes, reporting an oversized message once.
    fn data_sink(&mut self, len: u64, out: &mut Vec<WsEvent>) -> Sink {
        self.message_len = self.message_len.saturating_add(len);
        if self.discarding {
            return Sink::Discard;
        }
        if self.message_len > self.max_message as u64 {
            self.discarding = true;
            self.text = Vec::new();
            out.push(WsEvent::Oversized);
            return Sink::Discard;
        }
        match self.message {
            Some(MessageKind::Text) => {
                self.text.reserve(len as usize);
                Sink::Message
            }
            // Binary payloads are counted against the cap but never kept.
            _ => Sink::Discard,
        }
    }

    fn read_payload<'a>(
        &mut self,
        mut frame: InFrame,
        input: &'a [u8],
        out: &mut Vec<WsEvent>,
    ) -> &'a [u8] {
        let n = frame.remaining.min(input.len() as u64) as usize;
        let (chunk, rest) = input.split_at(n);
        let target = match frame.sink {
            Sink::Message => Some(&mut self.text),
            Sink::Control => Some(&mut self.control),
            Sink::Discard => None,
        };
        if let Some(target) = target {
            let phase = (frame.done % 4) as usize;
            target.extend(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ frame.mask[(phase + i) % 4]),
            );
        }
        frame.done += n as u64;
        frame.remaining -= n as u64;
        if frame.remaining == 0 {
            self.frame = None;
            self.finish_frame(frame, out);
        } else {
            self.frame = Some(frame);
        }
        rest
    }

    fn finish_frame(&mut self, frame: InFrame, out: &mut Vec<WsEvent>) {
        match frame.opcode {
            OpCode::Control(Control::Ping) => {
                out.push(WsEvent::Ping(std::mem::take(&mut self.control)))
            }
            OpCode::Control(Control::Pong) => out.push(WsEvent::Pong),
            OpCode::Control(Control::Close) => {
                let code = match self.control.len() {
                    0 => None,
                    1 => return self.fail("close frame with a one-byte payload", out),
                    _ => Some(u16::from_be_bytes([self.control[0], self.control[1]])),
                };
                self.finished = true;
                self.control = Vec::new();
                self.text = Vec::new();
                out.push(WsEvent::Close(code));
            }
            OpCode::Control(Control::Reserved(_)) | OpCode::Data(Data::Reserved(_)) => {
                self.fail("invalid opcode", out)
            }
            OpCode::Data(_) => {
                if !frame.fin {
                    return;
                }
                let kind = self.message.take();
                if std::mem::take(&mut self.discarding) {
                    return;
                }
                match kind {
                    Some(MessageKind::Text) => {
                        out.push(WsEvent::Text(std::mem::take(&mut self.text)))
                    }
                    Some(MessageKind::Binary) => out.push(WsEvent::Binary),
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= u16::MAX as usize {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
        out
    }

    fn decode_all(max: usize, bytes: &[u8]) -> Vec<WsEvent> {
        let mut decoder = Decoder::new(max);
        let mut out = Vec::new();
        decoder.decode(bytes, &mut out);
        out
    }

    #[test]
    fn masked_text_is_unmasked() {
        let events = decode_all(1024, &frame(0x81, b"Hello"));
        assert_eq!(events, vec![WsEvent::Text(b"Hello".to_vec())]);
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_messages() {
        let mut wire = frame(0x81, b"first message");
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x81, &[b'x'; 300]));
        let mut decoder = Decoder::new(1024);
        let mut out = Vec::new();
        for b in &wire {
            decoder.decode(std::slice::from_ref(b), &mut out);
        }
        assert_eq!(
            out,
            vec![
                WsEvent::Text(b"first message".to_vec()),
                WsEvent::Ping(b"p".to_vec()),
                WsEvent::Text(vec![b'x'; 300]),
            ]
        );
    }

    #[test]
    fn sixteen_and_sixty_four_bit_lengths() {
        let medium = vec![b'm'; 40_000];
        let large = vec![b'l'; 70_000];
        let mut wire = frame(0x81, &medium);
        wire.extend(frame(0x81, &large));
        assert_eq!(wire[1], 0x80 | 126);
        let events = decode_all(100_000, &wire);
        assert_eq!(events, vec![WsEvent::Text(medium), WsEvent::Text(large)]);
    }

    #[test]
    fn fragments_are_reassembled_around_interleaved_control_frames() {
        let mut wire = frame(0x01, b"Hel");
        wire.extend(frame(0x89, b"ping"));
        wire.extend(frame(0x00, b"lo "));
        wire.extend(frame(0x80, b"world"));
        let events = decode_all(1024, &wire);
        assert_eq!(
            events,
            vec![
                WsEvent::Ping(b"ping".to_vec()),
                WsEvent::Text(b"Hello world".to_vec()),
            ]
        );
    }

    #[test]
    fn oversized_message_is_reported_once_and_skipped() {
        let mut wire = frame(0x81, &[b'a'; 2000]);
        wire.extend(frame(0x81, b"after"));
        let mut decoder = Decoder::new(1000);
        let mut out = Vec::new();
        decoder.decode(&wire, &mut out);
        assert_eq!(
            out,
            vec![WsEvent::Oversized, WsEvent::Text(b"after".to_vec())]
        );
        assert!(decoder.buffered() < 1000);
    }

    #[test]
    fn oversized_fragmented_message_is_skipped_to_its_end() {
        let mut wire = frame(0x01, &[b'a'; 600]);
        wire.extend(frame(0x00, &[b'b'; 600]));
        wire.extend(frame(0x80, &[b'c'; 600]));
        wire.extend(frame(0x82, b"bin"));
        let events = decode_all(1000, &wire);
        assert_eq!(events, vec![WsEvent::Oversized, WsEvent::Binary]);
    }

    #[test]
    fn huge_declared_length_is_oversized_without_allocation() {
        let mut wire = vec![0x81, 0x80 | 127];
        wire.extend_from_slice(&u64::MAX.to_be_bytes());
        wire.extend_from_slice(&MASK);
        wire.extend_from_slice(&[0u8; 64]);
        let mut decoder = Decoder::new(1000);
        let mut out = Vec::new();
        decoder.decode(&wire, &mut out);
        assert_eq!(out, vec![WsEvent::Oversized]);
        assert!(decoder.buffered() < 1000);
    }

    #[test]
    fn control_frames_decode() {
        let mut wire = frame(0x89, b"abc");
        wire.extend(frame(0x8A, b"x"));
        wire.extend(frame(0x88, &[0x03, 0xE8, b'o', b'k']));
        wire.extend(frame(0x81, b"ignored after close"));
        let events = decode_all(1024, &wire);
        assert_eq!(
            events,
            vec![
                WsEvent::Ping(b"abc".to_vec()),
                WsEvent::Pong,
                WsEvent::Close(Some(1000))
            ]
        );
        assert_eq!(
            decode_all(10, &frame(0x88, b"")),
            vec![WsEvent::Close(None)]
        );
    }

    #[test]
    fn framing_violations_are_protocol_errors() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        let cases: Vec<Vec<u8>> = vec![
            unmasked.to_vec(),
            frame(0xC1, b"rsv1"),
            frame(0x83, b"bad opcode"),
            frame(0x8B, b"bad control opcode"),
            frame(0x09, b"fragmented ping"),
            frame(0x89, &[0u8; 126]),
            frame(0x80, b"continuation first"),
            [frame(0x01, b"a"), frame(0x81, b"b")].concat(),
            frame(0x88, &[3]),
        ];
        for wire in cases {
            let events = decode_all(1024, &wire);
            assert!(
                matches!(events.last(), Some(WsEvent::ProtocolError(_))),
                "{wire:?} gave {events:?}"
            );
        }
    }

    #[test]
    fn arbitrary_bytes_in_arbitrary_chunks_never_panic() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            // Mostly valid frames with random corruption, so decoding gets past the header.
            let mut wire = Vec::new();
            for _ in 0..(next() % 5) {
                let first = [0x81, 0x01, 0x00, 0x80, 0x82, 0x89, 0x8A, 0x88][(next() % 8) as usize];
                let payload = vec![b'p'; (next() % 200) as usize];
                wire.extend(frame(first, &payload));
            }
            for _ in 0..(next() % 4) {
                if !wire.is_empty() {
                    let at = (next() % wire.len() as u64) as usize;
                    wire[at] = next() as u8;
                }
            }
            let mut decoder = Decoder::new(150);
            let mut out = Vec::new();
            let mut rest = &wire[..];
            while !rest.is_empty() {
                let n = 1 + (next() % 40) as usize;
                let (chunk, tail) = rest.split_at(n.min(rest.len()));
                decoder.decode(chunk, &mut out);
                rest = tail;
            }
            for event in &out {
                if let WsEvent::Text(text) = event {
                    assert!(text.len() <= 150);
                }
            }
        }
    }

    #[test]
    fn empty_text_message_is_delivered() {
        assert_eq!(
            decode_all(10, &frame(0x81, b"")),
            vec![WsEvent::Text(Vec::new())]
        );
    }
}
