//! The binary as a process: configuration errors, default credentials, signals, logs.
// These tests read the log lines as JSON, which the shell itself never does (shell/clippy.toml
// bans it there).
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

#[macro_use]
mod support;

use support::{close_code, next_json, run_to_exit, write_config, Server};

fn default_credentials_are_warned_about(workers: usize) {
    let server = Server::start(workers);
    let start = std::time::Instant::now();
    let warning = "WARN ferrocast: an app uses the default example credentials";
    while !server.stderr().contains(warning) {
        assert!(
            start.elapsed() < support::WAIT,
            "no warning in:\n{}",
            server.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!server.stderr().contains("WARNING"), "said twice");
}

fn env_credentials_replace_the_default_app(workers: usize) {
    let server = Server::start_with(
        workers,
        None,
        &[],
        &[
            ("FERROCAST_APP_KEY", "env-key"),
            ("FERROCAST_APP_SECRET", "env-secret"),
        ],
    );
    let mut ws = server.ws("/app/env-key?protocol=7");
    assert_eq!(next_json(&mut ws)["event"], "pusher:connection_established");
    assert!(!server.stderr().contains("default example credentials"));
}

#[test]
fn unknown_config_key_is_a_clear_error() {
    let path = write_config("[server]\nport = 1\nbogus_setting = true\n");
    let (status, stderr) = run_to_exit(&["--config", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    assert!(!status.success());
    assert!(stderr.contains("bogus_setting"), "{stderr}");
}

/// `--check-config`: 0 with the effective settings (secret redacted) on stdout, 1 with the
/// reason for a bad value or for TLS files that cannot be read.
#[test]
fn check_config_prints_the_settings_or_says_what_is_wrong() {
    let good = write_config(
        "[server]\nport = 7001\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s3cr3t-value\"\n",
    );
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocast"))
        .args(["--check-config", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&good);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("port = 7001"), "{stdout}");
    assert!(!stdout.contains("s3cr3t-value"), "{stdout}");

    let bad = write_config("[server]\nport = \"x\"\n");
    let (status, stderr) = run_to_exit(&["--check-config", "--config", bad.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&bad);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 2, column 1: port"), "{stderr}");

    let missing_tls = [
        "--check-config",
        "--tls-cert",
        "/nonexistent/c.pem",
        "--tls-key",
        "/nonexistent/k.pem",
    ];
    let (status, stderr) = run_to_exit(&missing_tls, &[]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/c.pem"), "{stderr}");
}

#[test]
fn version_is_printed() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferrocast"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        stdout.trim(),
        format!("ferrocast {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn unknown_app_key_in_config_is_a_clear_error() {
    let path =
        write_config("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\ncolour = \"red\"\n");
    let (status, stderr) = run_to_exit(&["--config", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    assert!(!status.success());
    assert!(stderr.contains("colour"), "{stderr}");
}

#[test]
fn a_bad_allowed_origin_is_a_config_error_naming_the_app() {
    let path = write_config(
        "[[apps]]\nid = \"shop\"\nkey = \"k\"\nsecret = \"s\"\nallowed_origins = [\"https://ok.test\", \"shop.test\"]\n",
    );
    let (status, stderr) = run_to_exit(&["--config", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    assert!(!status.success());
    assert!(
        stderr.contains("\"shop\"") && stderr.contains("shop.test"),
        "{stderr}"
    );
}

#[test]
fn bad_env_value_is_a_clear_error() {
    let (status, stderr) = run_to_exit(&[], &[("FERROCAST_PORT", "not-a-port")]);
    assert!(!status.success());
    assert!(stderr.contains("not-a-port"), "{stderr}");
    assert!(
        stderr.contains("FERROCAST_PORT (the setting of --port)"),
        "{stderr}"
    );
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let (status, stderr) = run_to_exit(&["--config", "/nonexistent/ferrocast.toml"], &[]);
    assert!(!status.success());
    assert!(stderr.contains("/nonexistent/ferrocast.toml"), "{stderr}");
}

/// Rule 3.error-before-close: the 4200 close is preceded by `pusher:error` with code 4200.
fn sigterm_tells_websockets_4200_closes_them_with_4200_and_exits_0(workers: usize) {
    let mut server = Server::start(workers);
    let mut ws = server.ws("/app/app-key?protocol=7");
    next_json(&mut ws);
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let error = next_json(&mut ws);
    assert_eq!(error["event"], "pusher:error", "{error}");
    assert_eq!(error["data"]["code"], 4200, "{error}");
    assert_eq!(close_code(&mut ws), 4200);
    assert!(server.wait_exit().success(), "{}", server.stderr());
}

/// Refusals decided by the engine reach the log at `debug`, with the reason and the peer.
fn refused_connections_and_requests_are_logged_at_debug(workers: usize) {
    let server = Server::start(workers);
    let mut ws = server.ws("/app/no-such-key?protocol=7");
    assert_eq!(next_json(&mut ws)["data"]["code"], 4001);
    let mut stream = server.tcp();
    support::send_raw(
        &mut stream,
        b"GET /apps/app-id/channels HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let wanted = [
        "connection to /app/no-such-key refused with 4001",
        "peer=127.0.0.1",
        "HTTP GET /apps/app-id/channels answered 401",
    ];
    let start = std::time::Instant::now();
    while !wanted.iter().all(|line| server.stderr().contains(line)) {
        assert!(start.elapsed() < support::WAIT, "{}", server.stderr());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// At `info` the log does not grow with traffic: hundreds of messages, publishes, pings,
/// refused subscriptions and bad frames add no line (each of them is logged at `debug`).
#[test]
fn nothing_is_logged_per_message_at_info() {
    use std::io::{BufReader, Write};
    use tungstenite::Message;
    let server = Server::start_with(1, None, &["--log-level", "info"], &[]);
    let mut ws = server.ws("/app/app-key?protocol=7");
    next_json(&mut ws);
    let subscribe = r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#;
    ws.send(Message::text(subscribe)).unwrap();
    assert_eq!(
        next_json(&mut ws)["event"],
        "pusher_internal:subscription_succeeded"
    );
    let before = server.stderr();
    let api = server.tcp();
    let mut writer = api.try_clone().unwrap();
    let mut reader = BufReader::new(api);
    for round in 0..100 {
        let body = format!(r#"{{"name":"e","channel":"news","data":"{round}"}}"#);
        let publish = support::signed_events_request(
            "app-id",
            ("app-key", "app-secret"),
            &body,
            support::unix_secs(),
        );
        writer.write_all(publish.as_bytes()).unwrap();
        assert_eq!(support::read_response(&mut reader).status(), 200);
        assert_eq!(next_json(&mut ws)["event"], "e");
        ws.send(Message::text(r#"{"event":"pusher:ping","data":{}}"#))
            .unwrap();
        assert_eq!(next_json(&mut ws)["event"], "pusher:pong");
        let refused =
            r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":"app-key:bad"}}"#;
        ws.send(Message::text(refused)).unwrap();
        assert_eq!(next_json(&mut ws)["event"], "pusher:subscription_error");
        ws.send(Message::text("not json")).unwrap();
        assert_eq!(next_json(&mut ws)["event"], "pusher:error");
        writer
            .write_all(b"GET /apps/app-id/channels HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        assert_eq!(support::read_response(&mut reader).status(), 401);
    }
    // Anything logged for the traffic above was written before its answers were read.
    assert_eq!(server.stderr(), before, "logged per message at info");
}

/// `--log-format json`: every line is one JSON object with the standard keys, and a refused
/// subscription carries its app and socket id as fields.
#[test]
fn json_logs_are_one_object_per_line_with_app_and_socket_id() {
    let server = Server::start_with(1, None, &["--log-format", "json"], &[]);
    let mut ws = server.ws("/app/app-key?protocol=7");
    let socket_id = support::socket_id(&next_json(&mut ws));
    let subscribe =
        r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":"app-key:bad"}}"#;
    ws.send(tungstenite::Message::text(subscribe)).unwrap();
    assert_eq!(next_json(&mut ws)["event"], "pusher:subscription_error");
    let start = std::time::Instant::now();
    let refusal = loop {
        let lines: Vec<serde_json::Value> = server
            .stderr()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
            .collect();
        for line in &lines {
            for key in ["timestamp", "level", "target", "message"] {
                assert!(line.get(key).is_some(), "no {key} in {line}");
            }
        }
        if let Some(line) = lines.iter().find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("private-x"))
        }) {
            break line.clone();
        }
        assert!(start.elapsed() < support::WAIT, "{}", server.stderr());
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(refusal["level"], "DEBUG", "{refusal}");
    assert_eq!(refusal["app"], "app-id", "{refusal}");
    assert_eq!(refusal["socket_id"], socket_id.as_str(), "{refusal}");
}

/// What `GET /ready` answers on a fresh connection, with a bounded wait: `None` when the
/// server answers nothing (it stopped accepting, or closed without a response).
fn ready_status(server: &Server) -> Option<u16> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(server.addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    stream
        .write_all(b"GET /ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut status_line = String::new();
    BufReader::new(stream).read_line(&mut status_line).ok()?;
    status_line.split(' ').nth(1)?.parse().ok()
}

/// Readiness is for load balancers: while the shutdown drains (here a client that never
/// answers its 4200 close holds it for `close_linger_ms`), a probe on a new connection is
/// answered 503, not left unanswered in the listen backlog.
fn ready_answers_503_while_the_shutdown_drains(workers: usize) {
    let server = Server::start_with(workers, None, &["--close-linger-ms", "6000"], &[]);
    let mut lingering = server.ws("/app/app-key?protocol=7");
    next_json(&mut lingering);
    assert_eq!(ready_status(&server), Some(200));
    server.signal("TERM");
    let start = std::time::Instant::now();
    loop {
        match ready_status(&server) {
            Some(503) => break,
            Some(200) => {}
            other => panic!(
                "/ready during the drain answered {other:?}:\n{}",
                server.stderr()
            ),
        }
        assert!(start.elapsed() < support::WAIT, "{}", server.stderr());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Still draining: later probes are answered too, and a new WebSocket is sent elsewhere.
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(ready_status(&server), Some(503), "{}", server.stderr());
    let mut late = server.ws("/app/app-key?protocol=7");
    assert_eq!(next_json(&mut late)["data"]["code"], 4200);
    drop(lingering);
}

per_workers!(
    ready_answers_503_while_the_shutdown_drains,
    refused_connections_and_requests_are_logged_at_debug,
    default_credentials_are_warned_about,
    env_credentials_replace_the_default_app,
    sigterm_tells_websockets_4200_closes_them_with_4200_and_exits_0,
);

/// At the descriptor limit `accept` fails on every retry: the acceptor warns once for the
/// whole episode, not ten times a second, and says how it went once accepting works again.
#[test]
fn accept_failures_at_the_descriptor_limit_are_logged_once_per_episode() {
    use std::time::{Duration, Instant};
    let server = Server::start(1);
    // The "listening" line comes before the event loop opens its own descriptors (epoll, the
    // waker): a served connection shows they are all open before they are counted.
    let mut ready = server.ws("/app/app-key?protocol=7");
    assert_eq!(
        next_json(&mut ready)["event"],
        "pusher:connection_established"
    );
    let pid = server.pid().to_string();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors")
        .count();
    // Room for two more sockets, so that the rest of the clients below wait in the backlog.
    let limit = (open + 2).to_string();
    let status = std::process::Command::new("prlimit")
        .args(["--pid", &pid, &format!("--nofile={limit}:{limit}")])
        .status()
        .expect("prlimit (util-linux) is needed to lower the server's descriptor limit");
    assert!(status.success(), "prlimit failed: {status}");
    let clients: Vec<_> = (0..6).map(|_| server.tcp()).collect();
    let warnings = || server.stderr().matches("accept failed;").count();
    let start = Instant::now();
    while warnings() == 0 {
        assert!(
            start.elapsed() < support::WAIT,
            "no accept failure:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ten retries' worth of failures, during which the acceptor must back off, not spin.
    let cpu_before = support::cpu_time(server.pid());
    std::thread::sleep(Duration::from_millis(1000));
    let cpu_spent = support::cpu_time(server.pid()) - cpu_before;
    assert_eq!(warnings(), 1, "{}", server.stderr());
    assert!(
        cpu_spent < Duration::from_millis(500),
        "{cpu_spent:?} of CPU in one second at the descriptor limit: the acceptor spins"
    );
    drop((ready, clients));
    while !server.stderr().contains("; accepting again") {
        assert!(
            start.elapsed() < 3 * support::WAIT,
            "no recovery:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(warnings(), 1, "{}", server.stderr());
}
