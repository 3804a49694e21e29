//! The `ferrocast-echo` binary (the `echo` feature): what Autobahn|Testsuite relies on, shown
//! quickly with a plain client so that `cargo test` catches a broken echo build before the
//! suite runs.
#![cfg(feature = "echo")]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use tungstenite::{Bytes, Message};

/// The echo server on a free loopback port, killed when dropped.
struct Echo(Child);

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start() -> (Echo, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocast-echo"))
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ferrocast-echo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("ferrocast-echo listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (Echo(child), addr)
}

#[test]
fn text_and_binary_messages_come_back_unchanged() {
    let (_echo, addr) = start();
    let stream = TcpStream::connect(&addr).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
    let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    ws.send(Message::text("héllo")).unwrap();
    ws.send(Message::binary(binary.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("héllo"));
    assert_eq!(ws.read().unwrap(), Message::binary(binary));
    ws.close(None).unwrap();
    match ws.read() {
        Ok(Message::Close(frame)) => assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000)),
        other => panic!("no close echoed: {other:?}"),
    }
}

#[test]
fn ten_pings_in_a_row_get_ten_pongs_in_order() {
    let (_echo, addr) = start();
    let stream = TcpStream::connect(&addr).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
    for i in 0..10u8 {
        ws.write(Message::Ping(Bytes::from(vec![i; 3]))).unwrap();
    }
    ws.flush().unwrap();
    for i in 0..10u8 {
        assert_eq!(ws.read().unwrap(), Message::Pong(Bytes::from(vec![i; 3])));
    }
}

#[test]
fn a_compressed_binary_message_comes_back_compressed_and_whole() {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    use std::io::{Read, Write};
    let (_echo, addr) = start();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    assert!(
        head.contains("Sec-WebSocket-Extensions: permessage-deflate;"),
        "{head}"
    );
    buf.drain(..head_end);

    let message: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let mut compressed = Vec::with_capacity(message.len() + 1024);
    Compress::new(Compression::default(), false)
        .compress_vec(&message, &mut compressed, FlushCompress::Sync)
        .unwrap();
    compressed.truncate(compressed.len() - 4);
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0xC2, 0x80 | 126];
    frame.extend_from_slice(&(compressed.len() as u16).to_be_bytes());
    frame.extend_from_slice(&mask);
    frame.extend(compressed.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&frame).unwrap();

    // The echo: one unmasked binary frame with RSV1, inflating to the message.
    while buf.len() < 4 {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(buf[0], 0xC2, "{:#x}", buf[0]);
    assert_eq!(buf[1], 126);
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    while buf.len() < 4 + len {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut payload = buf[4..4 + len].to_vec();
    payload.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut inflated = Vec::with_capacity(message.len() + 64);
    Decompress::new(false)
        .decompress_vec(&payload, &mut inflated, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(inflated, message);
}
