//! Liveness: client pings, WebSocket control frames, server pings and the 4201 close.
//!
//! Defaults: `activity_timeout` 120 s, pong timeout 30 s. Every timer runs on the fake clock.

use crate::common::*;
use ferrocast_engine::driver::FakeClock;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{Config, ConnId, Engine, Input, Moment, Output, WsRequest};
use serde_json::json;

/// Opens `ConnId(1)` on a bare engine (no simulator) at `at`, leaving its welcome unread.
fn open_raw(engine: &mut Engine, at: Moment) {
    let request = WsRequest {
        path: "/app/app-key".into(),
        query: String::new(),
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
}

fn ping(sim: &mut Simulator, conn: ConnId) {
    sim.send_json(conn, json!({"event": "pusher:ping", "data": {}}));
}

fn pong(sim: &mut Simulator, conn: ConnId) {
    sim.send_json(conn, json!({"event": "pusher:pong", "data": {}}));
}

#[test]
fn pusher_ping_is_answered_with_pusher_pong() {
    let mut sim = sim();
    let conn = open(&mut sim);

    ping(&mut sim, conn);

    let replies = sim.take(conn);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].raw, r#"{"event":"pusher:pong","data":{}}"#);
}

#[test]
fn pusher_ping_without_data_is_answered_too() {
    let mut sim = sim();
    let conn = open(&mut sim);

    sim.send_text(conn, r#"{"event":"pusher:ping"}"#);

    assert_eq!(sim.take_events(conn), ["pusher:pong"]);
}

#[test]
fn a_websocket_ping_is_answered_by_the_transport_and_is_activity_to_the_engine() {
    let mut sim = sim();
    let conn = open(&mut sim);
    sim.advance(secs(100));

    sim.ws_ping(conn, b"abc").unwrap();
    sim.advance(secs(100));

    // The pong comes from the simulator's shell; the engine only saw activity at 100 s, so
    // its own ping is not due yet at 200 s.
    assert_eq!(sim.take_events(conn), ["#pong"]);
}

#[test]
fn a_quiet_connection_is_pinged_after_the_activity_timeout() {
    let mut sim = sim();
    let conn = open(&mut sim);

    sim.advance(secs(119));
    assert!(sim.take(conn).is_empty());

    sim.advance(secs(1));
    let replies = sim.take(conn);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].raw, r#"{"event":"pusher:ping","data":{}}"#);
    assert_eq!(sim.closed(conn), None);
}

#[test]
fn no_answer_within_the_pong_timeout_closes_with_4201() {
    let mut sim = sim();
    let conn = open(&mut sim);
    sim.advance(secs(120));
    assert_eq!(sim.take_events(conn), ["pusher:ping"]);

    sim.advance(secs(29));
    assert_eq!(sim.closed(conn), None);
    sim.advance(secs(1));

    assert_error(&sim.take(conn), Some(4201));
    assert_eq!(sim.closed(conn).map(|c| c.0), Some(4201));
    assert_no_state(&sim);
}

#[test]
fn pusher_pong_keeps_the_connection_and_restarts_the_quiet_period() {
    let mut sim = sim();
    let conn = open(&mut sim);
    sim.advance(secs(120));
    assert_eq!(sim.take_events(conn), ["pusher:ping"]);

    sim.advance(secs(10));
    pong(&mut sim, conn);
    sim.advance(secs(60));
    assert_eq!(sim.closed(conn), None);
    assert!(sim.take(conn).is_empty());

    // Next ping: 120 s after the pong (at 130 + 120 = 250 s).
    sim.advance(secs(59));
    assert!(sim.take(conn).is_empty());
    sim.advance(secs(1));
    assert_eq!(sim.take_events(conn), ["pusher:ping"]);
}

#[test]
fn a_pong_at_the_very_instant_of_the_ping_counts() {
    let mut sim = sim();
    let conn = open(&mut sim);
    sim.advance(secs(120));
    assert_eq!(sim.take_events(conn), ["pusher:ping"]);

    // A fast client answers before the clock moves at all.
    pong(&mut sim, conn);
    sim.advance(secs(30));

    assert_eq!(sim.closed(conn), None);
    assert!(sim.take(conn).is_empty());
}

#[test]
fn a_websocket_pong_frame_answers_a_server_ping() {
    let mut sim = sim();
    let conn = open(&mut sim);
    sim.advance(secs(120));
    sim.take(conn);

    sim.advance(secs(5));
    sim.input(Input::Activity { conn }).unwrap();
    sim.advance(secs(100));

    assert_eq!(sim.closed(conn), None);
}

#[test]
fn any_frame_answers_a_server_ping() {
    for answer in [
        r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#,
        r#"{"event":"pusher:ping","data":{}}"#,
        "not json at all",
    ] {
        let mut sim = sim();
        let conn = open(&mut sim);
        sim.advance(secs(120));
        sim.take(conn);

        sim.advance(secs(29));
        sim.send_text(conn, answer);
        sim.advance(secs(1));

        assert_eq!(sim.closed(conn), None, "{answer}");
    }
}

