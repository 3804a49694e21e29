//! Hand-off queues of capacity one, so that workers are refused by the door to the engine
//! (`to_engine`) and the engine waits for the workers' queues (`to_worker`) all the time:
//! nothing may be lost, duplicated or reordered, and nothing may hang. The server runs in-process to set those capacities.
#![cfg(not(loom))]
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]
// These tests play the client: they build its requests and read the replies as JSON, which
// the shell itself never does (shell/clippy.toml bans it there).
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

mod support;

use ferrocast::Cli;
use ferrocast::WebhookSink;
use ferrocast::{Server, Settings};
use ferrocast_engine::signature::client_auth;
use ferrocast_engine::WebhookDelivery;
use serde_json::json;
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use support::{next_json, socket_id, WAIT};
use tungstenite::{Message, WebSocket};

/// Debug logs of every server in this process, to see that backpressure really happened.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn pauses_logged() -> usize {
    String::from_utf8_lossy(&LOG.lock().unwrap())
        .matches("the door to the engine is full: reading paused")
        .count()
}

struct NoWebhooks;

impl WebhookSink for NoWebhooks {
    fn deliver(&mut self, _: WebhookDelivery) {}
}

const CONFIG: &str = r#"
    [[apps]]
    id = "bp-app"
    key = "bp-key"
    secret = "bp-secret"
    client_events = true
    client_event_rate_per_sec = 100000
    client_event_burst = 100000
"#;

/// Starts a server with `workers` I/O workers and queues of capacity one, left running until
/// the test process ends.
fn start(workers: usize) -> SocketAddr {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("ferrocast=debug")
        .with_ansi(false)
        .with_writer(|| Capture)
        .try_init();
    let workers = workers.to_string();
    let flags = [
        "ferrocast",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--workers",
        &workers,
    ];
    let cli = Cli::try_parse_args(flags).expect("flags");
    let settings = Settings::load(CONFIG, &cli.overrides).expect("settings");
    let mut server = Server::bind(&settings, Box::new(NoWebhooks)).expect("bind");
    server.set_queue_capacities(1, 1);
    let addr = server.local_addr();
    std::thread::spawn(move || server.run());
    addr
}

fn join(addr: SocketAddr) -> WebSocket<TcpStream> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let url = format!("ws://{addr}/app/bp-key?protocol=7");
    let (mut ws, _) = tungstenite::client::client(url.as_str(), stream).expect("handshake");
    let id = socket_id(&next_json(&mut ws));
    let auth = client_auth("bp-key", "bp-secret", format!("{id}:private-bp").as_bytes());
    let msg = json!({"event": "pusher:subscribe", "data": {"channel": "private-bp", "auth": auth}});
    ws.send(Message::Text(msg.to_string().into()))
        .expect("subscribe");
    assert_eq!(
        next_json(&mut ws)["event"],
        "pusher_internal:subscription_succeeded"
    );
    ws
}

/// Storms fresh servers until a worker has been refused at least once (the first storm almost
/// always suffices; a refusal needs two batches before the engine thread wakes up).
fn storm(workers: usize) {
    let before = pauses_logged();
    for _ in 0..10 {
        storm_once(workers);
        if pauses_logged() > before {
            return;
        }
    }
    panic!("no worker was ever refused by the door to the engine");
}

fn storm_once(workers: usize) {
    const PER_SENDER: u64 = 300;
    let addr = start(workers);
    let mut clients: Vec<_> = (0..4).map(|_| join(addr)).collect();
    // Two senders write everything without reading; every client then reads what it is owed.
    for seq in 0..PER_SENDER {
        for sender in 0..2u64 {
            let event = json!({"event": "client-n", "channel": "private-bp", "data": {"from": sender, "seq": seq}});
            clients[sender as usize]
                .send(Message::Text(event.to_string().into()))
                .expect("send");
        }
    }
    for (index, ws) in clients.iter_mut().enumerate() {
        let mut next = [0u64; 2];
        let owed = if index < 2 {
            PER_SENDER
        } else {
            2 * PER_SENDER
        };
        for _ in 0..owed {
            let event = next_json(ws);
            assert_eq!(event["event"], "client-n", "client {index}: {event}");
            let data: serde_json::Value =
                serde_json::from_str(event["data"].as_str().expect("data")).expect("JSON data");
            let from = data["from"].as_u64().expect("from") as usize;
            assert_ne!(from, index, "client {index} got its own event");
            assert_eq!(data["seq"].as_u64(), Some(next[from]), "client {index}");
            next[from] += 1;
        }
        let ping = json!({"event": "pusher:ping", "data": {}}).to_string();
        ws.send(Message::Text(ping.into())).expect("ping");
        assert_eq!(next_json(ws)["event"], "pusher:pong", "client {index}");
    }
    assert!(
        pauses_logged() > 0,
        "no worker was ever refused by the door to the engine"
    );
}

// One worker runs the engine inline: there are no queues to fill.
#[test]
fn two_workers_with_tiny_queues_lose_and_reorder_nothing() {
    storm(2);
}

#[test]
fn three_workers_with_tiny_queues_lose_and_reorder_nothing() {
    storm(3);
}
