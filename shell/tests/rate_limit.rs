//! The per-client-address rate limits of the real binary, on 127.0.0.1 and 127.0.0.2 (both
//! loopback on Linux): connection attempts and API requests over their limit are refused with
//! 429 and `Retry-After` before any upgrade, other addresses are not affected, and
//! `X-Forwarded-For` names the client only when a trusted proxy sent it.
#![cfg(not(loom))]
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]
// These tests read the server's JSON answers, which the shell itself never does.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod support;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use support::{read_response, signed_events_request, unix_secs, HttpResponse, Server, WAIT};

/// A WebSocket handshake for the default app, with extra header lines.
fn handshake(extra_headers: &str) -> String {
    format!(
        "GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

/// A connection to `server` from the loopback address `from`.
fn connect_from(server: &Server, from: &str) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Sends `request` on a fresh connection from `from` (a loopback address) and reads the answer.
fn exchange(server: &Server, from: &str, request: &str) -> HttpResponse {
    let stream = connect_from(server, from);
    let mut writer = stream.try_clone().unwrap();
    writer.write_all(request.as_bytes()).unwrap();
    read_response(&mut BufReader::new(stream))
}

fn json_error(response: &HttpResponse) -> String {
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    body["error"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_connection_attempt_past_the_limit_gets_429_before_the_upgrade() {
    let server = Server::start_with(2, None, &["--rate-limit-ws-connects", "3/60"], &[]);
    for _ in 0..3 {
        let response = exchange(&server, "127.0.0.2", &handshake(""));
        assert_eq!(response.status(), 101, "{}", response.status_line);
    }
    let refused = exchange(&server, "127.0.0.2", &handshake(""));
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert!(json_error(&refused).contains("too many"), "{refused:?}");
    assert_eq!(refused.header("upgrade"), None);
    // Another address has a window of its own.
    let other = exchange(&server, "127.0.0.1", &handshake(""));
    assert_eq!(other.status(), 101);
    // Attempts are what is counted: the API is not, by default.
    let body = r#"{"name":"e","channel":"c","data":"{}"}"#;
    let publish = signed_events_request("app-id", ("app-key", "app-secret"), body, unix_secs());
    assert_eq!(exchange(&server, "127.0.0.2", &publish).status(), 200);
}

#[test]
fn api_requests_past_their_limit_get_429_with_a_json_error() {
    let server = Server::start_with(1, None, &["--rate-limit-api-requests", "2/60"], &[]);
    let body = r#"{"name":"e","channel":"c","data":"{}"}"#;
    let publish = || signed_events_request("app-id", ("app-key", "app-secret"), body, unix_secs());
    assert_eq!(exchange(&server, "127.0.0.2", &publish()).status(), 200);
    // A bad request counts too: refusing it costs the engine's work.
    let unsigned = "GET /apps/app-id/channels HTTP/1.1\r\nHost: t\r\n\r\n";
    assert_eq!(exchange(&server, "127.0.0.2", unsigned).status(), 401);
    let refused = exchange(&server, "127.0.0.2", &publish());
    assert_eq!(refused.status(), 429);
    assert!(refused.header("retry-after").is_some());
    assert!(json_error(&refused).contains("retry after"), "{refused:?}");
    assert_eq!(exchange(&server, "127.0.0.1", &publish()).status(), 200);
}

#[test]
fn forwarded_addresses_count_only_from_trusted_proxies() {
    let server = Server::start_with(
        2,
        None,
        &[
            "--rate-limit-ws-connects",
            "2/60",
            "--trusted-proxies",
            "127.0.0.3",
        ],
        &[],
    );
    // From the trusted proxy, each forwarded client has its own window.
    for client in ["198.51.100.1", "198.51.100.1", "198.51.100.2"] {
        let response = exchange(
            &server,
            "127.0.0.3",
            &handshake(&format!("X-Forwarded-For: {client}\r\n")),
        );
        assert_eq!(response.status(), 101, "client {client}");
    }
    let third = handshake("X-Forwarded-For: 198.51.100.1\r\n");
    assert_eq!(exchange(&server, "127.0.0.3", &third).status(), 429);
    // From anybody else the header is ignored: the socket's address is counted.
    for (attempt, status) in [(1, 101), (2, 101), (3, 429)] {
        let spoofed = handshake(&format!("X-Forwarded-For: 203.0.113.{attempt}\r\n"));
        let response = exchange(&server, "127.0.0.4", &spoofed);
        assert_eq!(response.status(), status, "attempt {attempt}");
    }
}

#[test]
fn a_connection_flood_from_one_address_leaves_others_unaffected() {
    const FLOOD: usize = 300;
    let server = Server::start_with(2, None, &["--rate-limit-ws-connects", "20/60"], &[]);
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..FLOOD {
        let status = exchange(&server, "127.0.0.5", &handshake("")).status();
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&101), Some(&20), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&(FLOOD - 20)), "{statuses:?}");
    // A client elsewhere connects and is served as if nothing happened.
    let mut ws = server.ws("/app/app-key?protocol=7");
    let established = support::next_json(&mut ws);
    assert_eq!(established["event"], "pusher:connection_established");
}

#[test]
fn connections_past_the_per_address_and_node_caps_are_closed_with_4100() {
    let server = Server::start_with(2, None, &["--max-connections-per-ip", "2"], &[]);
    let mut held: Vec<_> = (0..2)
        .map(|_| {
            let mut ws = server.ws("/app/app-key?protocol=7");
            assert_eq!(
                support::next_json(&mut ws)["event"],
                "pusher:connection_established"
            );
            ws
        })
        .collect();
    let mut third = server.ws("/app/app-key?protocol=7");
    let error = support::next_json(&mut third);
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4100);
    assert_eq!(support::close_code(&mut third), 4100);
    // A closed connection frees its place.
    held.pop().unwrap().close(None).unwrap();
    let mut retry = None;
    for _ in 0..50 {
        let mut ws = server.ws("/app/app-key?protocol=7");
        if support::next_json(&mut ws)["event"] == "pusher:connection_established" {
            retry = Some(ws);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(retry.is_some(), "the freed place was never given back");

    let node = Server::start_with(1, None, &["--max-connections", "1"], &[]);
    let mut only = node.ws("/app/app-key?protocol=7");
    assert_eq!(
        support::next_json(&mut only)["event"],
        "pusher:connection_established"
    );
    let mut over = node.ws("/app/app-key?protocol=7");
    assert_eq!(support::next_json(&mut over)["data"]["code"], 4100);
    assert_eq!(support::close_code(&mut over), 4100);
}

/// Reads the first WebSocket frame's payload after a 101 (server frames are unmasked).
fn first_frame_after_upgrade(server: &Server, from: &str, request: &str) -> String {
    use std::io::Read;
    let stream = connect_from(server, from);
    let mut writer = stream.try_clone().unwrap();
    writer.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_response(&mut reader).status(), 101);
    let mut header = [0u8; 2];
    reader.read_exact(&mut header).unwrap();
    let len = match header[1] & 0x7f {
        126 => {
            let mut extended = [0u8; 2];
            reader.read_exact(&mut extended).unwrap();
            usize::from(u16::from_be_bytes(extended))
        }
        n => usize::from(n),
    };
    let mut payload = vec![0; len];
    reader.read_exact(&mut payload).unwrap();
    String::from_utf8_lossy(&payload).into_owned()
}

#[test]
fn x_forwarded_proto_https_from_a_trusted_proxy_satisfies_require_tls() {
    let config = "[[apps]]\nid = \"app-id\"\nkey = \"app-key\"\nsecret = \"app-secret\"\nrequire_tls = true\n";
    let server = Server::start_with(1, Some(config), &["--trusted-proxies", "127.0.0.3"], &[]);
    let https = handshake("X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: https\r\n");
    let through_proxy = first_frame_after_upgrade(&server, "127.0.0.3", &https);
    assert!(
        through_proxy.contains("pusher:connection_established"),
        "{through_proxy}"
    );
    // The same header from a peer that is not a trusted proxy proves nothing.
    let spoofed = first_frame_after_upgrade(&server, "127.0.0.4", &https);
    assert!(spoofed.contains("4000"), "{spoofed}");
    // And a trusted proxy that says the client came over plain HTTP is believed too.
    let plain = handshake("X-Forwarded-For: 198.51.100.1\r\nX-Forwarded-Proto: http\r\n");
    let plain = first_frame_after_upgrade(&server, "127.0.0.3", &plain);
    assert!(plain.contains("4000"), "{plain}");
}
