//! The real binary under attack on 127.0.0.1: slow request heads, floods of bad and forged
//! HTTP requests, header floods and a subscriber that never reads. Each attack must be
//! answered as it deserves (408, 4xx, 431, 4100) while an honest client beside it is served,
//! the server's memory stays bounded and it serves a valid request afterwards.
//!
//! Every test runs two I/O workers (the engine on a thread of its own, the production shape);
//! every loop is bounded in count and in time. A flood of connections from one address is the
//! business of the accept rate limits and their tests.
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

use ferrocast_engine::signature::client_auth;
use serde_json::json;
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::{
    next_json, publish, read_response, rss_kib, signed_events_request, socket_id, subscribe_public,
    unix_secs, Server,
};
use tungstenite::Message;

const WORKERS: usize = 2;

/// An honest client's round: connect, subscribe, receive a publish. Returns how long it took.
fn honest_round(server: &Server, round: u64) -> Duration {
    let start = Instant::now();
    let mut ws = server.ws("/app/app-key?protocol=7");
    next_json(&mut ws);
    subscribe_public(&mut ws, "calm");
    publish(server, "calm", "tick", &format!("{{\"round\":{round}}}"));
    let event = next_json(&mut ws);
    assert_eq!(event["event"], "tick", "{event}");
    assert_eq!(event["data"], format!("{{\"round\":{round}}}"));
    start.elapsed()
}

