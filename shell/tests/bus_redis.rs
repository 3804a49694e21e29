//! The cluster bus link against a real `redis-server` (started per test on a free loopback
//! port), with a TCP proxy inside the test to make Redis outages.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use ferrocast::{BusConfig, BusConfigError, BusEvent, BusStartError, RedisLink};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use support::redis_server::RedisServer;
use support::tcp_proxy::TcpProxy;

/// The longest any single expected event may take.
const WAIT: Duration = Duration::from_secs(5);
/// How long "nothing more happens" is watched for.
const QUIET: Duration = Duration::from_millis(300);

/// A link and the events it reported.
struct Node {
    link: RedisLink,
    events: mpsc::Receiver<BusEvent>,
}

impl Node {
    fn start(config: BusConfig) -> Node {
        let (sink, events) = mpsc::channel();
        let link = RedisLink::start(config, sink).expect("link starts");
        Node { link, events }
    }

    fn on(url: &str, prefix: &str) -> Node {
        Self::start(BusConfig::new(url, prefix).expect("valid config"))
    }

    fn send(&self, text: &str) {
        self.link.sender().send(text.as_bytes().to_vec());
    }

    fn next_event(&self, within: Duration) -> Option<BusEvent> {
        self.events.recv_timeout(within).ok()
    }

    fn expect_event(&self, expected: BusEvent, within: Duration) {
        match self.next_event(within) {
            Some(event) => assert_eq!(event, expected),
            None => panic!("no {expected:?} within {within:?}"),
        }
    }

    /// The next `count` messages, failing on any other event or a timeout.
    fn messages(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        let mut texts = Vec::new();
        while texts.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_event(left) {
                Some(BusEvent::Received(bytes)) => texts.push(String::from_utf8(bytes).unwrap()),
                Some(other) => panic!("expected a message, got {other:?} after {texts:?}"),
                None => panic!("only {texts:?} of {count} messages within {WAIT:?}"),
            }
        }
        texts
    }

    fn expect_quiet(&self) {
        if let Some(event) = self.next_event(QUIET) {
            panic!("unexpected {event:?}");
        }
    }
}

fn sorted(mut texts: Vec<String>) -> Vec<String> {
    texts.sort();
    texts
}

fn info_field(admin: &mut redis::Connection, section: &str, prefix: &str) -> String {
    let info: String = redis::cmd("INFO").arg(section).query(admin).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in INFO {section}:\n{info}"))
        .trim()
        .to_string()
}

#[test]
fn each_publish_is_one_redis_publish_heard_once_by_every_link_including_the_sender() {
    let redis = RedisServer::start();
    let mut admin = redis.admin(&redis.url());
    let a = Node::on(&redis.url(), "c1");
    let b = Node::on(&redis.url(), "c1");
    a.expect_event(BusEvent::Up, WAIT);
    b.expect_event(BusEvent::Up, WAIT);
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut admin)
        .unwrap();

    a.send("a1");
    a.send("a2");
    b.send("b1");
    for node in [&a, &b] {
        let heard = node.messages(3);
        let a_order: Vec<_> = heard.iter().filter(|t| t.starts_with('a')).collect();
        assert_eq!(
            a_order,
            ["a1", "a2"],
            "one sender's messages keep their order"
        );
        assert_eq!(sorted(heard), ["a1", "a2", "b1"]);
        node.expect_quiet();
    }

    let publishes = info_field(&mut admin, "commandstats", "cmdstat_publish:");
    assert!(publishes.starts_with("calls=3,"), "{publishes}");
    let (a_stats, b_stats) = (a.link.stats().snapshot(), b.link.stats().snapshot());
    assert_eq!((a_stats.published, b_stats.published), (2, 1));
    assert_eq!((a_stats.received, b_stats.received), (3, 3));
    assert_eq!(a.link.channel(), "c1:bus");
}

#[test]
fn two_prefixes_on_one_redis_never_mix() {
    let redis = RedisServer::start();
    // Prefixes that are prefixes of each other, or of each other's channel, still do not mix.
    let prefixes = ["ferro", "ferrocast", "ferrocast:bus"];
    let nodes: Vec<_> = prefixes.iter().map(|p| Node::on(&redis.url(), p)).collect();
    for node in &nodes {
        node.expect_event(BusEvent::Up, WAIT);
    }
    let twin = Node::on(&redis.url(), "ferrocast");
    twin.expect_event(BusEvent::Up, WAIT);

    for (node, prefix) in nodes.iter().zip(prefixes) {
        node.send(prefix);
    }
    for (node, prefix) in nodes.iter().zip(prefixes) {
        assert_eq!(node.messages(1), [prefix]);
        node.expect_quiet();
    }
    assert_eq!(twin.messages(1), ["ferrocast"]);
    twin.expect_quiet();
}

