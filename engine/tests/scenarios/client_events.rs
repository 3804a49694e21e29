//! Client events: where they may go, who receives them, the rate limit.

use crate::common::*;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::ConnId;
use serde_json::json;

/// Two connections joined to the same private channel.
fn private_pair(sim: &mut Simulator, channel: &str) -> (ConnId, ConnId) {
    let alice = open(sim);
    let bob = open(sim);
    subscribe_private(sim, alice, channel);
    subscribe_private(sim, bob, channel);
    (alice, bob)
}

#[test]
fn client_event_on_a_private_channel_reaches_the_others_not_the_sender() {
    let mut sim = sim();
    let (alice, bob) = private_pair(&mut sim, "private-chat");
    let carol = open(&mut sim);
    subscribe_private(&mut sim, carol, "private-chat");

    trigger(
        &mut sim,
        alice,
        "private-chat",
        "client-typing",
        json!({"who": "alice"}),
    );

    assert!(sim.take(alice).is_empty(), "never echoed to the sender");
    for peer in [bob, carol] {
        let got = sim.take(peer);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].raw,
            r#"{"event":"client-typing","channel":"private-chat","data":"{\"who\":\"alice\"}"}"#
        );
    }
}

#[test]
fn string_data_is_relayed_as_is() {
    let mut sim = sim();
    let (alice, bob) = private_pair(&mut sim, "private-chat");

    trigger(
        &mut sim,
        alice,
        "private-chat",
        "client-note",
        json!("plain text"),
    );

    assert_eq!(
        sim.take(bob)[0].raw,
        r#"{"event":"client-note","channel":"private-chat","data":"plain text"}"#
    );
}

#[test]
fn presence_client_events_carry_the_signed_user_id() {
    let mut sim = sim();
    let alice = join_presence(&mut sim, "presence-room", "alice");
    let bob = join_presence(&mut sim, "presence-room", "bob");
    sim.take(alice);

    // The sender's claim is ignored: the server takes user_id from the signed channel_data.
    sim.send_json(
        alice,
        json!({"event": "client-wave", "channel": "presence-room", "data": {}, "user_id": "bob"}),
    );

    let got = sim.take(bob);
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].raw,
        r#"{"event":"client-wave","channel":"presence-room","data":"{}","user_id":"alice"}"#
    );
    assert!(sim.take(alice).is_empty());
}

#[test]
fn numeric_presence_user_id_is_sent_as_a_string() {
    let mut sim = sim();
    let numeric = open(&mut sim);
    subscribe_presence(&mut sim, numeric, "presence-room", r#"{"user_id":7}"#);
    let bob = join_presence(&mut sim, "presence-room", "bob");

    trigger(&mut sim, numeric, "presence-room", "client-wave", json!({}));

    assert_eq!(sim.take(bob)[0].user_id.as_deref(), Some("7"));
}

#[test]
fn client_events_are_refused_on_public_channels() {
    let mut sim = sim();
    let alice = open(&mut sim);
    let bob = open(&mut sim);
    for channel in ["news", "cache-news"] {
        subscribe(&mut sim, alice, channel);
        subscribe(&mut sim, bob, channel);
        sim.take(alice);
        sim.take(bob);

        trigger(&mut sim, alice, channel, "client-spam", json!({}));

        assert_error(&sim.take(alice), None);
        assert!(sim.take(bob).is_empty(), "{channel}");
    }
}

#[test]
fn client_events_are_refused_on_encrypted_channels() {
    let mut sim = sim();
    for channel in ["private-encrypted-vault", "private-encrypted-cache-vault"] {
        let (alice, bob) = private_pair(&mut sim, channel);
        sim.take(alice);
        sim.take(bob);

        trigger(
            &mut sim,
            alice,
            channel,
            "client-leak",
            json!({"nonce": "n", "ciphertext": "c"}),
        );

        assert_error(&sim.take(alice), None);
        assert!(sim.take(bob).is_empty(), "{channel}");
    }
}

#[test]
fn client_events_work_on_private_and_presence_cache_channels() {
    let mut sim = sim();
    let (alice, bob) = private_pair(&mut sim, "private-cache-board");
    sim.take(alice);
    sim.take(bob);
    trigger(
        &mut sim,
        alice,
        "private-cache-board",
        "client-move",
        json!({}),
    );
    assert_eq!(sim.take_events(bob), ["client-move"]);

    let carol = join_presence(&mut sim, "presence-cache-room", "carol");
    let dave = join_presence(&mut sim, "presence-cache-room", "dave");
    sim.take(carol);
    trigger(
        &mut sim,
        dave,
        "presence-cache-room",
        "client-move",
        json!({}),
    );
    assert_eq!(sim.take(carol)[0].user_id.as_deref(), Some("dave"));
}

#[test]
fn client_events_are_refused_on_channels_not_joined() {
    let mut sim = sim();
    let (_alice, bob) = private_pair(&mut sim, "private-chat");
    let outsider = open(&mut sim);

    trigger(
        &mut sim,
        outsider,
        "private-chat",
        "client-intrude",
        json!({}),
    );

    assert_error(&sim.take(outsider), None);
    assert!(sim.take(bob).iter().all(|m| m.event != "client-intrude"));
}

#[test]
fn client_events_are_refused_after_unsubscribing() {
    let mut sim = sim();
    let (alice, bob) = private_pair(&mut sim, "private-chat");
    sim.send_json(
        alice,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "private-chat"}}),
    );

    trigger(&mut sim, alice, "private-chat", "client-late", json!({}));

    assert_error(&sim.take(alice), None);
    assert!(sim.take(bob).is_empty());
}

