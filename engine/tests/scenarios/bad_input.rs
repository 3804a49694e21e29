//! Bad input: binary frames, broken JSON, wrong types, unknown events, oversized messages,
//! shell misuse. None of it may panic the engine or disturb another connection.

use crate::common::*;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{ApiMisuse, ConnId, Input, WsRequest};
use serde_json::json;

fn send_bytes(sim: &mut Simulator, conn: ConnId, bytes: &[u8]) {
    sim.input(Input::Text {
        conn,
        text: bytes.to_vec(),
    })
    .unwrap();
}

#[test]
fn binary_frames_get_a_pusher_error_and_the_connection_stays() {
    let mut sim = sim();
    let conn = open(&mut sim);

    sim.input(Input::Binary {
        conn,
        data: Vec::new(),
    })
    .unwrap();

    let text = assert_error(&sim.take(conn), None);
    assert!(text.contains("binary"), "{text}");
    assert_alive(&mut sim, conn);
}

#[test]
fn invalid_json_gets_a_pusher_error() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for text in [
        "",
        "{",
        "}",
        "nope",
        "{\"event\":}",
        "{\"event\":\"pusher:ping\"",
        "\u{0}",
    ] {
        sim.send_text(conn, text);
        let message = assert_error(&sim.take(conn), None);
        assert!(message.contains("not valid JSON"), "{text:?}: {message}");
    }
    assert_alive(&mut sim, conn);
}

#[test]
fn invalid_utf8_gets_a_pusher_error() {
    let mut sim = sim();
    let conn = open(&mut sim);

    send_bytes(&mut sim, conn, b"{\"event\":\"\xff\"}");

    let message = assert_error(&sim.take(conn), None);
    assert!(message.contains("UTF-8"), "{message}");
    assert_alive(&mut sim, conn);
}

#[test]
fn wrong_shapes_get_a_pusher_error() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for text in [
        "null",
        "42",
        "\"pusher:ping\"",
        "[]",
        "[{\"event\":\"pusher:ping\"}]",
        "{}",
        "{\"data\":{}}",
        "{\"event\":null}",
        "{\"event\":42}",
        "{\"event\":{\"name\":\"pusher:ping\"}}",
        "{\"event\":\"client-x\",\"channel\":42}",
        "{\"event\":\"client-x\",\"channel\":[\"private-a\"]}",
        "{\"event\":\"pusher:ping\",\"event\":\"pusher:ping\"}",
    ] {
        sim.send_text(conn, text);
        let message = assert_error(&sim.take(conn), None);
        assert!(message.contains("wrong shape"), "{text}: {message}");
    }
    assert_alive(&mut sim, conn);
}

#[test]
fn unknown_events_get_a_pusher_error() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for event in [
        "pusher:unknown",
        "pusher:connection_established",
        "pusher:error",
        "pusher_internal:subscription_succeeded",
        "pusher_internal:member_added",
        "my-event",
        "",
        "PUSHER:PING",
    ] {
        sim.send_json(conn, json!({"event": event, "data": {}}));
        let message = assert_error(&sim.take(conn), None);
        assert!(message.contains("unsupported event"), "{event}: {message}");
    }
    assert_alive(&mut sim, conn);
}

#[test]
fn unknown_fields_are_ignored() {
    let mut sim = sim();
    let conn = open(&mut sim);

    sim.send_json(
        conn,
        json!({"event": "pusher:subscribe", "data": {"channel": "news", "extra": [1]}, "id": 5}),
    );

    assert_eq!(
        sim.take_events(conn),
        ["pusher_internal:subscription_succeeded"]
    );
}

