//! Decoding client frames: the streaming [`Decoder`] and the [`WsEvent`]s it reports.

use super::{Opcode, FIN, MASKED, MAX_CONTROL_PAYLOAD, MAX_HEADER, MAX_PAYLOAD_LEN, RSV1, RSV23};

/// One thing a client said at the WebSocket level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete text message (UTF-8 is the engine's business).
    Text(Vec<u8>),
    /// A complete text message sent compressed (permessage-deflate): the raw deflate data,
    /// without the `00 00 FF FF` tail the sender removed. The shell inflates it and checks
    /// UTF-8 and the size cap; the decoder only capped the compressed size.
    Compressed(Vec<u8>),
    /// A complete binary message: its bytes when the decoder keeps them (see
    /// [`Decoder::keeping_binary`]), else empty, since the Pusher protocol has no use for them.
    Binary(Vec<u8>),
    /// A complete compressed binary message, when the decoder keeps binary messages: raw
    /// deflate data as in [`WsEvent::Compressed`], with no UTF-8 to check once inflated.
    CompressedBinary(Vec<u8>),
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
    /// A text message or a close reason is not UTF-8; the connection must close with 1007.
    InvalidUtf8(&'static str),
}

/// A parsed frame header.
#[derive(Clone, Copy, Debug)]
struct Header {
    fin: bool,
    rsv1: bool,
    rsv23: bool,
    opcode: Opcode,
    mask: Option<[u8; 4]>,
    len: u64,
}

/// Parses a frame header from the start of `bytes`: the header and its length in bytes, or
/// `None` while `bytes` holds only part of it.
fn parse_header(bytes: &[u8]) -> Option<(Header, usize)> {
    let [first, second, rest @ ..] = bytes else {
        return None;
    };
    let (len, rest, len_bytes) = match second & 0x7F {
        126 => {
            let (len, rest) = rest.split_first_chunk::<2>()?;
            (u64::from(u16::from_be_bytes(*len)), rest, 2)
        }
        127 => {
            let (len, rest) = rest.split_first_chunk::<8>()?;
            (u64::from_be_bytes(*len), rest, 8)
        }
        short => (u64::from(short), rest, 0),
    };
    let mask = if second & MASKED != 0 {
        Some(*rest.first_chunk::<4>()?)
    } else {
        None
    };
    let header = Header {
        fin: first & FIN != 0,
        rsv1: first & RSV1 != 0,
        rsv23: first & RSV23 != 0,
        opcode: Opcode::of_first_byte(*first),
        mask,
        len,
    };
    Some((header, 2 + len_bytes + if mask.is_some() { 4 } else { 0 }))
}

/// What the current frame's payload bytes are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sink {
    /// Append to the message under reassembly.
    Message,
    /// Append to the binary message under reassembly (no UTF-8 check).
    Binary,
    /// Collect into the control frame buffer.
    Control,
    /// Skip: part of an oversized or binary message.
    Discard,
}