#[test]
fn client_events_need_a_channel() {
    let mut sim = sim();
    let (alice, _bob) = private_pair(&mut sim, "private-chat");
    sim.take(alice);

    sim.send_json(alice, json!({"event": "client-lost", "data": {}}));
    assert_error(&sim.take(alice), None);
    sim.send_json(
        alice,
        json!({"event": "client-lost", "channel": "bad channel", "data": {}}),
    );
    assert_error(&sim.take(alice), None);
}

#[test]
fn client_events_can_be_disabled_per_app() {
    let mut sim = sim_with_app(|app| app.client_events = false);
    let (alice, bob) = private_pair(&mut sim, "private-chat");
    sim.take(alice);
    sim.take(bob);

    trigger(&mut sim, alice, "private-chat", "client-typing", json!({}));

    let text = assert_error(&sim.take(alice), None);
    assert!(text.contains("not enabled"), "{text}");
    assert!(sim.take(bob).is_empty());
    assert_alive(&mut sim, alice);
}

#[test]
fn client_event_names_are_limited_in_length() {
    let mut sim = sim();
    let (alice, bob) = private_pair(&mut sim, "private-chat");
    sim.take(alice);
    sim.take(bob);
    let longest = format!("client-{}", "x".repeat(193));
    let too_long = format!("client-{}", "x".repeat(194));

    trigger(&mut sim, alice, "private-chat", &longest, json!({}));
    trigger(&mut sim, alice, "private-chat", &too_long, json!({}));

    assert_error(&sim.take(alice), None);
    assert_eq!(sim.take_events(bob), [longest]);
}

#[test]
fn the_eleventh_event_in_a_second_is_refused_with_4301_without_closing() {
    let mut sim = sim();
    let (alice, bob) = private_pair(&mut sim, "private-chat");
    sim.take(alice);
    sim.take(bob);

    for i in 0..11 {
        trigger(
            &mut sim,
            alice,
            "private-chat",
            "client-burst",
            json!({ "i": i }),
        );
    }

    let text = assert_error(&sim.take(alice), Some(4301));
    assert!(text.contains("rate"), "{text}");
    assert_eq!(sim.closed(alice), None);
    let delivered: Vec<_> = sim
        .take(bob)
        .into_iter()
        .map(|m| m.data["i"].clone())
        .collect();
    assert_eq!(delivered, (0..10).map(|i| json!(i)).collect::<Vec<_>>());
    assert_alive(&mut sim, alice);
}

