//! WebSocket behaviour of the real binary over loopback.
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

use ferrocast_engine::signature::client_auth;
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};
use support::{close_code, next_json, socket_id, Server};
use tungstenite::Message;

const APP: &str = "/app/app-key?protocol=7&client=js&version=8.4.0";

fn connection_established_carries_a_socket_id(workers: usize) {
    let server = Server::start(workers);
    let mut ws = server.ws(APP);
    let id = socket_id(&next_json(&mut ws));
    let (high, low) = id.split_once('.').expect("a dot");
    assert!(
        !high.is_empty() && high.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
    assert!(
        !low.is_empty() && low.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );
}

fn unknown_key_gets_an_error_then_close_4001(workers: usize) {
    let server = Server::start(workers);
    let mut ws = server.ws("/app/no-such-key?protocol=7");
    let error = next_json(&mut ws);
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4001);
    assert_eq!(close_code(&mut ws), 4001);
}

fn message_over_the_limit_closes_1009(workers: usize) {
    let server = Server::start(workers);
    let mut ws = server.ws(APP);
    next_json(&mut ws);
    let big = format!("{{\"event\":\"x\",\"data\":\"{}\"}}", "a".repeat(20_000));
    ws.send(Message::Text(big.into())).expect("send");
    assert_eq!(close_code(&mut ws), 1009);
}

fn websocket_ping_gets_a_pong(workers: usize) {
    let server = Server::start(workers);
    let mut ws = server.ws(APP);
    next_json(&mut ws);
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .expect("send");
    for _ in 0..10 {
        match ws.read().expect("read") {
            Message::Pong(payload) => {
                assert_eq!(&payload[..], b"are you there");
                return;
            }
            _ => continue,
        }
    }
    panic!("no pong");
}

fn pusher_ping_event_gets_a_pusher_pong(workers: usize) {
    let server = Server::start(workers);
    let mut ws = server.ws(APP);
    next_json(&mut ws);
    ws.send(Message::Text(
        json!({"event": "pusher:ping", "data": {}})
            .to_string()
            .into(),
    ))
    .expect("send");
    assert_eq!(next_json(&mut ws)["event"], "pusher:pong");
}

fn unmasked_frame_closes_1002(workers: usize) {
    let server = Server::start(workers);
    let mut ws = server.ws(APP);
    next_json(&mut ws);
    // Write an unmasked text frame straight onto the socket, under the client's feet.
    ws.get_mut().write_all(b"\x81\x02hi").expect("write");
    assert_eq!(close_code(&mut ws), 1002);
}

fn text_that_is_not_utf8_closes_1007(workers: usize) {
    let server = Server::start(workers);
    let mut ws = server.ws(APP);
    next_json(&mut ws);
    // A masked (all-zero mask) text frame whose two payload bytes can never be UTF-8.
    ws.get_mut()
        .write_all(b"\x81\x82\x00\x00\x00\x00\xFF\xFE")
        .expect("write");
    assert_eq!(close_code(&mut ws), 1007);
}

fn client_close_is_echoed(workers: usize) {
    let server = Server::start(workers);
    let mut ws = server.ws(APP);
    next_json(&mut ws);
    ws.close(None).expect("close");
    let start = Instant::now();
    loop {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(start.elapsed() < support::WAIT);
    }
}

fn frames_sent_right_behind_the_handshake_are_not_lost(workers: usize) {
    let server = Server::start(workers);
    let mut tcp = server.tcp();
    let mut bytes = b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".to_vec();
    // A masked ping with payload "x", in the same write as the handshake.
    bytes.extend_from_slice(&[0x89, 0x81, 1, 2, 3, 4, b'x' ^ 1]);
    tcp.write_all(&bytes).expect("write");
    let mut seen = Vec::new();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < support::WAIT {
        let n = tcp.read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(3).any(|w| w == [0x8A, 0x01, b'x']) {
            let text = String::from_utf8_lossy(&seen);
            assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
            assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
            return;
        }
    }
    panic!("no pong after the handshake");
}

