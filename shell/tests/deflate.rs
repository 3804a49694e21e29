//! permessage-deflate (RFC 7692) against the real binary, with a raw client that negotiates
//! it, inflates what the server compressed and compresses what it sends.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]
// These tests play the client: they build its requests and read the replies as JSON, which
// the shell itself never does (shell/clippy.toml bans it there).
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

#[macro_use]
mod support;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::json;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use support::{publish, read_response, signed_events_request, unix_secs, Server};

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// One server frame as received.
#[derive(Debug)]
struct Received {
    /// The first header byte: FIN, RSV1–3, opcode.
    first: u8,
    /// The whole frame, header included.
    wire: Vec<u8>,
    /// The payload as sent (compressed when RSV1 is set).
    payload: Vec<u8>,
}

impl Received {
    fn compressed(&self) -> bool {
        self.first & 0x40 != 0
    }

    /// The message text: the payload, inflated when compressed.
    fn text(&self) -> String {
        let bytes = if self.compressed() {
            inflate(&self.payload)
        } else {
            self.payload.clone()
        };
        String::from_utf8(bytes).expect("UTF-8 text")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text()).expect("JSON")
    }
}

/// A blocking WebSocket client over a raw socket.
struct Client {
    stream: TcpStream,
    /// The 101 answer's head.
    head: String,
    /// Bytes read past the last frame.
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `path`, offering `extensions`, and reads the 101 answer.
    fn connect(server: &Server, path: &str, extensions: Option<&str>) -> Client {
        let mut stream = server.tcp();
        let offer = extensions
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut chunk).expect("read the answer");
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        let mut client = Client {
            stream,
            head,
            buf: buf[end..].to_vec(),
        };
        assert_eq!(client.next_data()["event"], "pusher:connection_established");
        client
    }

    /// The negotiated extensions, from the 101 answer.
    fn extensions(&self) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim())
        })
    }

    fn fill(&mut self, want: usize) {
        let mut chunk = [0u8; 65536];
        while self.buf.len() < want {
            let n = self.stream.read(&mut chunk).expect("read");
            assert!(n > 0, "connection closed");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next frame.
    fn frame(&mut self) -> Received {
        self.fill(2);
        let (first, short) = (self.buf[0], usize::from(self.buf[1] & 0x7F));
        assert_eq!(self.buf[1] & 0x80, 0, "server frames are unmasked");
        let (len, header) = match short {
            126 => {
                self.fill(4);
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                self.fill(10);
                let len = u64::from_be_bytes(self.buf[2..10].try_into().unwrap());
                (usize::try_from(len).unwrap(), 10)
            }
            n => (n, 2),
        };
        self.fill(header + len);
        let wire: Vec<u8> = self.buf.drain(..header + len).collect();
        Received {
            first,
            payload: wire[header..].to_vec(),
            wire,
        }
    }

    /// The next text frame (pings, pongs skipped).
    fn next_text(&mut self) -> Received {
        loop {
            let frame = self.frame();
            match frame.first & 0x0F {
                0x1 => return frame,
                0x9 | 0xA => continue,
                other => panic!("expected text, got opcode {other:#x}: {frame:?}"),
            }
        }
    }

    fn next_data(&mut self) -> serde_json::Value {
        self.next_text().json()
    }

    /// The close code the server sends next (data frames before it skipped).
    fn close_code(&mut self) -> u16 {
        for _ in 0..100 {
            let frame = self.frame();
            if frame.first & 0x0F == 0x8 {
                return u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
            }
        }
        panic!("no close frame");
    }

    /// Sends one masked frame.
    fn send(&mut self, first: u8, payload: &[u8]) {
        let mask = [0x1F, 0x2E, 0x3D, 0x4C];
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&out).unwrap();
    }

    fn send_text(&mut self, text: &str) {
        self.send(0x81, text.as_bytes());
    }

    /// Sends `text` as one compressed message (RSV1, without the tail).
    fn send_compressed(&mut self, text: &[u8]) {
        self.send(0xC1, &deflate(text));
    }

    fn subscribe(&mut self, channel: &str) {
        let msg = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
        self.send_text(&msg.to_string());
        assert_eq!(
            self.next_data()["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
}

/// Raw deflate with a sync flush, the tail removed: one permessage-deflate message.
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    compressor
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&TAIL);
    let mut decompressor = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    decompressor
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(decompressor.total_in() as usize, input.len());
    out
}

const APP: &str = "/app/app-key?protocol=7";

fn the_offer_is_answered_with_both_no_context_takeovers(workers: usize) {
    let server = Server::start(workers);
    let deflate = Client::connect(&server, APP, Some(OFFER));
    assert_eq!(deflate.extensions(), Some(ANSWER));
    let plain = Client::connect(&server, APP, None);
    assert_eq!(plain.extensions(), None);
    // An offer the server cannot read is no error: the handshake succeeds uncompressed.
    let garbled = Client::connect(&server, APP, Some("permessage-deflate; =\"x"));
    assert_eq!(garbled.extensions(), None);
    let off = Server::start_with(workers, None, &["--compression", "false"], &[]);
    assert_eq!(Client::connect(&off, APP, Some(OFFER)).extensions(), None);
}

fn a_large_broadcast_arrives_compressed_and_a_small_one_plain(workers: usize) {
    let server = Server::start(workers);
    let mut deflate = Client::connect(&server, APP, Some(OFFER));
    let mut plain = Client::connect(&server, APP, None);
    deflate.subscribe("news");
    plain.subscribe("news");
    let data = json!({"items": (0..40).map(|i| json!({"id": i, "title": "Ferrocast ships permessage-deflate"})).collect::<Vec<_>>()}).to_string();
    assert!(data.len() > 1500);
    publish(&server, "news", "big", &data);
    let compressed = deflate.next_text();
    let reference = plain.next_text();
    assert!(compressed.compressed(), "{:#x}", compressed.first);
    assert!(!reference.compressed());
    assert!(compressed.wire.len() < reference.wire.len() / 3);
    // Exactly the JSON the plain client got.
    assert_eq!(compressed.text(), reference.text());
    assert_eq!(compressed.json()["data"], data);

    publish(&server, "news", "small", "{\"n\":1}");
    let small = deflate.next_text();
    assert!(!small.compressed());
    assert_eq!(small.json()["event"], "small");
}

fn two_recipients_get_the_same_compressed_bytes(workers: usize) {
    let server = Server::start(workers);
    let mut first = Client::connect(&server, APP, Some(OFFER));
    let mut second = Client::connect(&server, APP, Some(OFFER));
    first.subscribe("news");
    second.subscribe("news");
    // With two workers the two recipients are on different threads: the compressed frame made
    // by one worker is the one the other writes.
    let start = std::time::Instant::now();
    while server.accepted_by().len() < 2 {
        assert!(start.elapsed() < support::WAIT, "{}", server.stderr());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(server.accepted_by()[..2], [0, 1 % workers]);
    let data = "all the news that fits, ".repeat(100);
    publish(&server, "news", "big", &data);
    let (a, b) = (first.next_text(), second.next_text());
    assert!(a.compressed());
    assert_eq!(a.wire, b.wire);
    assert_eq!(a.json()["data"], data);
}

fn compressed_client_messages_are_understood(workers: usize) {
    let server = Server::start(workers);
    let mut client = Client::connect(&server, APP, Some(OFFER));
    client.send_compressed(br#"{"event":"pusher:ping","data":{}}"#);
    assert_eq!(client.next_data()["event"], "pusher:pong");
    // A compressed subscription, in two fragments (RSV1 on the first only).
    let subscribe = deflate(br#"{"event":"pusher:subscribe","data":{"channel":"c"}}"#);
    let (head, tail) = subscribe.split_at(subscribe.len() / 2);
    client.send(0x41, head);
    client.send(0x80, tail);
    assert_eq!(
        client.next_data()["event"],
        "pusher_internal:subscription_succeeded"
    );
}

fn bad_compressed_messages_close_the_connection(workers: usize) {
    let server = Server::start(workers);
    let mut corrupt = Client::connect(&server, APP, Some(OFFER));
    corrupt.send(0xC1, &[0xFF, 0xFF, 0xFF]);
    assert_eq!(corrupt.close_code(), 1002);

    let mut not_utf8 = Client::connect(&server, APP, Some(OFFER));
    not_utf8.send_compressed(b"{\"event\":\"\xFF\"}");
    assert_eq!(not_utf8.close_code(), 1007);

    // 10 KB is the default max_message_bytes; this inflates to 1 MB from a few KB.
    let mut bomb = Client::connect(&server, APP, Some(OFFER));
    let zeros = deflate(&vec![b'0'; 1 << 20]);
    assert!(zeros.len() < 10_240);
    bomb.send(0xC1, &zeros);
    assert_eq!(bomb.close_code(), 1009);

    let mut undeclared = Client::connect(&server, APP, None);
    undeclared.send_compressed(br#"{"event":"pusher:ping","data":{}}"#);
    assert_eq!(undeclared.close_code(), 1002);
}

fn an_app_with_compression_off_gets_plain_frames(workers: usize) {
    let config = r#"
        [[apps]]
        id = "plain-id"
        key = "plain-key"
        secret = "plain-secret"
        compression = false
    "#;
    let server = Server::start_with(workers, Some(config), &[], &[]);
    let mut client = Client::connect(&server, "/app/plain-key?protocol=7", Some(OFFER));
    // Negotiated all the same: the switch is the app's, not the connection's.
    assert_eq!(client.extensions(), Some(ANSWER));
    client.subscribe("news");
    let data = "x".repeat(2000);
    let body = json!({"name": "big", "channel": "news", "data": data}).to_string();
    let request = signed_events_request(
        "plain-id",
        ("plain-key", "plain-secret"),
        &body,
        unix_secs(),
    );
    let mut api = server.tcp();
    api.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_response(&mut BufReader::new(api)).status(), 200);
    let frame = client.next_text();
    assert!(!frame.compressed());
    assert_eq!(frame.json()["data"], data);
}

per_workers!(
    the_offer_is_answered_with_both_no_context_takeovers,
    a_large_broadcast_arrives_compressed_and_a_small_one_plain,
    two_recipients_get_the_same_compressed_bytes,
    compressed_client_messages_are_understood,
    bad_compressed_messages_close_the_connection,
    an_app_with_compression_off_gets_plain_frames,
);
