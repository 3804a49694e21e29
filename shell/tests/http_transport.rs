//! HTTP framing of the real binary: keep-alive, limits and CORS, over raw loopback sockets.
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

use std::io::{BufReader, Read};
use support::{read_response, send_raw, Server};

fn two_requests_on_one_keep_alive_socket_are_both_answered(workers: usize) {
    let server = Server::start(workers);
    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        send_raw(
            &mut writer,
            b"GET /no/such/route HTTP/1.1\r\nHost: t\r\n\r\n",
        );
        let response = read_response(&mut reader);
        assert!(
            response.status_line.starts_with("HTTP/1.1 "),
            "{}",
            response.status_line
        );
        assert!((200..500).contains(&response.status()));
        assert_eq!(response.header("content-type"), Some("application/json"));
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
        assert_ne!(response.header("connection"), Some("close"));
        assert!(serde_json::from_slice::<serde_json::Value>(&response.body).is_ok());
    }
}

fn pipelined_requests_are_answered_in_order(workers: usize) {
    let server = Server::start(workers);
    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    send_raw(
        &mut writer,
        b"GET /a HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let first = read_response(&mut reader);
    assert_ne!(first.header("connection"), Some("close"));
    let second = read_response(&mut reader);
    assert_eq!(second.header("connection"), Some("close"));
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("EOF after Connection: close");
    assert!(rest.is_empty());
}

/// A request and its FIN in one go: the server reads the request, answers, and only then
/// sees the end of the stream (it must not stop reading after the request's short read).
fn a_request_followed_by_a_half_close_is_answered_then_closed(workers: usize) {
    let server = Server::start(workers);
    let mut stream = server.tcp();
    send_raw(
        &mut stream,
        b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reader = BufReader::new(stream);
    assert!((200..500).contains(&read_response(&mut reader).status()));
    assert!((200..500).contains(&read_response(&mut reader).status()));
    let mut rest = Vec::new();
    reader
        .read_to_end(&mut rest)
        .expect("EOF after both answers");
    assert!(rest.is_empty(), "{rest:?}");
}

fn http_1_0_closes_after_the_answer(workers: usize) {
    let server = Server::start(workers);
    let mut stream = server.tcp();
    send_raw(&mut stream, b"GET / HTTP/1.0\r\n\r\n");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read to EOF");
    assert!(text.starts_with("HTTP/1.0 "), "{text}");
    assert!(text.contains("Connection: close\r\n"));
}

fn head_of_the_root_is_200_with_a_length_and_no_body(workers: usize) {
    let server = Server::start(workers);
    let mut stream = server.tcp();
    send_raw(
        &mut stream,
        b"HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read to EOF");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 "), "{text}");
    assert!(head.contains("Content-Length: "), "{text}");
    assert_eq!(body, "");
}

fn a_plain_get_of_the_websocket_path_is_426_with_upgrade_websocket(workers: usize) {
    let server = Server::start(workers);
    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    send_raw(
        &mut writer,
        b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let response = read_response(&mut reader);
    assert_eq!(response.status(), 426, "{}", response.status_line);
    assert_eq!(response.header("upgrade"), Some("websocket"));
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("WebSocket upgrade"));
}

fn a_20_kb_header_gets_431(workers: usize) {
    let server = Server::start(workers);
    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Filler: {}\r\n\r\n",
        "f".repeat(20_000)
    );
    send_raw(&mut writer, request.as_bytes());
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(response.status(), 431);
    assert_eq!(response.header("connection"), Some("close"));
    assert_eq!(
        response.body,
        br#"{"error":"request header fields too large"}"#
    );
}

fn chunked_bodies_get_411_and_large_bodies_413(workers: usize) {
    let server = Server::start(workers);
    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    send_raw(
        &mut writer,
        b"POST /apps/app-id/events HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(response.status(), 411);
    assert_eq!(
        response.body,
        br#"{"error":"chunked bodies are not supported: send Content-Length"}"#
    );

    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    send_raw(
        &mut writer,
        b"POST /apps/app-id/events HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n",
    );
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(response.status(), 413);
    assert_eq!(response.body, br#"{"error":"request body too large"}"#);
}

/// Response bodies with protocol meaning come from the engine: the shell builds no JSON, so it
/// must not even be able to (serde_json only for the tests, which read the server's answers).
#[test]
fn the_shell_does_not_depend_on_serde_json() {
    let manifest: toml::Table = include_str!("../Cargo.toml").parse().expect("Cargo.toml");
    let dependencies = manifest["dependencies"].as_table().expect("[dependencies]");
    assert!(!dependencies.contains_key("serde_json"), "{dependencies:?}");
}

fn cors_preflight_is_answered_by_the_shell(workers: usize) {
    let server = Server::start(workers);
    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    send_raw(
        &mut writer,
        b"OPTIONS /apps/app-id/events HTTP/1.1\r\nHost: t\r\nOrigin: http://page\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n",
    );
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(response.status(), 204);
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        response.header("access-control-allow-headers"),
        Some("content-type")
    );
    assert!(response
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
}

fn bad_websocket_version_gets_426(workers: usize) {
    let server = Server::start(workers);
    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    send_raw(
        &mut writer,
        b"GET /app/app-key HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(response.status(), 426);
    assert_eq!(response.header("sec-websocket-version"), Some("13"));
}

fn a_silent_connection_is_dropped_after_the_request_timeout(workers: usize) {
    let server = Server::start_with(workers, None, &["--request-timeout-secs", "1"], &[]);
    let mut stream = server.tcp();
    let start = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = stream.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "expected EOF, got {:?}", &buf[..n]);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

/// A request still incomplete at the request timeout is answered 408 with a JSON error before
/// the close, whether it stopped in its headers or in its body.
fn an_incomplete_request_gets_408_at_the_request_timeout(workers: usize) {
    let server = Server::start_with(workers, None, &["--request-timeout-secs", "1"], &[]);
    let partial: [&[u8]; 2] = [
        b"GET / HTTP/1.1\r\n",
        b"POST /apps/app-id/events HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n{\"na",
    ];
    for bytes in partial {
        let mut stream = server.tcp();
        send_raw(&mut stream, bytes);
        let start = std::time::Instant::now();
        let mut reader = BufReader::new(stream);
        let response = read_response(&mut reader);
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(response.status(), 408, "{}", String::from_utf8_lossy(bytes));
        assert_eq!(response.header("connection"), Some("close"));
        assert_eq!(
            response.body,
            br#"{"error":"request not completed in time"}"#
        );
        let mut rest = Vec::new();
        let _ = reader.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{rest:?}");
    }
}

per_workers!(
    two_requests_on_one_keep_alive_socket_are_both_answered,
    pipelined_requests_are_answered_in_order,
    a_request_followed_by_a_half_close_is_answered_then_closed,
    http_1_0_closes_after_the_answer,
    head_of_the_root_is_200_with_a_length_and_no_body,
    a_plain_get_of_the_websocket_path_is_426_with_upgrade_websocket,
    a_20_kb_header_gets_431,
    chunked_bodies_get_411_and_large_bodies_413,
    cors_preflight_is_answered_by_the_shell,
    bad_websocket_version_gets_426,
    a_silent_connection_is_dropped_after_the_request_timeout,
    an_incomplete_request_gets_408_at_the_request_timeout,
);
