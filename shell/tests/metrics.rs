//! The metrics listener of the real binary: exact counts after known traffic, the listener's
//! own answers, and the public port that never serves metrics.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;
use support::{
    close_code, next_json, publish, publish_request, read_response, subscribe_public, Server, WAIT,
};
use tungstenite::Message;

per_workers!(
    counts_follow_known_traffic,
    rate_limited_requests_are_counted,
    a_slow_consumer_is_counted_with_its_close_code
);

/// One request to `addr`; returns the status and the body.
fn get(addr: SocketAddr, request: &str) -> (u16, String) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    (&stream).write_all(request.as_bytes()).unwrap();
    let response = read_response(&mut BufReader::new(stream));
    (response.status(), String::from_utf8(response.body).unwrap())
}

/// The metrics text, as Prometheus would scrape it.
fn scrape(addr: SocketAddr) -> String {
    let (status, body) = get(addr, "GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    body
}

/// The value of the sample named exactly `series` (name and labels as printed).
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in\n{text}"))
        .parse()
        .unwrap()
}

/// Scrapes until `series` has `expected` (the engine learns of a client's close a moment
/// after the client saw the close answered), then returns that scrape.
fn scrape_when(addr: SocketAddr, series: &str, expected: f64) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(addr);
        if value(&text, series) == expected || start.elapsed() > WAIT {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn metrics_server(workers: usize, args: &[&str]) -> (Server, SocketAddr) {
    let args: Vec<&str> = ["--metrics", "true", "--metrics-port", "0"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    let server = Server::start_with(workers, None, &args, &[]);
    let metrics = server.metrics_addr();
    assert_ne!(metrics.port(), server.addr.port());
    (server, metrics)
}

fn counts_follow_known_traffic(workers: usize) {
    let (server, metrics) = metrics_server(workers, &[]);
    let mut alice = server.ws("/app/app-key?protocol=7");
    let mut bob = server.ws("/app/app-key?protocol=7");
    next_json(&mut alice);
    next_json(&mut bob);
    subscribe_public(&mut alice, "news");
    subscribe_public(&mut bob, "news");
    // Refused: client events are for private and presence channels.
    let event = r#"{"event":"client-hi","channel":"news","data":{}}"#;
    alice.send(Message::Text(event.into())).unwrap();
    assert_eq!(next_json(&mut alice)["event"], "pusher:error");
    publish(&server, "news", "update", "{}");
    assert_eq!(next_json(&mut alice)["event"], "update");
    assert_eq!(next_json(&mut bob)["event"], "update");
    let mut stranger = server.ws("/app/no-such-key?protocol=7");
    assert_eq!(close_code(&mut stranger), 4001);
    bob.close(None).unwrap();
    while bob.read().is_ok() {}

    let app = r#"{app_id="app-id"}"#;
    let text = scrape_when(metrics, &format!("ferrocast_connected{app}"), 1.0);
    let exact = [
        (format!("ferrocast_connected{app}"), 1.0),
        (format!("ferrocast_new_connections_total{app}"), 2.0),
        (format!("ferrocast_disconnections_total{app}"), 1.0),
        // Two subscribes and one client event.
        (format!("ferrocast_ws_messages_received_total{app}"), 3.0),
        // Alice: welcome, subscribed, error, update; Bob: welcome, subscribed, update.
        (format!("ferrocast_ws_messages_sent_total{app}"), 7.0),
        (format!("ferrocast_client_events_refused_total{app}"), 1.0),
        (format!("ferrocast_client_events_relayed_total{app}"), 0.0),
        (format!("ferrocast_http_calls_received_total{app}"), 1.0),
        (format!("ferrocast_presence_members{app}"), 0.0),
        (
            r#"ferrocast_channels{app_id="app-id",kind="public"}"#.into(),
            1.0,
        ),
        (
            r#"ferrocast_subscriptions{app_id="app-id",kind="public"}"#.into(),
            1.0,
        ),
        // Every kind is reported, the empty ones as 0.
        (
            r#"ferrocast_subscriptions{app_id="app-id",kind="presence"}"#.into(),
            0.0,
        ),
        (
            r#"ferrocast_connections_refused_total{code="4001"}"#.into(),
            1.0,
        ),
        // Alice, Bob, the stranger and the publish.
        ("ferrocast_accepted_sockets_total".into(), 4.0),
        ("ferrocast_http_requests_total".into(), 1.0),
        ("ferrocast_slow_consumer_closes_total".into(), 0.0),
        (
            r#"ferrocast_rate_limited_total{limit="ws_connect"}"#.into(),
            0.0,
        ),
        ("ferrocast_webhook_queue_depth".into(), 0.0),
    ];
    for (series, expected) in exact {
        assert_eq!(value(&text, &series), expected, "{series} in\n{text}");
    }
    // Alice's 4 and Bob's 3 messages, the echo of Bob's close, and the stranger's
    // pusher:error and close frame; each write carried one or more of them.
    let frames = value(&text, "ferrocast_ws_frames_written_total");
    assert_eq!(frames, 10.0, "{text}");
    let writes = value(&text, "ferrocast_ws_writes_total");
    assert!(
        (1.0..=frames).contains(&writes),
        "{writes} writes in\n{text}"
    );
    let publish_body = publish_request("news", "update", "{}", "keep-alive");
    let body_len = publish_body.split("\r\n\r\n").nth(1).unwrap().len() as f64;
    assert_eq!(
        value(&text, &format!("ferrocast_http_received_bytes_total{app}")),
        body_len
    );
    for series in [
        format!("ferrocast_ws_received_bytes_total{app}"),
        format!("ferrocast_ws_transmitted_bytes_total{app}"),
        format!("ferrocast_http_transmitted_bytes_total{app}"),
        "ferrocast_socket_received_bytes_total".into(),
        "ferrocast_socket_transmitted_bytes_total".into(),
        "ferrocast_engine_batch_duration_seconds_count".into(),
    ] {
        assert!(value(&text, &series) > 0.0, "{series} in\n{text}");
    }
    assert!(
        !text.contains("news"),
        "no channel is ever a label:\n{text}"
    );
}

fn rate_limited_requests_are_counted(workers: usize) {
    let (server, metrics) = metrics_server(workers, &["--rate-limit-api-requests", "1/60"]);
    publish(&server, "news", "first", "{}");
    let request = publish_request("news", "second", "{}", "close");
    let (status, _) = get(server.addr, &request);
    assert_eq!(status, 429);
    let text = scrape(metrics);
    assert_eq!(
        value(
            &text,
            r#"ferrocast_rate_limited_total{limit="api_request"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"ferrocast_http_refused_total{status="429"}"#),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"ferrocast_http_calls_received_total{app_id="app-id"}"#
        ),
        1.0
    );
}

fn a_slow_consumer_is_counted_with_its_close_code(workers: usize) {
    let (server, metrics) = metrics_server(
        workers,
        &["--max-output-bytes", "65536", "--close-linger-ms", "20000"],
    );
    let mut slow = server.ws("/app/app-key?protocol=7");
    next_json(&mut slow);
    subscribe_public(&mut slow, "feed");
    // ~2.4 MB on one keep-alive connection: more than the loopback buffers and the 64 KiB
    // queue hold for a client that reads nothing.
    let blob = "z".repeat(8000);
    let stream = server.tcp();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..300 {
        let request = publish_request("feed", "blob", &blob, "keep-alive");
        (&stream).write_all(request.as_bytes()).unwrap();
        assert_eq!(read_response(&mut reader).status(), 200);
    }
    let closed = r#"ferrocast_connections_closed_total{app_id="app-id",code="4100"}"#;
    let text = scrape_when(metrics, closed, 1.0);
    assert_eq!(value(&text, closed), 1.0, "{text}");
    assert_eq!(value(&text, "ferrocast_slow_consumer_closes_total"), 1.0);
    assert_eq!(value(&text, r#"ferrocast_connected{app_id="app-id"}"#), 0.0);
    drop(slow);
}

/// A webhook receiver that answers every POST with `status`, on a thread of its own.
fn webhook_receiver(status: u16) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            stream.set_read_timeout(Some(WAIT)).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            // The request, framed like a response: a first line, headers, a sized body.
            let _ = read_response(&mut reader);
            let answer =
                format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = (&stream).write_all(answer.as_bytes());
        }
    });
    addr
}

