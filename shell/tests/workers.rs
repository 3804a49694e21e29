//! Connections spread over several I/O workers: fan-out, the HTTP API, slow consumers and
//! close codes must not depend on which worker serves which socket. Worker 0 deals accepted
//! sockets round-robin, so connections opened one after another land on 0, 1, 2, … in turn.
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
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{close_code, next_json, run_to_exit, socket_id, Server, WAIT};
use tungstenite::{Message, WebSocket};

const APP: &str = "/app/app-key?protocol=7&client=js&version=8.4.0";

/// Waits until the server has logged `count` accepted connections and returns their workers.
fn accepted(server: &Server, count: usize) -> Vec<usize> {
    let start = Instant::now();
    loop {
        let workers = server.accepted_by();
        if workers.len() >= count {
            return workers;
        }
        assert!(
            start.elapsed() < WAIT,
            "only {workers:?} in:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn subscribe(ws: &mut WebSocket<TcpStream>, channel: &str) -> String {
    let id = socket_id(&next_json(ws));
    let msg = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
    ws.send(Message::Text(msg.to_string().into()))
        .expect("subscribe");
    let reply = next_json(ws);
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
    id
}

fn subscribe_private(ws: &mut WebSocket<TcpStream>, key: &str, secret: &str, channel: &str) {
    let id = socket_id(&next_json(ws));
    let auth = client_auth(key, secret, format!("{id}:{channel}").as_bytes());
    let msg = json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}});
    ws.send(Message::Text(msg.to_string().into()))
        .expect("subscribe");
    let reply = next_json(ws);
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
}

fn sockets_are_dealt_round_robin_and_a_publish_reaches_every_worker(workers: usize) {
    let server = Server::start(workers);
    let mut clients: Vec<_> = (0..3 * workers).map(|_| server.ws(APP)).collect();
    for ws in &mut clients {
        subscribe(ws, "news");
    }
    let expected: Vec<usize> = (0..3 * workers).map(|i| i % workers).collect();
    assert_eq!(accepted(&server, 3 * workers), expected);

    support::publish(&server, "news", "headline", "{\"n\":1}");
    for ws in &mut clients {
        let event = next_json(ws);
        assert_eq!(event["event"], "headline");
        assert_eq!(event["data"], "{\"n\":1}");
    }
}

/// The request arrives on worker 1, its subscriber sits on worker 0 (and the reverse).
fn http_on_one_worker_publishes_to_websockets_on_another(workers: usize) {
    let server = Server::start(workers);
    let mut first = server.ws(APP);
    subscribe(&mut first, "feed");
    support::publish(&server, "feed", "one", "1");
    assert_eq!(next_json(&mut first)["event"], "one");
    let mut third = server.ws(APP);
    subscribe(&mut third, "feed");
    support::publish(&server, "feed", "two", "2");
    assert_eq!(next_json(&mut first)["event"], "two");
    assert_eq!(next_json(&mut third)["event"], "two");
    let workers_seen = accepted(&server, 4);
    assert_eq!(
        workers_seen,
        (0..4).map(|i| i % workers).collect::<Vec<_>>()
    );
}

/// A client event reaches the other subscribers on every worker, never its sender.
fn client_events_cross_workers_and_skip_the_sender(workers: usize) {
    let config = r#"
        [[apps]]
        id = "app-id"
        key = "app-key"
        secret = "app-secret"
        client_events = true
    "#;
    let server = Server::start_with(workers, Some(config), &[], &[]);
    let mut clients: Vec<_> = (0..4).map(|_| server.ws(APP)).collect();
    for ws in &mut clients {
        subscribe_private(ws, "app-key", "app-secret", "private-room");
    }
    let event = json!({"event": "client-hello", "channel": "private-room", "data": {"from": 1}});
    clients[1]
        .send(Message::Text(event.to_string().into()))
        .expect("send");
    for (i, ws) in clients.iter_mut().enumerate() {
        if i == 1 {
            continue;
        }
        let got = next_json(ws);
        assert_eq!(got["event"], "client-hello", "client {i}: {got}");
    }
    // The sender gets nothing but the answer to its own ping.
    let ping = json!({"event": "pusher:ping", "data": {}}).to_string();
    clients[1].send(Message::Text(ping.into())).expect("ping");
    assert_eq!(next_json(&mut clients[1])["event"], "pusher:pong");
}

/// The slow subscriber (worker 0) is closed with 4100 while its publisher (worker 1 when
/// there are two) carries on.
fn a_slow_subscriber_is_closed_4100_while_the_publisher_carries_on(workers: usize) {
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
    let mut slow = server.ws(path);
    subscribe_private(&mut slow, "slow-key", "slow-secret", "private-feed");
    let mut publisher = server.ws(path);
    subscribe_private(&mut publisher, "slow-key", "slow-secret", "private-feed");
    assert_eq!(accepted(&server, 2), [0, 1 % workers]);

    let event = json!({"event": "client-blob", "channel": "private-feed", "data": {"blob": "z".repeat(8000)}}).to_string();
    for _ in 0..2000 {
        publisher
            .send(Message::Text(event.clone().into()))
            .expect("publisher keeps going");
    }
    let ping = json!({"event": "pusher:ping", "data": {}}).to_string();
    publisher.send(Message::Text(ping.into())).expect("ping");
    assert_eq!(next_json(&mut publisher)["event"], "pusher:pong");

    // Everything queued before the close is still delivered, then the close frame.
    slow.get_mut()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut frames = 0usize;
    let code = loop {
        match slow.read().expect("the slow reader gets a close frame") {
            Message::Close(frame) => break frame.map(|f| u16::from(f.code)),
            _ => frames += 1,
        }
        assert!(frames < 2000, "the slow reader received every event");
    };
    assert_eq!(code, Some(4100), "after {frames} frames");
}

/// SIGTERM closes the WebSockets of every worker with 4200, and the process exits 0.
fn sigterm_closes_websockets_on_every_worker(workers: usize) {
    let mut server = Server::start(workers);
    let mut clients: Vec<_> = (0..2 * workers).map(|_| server.ws(APP)).collect();
    for ws in &mut clients {
        next_json(ws);
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    for ws in &mut clients {
        assert_eq!(close_code(ws), 4200);
    }
    drop(clients);
    assert!(server.wait_exit().success(), "{}", server.stderr());
}

per_workers!(
    sockets_are_dealt_round_robin_and_a_publish_reaches_every_worker,
    http_on_one_worker_publishes_to_websockets_on_another,
    client_events_cross_workers_and_skip_the_sender,
    a_slow_subscriber_is_closed_4100_while_the_publisher_carries_on,
    sigterm_closes_websockets_on_every_worker,
);

#[test]
fn three_workers_share_one_fan_out() {
    sockets_are_dealt_round_robin_and_a_publish_reaches_every_worker(3);
}

#[test]
fn the_worker_count_comes_from_the_environment_and_is_checked() {
    let server = Server::start_with(1, None, &[], &[]);
    drop(server);
    let (status, stderr) = run_to_exit(&["--workers", "0"], &[]);
    assert!(!status.success());
    assert!(stderr.contains("server.workers"), "{stderr}");
    let (status, stderr) = run_to_exit(&[], &[("FERROCAST_WORKERS", "many")]);
    assert!(!status.success());
    assert!(stderr.contains("many"), "{stderr}");
}