/// A link whose Redis is behind a proxy, and one straight on Redis.
fn proxied_pair(max_outgoing: Option<usize>) -> (RedisServer, TcpProxy, Node, Node) {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.addr());
    let mut config = BusConfig::new(proxy.redis_url(), "outage").unwrap();
    if let Some(max) = max_outgoing {
        config.outgoing_max_messages = max;
    }
    let behind = Node::start(config);
    let direct = Node::on(&redis.url(), "outage");
    behind.expect_event(BusEvent::Up, WAIT);
    direct.expect_event(BusEvent::Up, WAIT);
    (redis, proxy, behind, direct)
}

#[test]
fn an_outage_is_one_down_then_up_soon_after_redis_returns_and_messages_flow_again() {
    let (_redis, proxy, behind, direct) = proxied_pair(None);
    behind.send("before");
    assert_eq!(direct.messages(1), ["before"]);
    assert_eq!(behind.messages(1), ["before"]);

    proxy.cut();
    behind.expect_event(BusEvent::Down, WAIT);
    behind.send("queued");
    direct.send("missed");
    assert_eq!(direct.messages(1), ["missed"]);
    // Several back-off rounds fail meanwhile; none is another `down`, none an `up`.
    if let Some(event) = behind.next_event(Duration::from_millis(1500)) {
        panic!("{event:?} during the outage");
    }

    proxy.restore();
    let restored = Instant::now();
    behind.expect_event(BusEvent::Up, WAIT);
    let took = restored.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "up {took:?} after Redis returned"
    );

    // What queued while down goes out after `up`, then traffic flows both ways again.
    assert_eq!(direct.messages(1), ["queued"]);
    assert_eq!(behind.messages(1), ["queued"]);
    behind.send("after");
    direct.send("back");
    assert_eq!(sorted(direct.messages(2)), ["after", "back"]);
    assert_eq!(sorted(behind.messages(2)), ["after", "back"]);
    behind.expect_quiet();

    let stats = behind.link.stats().snapshot();
    assert_eq!((stats.outages, stats.reconnects), (1, 1), "{stats:?}");
    assert!(stats.connect_failures >= 1, "{stats:?}");
    assert_eq!(direct.link.stats().snapshot().outages, 0);
}

#[test]
fn while_down_the_bounded_queue_drops_its_oldest_messages() {
    let (_redis, proxy, behind, direct) = proxied_pair(Some(3));
    proxy.cut();
    behind.expect_event(BusEvent::Down, WAIT);
    for n in 1..=5 {
        behind.send(&format!("m{n}"));
    }
    assert_eq!(behind.link.stats().snapshot().dropped_outgoing, 2);
    proxy.restore();
    behind.expect_event(BusEvent::Up, WAIT);
    assert_eq!(direct.messages(3), ["m3", "m4", "m5"]);
    direct.expect_quiet();
}

#[test]
fn a_password_and_a_database_in_the_url_are_used() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}/5", redis.port);
    let node = Node::on(&url, "auth");
    node.expect_event(BusEvent::Up, WAIT);
    node.send("hello");
    assert_eq!(node.messages(1), ["hello"]);
    // Both of the link's connections selected database 5.
    let mut admin = redis.admin(&format!("redis://:s3cret@127.0.0.1:{}/0", redis.port));
    let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    let in_db5 = clients
        .lines()
        .filter(|line| line.contains(" db=5 "))
        .count();
    assert_eq!(in_db5, 2, "{clients}");

    let wrong = Node::on(
        &format!("redis://:wrong@127.0.0.1:{}/0", redis.port),
        "auth",
    );
    if let Some(event) = wrong.next_event(Duration::from_millis(1000)) {
        panic!("{event:?} with a wrong password");
    }
    assert!(wrong.link.stats().snapshot().connect_failures >= 2);
    let started = Instant::now();
    wrong.link.stop();
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn bad_urls_and_prefixes_are_clear_errors() {
    let cases = [
        ("", "empty"),
        ("   ", "empty"),
        ("http://127.0.0.1:6379", "scheme"),
        ("127.0.0.1:6379", "scheme"),
        ("redis://127.0.0.1:notaport", "host and port"),
        ("redis://127.0.0.1:6379/notadb", "database"),
        ("redis://:hunter2@127.0.0.1:6379/x", "database"),
        ("rediss://127.0.0.1:6379/0#whatever", "fragment"),
    ];
    for (url, cause) in cases {
        let error = BusConfig::new(url, "p").expect_err(url);
        let text = error.to_string();
        assert!(
            matches!(error, BusConfigError::BadUrl { .. }),
            "{url}: {text}"
        );
        assert!(text.contains(cause), "{url:?} → {text}");
        assert!(
            text.contains("redis://"),
            "the message shows the expected form: {text}"
        );
        assert!(!text.contains("hunter2"), "the password leaks: {text}");
    }
    for url in [
        "redis://127.0.0.1",
        "redis://:pw@127.0.0.1:6379/3",
        "redis://user:pw@cache.internal:6380/1",
        "rediss://user:pw@redis.example:6380/0",
        "unix:///run/redis.sock",
    ] {
        BusConfig::new(url, "p").unwrap_or_else(|e| panic!("{url}: {e}"));
    }

    let error = BusConfig::new("redis://127.0.0.1", "two words").unwrap_err();
    assert!(error.to_string().contains("prefix"), "{error}");
    // A configuration broken after `new` is refused by `start` too.
    let mut config = BusConfig::new("redis://127.0.0.1", "p").unwrap();
    config.redis_url = "ftp://x".into();
    let (sink, _events) = mpsc::channel();
    match RedisLink::start(config, sink) {
        Err(BusStartError::Config(BusConfigError::BadUrl { .. })) => {}
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a bad URL started a link"),
    }
}