#[test]
fn the_rate_limit_refills_over_time() {
    let mut sim = sim();
    let (alice, bob) = private_pair(&mut sim, "private-chat");
    sim.take(bob);
    for _ in 0..10 {
        trigger(&mut sim, alice, "private-chat", "client-a", json!({}));
    }
    assert_eq!(sim.take(bob).len(), 10);

    sim.advance(std::time::Duration::from_millis(100));
    trigger(&mut sim, alice, "private-chat", "client-b", json!({}));
    trigger(&mut sim, alice, "private-chat", "client-c", json!({}));
    assert_eq!(sim.take_events(bob), ["client-b"]);
    assert_error(&sim.take(alice), Some(4301));

    sim.advance(secs(1));
    for _ in 0..10 {
        trigger(&mut sim, alice, "private-chat", "client-d", json!({}));
    }
    assert_eq!(sim.take(bob).len(), 10);
    assert!(sim.take(alice).is_empty());
}

#[test]
fn the_rate_limit_is_per_connection() {
    let mut sim = sim();
    let (alice, bob) = private_pair(&mut sim, "private-chat");
    let carol = open(&mut sim);
    subscribe_private(&mut sim, carol, "private-chat");
    for _ in 0..12 {
        trigger(&mut sim, alice, "private-chat", "client-a", json!({}));
    }
    sim.take(alice);
    sim.take(carol);

    trigger(&mut sim, bob, "private-chat", "client-b", json!({}));

    assert!(sim.take(bob).iter().all(|m| m.event != "pusher:error"));
    assert_eq!(sim.take_events(carol), ["client-b"]);
}

#[test]
fn the_rate_limit_is_configurable() {
    let mut sim = sim_with_app(|app| {
        app.client_event_rate_per_sec = 2;
        app.client_event_burst = 2;
    });
    let (alice, bob) = private_pair(&mut sim, "private-chat");
    sim.take(alice);
    sim.take(bob);

    for _ in 0..3 {
        trigger(&mut sim, alice, "private-chat", "client-a", json!({}));
    }

    assert_eq!(sim.take(bob).len(), 2);
    assert_error(&sim.take(alice), Some(4301));
}

#[test]
fn refused_client_events_do_not_use_up_the_rate() {
    let mut sim = sim();
    let (alice, bob) = private_pair(&mut sim, "private-chat");
    sim.take(bob);
    for _ in 0..20 {
        trigger(&mut sim, alice, "news", "client-nowhere", json!({}));
    }
    sim.take(alice);

    for _ in 0..10 {
        trigger(&mut sim, alice, "private-chat", "client-ok", json!({}));
    }

    assert_eq!(sim.take(bob).len(), 10);
    assert!(sim.take(alice).is_empty());
}

#[test]
fn client_events_on_server_to_user_channels_are_refused() {
    let mut sim = sim();
    let conn = open(&mut sim);
    signin(&mut sim, conn, r#"{"id":"u1"}"#);
    subscribe(&mut sim, conn, "#server-to-user-u1");

    trigger(
        &mut sim,
        conn,
        "#server-to-user-u1",
        "client-self",
        json!({}),
    );

    assert_error(&sim.take(conn), None);
}

#[test]
fn a_lone_subscriber_sending_a_client_event_gets_nothing_back() {
    let mut sim = sim();
    let alice = open(&mut sim);
    subscribe_private(&mut sim, alice, "private-solo");

    trigger(&mut sim, alice, "private-solo", "client-echo", json!({}));

    assert!(sim.take(alice).is_empty());
}

#[test]
fn client_event_data_is_bounded_by_the_event_payload_limit_not_only_the_message_limit() {
    // Messages may be large, so only the event payload limit (10 KB by default) can refuse.
    let mut sim = sim_with_app(|app| app.max_message_bytes = 64 * 1024);
    let (alice, bob) = private_pair(&mut sim, "private-chat");

    let over = "x".repeat(10 * 1024 + 1);
    trigger(&mut sim, alice, "private-chat", "client-big", json!(over));
    let message = assert_error(&sim.take(alice), None);
    assert!(message.contains("10240"), "{message}");
    assert!(sim.take(bob).is_empty());
    assert_alive(&mut sim, alice);

    let at_limit = "x".repeat(10 * 1024);
    trigger(
        &mut sim,
        alice,
        "private-chat",
        "client-big",
        json!(at_limit),
    );
    let got = sim.take(bob);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, json!(at_limit));
}