/// Connections that send a request line, then their headers a byte at a time, far slower than
/// the request timeout allows: each is answered 408 at its deadline, not before and not much
/// after, while an honest client connects, subscribes and receives events promptly throughout.
#[test]
fn slowloris_heads_get_408_at_their_deadline_while_a_client_is_served() {
    const SLOW: usize = 200;
    const TIMEOUT: Duration = Duration::from_secs(2);
    // Far more than fit in the test: the honest client keeps going until the last slow head ends.
    const HONEST_ROUNDS_CAP: usize = 100_000;
    // The honest client reconnects hundreds of times from 127.0.0.1: past the default
    // per-address connection limit, which is not what this test is about.
    let server = Server::start_with(
        WORKERS,
        None,
        &["--request-timeout-secs", "2", "--rate-limit", "false"],
        &[],
    );
    let mut slow: Vec<(TcpStream, Instant, Vec<u8>, Option<Duration>)> = (0..SLOW)
        .map(|_| {
            let mut stream = server.tcp();
            stream
                .write_all(b"GET /apps/app-id/channels HTTP/1.1\r\n")
                .unwrap();
            stream.set_nonblocking(true).unwrap();
            (stream, Instant::now(), Vec::new(), None)
        })
        .collect();
    let stop = AtomicBool::new(false);
    let rounds = std::thread::scope(|scope| {
        let honest = scope.spawn(|| {
            let mut took = Vec::new();
            while !stop.load(Ordering::Relaxed) && took.len() < HONEST_ROUNDS_CAP {
                took.push(honest_round(&server, took.len() as u64));
            }
            took
        });
        let drip = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let start = Instant::now();
        for tick in 0.. {
            if slow.iter().all(|(.., ended)| ended.is_some()) {
                break;
            }
            assert!(start.elapsed() < TIMEOUT * 5, "slow heads still open");
            for (stream, opened, received, ended) in slow.iter_mut().filter(|s| s.3.is_none()) {
                let mut buf = [0u8; 512];
                let finished = match stream.read(&mut buf) {
                    Ok(0) => true,
                    Ok(n) => {
                        received.extend_from_slice(&buf[..n]);
                        true
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        // One more byte; a reset shows when the server has already hung up.
                        stream.write(&drip[tick % drip.len()..][..1]).is_err()
                    }
                    Err(_) => true,
                };
                if finished {
                    *ended = Some(opened.elapsed());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        honest.join().unwrap()
    });
    for (i, (_, _, received, ended)) in slow.iter().enumerate() {
        let ended = ended.unwrap();
        let text = String::from_utf8_lossy(received);
        assert!(text.starts_with("HTTP/1.1 408 "), "slow head {i}: {text:?}");
        assert!(
            ended >= TIMEOUT - Duration::from_millis(100) && ended < TIMEOUT * 2,
            "slow head {i} answered after {ended:?}"
        );
    }
    let slowest = rounds.iter().max().unwrap();
    eprintln!(
        "{SLOW} slow heads answered 408; {} honest rounds meanwhile, slowest {slowest:?}",
        rounds.len()
    );
    assert!(rounds.len() >= 3, "only {} honest rounds", rounds.len());
    assert!(
        rounds.len() < HONEST_ROUNDS_CAP,
        "the honest client stopped early"
    );
    assert!(
        *slowest < Duration::from_secs(1),
        "an honest round took {slowest:?}"
    );
}

/// A thousand bad requests, over one keep-alive connection and over fresh ones: malformed,
/// unsigned, expired, signed for another app, signed with a wrong secret. Every one is
/// answered 4xx, none delivers its event, and a valid publish goes through afterwards.
#[test]
fn a_thousand_bad_requests_are_all_refused_and_deliver_nothing() {
    const PER_WAY: usize = 500;
    let config = r#"
        [[apps]]
        id = "app-id"
        key = "app-key"
        secret = "app-secret"

        [[apps]]
        id = "other-id"
        key = "other-key"
        secret = "other-secret"
    "#;
    let server = Server::start_with(WORKERS, Some(config), &[], &[]);
    let mut watcher = server.ws("/app/app-key?protocol=7");
    next_json(&mut watcher);
    subscribe_public(&mut watcher, "guarded");

    let body = json!({"name": "forged", "channel": "guarded", "data": "{}"}).to_string();
    let now = unix_secs();
    // Requests the engine refuses: the connection stays open for the next one.
    let refused_by_engine = |kind: usize| -> String {
        match kind % 5 {
            0 => signed_events_request("app-id", ("app-key", "app-secret"), "{\"name\":", now),
            1 => format!(
                "POST /apps/app-id/events HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
            2 => signed_events_request("app-id", ("app-key", "app-secret"), &body, now - 3600),
            3 => signed_events_request("app-id", ("other-key", "other-secret"), &body, now),
            _ => signed_events_request("app-id", ("app-key", "wrong-secret"), &body, now),
        }
    };
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();

    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for i in 0..PER_WAY {
        writer.write_all(refused_by_engine(i).as_bytes()).unwrap();
        let response = read_response(&mut reader);
        assert_eq!(response.header("connection"), None, "kept alive: {i}");
        *statuses.entry(response.status()).or_default() += 1;
    }
    for i in 0..PER_WAY {
        // Every fifth fresh connection sends bytes that are not HTTP at all: the shell
        // answers those and closes.
        let request = match i % 5 {
            0 => "GARBAGE\0\r\n\r\n".to_owned(),
            _ => refused_by_engine(i),
        };
        let stream = server.tcp();
        let mut writer = stream.try_clone().unwrap();
        writer.write_all(request.as_bytes()).unwrap();
        *statuses
            .entry(read_response(&mut BufReader::new(stream)).status())
            .or_default() += 1;
    }

    eprintln!("answers to {} bad requests: {statuses:?}", 2 * PER_WAY);
    assert_eq!(statuses.values().sum::<usize>(), 2 * PER_WAY);
    assert!(
        statuses.keys().all(|status| (400..500).contains(status)),
        "{statuses:?}"
    );
    watcher
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    match watcher.read() {
        Err(tungstenite::Error::Io(e))
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("the watcher got something from a refused request: {other:?}"),
    }
    watcher
        .get_mut()
        .set_read_timeout(Some(support::WAIT))
        .unwrap();
    publish(&server, "guarded", "genuine", "{}");
    assert_eq!(next_json(&mut watcher)["event"], "genuine");
}

/// Sends `head` on a fresh connection, ignoring a write refused because the server already
/// answered and hung up, and returns the status it answered with.
fn flood_status(server: &Server, head: &[u8]) -> u16 {
    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    for chunk in head.chunks(16 * 1024) {
        if writer.write_all(chunk).is_err() {
            break;
        }
    }
    read_response(&mut BufReader::new(stream)).status()
}

/// Too many headers, one unending huge header, a head past `max_request_head_bytes` and an
/// endless run of obsolete header continuations: each gets 431 or 400 long before its sender
/// is done, a hundred of them at once leave the server's memory where it was, and the server
/// serves a subscriber and a publish afterwards.
#[test]
fn header_floods_get_431_or_400_with_memory_bounded() {
    const FLOODS: usize = 100;
    let server = Server::start(WORKERS);
    let mut watcher = server.ws("/app/app-key?protocol=7");
    next_json(&mut watcher);
    subscribe_public(&mut watcher, "after");

    let mut many = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let mut huge = b"GET / HTTP/1.1\r\nHost: t\r\nX-Huge: ".to_vec();
    huge.resize(huge.len() + 1024 * 1024, b'a');
    let mut long_head = b"GET / HTTP/1.1\r\nHost: t\r\n".to_vec();
    while long_head.len() < 1024 * 1024 {
        long_head.extend_from_slice(b"X-Fill: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let mut folded = b"GET / HTTP/1.1\r\nHost: t\r\nX-Fold: a\r\n".to_vec();
    while folded.len() < 1024 * 1024 {
        folded.extend_from_slice(b" b\r\n");
    }
    let floods: [(&str, &[u8], &[u16]); 4] = [
        ("too many headers", &many, &[431]),
        ("one unending huge header", &huge, &[431]),
        ("a head past max_request_head_bytes", &long_head, &[431]),
        ("endless header continuation", &folded, &[400, 431]),
    ];
    for (what, head, expected) in floods {
        let status = flood_status(&server, head);
        assert!(expected.contains(&status), "{what}: {status}");
    }

    let before = rss_kib(server.pid());
    let peak = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..FLOODS)
            .map(|i| {
                let (what, head, expected) = floods[i % floods.len()];
                let server = &server;
                scope.spawn(move || {
                    let status = flood_status(server, head);
                    assert!(expected.contains(&status), "{what}: {status}");
                    rss_kib(server.pid())
                })
            })
            .collect();
        senders
            .into_iter()
            .map(|s| s.join().unwrap())
            .max()
            .unwrap()
    });
    let after = rss_kib(server.pid());
    eprintln!(
        "{FLOODS} concurrent 1 MiB header floods: VmRSS {before} KiB before, peak seen {peak} KiB, {after} KiB after"
    );
    // Each flood is cut off within one head limit (8 KiB) plus a read; buffering them would
    // take 100 MiB.
    assert!(
        peak.saturating_sub(before) < 16 * 1024,
        "VmRSS grew from {before} to {peak} KiB"
    );
    publish(&server, "after", "still-serving", "{}");
    assert_eq!(next_json(&mut watcher)["event"], "still-serving");
}

/// A subscriber that stops reading while a publisher floods its channel is closed with 4100,
/// told so by `pusher:error` 4100 first; the server's memory grows by no more than that
/// connection's budget, and a subscriber that reads gets every event, in order.
#[test]
fn a_subscriber_that_never_reads_is_closed_with_4100_and_memory_stays_bounded() {
    const EVENTS: u64 = 10_000;
    const BLOB: usize = 4000;
    const MAX_OUTPUT_BYTES: u64 = 256 * 1024;
    const SEND_BUFFER_BYTES: u64 = 64 * 1024;
    // Events the publisher may be ahead of the reading subscriber: well inside its budget.
    const WINDOW: u64 = 24;
    let config = format!(
        r#"
        [server]
        max_output_bytes = {MAX_OUTPUT_BYTES}
        socket_send_buffer_bytes = {SEND_BUFFER_BYTES}
        close_linger_ms = 60000

        [[apps]]
        id = "app-id"
        key = "app-key"
        secret = "app-secret"
        client_event_rate_per_sec = 1000000
        client_event_burst = 1000000
    "#
    );
    let server = Server::start_with(WORKERS, Some(&config), &[], &[]);
    let join = || {
        let mut ws = server.ws("/app/app-key?protocol=7");
        let id = socket_id(&next_json(&mut ws));
        let auth = client_auth(
            "app-key",
            "app-secret",
            format!("{id}:private-flood").as_bytes(),
        );
        let msg = json!({"event": "pusher:subscribe", "data": {"channel": "private-flood", "auth": auth}});
        ws.send(Message::Text(msg.to_string().into())).unwrap();
        assert_eq!(
            next_json(&mut ws)["event"],
            "pusher_internal:subscription_succeeded"
        );
        ws
    };
    let mut never_reads = join();
    let mut reader = join();
    let mut publisher = join();
    let received = AtomicU64::new(0);
    let blob = "z".repeat(BLOB);

    let before = rss_kib(server.pid());
    let mut peak = before;
    let start = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for expected in 0..EVENTS {
                let event = next_json(&mut reader);
                assert_eq!(event["event"], "client-seq", "{event}");
                let data: serde_json::Value =
                    serde_json::from_str(event["data"].as_str().unwrap()).unwrap();
                assert_eq!(data["seq"], expected, "the reader's events are in order");
                received.store(expected + 1, Ordering::Relaxed);
            }
        });
        for seq in 0..EVENTS {
            while seq - received.load(Ordering::Relaxed) > WINDOW {
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "the reader stalled at {seq}"
                );
                std::thread::yield_now();
            }
            let event = json!({"event": "client-seq", "channel": "private-flood", "data": {"seq": seq, "blob": &blob}});
            publisher
                .send(Message::Text(event.to_string().into()))
                .unwrap();
            if seq % 250 == 0 {
                peak = peak.max(rss_kib(server.pid()));
            }
        }
    });
    peak = peak.max(rss_kib(server.pid()));
    let flooded_mib = EVENTS as usize * BLOB / (1024 * 1024);
    eprintln!(
        "{flooded_mib} MiB flooded in {:?}: VmRSS {before} KiB before, peak seen {peak} KiB",
        start.elapsed()
    );
    let budget_kib = (MAX_OUTPUT_BYTES + SEND_BUFFER_BYTES) / 1024;
    let slack_kib = 8 * 1024;
    assert!(
        peak - before < budget_kib + slack_kib,
        "VmRSS grew {} KiB, more than the {budget_kib} KiB budget and {slack_kib} KiB slack",
        peak - before
    );

    never_reads
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut last_text = None;
    let code = (0..EVENTS + 2)
        .find_map(|_| match never_reads.read() {
            Ok(Message::Close(frame)) => Some(frame.map(|f| u16::from(f.code))),
            Ok(Message::Text(text)) => {
                last_text = Some(text.as_str().to_owned());
                None
            }
            Ok(_) => None,
            Err(e) => panic!("dropped without a close frame: {e}"),
        })
        .expect("a close frame");
    let last: serde_json::Value = serde_json::from_str(&last_text.unwrap()).unwrap();
    assert_eq!(last["event"], "pusher:error", "{last}");
    assert_eq!(last["data"]["code"], 4100, "{last}");
    assert_eq!(code, Some(4100));
}