fn webhook_config(receiver: SocketAddr) -> String {
    format!(
        "webhook_batch_ms = 10\n[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\n\
         secret = \"app-secret\"\n[[apps.webhooks]]\nurl = \"http://{receiver}/hook\"\n"
    )
}

#[test]
fn webhook_deliveries_and_retries_are_counted() {
    for (status, series) in [
        (200, "ferrocast_webhook_delivered_total"),
        (500, "ferrocast_webhook_retries_total"),
    ] {
        let config = webhook_config(webhook_receiver(status));
        let args = ["--metrics", "true", "--metrics-port", "0"];
        let server = Server::start_with(2, Some(&config), &args, &[]);
        let metrics = server.metrics_addr();
        let mut ws = server.ws("/app/app-key?protocol=7");
        next_json(&mut ws);
        // `channel_occupied`, one delivery.
        subscribe_public(&mut ws, "news");
        let text = scrape_when(metrics, series, 1.0);
        assert_eq!(value(&text, series), 1.0, "{text}");
        assert_eq!(value(&text, "ferrocast_webhook_queue_depth"), 0.0);
        assert_eq!(
            value(
                &text,
                r#"ferrocast_webhook_dropped_total{reason="queue_full"}"#
            ),
            0.0
        );
    }
}

#[test]
fn two_cluster_nodes_count_each_other_and_their_bus_messages() {
    let redis = support::redis_server::RedisServer::start();
    let url = redis.url();
    let args = [
        "--metrics",
        "true",
        "--metrics-port",
        "0",
        "--redis-url",
        url.as_str(),
        "--cluster-heartbeat-ms",
        "100",
    ];
    let nodes = [
        Server::start_with(2, None, &args, &[]),
        Server::start_with(1, None, &args, &[]),
    ];
    let metrics: Vec<SocketAddr> = nodes.iter().map(Server::metrics_addr).collect();
    for addr in &metrics {
        let text = scrape_when(*addr, "ferrocast_cluster_peers", 1.0);
        assert_eq!(value(&text, "ferrocast_cluster_peers"), 1.0, "{text}");
        assert!(
            value(&text, "ferrocast_bus_published_total") >= 1.0,
            "{text}"
        );
        assert!(
            value(&text, "ferrocast_bus_received_total") >= 2.0,
            "{text}"
        );
        assert_eq!(
            value(&text, r#"ferrocast_bus_dropped_total{reason="malformed"}"#),
            0.0
        );
        assert!(value(&text, "ferrocast_bus_outgoing_queue_messages") >= 0.0);
        // The heartbeats came back through a real Redis: some time, but far under a second.
        let lag = value(&text, "ferrocast_bus_echo_lag_seconds");
        assert!(lag > 0.0 && lag < 1.0, "{text}");
    }
}

#[test]
fn the_listener_serves_only_get_metrics() {
    let (_server, metrics) = metrics_server(1, &[]);
    let (status, _) = get(metrics, "GET / HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!(status, 404);
    let (status, _) = get(metrics, "POST /metrics HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!(status, 405);
    let (status, _) = get(metrics, "GET /metrics?x=1 HTTP/1.0\r\n\r\n");
    assert_eq!(status, 200);
}

#[test]
fn the_public_port_never_serves_metrics() {
    let (server, _metrics) = metrics_server(2, &[]);
    let (status, body) = get(server.addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("ferrocast_"), "{body}");
}

#[test]
fn a_metrics_port_in_use_is_a_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let args = ["--port", "0", "--metrics", "true", "--metrics-port", &port];
    let (status, stderr) = support::run_to_exit(&args, &[]);
    assert!(!status.success());
    assert!(stderr.contains("cannot listen for metrics"), "{stderr}");
}

#[test]
fn metrics_are_off_unless_enabled() {
    let server = Server::start(1);
    let (status, _) = get(server.addr, "GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(status, 404);
    assert!(
        !server.stderr().contains("serving metrics"),
        "{}",
        server.stderr()
    );
}