/// A frame whose header has been read and whose payload is still arriving.
#[derive(Clone, Copy, Debug)]
struct InFrame {
    opcode: Opcode,
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
    /// Whether binary messages are reassembled and handed over, or only counted.
    keep_binary: bool,
    /// Whether permessage-deflate was negotiated, so RSV1 may mark a compressed message.
    deflate: bool,
    /// Whether the message in progress is compressed (its first frame had RSV1).
    compressed: bool,
    /// The payload of the message in progress (text, or binary when kept).
    text: Vec<u8>,
    /// How many leading bytes of `text` are known to be complete, valid UTF-8.
    text_valid: usize,
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
            keep_binary: false,
            deflate: false,
            compressed: false,
            text: Vec::new(),
            text_valid: 0,
            control: Vec::new(),
            finished: false,
        }
    }

    /// The same decoder, handing over binary messages' bytes too (for an echo server).
    pub fn keeping_binary(mut self) -> Self {
        self.keep_binary = true;
        self
    }

    /// The same decoder on a connection that negotiated permessage-deflate (RFC 7692): a data
    /// message whose first frame has RSV1 set is compressed and delivered as
    /// [`WsEvent::Compressed`]. RSV1 anywhere else stays a protocol error.
    pub fn with_permessage_deflate(mut self) -> Self {
        self.deflate = true;
        self
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
        self.fail_with(WsEvent::ProtocolError(reason), out);
    }

    /// Ends decoding with `event`, which tells the shell how to close.
    fn fail_with(&mut self, event: WsEvent, out: &mut Vec<WsEvent>) {
        self.finished = true;
        self.text = Vec::new();
        self.control = Vec::new();
        out.push(event);
    }

    /// Checks the text bytes not yet validated. An incomplete sequence at the end is allowed
    /// (the next fragment may complete it) unless `complete`; anything else that is not UTF-8
    /// fails the connection at once. Returns whether decoding goes on.
    fn check_text(&mut self, complete: bool, out: &mut Vec<WsEvent>) -> bool {
        match std::str::from_utf8(&self.text[self.text_valid..]) {
            Ok(_) => {
                self.text_valid = self.text.len();
                true
            }
            Err(e) if e.error_len().is_none() && !complete => {
                self.text_valid += e.valid_up_to();
                true
            }
            Err(_) => {
                self.fail_with(WsEvent::InvalidUtf8("text message is not UTF-8"), out);
                false
            }
        }
    }

    /// Consumes header bytes; returns the unconsumed rest of `input`.
    fn read_header<'a>(&mut self, input: &'a [u8], out: &mut Vec<WsEvent>) -> &'a [u8] {
        let before = self.header.len();
        let take = (MAX_HEADER - before).min(input.len());
        self.header.extend_from_slice(&input[..take]);
        match parse_header(&self.header) {
            None => &input[take..],
            Some((header, used)) => {
                self.header.clear();
                let rest = &input[used - before..];
                self.start_frame(header, out);
                rest
            }
        }
    }

    fn start_frame(&mut self, header: Header, out: &mut Vec<WsEvent>) {
        let len = header.len;
        if len > MAX_PAYLOAD_LEN {
            return self.fail("64-bit payload length with its top bit set", out);
        }
        if header.rsv23 {
            return self.fail("reserved bits set without an extension", out);
        }
        if header.rsv1 {
            if !self.deflate {
                return self.fail("RSV1 set without permessage-deflate", out);
            }
            // RFC 7692 §6.1: only the first frame of a data message says it is compressed.
            match header.opcode {
                Opcode::Text | Opcode::Binary => {}
                Opcode::Continuation => return self.fail("RSV1 on a continuation frame", out),
                _ => return self.fail("RSV1 on a control frame", out),
            }
        }
        let Some(mask) = header.mask else {
            return self.fail("client frames must be masked", out);
        };
        let sink = match header.opcode {
            Opcode::Reserved(_) => return self.fail("invalid opcode", out),
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                if !header.fin {
                    return self.fail("fragmented control frame", out);
                }
                if len > MAX_CONTROL_PAYLOAD {
                    return self.fail("control frame payload over 125 bytes", out);
                }
                self.control.clear();
                Sink::Control
            }
            Opcode::Continuation => {
                if self.message.is_none() {
                    return self.fail("continuation frame without a message", out);
                }
                self.data_sink(len, out)
            }
            Opcode::Text | Opcode::Binary => {
                if self.message.is_some() {
                    return self.fail("new message before the last one finished", out);
                }
                self.message = Some(if header.opcode == Opcode::Text {
                    MessageKind::Text
                } else {
                    MessageKind::Binary
                });
                self.message_len = 0;
                self.text_valid = 0;
                self.discarding = false;
                self.compressed = header.rsv1;
                self.data_sink(len, out)
            }
        };
        let frame = InFrame {
            opcode: header.opcode,
            fin: header.fin,
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
            Some(MessageKind::Binary) if self.keep_binary => {
                self.text.reserve(len as usize);
                Sink::Binary
            }
            // Otherwise binary payloads are counted against the cap but never kept.
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
            Sink::Message | Sink::Binary => Some(&mut self.text),
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
        // Compressed bytes are not text yet: UTF-8 is checked after inflating.
        if frame.sink == Sink::Message && !self.compressed && !self.check_text(false, out) {
            return &[];
        }
        if frame.remaining == 0 {
            self.frame = None;
            self.finish_frame(frame, out);
        } else {
            self.frame = Some(frame);
        }
        rest
    }

    /// Delivers the reassembled text message, unless it ends inside a UTF-8 sequence.
    fn finish_text(&mut self, out: &mut Vec<WsEvent>) {
        if self.check_text(true, out) {
            self.text_valid = 0;
            out.push(WsEvent::Text(std::mem::take(&mut self.text)));
        }
    }

    fn finish_frame(&mut self, frame: InFrame, out: &mut Vec<WsEvent>) {
        match frame.opcode {
            Opcode::Ping => out.push(WsEvent::Ping(std::mem::take(&mut self.control))),
            Opcode::Pong => out.push(WsEvent::Pong),
            Opcode::Close => {
                let code = match self.control.len() {
                    0 => None,
                    1 => return self.fail("close frame with a one-byte payload", out),
                    _ => Some(u16::from_be_bytes([self.control[0], self.control[1]])),
                };
                if std::str::from_utf8(self.control.get(2..).unwrap_or_default()).is_err() {
                    return self.fail_with(WsEvent::InvalidUtf8("close reason is not UTF-8"), out);
                }
                self.finished = true;
                self.control = Vec::new();
                self.text = Vec::new();
                out.push(WsEvent::Close(code));
            }
            // Refused when the header was read.
            Opcode::Reserved(_) => self.fail("invalid opcode", out),
            Opcode::Continuation | Opcode::Text | Opcode::Binary => {
                if !frame.fin {
                    return;
                }
                let kind = self.message.take();
                if std::mem::take(&mut self.discarding) {
                    return;
                }
                match kind {
                    Some(MessageKind::Text) if std::mem::take(&mut self.compressed) => {
                        out.push(WsEvent::Compressed(std::mem::take(&mut self.text)));
                    }
                    Some(MessageKind::Text) => self.finish_text(out),
                    Some(MessageKind::Binary) if std::mem::take(&mut self.compressed) => {
                        out.push(if self.keep_binary {
                            WsEvent::CompressedBinary(std::mem::take(&mut self.text))
                        } else {
                            WsEvent::Binary(Vec::new())
                        })
                    }
                    Some(MessageKind::Binary) => {
                        out.push(WsEvent::Binary(std::mem::take(&mut self.text)))
                    }
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_opcode_fails_at_its_header_before_any_payload() {
        let mut decoder = Decoder::new(1024);
        let mut out = Vec::new();
        // Header only: a masked frame with opcode 0x3 announcing 100 payload bytes.
        decoder.decode(&[0x83, 0x80 | 100, 1, 2, 3, 4], &mut out);
        assert_eq!(out, vec![WsEvent::ProtocolError("invalid opcode")]);
        assert!(decoder.is_finished());
    }

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
        assert_eq!(
            events,
            vec![WsEvent::Oversized, WsEvent::Binary(Vec::new())]
        );
    }

    #[test]
    fn huge_declared_length_is_oversized_without_allocation() {
        let mut wire = vec![0x81, 0x80 | 127];
        wire.extend_from_slice(&(i64::MAX as u64).to_be_bytes());
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
    fn a_64_bit_length_with_its_top_bit_set_is_a_protocol_error() {
        let mut wire = vec![0x81, 0x80 | 127];
        wire.extend_from_slice(&(1u64 << 63).to_be_bytes());
        wire.extend_from_slice(&MASK);
        assert_eq!(
            decode_all(1000, &wire),
            vec![WsEvent::ProtocolError(
                "64-bit payload length with its top bit set"
            )]
        );
    }

    #[test]
    fn invalid_utf8_in_a_text_message_fails_with_invalid_utf8() {
        let not_utf8 = WsEvent::InvalidUtf8("text message is not UTF-8");
        // A lone continuation byte, an overlong encoding, a surrogate, and a truncated end.
        for payload in [&b"ok\x80"[..], b"\xC0\xAF", b"\xED\xA0\x80", b"caf\xC3"] {
            let mut wire = frame(0x81, payload);
            wire.extend(frame(0x81, b"after"));
            assert_eq!(
                decode_all(1024, &wire),
                vec![not_utf8.clone()],
                "{payload:?}"
            );
        }
        // Valid multi-byte text still passes, fed byte by byte.
        let mut decoder = Decoder::new(1024);
        let mut out = Vec::new();
        for b in frame(0x81, "κόσμε €𝄞".as_bytes()) {
            decoder.decode(&[b], &mut out);
        }
        assert_eq!(out, vec![WsEvent::Text("κόσμε €𝄞".as_bytes().to_vec())]);
    }

    #[test]
    fn a_fragmented_message_fails_at_the_first_fragment_that_cannot_be_utf8() {
        // The first fragment is bad; the message never finishes, yet the failure comes now.
        let events = decode_all(1024, &frame(0x01, b"ab\xFFcd"));
        assert_eq!(
            events,
            vec![WsEvent::InvalidUtf8("text message is not UTF-8")]
        );
        // A sequence split across fragments is fine.
        let euro = "€".as_bytes();
        let mut wire = frame(0x01, &euro[..1]);
        wire.extend(frame(0x00, &euro[1..2]));
        wire.extend(frame(0x80, &euro[2..]));
        assert_eq!(decode_all(1024, &wire), vec![WsEvent::Text(euro.to_vec())]);
        // A split sequence that the next fragment breaks fails at that fragment.
        let mut wire = frame(0x01, &euro[..2]);
        wire.extend(frame(0x00, b"x"));
        assert_eq!(
            decode_all(1024, &wire),
            vec![WsEvent::InvalidUtf8("text message is not UTF-8")]
        );
    }

    #[test]
    fn a_close_reason_that_is_not_utf8_fails_with_invalid_utf8() {
        let events = decode_all(1024, &frame(0x88, &[0x03, 0xE8, 0xFF, 0xFE]));
        assert_eq!(
            events,
            vec![WsEvent::InvalidUtf8("close reason is not UTF-8")]
        );
        let events = decode_all(1024, &frame(0x88, &[0x03, 0xE8, 0xC3, 0xA9]));
        assert_eq!(events, vec![WsEvent::Close(Some(1000))]);
    }

    #[test]
    fn empty_text_message_is_delivered() {
        assert_eq!(
            decode_all(10, &frame(0x81, b"")),
            vec![WsEvent::Text(Vec::new())]
        );
    }

    fn decode_deflate(max: usize, bytes: &[u8]) -> Vec<WsEvent> {
        let mut decoder = Decoder::new(max).with_permessage_deflate();
        let mut out = Vec::new();
        decoder.decode(bytes, &mut out);
        out
    }

    #[test]
    fn rsv1_marks_a_compressed_message_only_where_deflate_was_negotiated() {
        // Not valid UTF-8 as it stands: compressed bytes are handed over unchecked.
        let compressed = [0xF2, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00];
        let wire = frame(0xC1, &compressed);
        assert_eq!(
            decode_deflate(1024, &wire),
            vec![WsEvent::Compressed(compressed.to_vec())]
        );
        assert_eq!(
            decode_all(1024, &wire),
            vec![WsEvent::ProtocolError(
                "RSV1 set without permessage-deflate"
            )]
        );
        // Fragmented: RSV1 on the first frame only; the fragments are joined.
        let mut wire = frame(0x41, &compressed[..3]);
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x80, &compressed[3..]));
        wire.extend(frame(0x81, b"plain"));
        assert_eq!(
            decode_deflate(1024, &wire),
            vec![
                WsEvent::Ping(b"p".to_vec()),
                WsEvent::Compressed(compressed.to_vec()),
                WsEvent::Text(b"plain".to_vec()),
            ]
        );
        // A compressed binary message is skipped like any binary message.
        assert_eq!(
            decode_deflate(1024, &frame(0xC2, &compressed)),
            vec![WsEvent::Binary(Vec::new())]
        );
    }

    #[test]
    fn rsv1_on_control_or_continuation_frames_and_rsv2_rsv3_are_always_errors() {
        let cases = [
            (frame(0xC9, b"ping"), "RSV1 on a control frame"),
            (frame(0xC8, &[0x03, 0xE8]), "RSV1 on a control frame"),
            (
                [frame(0x01, b"a"), frame(0xC0, b"b")].concat(),
                "RSV1 on a continuation frame",
            ),
            (
                frame(0xA1, b"rsv2"),
                "reserved bits set without an extension",
            ),
            (
                frame(0x91, b"rsv3"),
                "reserved bits set without an extension",
            ),
            (
                frame(0xE1, b"all"),
                "reserved bits set without an extension",
            ),
        ];
        for (wire, reason) in cases {
            assert_eq!(
                decode_deflate(1024, &wire).last(),
                Some(&WsEvent::ProtocolError(reason)),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn a_compressed_message_over_the_cap_is_oversized() {
        let mut wire = frame(0xC1, &[0xAA; 2000]);
        wire.extend(frame(0xC1, &[1, 2, 3]));
        assert_eq!(
            decode_deflate(1000, &wire),
            vec![WsEvent::Oversized, WsEvent::Compressed(vec![1, 2, 3])]
        );
    }

    #[test]
    fn binary_bytes_are_kept_only_when_asked_for_and_never_utf8_checked() {
        let mut wire = frame(0x02, b"\xff\x00");
        wire.extend(frame(0x89, b"p"));
        wire.extend(frame(0x80, b"\xfe"));
        wire.extend(frame(0x81, b"text after"));
        let mut kept = Vec::new();
        Decoder::new(1024).keeping_binary().decode(&wire, &mut kept);
        assert_eq!(
            kept,
            vec![
                WsEvent::Ping(b"p".to_vec()),
                WsEvent::Binary(b"\xff\x00\xfe".to_vec()),
                WsEvent::Text(b"text after".to_vec()),
            ]
        );
        let counted = decode_all(1024, &wire);
        assert_eq!(counted[1], WsEvent::Binary(Vec::new()));
        // The cap holds for kept binary messages too.
        let mut big = Vec::new();
        Decoder::new(4)
            .keeping_binary()
            .decode(&frame(0x82, b"12345"), &mut big);
        assert_eq!(big, vec![WsEvent::Oversized]);
    }

    #[test]
    fn a_kept_compressed_binary_message_is_handed_over_compressed() {
        let mut out = Vec::new();
        Decoder::new(1024)
            .keeping_binary()
            .with_permessage_deflate()
            .decode(&frame(0xC2, &[0xFF, 0x00]), &mut out);
        assert_eq!(out, vec![WsEvent::CompressedBinary(vec![0xFF, 0x00])]);
    }
}