#[test]
fn escaped_event_names_are_understood() {
    let mut sim = sim();
    let conn = open(&mut sim);

    sim.send_text(conn, r#"{"event":"pusher:\u0070ing","data":{}}"#);

    assert_eq!(sim.take_events(conn), ["pusher:pong"]);
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_data = format!(
        r#"{{"event":"client-x","channel":"private-a","data":{}{}}}"#,
        "{\"a\":".repeat(1000),
        "1".to_owned() + &"}".repeat(1000)
    );

    sim.send_text(conn, &deep);
    assert_error(&sim.take(conn), None);
    sim.send_text(conn, &deep_data);
    assert_error(&sim.take(conn), None);

    assert_alive(&mut sim, conn);
}

#[test]
fn a_message_over_the_size_limit_closes_with_1009() {
    let mut sim = sim_with_app(|app| app.max_message_bytes = 100);
    let conn = open(&mut sim);
    let at_limit = format!(
        r#"{{"event":"pusher:ping","data":"{}"}}"#,
        "x".repeat(100 - 33)
    );
    assert_eq!(at_limit.len(), 100);
    sim.send_text(conn, &at_limit);
    assert_eq!(sim.take_events(conn), ["pusher:pong"]);

    sim.send_text(conn, &format!("{at_limit} "));

    assert!(sim.take(conn).is_empty());
    assert_eq!(sim.closed(conn).map(|c| c.0), Some(1009));
    assert_no_state(&sim);
}

#[test]
fn the_default_size_limit_is_10_kib() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let five_mb = format!(
        r#"{{"event":"pusher:ping","data":"{}"}}"#,
        "x".repeat(5 << 20)
    );

    sim.send_text(conn, &five_mb);

    assert_eq!(sim.closed(conn).map(|c| c.0), Some(1009));
}

#[test]
fn an_oversized_message_reported_by_the_shell_closes_with_1009() {
    let mut sim = sim();
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");

    sim.input(Input::Oversized { conn }).unwrap();

    assert_eq!(sim.closed(conn).map(|c| c.0), Some(1009));
    assert_no_state(&sim);
}

#[test]
fn a_slow_consumer_gets_4100_error_then_close() {
    let mut sim = sim();
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");

    sim.input(Input::SlowConsumer { conn }).unwrap();

    assert_error(&sim.take(conn), Some(4100));
    assert_eq!(sim.closed(conn).map(|c| c.0), Some(4100));
    assert_no_state(&sim);
}

#[test]
fn inputs_for_unknown_connections_are_api_misuse() {
    let mut sim = sim();
    let ghost = ConnId(999);

    for input in [
        Input::Text {
            conn: ghost,
            text: b"{}".to_vec(),
        },
        Input::Binary {
            conn: ghost,
            data: Vec::new(),
        },
        Input::Activity { conn: ghost },
        Input::Oversized { conn: ghost },
        Input::SlowConsumer { conn: ghost },
        Input::Closed { conn: ghost },
    ] {
        assert_eq!(sim.input(input), Err(ApiMisuse::UnknownConnection(ghost)));
    }
    assert_no_state(&sim);
}

#[test]
fn inputs_after_the_engine_closed_a_connection_are_api_misuse() {
    let mut sim = sim();
    let conn = open(&mut sim);
    sim.input(Input::Oversized { conn }).unwrap();

    let late = sim.input(Input::Text {
        conn,
        text: b"{}".to_vec(),
    });

    assert_eq!(late, Err(ApiMisuse::UnknownConnection(conn)));
}

#[test]
fn reopening_an_open_connection_id_is_api_misuse() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let request = WsRequest {
        path: "/app/app-key".into(),
        query: String::new(),
        origin: None,
        peer: None,
        secure: false,
    };

    let again = sim.input(Input::Opened { conn, request });

    assert_eq!(again, Err(ApiMisuse::DuplicateConnection(conn)));
    assert!(sim.take(conn).is_empty());
    assert_alive(&mut sim, conn);
    assert_eq!(sim.engine().state_counts().connections, 1);
}

