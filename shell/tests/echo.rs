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
