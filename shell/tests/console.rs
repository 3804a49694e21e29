//! The admin console on the metrics listener of the real binary: the token, the live event
//! stream, the snapshot, the console publish, reload, and the console off without a token.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]
// These tests play the console and the clients: they read the replies as JSON, which the
// shell itself never does (shell/clippy.toml bans it there).
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::{next_json, publish, read_response, subscribe_public, Server, WAIT};

per_workers!(
    the_event_stream_shows_connections_subscriptions_and_publishes,
    the_console_publishes_to_subscribers
);

const TOKEN: &str = "console-test-token";

/// One request to `addr`; returns the status and the body.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: a\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    (&stream).write_all(text.as_bytes()).unwrap();
    let response = read_response(&mut BufReader::new(stream));
    (response.status(), String::from_utf8(response.body).unwrap())
}

fn admin_server(workers: usize, config: Option<&str>) -> (Server, SocketAddr) {
    let args = ["--admin-token", TOKEN, "--metrics-port", "0"];
    let server = Server::start_with(workers, config, &args, &[]);
    let admin = server.metrics_addr();
    (server, admin)
}

/// An open event stream: its lines, read on a thread, arrive on a channel.
struct Events {
    lines: std::sync::mpsc::Receiver<String>,
}

impl Events {
    fn open(addr: SocketAddr) -> Events {
        let stream = TcpStream::connect(addr).unwrap();
        let request = format!("GET /admin/events?token={TOKEN} HTTP/1.1\r\nHost: a\r\n\r\n");
        (&stream).write_all(request.as_bytes()).unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let events = Events { lines };
        let status = events.lines.recv_timeout(WAIT).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        // The stream's first comment says the engine was told someone watches.
        events.until(|line| line == ": watching");
        events
    }

    /// Reads lines until one satisfies `wanted`, returning it.
    fn until(&self, wanted: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let left = WAIT.saturating_sub(start.elapsed());
            let line = self
                .lines
                .recv_timeout(left)
                .expect("the wanted line in time");
            if wanted(&line) {
                return line;
            }
        }
    }

    /// The next debug event of `kind`.
    fn next_of(&self, kind: &str) -> Value {
        let line = self.until(|line| {
            line.strip_prefix("data: ")
                .and_then(|json| serde_json::from_str::<Value>(json).ok())
                .is_some_and(|event| event["kind"] == kind)
        });
        serde_json::from_str(line.strip_prefix("data: ").unwrap()).unwrap()
    }
}

#[test]
fn a_wrong_or_missing_token_is_refused_with_401() {
    let (_server, admin) = admin_server(1, None);
    for path in ["/console", "/admin/apps", "/admin/events"] {
        let (status, body) = request(admin, "GET", path, None, "");
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body.contains("\"error\""), "a JSON error: {body}");
        let (status, _) = request(admin, "GET", &format!("{path}?token=wrong"), None, "");
        assert_eq!(status, 401);
        let (status, _) = request(admin, "GET", path, Some("console-test-tokeN"), "");
        assert_eq!(status, 401);
    }
    let (status, _) = request(admin, "POST", "/admin/reload", None, "");
    assert_eq!(status, 401);

    let (status, page) = request(admin, "GET", &format!("/console?token={TOKEN}"), None, "");
    assert_eq!(status, 200);
    assert!(page.contains("<html"), "{page}");
    // Metrics stay off: the token starts the listener for the console only.
    let (status, _) = request(admin, "GET", "/metrics", None, "");
    assert_eq!(status, 404);
}

#[test]
fn without_a_token_the_console_is_off() {
    let args = ["--metrics", "true", "--metrics-port", "0"];
    let server = Server::start_with(1, None, &args, &[]);
    let metrics = server.metrics_addr();
    for path in ["/console", "/admin/apps", "/admin/events"] {
        let (status, _) = request(metrics, "GET", &format!("{path}?token=x"), None, "");
        assert_eq!(status, 404, "{path}");
    }
}

fn the_event_stream_shows_connections_subscriptions_and_publishes(workers: usize) {
    let (server, admin) = admin_server(workers, None);
    let events = Events::open(admin);

    let mut ws = server.ws("/app/app-key?protocol=7");
    let established = next_json(&mut ws);
    let socket_id: Value = serde_json::from_str(established["data"].as_str().unwrap()).unwrap();
    let connected = events.next_of("connected");
    assert_eq!(connected["app"], "app-id");
    assert_eq!(connected["socket_id"], socket_id["socket_id"]);

    subscribe_public(&mut ws, "news");
    assert_eq!(events.next_of("subscribed")["channel"], "news");

    let (status, snapshot) = request(admin, "GET", "/admin/apps", Some(TOKEN), "");
    assert_eq!(status, 200);
    let snapshot: Value = serde_json::from_str(&snapshot).unwrap();
    assert_eq!(snapshot["apps"][0]["connections"], 1);
    assert_eq!(
        snapshot["apps"][0]["channels"],
        json!([{"name": "news", "subscribers": 1, "members": null}])
    );

    publish(&server, "news", "headline", "\"hi\"");
    let published = events.next_of("api_publish");
    assert_eq!(published["channel"], "news");
    assert_eq!(published["event"], "headline");
    assert_eq!(published["data"], "\"hi\"");

    drop(ws);
    events.next_of("disconnected");
}

fn the_console_publishes_to_subscribers(workers: usize) {
    let (server, admin) = admin_server(workers, None);
    let mut ws = server.ws("/app/app-key?protocol=7");
    next_json(&mut ws);
    subscribe_public(&mut ws, "news");

    let event = json!({"name": "test-event", "channel": "news", "data": "{\"n\":1}"}).to_string();
    let (status, body) = request(
        admin,
        "POST",
        "/admin/publish?app=app-id",
        Some(TOKEN),
        &event,
    );
    assert_eq!(status, 200, "{body}");
    let got = next_json(&mut ws);
    assert_eq!(got["event"], "test-event");
    assert_eq!(got["data"], "{\"n\":1}");

    let (status, body) = request(
        admin,
        "POST",
        "/admin/publish?app=nope",
        Some(TOKEN),
        &event,
    );
    assert_eq!(status, 404, "{body}");
}

#[test]
fn post_reload_re_reads_the_configuration_file() {
    let app = |id: &str, key: &str| {
        format!("[[apps]]\nid = \"{id}\"\nkey = \"{key}\"\nsecret = \"s-{id}\"\n")
    };
    let (server, admin) = admin_server(2, Some(&app("app-id", "app-key")));
    let mut refused = server.ws("/app/later?protocol=7");
    assert_eq!(next_json(&mut refused)["data"]["code"], 4001);

    server.rewrite_config(&(app("app-id", "app-key") + &app("2", "later")));
    let (status, body) = request(admin, "POST", "/admin/reload", Some(TOKEN), "");
    assert_eq!(status, 202, "{body}");

    let start = Instant::now();
    loop {
        let mut ws = server.ws("/app/later?protocol=7");
        if next_json(&mut ws)["event"] == "pusher:connection_established" {
            break;
        }
        assert!(start.elapsed() < WAIT, "the new app never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}
