//! No per-connection state outlives its connection, however the connection ends.

use crate::common::*;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{ConnId, Input};
use serde_json::json;

/// Puts `conn` in every kind of per-connection state: channels of each kind, presence
/// membership, sign-in with a watchlist, a used client event bucket.
fn entangle(sim: &mut Simulator, conn: ConnId, user: &str) {
    subscribe(sim, conn, "news");
    subscribe(sim, conn, "cache-news");
    subscribe_private(sim, conn, "private-chat");
    subscribe_private(sim, conn, "private-encrypted-vault");
    subscribe_presence(sim, conn, "presence-room", &member(user, user));
    subscribe_presence(sim, conn, "presence-cache-room", &member(user, user));
    signin(
        sim,
        conn,
        &json!({"id": user, "watchlist": ["nobody", "u-other"]}).to_string(),
    );
    subscribe(sim, conn, &format!("#server-to-user-{user}"));
    trigger(sim, conn, "private-chat", "client-hello", json!({}));
    sim.take(conn);
}

/// Opens two entangled connections, ends the first with `end`, then the second normally.
fn ends_cleanly(end: impl FnOnce(&mut Simulator, ConnId)) {
    let mut sim = sim();
    let victim = open(&mut sim);
    let other = open(&mut sim);
    entangle(&mut sim, victim, "u-victim");
    entangle(&mut sim, other, "u-other");

    end(&mut sim, victim);
    assert!(sim.closed(victim).is_some());
    let counts = sim.engine().state_counts();
    assert_eq!(counts.connections, 1);
    assert_eq!(counts.users, 1);
    sim.disconnect(other);

    assert_no_state(&sim);
}

#[test]
fn nothing_is_left_after_a_client_close() {
    ends_cleanly(|sim, conn| sim.disconnect(conn));
}

#[test]
fn nothing_is_left_after_a_slow_consumer_close() {
    ends_cleanly(|sim, conn| sim.input(Input::SlowConsumer { conn }).unwrap());
}

#[test]
fn nothing_is_left_after_an_oversized_message_from_the_shell() {
    ends_cleanly(|sim, conn| sim.input(Input::Oversized { conn }).unwrap());
}

#[test]
fn nothing_is_left_after_an_oversized_text_message() {
    ends_cleanly(|sim, conn| sim.send_text(conn, &"x".repeat(20 * 1024)));
}

#[test]
fn nothing_is_left_after_a_4201_close() {
    let mut sim = sim();
    let quiet = open(&mut sim);
    let chatty = open(&mut sim);
    entangle(&mut sim, quiet, "u-quiet");
    entangle(&mut sim, chatty, "u-chatty");

    for _ in 0..4 {
        sim.advance(secs(40));
        sim.send_json(chatty, json!({"event": "pusher:ping", "data": {}}));
    }

    assert_eq!(sim.closed(quiet).map(|c| c.0), Some(4201));
    assert_eq!(sim.closed(chatty), None);
    sim.disconnect(chatty);
    assert_no_state(&sim);
}

#[test]
fn nothing_is_left_after_a_4009_close() {
    let mut sim = sim_with_app(|app| {
        app.user_auth_required = true;
        app.user_auth_timeout_secs = 5;
    });
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");
    subscribe_private(&mut sim, conn, "private-chat");
    subscribe_presence(&mut sim, conn, "presence-room", &member("u1", "u1"));

    // Its private subscriptions lifted the deadline; a failed sign-in still closes it.
    sim.send_json(
        conn,
        json!({"event": "pusher:signin", "data": {"auth": "app-key:00", "user_data": "{\"id\":\"u1\"}"}}),
    );

    assert_eq!(sim.closed(conn).map(|c| c.0), Some(4009));
    assert_no_state(&sim);
}

#[test]
fn others_are_told_when_a_connection_ends_abnormally() {
    let mut sim = sim();
    let watcher = open(&mut sim);
    signin(&mut sim, watcher, r#"{"id":"w","watchlist":["u-victim"]}"#);
    subscribe_presence(&mut sim, watcher, "presence-room", &member("w", "w"));
    let victim = open(&mut sim);
    entangle(&mut sim, victim, "u-victim");
    sim.take(watcher);

    sim.input(Input::SlowConsumer { conn: victim }).unwrap();

    let got = sim.take(watcher);
    let events: Vec<_> = got.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "pusher_internal:member_removed",
            "pusher_internal:watchlist_events"
        ]
    );
    assert_eq!(got[0].data, json!({"user_id": "u-victim"}));
    assert_eq!(
        got[1].data,
        json!({"events": [{"name": "offline", "user_ids": ["u-victim"]}]})
    );
}