#[test]
fn stop_joins_promptly_up_or_unreachable_and_a_late_redis_is_found() {
    let redis = RedisServer::start();
    let node = Node::on(&redis.url(), "stop");
    node.expect_event(BusEvent::Up, WAIT);
    let started = Instant::now();
    node.link.stop();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        node.events.recv_timeout(QUIET).is_err(),
        "no down is reported on stop"
    );

    // Started while Redis is unreachable: nothing is reported, until Redis appears.
    let proxy = TcpProxy::start(redis.addr());
    proxy.cut();
    let late = Node::on(&proxy.redis_url(), "stop");
    if let Some(event) = late.next_event(Duration::from_millis(700)) {
        panic!("{event:?} while Redis is unreachable");
    }
    proxy.restore();
    late.expect_event(BusEvent::Up, Duration::from_millis(2500));
    proxy.cut();
    late.expect_event(BusEvent::Down, WAIT);
    let started = Instant::now();
    drop(late);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn payloads_are_opaque_bytes_delivered_intact_whatever_their_size() {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.addr());
    let node = Node::on(&proxy.redis_url(), "bytes");
    node.expect_event(BusEvent::Up, WAIT);
    let every_byte: Vec<u8> = (0..=255u8).chain(*b"\r\n*3\r\n$7\r\nmessage\r\n").collect();
    // Big enough to span many socket reads, so a read timeout can fall inside one message.
    let big: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let empty = Vec::new();
    for payload in [&every_byte, &big, &empty] {
        node.link.sender().send(payload.clone());
    }
    for payload in [&every_byte, &big, &empty] {
        match node.next_event(WAIT) {
            Some(BusEvent::Received(bytes)) => assert!(bytes == *payload, "{} bytes", bytes.len()),
            Some(other) => panic!("expected a message, got {other:?}"),
            None => panic!("no message of {} bytes within {WAIT:?}", payload.len()),
        }
    }
}

#[test]
fn a_silent_failure_is_found_by_the_idle_ping_and_stop_stays_prompt() {
    let redis = RedisServer::start();
    let proxy = TcpProxy::start(redis.addr());
    let mut config = BusConfig::new(proxy.redis_url(), "silent").unwrap();
    config.idle_ping = Duration::from_millis(300);
    config.command_timeout = Duration::from_millis(500);
    let node = Node::start(config);
    node.expect_event(BusEvent::Up, WAIT);

    // Connections stay open and nothing errors; only the unanswered PINGs tell.
    proxy.freeze();
    let frozen = Instant::now();
    node.expect_event(BusEvent::Down, WAIT);
    let took = frozen.elapsed();
    assert!(
        took < Duration::from_millis(2000),
        "down {took:?} after the freeze"
    );

    // Redis answers TCP but never replies: connecting must not hang the link.
    if let Some(event) = node.next_event(Duration::from_millis(1000)) {
        panic!("{event:?} while Redis does not answer");
    }
    let stuck = Node::on(&proxy.redis_url(), "silent");
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    stuck.link.stop();
    let took = started.elapsed();
    // The crate bounds each step of its connection handshake by `connect_timeout` (1 s).
    assert!(
        took < Duration::from_millis(2500),
        "stop took {took:?} inside a connect"
    );

    proxy.cut();
    proxy.restore();
    node.expect_event(BusEvent::Up, WAIT);
    node.send("alive");
    assert_eq!(node.messages(1), ["alive"]);

    proxy.freeze();
    let started = Instant::now();
    node.link.stop();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}