/// A subscriber that never reads is closed once its output queue overflows, while the
/// publisher and the server carry on.
fn slow_reader_is_eventually_closed(workers: usize) {
    let config = r#"
        [server]
        max_output_bytes = 65536
        max_output_frames = 64
        close_linger_ms = 500

        [[apps]]
        id = "slow-app"
        key = "slow-key"
        secret = "slow-secret"
        client_event_rate_per_sec = 100000
        client_event_burst = 100000
    "#;
    let server = Server::start_with(workers, Some(config), &[], &[]);
    let path = "/app/slow-key?protocol=7";
    let subscribe = |ws: &mut tungstenite::WebSocket<std::net::TcpStream>| {
        let id = socket_id(&next_json(ws));
        let auth = client_auth(
            "slow-key",
            "slow-secret",
            format!("{id}:private-feed").as_bytes(),
        );
        let msg =
            json!({"event": "pusher:subscribe", "data": {"channel": "private-feed", "auth": auth}});
        ws.send(Message::Text(msg.to_string().into()))
            .expect("subscribe");
        let reply = next_json(ws);
        assert_eq!(
            reply["event"], "pusher_internal:subscription_succeeded",
            "{reply}"
        );
    };
    let mut slow = server.ws(path);
    subscribe(&mut slow);
    let mut publisher = server.ws(path);
    subscribe(&mut publisher);

    let event = json!({"event": "client-blob", "channel": "private-feed", "data": {"blob": "z".repeat(8000)}}).to_string();
    let start = Instant::now();
    // ~16 MB: more than the loopback socket buffers and the 64 KiB queue can absorb.
    for _ in 0..2000 {
        publisher
            .send(Message::Text(event.clone().into()))
            .expect("publisher keeps going");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "publishing took too long"
        );
    }

    // Now drain the slow reader: it must end (close frame, reset or EOF), not stream forever.
    slow.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut frames = 0usize;
    let ended = loop {
        match slow.read() {
            Ok(Message::Close(frame)) => {
                break format!("close {:?}", frame.map(|f| u16::from(f.code)))
            }
            Ok(_) => frames += 1,
            Err(e) => break format!("error {e}"),
        }
        assert!(frames < 2000, "the slow reader received every event");
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "slow reader never closed"
        );
    };
    eprintln!("slow reader ended with {ended} after {frames} frames");
    assert!(frames < 2000, "ended with {ended} after {frames} frames");
    assert!(
        !ended.contains("WouldBlock") && !ended.contains("timed out"),
        "slow reader was not closed: {ended}"
    );
    // The publisher is still served.
    publisher
        .send(Message::Text(
            json!({"event": "pusher:ping", "data": {}})
                .to_string()
                .into(),
        ))
        .expect("send");
    assert_eq!(next_json(&mut publisher)["event"], "pusher:pong");
}

/// A burst of 10,000 pings from a client that reads is answered (the latest ping at least)
/// and the connection stays open: pongs do not pile up in the output queue, so the client is
/// not closed as a slow consumer, and a later publish still reaches it.
fn a_ping_burst_from_a_reader_keeps_the_connection(workers: usize) {
    const PINGS: u32 = 10_000;
    let server = Server::start(workers);
    let mut ws = server.ws(APP);
    next_json(&mut ws);
    let msg = json!({"event": "pusher:subscribe", "data": {"channel": "burst"}});
    ws.send(Message::Text(msg.to_string().into()))
        .expect("subscribe");
    assert_eq!(
        next_json(&mut ws)["event"],
        "pusher_internal:subscription_succeeded"
    );
    // Masked pings (mask key 0, so the payload reads as is) in one write: the server decodes
    // thousands of them in one turn.
    let mut burst = Vec::with_capacity(PINGS as usize * 10);
    for i in 0..PINGS {
        burst.extend_from_slice(&[0x89, 0x84, 0, 0, 0, 0]);
        burst.extend_from_slice(&i.to_be_bytes());
    }
    ws.get_mut().write_all(&burst).expect("write the pings");
    support::publish(&server, "burst", "after-the-pings", "{}");
    let (mut pongs, mut latest_answered, mut published) = (0usize, false, false);
    let start = Instant::now();
    while !(latest_answered && published) {
        assert!(
            start.elapsed() < support::WAIT,
            "{pongs} pongs, event: {published}"
        );
        match ws.read().expect("the connection stays open") {
            Message::Pong(payload) => {
                pongs += 1;
                latest_answered = payload[..] == (PINGS - 1).to_be_bytes();
            }
            Message::Text(text) => {
                let event: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                assert_eq!(event["event"], "after-the-pings", "{event}");
                published = true;
            }
            Message::Close(frame) => panic!("closed after {pongs} pongs: {frame:?}"),
            _ => {}
        }
    }
    assert!(pongs <= PINGS as usize, "{pongs} pongs");
}

/// Each accepted socket gets the configured kernel send buffer (Linux reports `SO_SNDBUF`
/// doubled, as `tb` in `ss -m`), so a slow reader cannot hold megabytes in the kernel.
fn accepted_sockets_get_the_configured_send_buffer(workers: usize) {
    const SEND_BUFFER: u64 = 100_000;
    let server = Server::start_with(
        workers,
        None,
        &["--socket-send-buffer-bytes", &SEND_BUFFER.to_string()],
        &[],
    );
    let mut ws = server.ws(APP);
    next_json(&mut ws);
    let filter = format!("( sport = :{} )", server.addr.port());
    let output = std::process::Command::new("ss")
        .args(["-tmnH", "state", "established", &filter])
        .output()
        .expect("ss (iproute2) is needed to read the server socket's send buffer");
    let text = String::from_utf8_lossy(&output.stdout);
    let sizes: Vec<u64> = text
        .split("tb")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    assert_eq!(sizes, [2 * SEND_BUFFER], "{text}");
}

