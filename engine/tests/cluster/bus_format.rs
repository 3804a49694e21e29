//! What crosses the bus: validated on the way in, counted when dropped, never a panic.

use super::common::*;
use ferrocast_engine::{Config, ConnId, Engine, Input, Moment, Output};

#[test]
fn malformed_foreign_and_other_cluster_messages_are_counted_and_dropped() {
    let mut cluster = cluster(2);
    let before = cluster.node(0).engine().bus_stats();
    let bob = open(cluster.node(0));
    subscribe(cluster.node(0), bob, "news");

    for garbage in [
        &b"\xff\xfe not even utf-8"[..],
        b"{\"v\":1,\"p\":\"ferrocast\",\"n\":9,\"s\":1,\"a\":\"app-id\",\"b\":{\"t\":\"pub\"}}",
        b"[1,2,3]",
    ] {
        cluster.inject(0, garbage);
    }
    cluster.inject(
        0,
        br#"{"v":2,"p":"ferrocast","n":9,"s":1,"a":"app-id","b":{"t":"pub","e":[{"e":"x","d":"{}","c":["news"]}]}}"#,
    );
    cluster.inject(
        0,
        br#"{"v":1,"p":"other-cluster","n":9,"s":1,"a":"app-id","b":{"t":"pub","e":[{"e":"x","d":"{}","c":["news"]}]}}"#,
    );
    cluster.inject(
        0,
        br#"{"v":1,"p":"ferrocast","n":9,"s":1,"a":"other-app","b":{"t":"pub","e":[{"e":"x","d":"{}","c":["news"]}]}}"#,
    );

    let stats = cluster.node(0).engine().bus_stats();
    assert_eq!(stats.malformed - before.malformed, 3);
    assert_eq!(stats.foreign_version - before.foreign_version, 1);
    assert_eq!(stats.other_cluster - before.other_cluster, 1);
    assert_eq!(stats.unknown_app - before.unknown_app, 1);
    assert!(
        cluster.node(0).take_events(bob).is_empty(),
        "nothing was delivered"
    );
}

#[test]
fn the_echo_lag_is_how_long_our_own_message_took_to_come_back() {
    let mut cluster = cluster(2);
    settle(&mut cluster);
    cluster.set_delay(ms(30), 0);
    let bob = open(cluster.node(0));
    subscribe(cluster.node(0), bob, "news");
    cluster.run_for(ms(100));
    assert_eq!(cluster.node(0).engine().bus_stats().echo_lag_micros, 30_000);
    cluster.set_delay(ms(5), 0);
    cluster.node(0).trigger("news", "e", "{}");
    cluster.run_for(ms(100));
    assert_eq!(cluster.node(0).engine().bus_stats().echo_lag_micros, 5_000);
}

#[test]
fn a_single_node_engine_publishes_nothing_and_ignores_the_bus() {
    #[allow(clippy::disallowed_methods)]
    let at = Moment::new(std::time::Instant::now(), 0);
    let mut engine = Engine::new(Config::default(), 1);
    let request = ferrocast_engine::WsRequest {
        path: "/app/app-key".into(),
        query: "protocol=7".into(),
        origin: None,
        peer: None,
        secure: false,
    };
    engine
        .handle_input(
            at,
            Input::Opened {
                conn: ConnId(1),
                request,
            },
        )
        .unwrap();
    engine.handle_input(at, Input::BusUp).unwrap();
    engine
        .handle_input(at, Input::Bus(b"{\"v\":1}".to_vec()))
        .unwrap();
    let mut outputs = Vec::new();
    loop {
        match engine.poll_output() {
            Output::Timeout(_) => break,
            other => outputs.push(other),
        }
    }
    assert!(!outputs.iter().any(|o| matches!(o, Output::Bus(_))));
    assert_eq!(engine.bus_stats(), Default::default());
}

#[test]
fn one_http_publish_is_one_bus_message_whatever_the_fan_out() {
    let mut cluster = cluster(3);
    for node in 0..3 {
        for _ in 0..3 {
            let conn = open(cluster.node(node));
            subscribe(cluster.node(node), conn, "a");
            subscribe(cluster.node(node), conn, "b");
        }
    }
    settle(&mut cluster);
    let before = cluster.published();
    let batch = serde_json::json!({"batch": [
        {"name": "e1", "channel": "a", "data": "1"},
        {"name": "e2", "channel": "b", "data": "2"},
    ]});
    assert_eq!(post(cluster.node(0), "/batch_events", batch).0, 200);
    let single = serde_json::json!({"name": "e3", "channels": ["a", "b"], "data": "3"});
    assert_eq!(post(cluster.node(0), "/events", single).0, 200);
    cluster.run_for(ms(5));
    assert_eq!(
        cluster.published() - before,
        2,
        "one message per HTTP request"
    );
}