#[test]
fn every_frame_counts_as_activity() {
    type Act = fn(&mut Simulator, ConnId);
    let acts: [(&str, Act); 5] = [
        ("text", |sim, conn| ping(sim, conn)),
        ("invalid json", |sim, conn| sim.send_text(conn, "{")),
        ("binary", |sim, conn| {
            sim.input(Input::Binary {
                conn,
                data: Vec::new(),
            })
            .unwrap()
        }),
        ("ws ping", |sim, conn| sim.ws_ping(conn, b"").unwrap()),
        ("ws pong", |sim, conn| {
            sim.input(Input::Activity { conn }).unwrap()
        }),
    ];
    for (name, act) in acts {
        let mut sim = sim();
        let conn = open(&mut sim);
        sim.advance(secs(100));

        act(&mut sim, conn);
        sim.take(conn);
        sim.advance(secs(20));

        // Quiet for only 20 s: no ping yet; the ping comes 120 s after the activity.
        assert!(sim.take(conn).is_empty(), "{name}");
        sim.advance(secs(99));
        assert!(sim.take(conn).is_empty(), "{name}");
        sim.advance(secs(1));
        assert_eq!(sim.take_events(conn), ["pusher:ping"], "{name}");
    }
}

#[test]
fn a_connection_that_answers_every_ping_lives_for_hours() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for _ in 0..100 {
        sim.advance(secs(120));
        assert_eq!(sim.take_events(conn), ["pusher:ping"]);
        sim.advance(secs(3));
        pong(&mut sim, conn);
    }

    assert_eq!(sim.closed(conn), None);
    assert_eq!(sim.engine().state_counts().timers, 1);
}

#[test]
fn a_chatty_client_is_never_pinged() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for _ in 0..50 {
        sim.advance(secs(60));
        ping(&mut sim, conn);
        assert_eq!(sim.take_events(conn), ["pusher:pong"]);
    }

    assert_eq!(sim.closed(conn), None);
}

#[test]
fn timeouts_are_configurable() {
    let mut sim = sim_with(|c| {
        c.activity_timeout_secs = 10;
        c.pong_timeout_secs = 5;
    });
    let conn = open(&mut sim);

    sim.advance(secs(10));
    assert_eq!(sim.take_events(conn), ["pusher:ping"]);
    sim.advance(secs(4));
    assert_eq!(sim.closed(conn), None);
    sim.advance(secs(1));

    assert_eq!(sim.closed(conn).map(|c| c.0), Some(4201));
}

#[test]
fn a_pong_timeout_longer_than_the_activity_timeout_still_works() {
    let mut sim = sim_with(|c| {
        c.activity_timeout_secs = 2;
        c.pong_timeout_secs = 10;
    });
    let conn = open(&mut sim);
    sim.advance(secs(2));
    assert_eq!(sim.take_events(conn), ["pusher:ping"]);

    sim.advance(secs(1));
    pong(&mut sim, conn);
    sim.advance(secs(20));

    // Still alive, pinged again after each quiet period, closed only when it stops answering.
    assert_eq!(sim.closed(conn).map(|c| c.0), Some(4201));
    let events = sim.take_events(conn);
    assert_eq!(events.first().map(String::as_str), Some("pusher:ping"));
    assert_eq!(events.last().map(String::as_str), Some("pusher:error"));
}

#[test]
fn one_silent_connection_closing_does_not_touch_a_live_one() {
    let mut sim = sim();
    let silent = open(&mut sim);
    let live = open(&mut sim);
    subscribe(&mut sim, silent, "news");
    subscribe(&mut sim, live, "news");

    for _ in 0..3 {
        sim.advance(secs(50));
        ping(&mut sim, live);
        assert_eq!(sim.take_events(live), ["pusher:pong"]);
    }

    assert_eq!(sim.closed(silent).map(|c| c.0), Some(4201));
    assert_eq!(sim.closed(live), None);
    assert_eq!(sim.engine().state_counts().connections, 1);
    assert_eq!(sim.engine().state_counts().channels, 1);
}

#[test]
fn the_engine_asks_to_be_woken_at_the_activity_deadline() {
    let mut engine = Engine::new(Config::default(), SEED);
    let clock = FakeClock::new();
    let at = |s: u64| clock.at(secs(s));
    open_raw(&mut engine, at(0));
    let mut next = None;
    loop {
        if let Output::Timeout(t) = engine.poll_output() {
            next = t.or(next);
            break;
        }
    }
    assert_eq!(next, Some(at(120).now));

    // An early tick is harmless: nothing is sent, the deadline stays.
    engine.handle_input(at(60), Input::Tick).unwrap();
    assert_eq!(engine.poll_output(), Output::Timeout(Some(at(120).now)));

    engine.handle_input(at(120), Input::Tick).unwrap();
    assert!(matches!(engine.poll_output(), Output::Send { .. }));
    assert_eq!(engine.poll_output(), Output::Timeout(Some(at(150).now)));
}

#[test]
fn a_clock_that_steps_backwards_does_not_move_the_engines_time_back() {
    let mut engine = Engine::new(Config::default(), SEED);
    let clock = FakeClock::new();
    let at = |s: u64| clock.at(secs(s));
    let drain = |engine: &mut Engine| {
        let mut events = Vec::new();
        loop {
            match engine.poll_output() {
                Output::Send { frame, .. } => events.push(frame.payload_text()),
                Output::Timeout(_) => return events,
                _ => {}
            }
        }
    };
    open_raw(&mut engine, at(0));
    engine
        .handle_input(at(110), Input::Activity { conn: ConnId(1) })
        .unwrap();
    drain(&mut engine);

    // Activity reported with an older instant counts as happening at the latest known time,
    // so the connection stays active since 110 s, not since 50 s.
    engine
        .handle_input(at(50), Input::Activity { conn: ConnId(1) })
        .unwrap();
    engine.handle_input(at(120), Input::Tick).unwrap();
    engine.handle_input(at(200), Input::Tick).unwrap();

    assert!(
        drain(&mut engine).is_empty(),
        "no ping before 110 s + activity_timeout"
    );
    engine.handle_input(at(230), Input::Tick).unwrap();
    assert!(drain(&mut engine)[0].contains("pusher:ping"));
}