#[test]
fn thousands_of_connections_come_and_go_without_residue() {
    let mut sim = sim();
    let mut open_conns = Vec::new();
    for i in 0..2000u64 {
        let conn = open(&mut sim);
        let user = format!("u{}", i % 37);
        match i % 5 {
            0 => entangle(&mut sim, conn, &user),
            1 => {
                subscribe_presence(&mut sim, conn, "presence-big", &member(&user, &user));
            }
            2 => {
                subscribe_private(&mut sim, conn, "private-chat");
            }
            3 => {
                signin(
                    &mut sim,
                    conn,
                    &json!({"id": user, "watchlist": ["u1", "u2"]}).to_string(),
                );
            }
            _ => {
                subscribe(&mut sim, conn, &format!("news-{}", i % 11));
            }
        }
        open_conns.push(conn);
        if i % 3 == 0 {
            let gone = open_conns.remove((i as usize * 7) % open_conns.len());
            sim.disconnect(gone);
        }
    }
    // Everyone else goes quiet and is closed for missing the pong.
    sim.advance(secs(200));

    for conn in open_conns {
        assert_eq!(sim.closed(conn).map(|c| c.0), Some(4201));
    }
    assert_no_state(&sim);
}

/// A tiny xorshift generator, so the churn below is the same on every run.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % sides as u64) as usize
    }
}

#[test]
fn random_churn_of_every_operation_leaves_nothing_behind() {
    const CHANNELS: [&str; 7] = [
        "news",
        "cache-c",
        "private-a",
        "private-encrypted-e",
        "presence-p",
        "presence-cache-q",
        "#server-to-user-u1",
    ];
    for seed in 0..40u64 {
        let mut sim = sim_with(|c| {
            c.activity_timeout_secs = 5;
            c.pong_timeout_secs = 3;
            c.apps[0].max_presence_members = 3;
            c.apps[0].user_auth_required = seed % 4 == 0;
            c.apps[0].user_auth_timeout_secs = 7;
        });
        let mut dice = Dice(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut conns: Vec<ConnId> = Vec::new();
        for _ in 0..250 {
            conns.retain(|&c| sim.closed(c).is_none());
            let op = dice.roll(14);
            if conns.is_empty() || op == 0 {
                conns.push(sim.connect("app-key"));
                continue;
            }
            let conn = conns[dice.roll(conns.len())];
            let channel = CHANNELS[dice.roll(CHANNELS.len())];
            let user = format!("u{}", dice.roll(5));
            match op {
                1 => drop(subscribe(&mut sim, conn, channel)),
                2 => drop(subscribe_private(&mut sim, conn, channel)),
                3 => drop(subscribe_presence(
                    &mut sim,
                    conn,
                    channel,
                    &member(&user, "x"),
                )),
                4 => sim.send_json(
                    conn,
                    json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
                ),
                5 => drop(signin(
                    &mut sim,
                    conn,
                    &json!({"id": user, "watchlist": ["u1", "u2"]}).to_string(),
                )),
                6 => trigger(&mut sim, conn, channel, "client-x", json!({"a": 1})),
                7 => sim.disconnect(conn),
                8 => sim.input(Input::SlowConsumer { conn }).unwrap(),
                9 => sim.input(Input::Oversized { conn }).unwrap(),
                10 => sim.advance(secs(dice.roll(6) as u64)),
                11 => sim.send_json(conn, json!({"event": "pusher:pong", "data": {}})),
                12 => sim.send_text(conn, "{\"event\":1}"),
                _ => sim
                    .input(Input::Binary {
                        conn,
                        data: Vec::new(),
                    })
                    .unwrap(),
            }
        }
        for conn in conns {
            if sim.closed(conn).is_none() {
                sim.disconnect(conn);
            }
        }
        // Let the delayed webhook bookkeeping run out.
        sim.advance(secs(60));

        assert_no_state(&sim);
    }
}