/// One HTTP publish fans out to every subscriber's socket.
fn a_publish_reaches_every_subscriber(workers: usize) {
    let server = Server::start(workers);
    let mut clients: Vec<_> = (0..50).map(|_| server.ws(APP)).collect();
    for ws in &mut clients {
        next_json(ws);
        let msg = json!({"event": "pusher:subscribe", "data": {"channel": "news"}});
        ws.send(Message::Text(msg.to_string().into()))
            .expect("subscribe");
        assert_eq!(
            next_json(ws)["event"],
            "pusher_internal:subscription_succeeded"
        );
    }
    support::publish(&server, "news", "headline", "{\"n\":1}");
    for ws in &mut clients {
        let event = next_json(ws);
        assert_eq!(event["event"], "headline");
        assert_eq!(event["channel"], "news");
        assert_eq!(event["data"], "{\"n\":1}");
    }
}

/// A subscriber that never reads is told why it is closed: its last frames are the engine's
/// `pusher:error` 4100 and a close with 4100, not just a close (rules 3.4100-slow-consumer and
/// 3.error-before-close).
fn slow_reader_hears_4100_before_its_close(workers: usize) {
    let config = r#"
        [server]
        max_output_bytes = 65536
        max_output_frames = 64
        close_linger_ms = 20000

        [[apps]]
        id = "slow-app"
        key = "slow-key"
        secret = "slow-secret"
        client_event_rate_per_sec = 100000
        client_event_burst = 100000
    "#;
    let server = Server::start_with(workers, Some(config), &[], &[]);
    let path = "/app/slow-key?protocol=7";
    let subscribe = |ws: &mut tungstenite::WebSocket<std::net::TcpStream>| {
        let id = socket_id(&next_json(ws));
        let auth = client_auth(
            "slow-key",
            "slow-secret",
            format!("{id}:private-feed").as_bytes(),
        );
        let msg =
            json!({"event": "pusher:subscribe", "data": {"channel": "private-feed", "auth": auth}});
        ws.send(Message::Text(msg.to_string().into()))
            .expect("subscribe");
        let reply = next_json(ws);
        assert_eq!(reply["event"], "pusher_internal:subscription_succeeded");
    };
    let mut slow = server.ws(path);
    subscribe(&mut slow);
    let mut publisher = server.ws(path);
    subscribe(&mut publisher);

    let event = json!({"event": "client-blob", "channel": "private-feed", "data": {"blob": "z".repeat(8000)}}).to_string();
    // ~8 MB: more than the loopback socket buffers and the 64 KiB queue can absorb.
    let start = Instant::now();
    for _ in 0..1000 {
        publisher
            .send(Message::Text(event.clone().into()))
            .expect("publisher keeps going");
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "publishing took too long"
        );
    }

    slow.get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut last_text = None;
    let mut frames = 0usize;
    let code = loop {
        match slow.read() {
            Ok(Message::Close(frame)) => break frame.map(|f| u16::from(f.code)),
            Ok(Message::Text(text)) => last_text = Some(text.as_str().to_owned()),
            Ok(_) => {}
            Err(e) => panic!("the slow reader was dropped without a close frame: {e}"),
        }
        frames += 1;
        assert!(frames < 1000, "the slow reader received every event");
    };
    let last: serde_json::Value =
        serde_json::from_str(&last_text.expect("some text before the close")).expect("JSON");
    assert_eq!(
        last["event"], "pusher:error",
        "the last words were a {}",
        last["event"]
    );
    assert_eq!(last["data"]["code"], 4100, "{last}");
    assert_eq!(code, Some(4100));
}

per_workers!(
    connection_established_carries_a_socket_id,
    unknown_key_gets_an_error_then_close_4001,
    message_over_the_limit_closes_1009,
    websocket_ping_gets_a_pong,
    pusher_ping_event_gets_a_pusher_pong,
    unmasked_frame_closes_1002,
    text_that_is_not_utf8_closes_1007,
    client_close_is_echoed,
    frames_sent_right_behind_the_handshake_are_not_lost,
    slow_reader_is_eventually_closed,
    slow_reader_hears_4100_before_its_close,
    a_publish_reaches_every_subscriber,
    a_ping_burst_from_a_reader_keeps_the_connection,
    accepted_sockets_get_the_configured_send_buffer,
);