#[test]
fn garbage_from_one_connection_never_reaches_or_hurts_another() {
    let mut sim = sim();
    let attacker = open(&mut sim);
    let bystander = open(&mut sim);
    subscribe_private(&mut sim, attacker, "private-room");
    subscribe_private(&mut sim, bystander, "private-room");
    let bystander_presence =
        subscribe_presence(&mut sim, bystander, "presence-p", &member("b", "b"));
    assert_eq!(bystander_presence.len(), 1);

    let nasty: Vec<String> = vec![
        r#"{"event":"pusher:subscribe","data":{"channel":"presence-p"}}"#.into(),
        r#"{"event":"pusher:subscribe","data":{"channel":"presence-p","channel_data":"{"}}"#.into(),
        r#"{"event":"pusher:subscribe","data":{"channel":"private-room","auth":null}}"#.into(),
        r#"{"event":"pusher:subscribe","data":{"channel":"private-room","auth":":"}}"#.into(),
        r#"{"event":"pusher:unsubscribe","data":{"channel":"presence-p"}}"#.into(),
        r#"{"event":"pusher:unsubscribe","data":"private-room"}"#.into(),
        r#"{"event":"pusher:signin","data":{"auth":"app-key:","user_data":"{\"id\":\"b\"}"}}"#.into(),
        r#"{"event":"pusher_internal:member_removed","channel":"presence-p","data":"{\"user_id\":\"b\"}"}"#.into(),
        r#"{"event":"client-x","channel":"presence-p","data":{}}"#.into(),
        r#"{"event":"client-x","channel":"private-room","data":"\ud800"}"#.into(),
        format!(r#"{{"event":"pusher:subscribe","data":{{"channel":"{}"}}}}"#, "p".repeat(5000)),
        format!(r#"{{"event":"{}","data":{{}}}}"#, "client-".repeat(50)),
        "\u{feff}{\"event\":\"pusher:ping\"}".into(),
    ];
    for text in &nasty {
        if text.len() <= 10 * 1024 {
            sim.send_text(attacker, text);
        }
    }
    sim.take(attacker);

    assert!(sim.take(bystander).is_empty());
    assert_eq!(sim.closed(attacker), None);
    assert_alive(&mut sim, bystander);
    trigger(&mut sim, attacker, "private-room", "client-fine", json!({}));
    assert_eq!(sim.take_events(bystander), ["client-fine"]);
}

#[test]
fn every_reply_to_junk_is_a_single_well_formed_frame() {
    // A small deterministic generator over a grammar of near-miss messages.
    let pieces = [
        "{",
        "}",
        "[",
        "]",
        "\"event\"",
        "\"data\"",
        "\"channel\"",
        ":",
        ",",
        "\"pusher:subscribe\"",
        "\"pusher:ping\"",
        "\"client-a\"",
        "\"private-a\"",
        "\"presence-a\"",
        "{\"channel\":\"a\"}",
        "null",
        "1",
        "\"\"",
        "\\",
        "\"\\u0000\"",
        "true",
    ];
    let mut sim = sim();
    let conn = open(&mut sim);
    let mut state: u64 = 0x5eed;
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..(state % 9) {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(pieces[(state >> 33) as usize % pieces.len()]);
        }
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        sim.send_text(conn, &text);
        for reply in sim.take(conn) {
            assert!(
                reply.event.starts_with("pusher:") || reply.event.starts_with("pusher_internal:"),
                "{text}: {reply:?}"
            );
        }
    }
    assert_eq!(sim.closed(conn), None);
    assert_alive(&mut sim, conn);
}

#[test]
fn client_event_string_data_that_strict_parsers_refuse_is_not_relayed() {
    let mut sim = sim();
    let alice = open(&mut sim);
    let bob = open(&mut sim);
    subscribe_private(&mut sim, alice, "private-room");
    subscribe_private(&mut sim, bob, "private-room");

    // A lone surrogate escape: valid to a lenient parser, refused by strict ones.
    sim.send_text(
        alice,
        r#"{"event":"client-x","channel":"private-room","data":"\ud800"}"#,
    );

    assert_error(&sim.take(alice), None);
    assert!(sim.take(bob).is_empty());
    sim.send_text(
        alice,
        r#"{"event":"client-x","channel":"private-room","data":"\ud83d\ude00"}"#,
    );
    assert_eq!(
        sim.take(bob)[0].raw,
        r#"{"event":"client-x","channel":"private-room","data":"\ud83d\ude00"}"#
    );
}
