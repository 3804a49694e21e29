//! Subscribing and unsubscribing: each channel kind's auth rule, names, cache channels.

use crate::common::*;
use ferrocast_engine::signature::client_auth;
use serde_json::json;

#[test]
fn public_channel_subscription_succeeds_with_an_empty_object_string() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = subscribe(&mut sim, conn, "news");

    assert_eq!(replies.len(), 1);
    assert_eq!(
        replies[0].raw,
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"news","data":"{}"}"#
    );
    assert_eq!(sim.engine().state_counts().channels, 1);
}

#[test]
fn public_channel_ignores_an_auth_field() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = subscribe_with(&mut sim, conn, json!({"channel": "news", "auth": ""}));

    assert_eq!(replies[0].event, "pusher_internal:subscription_succeeded");
}

#[test]
fn subscribe_data_may_arrive_as_a_json_string() {
    let mut sim = sim();
    let conn = open(&mut sim);

    sim.send_text(
        conn,
        r#"{"event":"pusher:subscribe","data":"{\"channel\":\"news\"}"}"#,
    );

    assert_eq!(
        sim.take_events(conn),
        ["pusher_internal:subscription_succeeded"]
    );
}

#[test]
fn private_channel_needs_a_signature() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = subscribe(&mut sim, conn, "private-room");

    let data = assert_subscription_error(&replies, "private-room", "AuthError", 401);
    assert_eq!(data.as_object().unwrap().len(), 3, "{data}");
    assert_eq!(sim.engine().state_counts().channels, 0);
}

#[test]
fn subscription_error_data_is_a_json_string_on_the_channel() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = subscribe(&mut sim, conn, "private-room");

    let wire = envelope(&replies[0]);
    assert_eq!(wire["event"], "pusher:subscription_error");
    assert_eq!(wire["channel"], "private-room");
    assert!(wire["data"].is_string(), "{wire}");
}

#[test]
fn private_channel_accepts_a_valid_signature() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = subscribe_private(&mut sim, conn, "private-room");

    assert_eq!(
        replies[0].raw,
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"private-room","data":"{}"}"#
    );
    assert_eq!(replies.len(), 1);
}

#[test]
fn private_signature_is_checked_against_the_server_assigned_socket_id() {
    let mut sim = sim();
    let victim = open(&mut sim);
    let thief = open(&mut sim);
    let stolen = sim.private_auth(victim, "private-room");
    let made_up = client_auth("app-key", "app-secret", b"1234.5678:private-room");

    for auth in [stolen, made_up] {
        let replies = subscribe_with(
            &mut sim,
            thief,
            json!({"channel": "private-room", "auth": auth}),
        );
        assert_subscription_error(&replies, "private-room", "AuthError", 401);
    }
    assert_alive(&mut sim, thief);
}

#[test]
fn malformed_auth_values_are_refused() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let good = sim.private_auth(conn, "private-room");
    let signature = good.split_once(':').unwrap().1.to_owned();

    for auth in [
        String::new(),
        "app-key".into(),
        "app-key:".into(),
        signature.clone(),
        format!("other-key:{signature}"),
        format!("app-key:{}", &signature[..62]),
        format!("app-key:{signature}00"),
        format!("app-key:zz{}", &signature[2..]),
        sim.private_auth(conn, "private-other"),
    ] {
        let replies = subscribe_with(
            &mut sim,
            conn,
            json!({"channel": "private-room", "auth": auth}),
        );
        assert_subscription_error(&replies, "private-room", "AuthError", 401);
    }
}

#[test]
fn private_encrypted_channel_needs_a_signature() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let refused = subscribe(&mut sim, conn, "private-encrypted-vault");
    let accepted = subscribe_private(&mut sim, conn, "private-encrypted-vault");

    assert_subscription_error(&refused, "private-encrypted-vault", "AuthError", 401);
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].event, "pusher_internal:subscription_succeeded");
}

#[test]
fn public_cache_channel_answers_success_then_cache_miss() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = subscribe(&mut sim, conn, "cache-weather");

    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].event, "pusher_internal:subscription_succeeded");
    assert_eq!(
        replies[1].raw,
        r#"{"event":"pusher:cache_miss","channel":"cache-weather","data":"{}"}"#
    );
}

#[test]
fn private_cache_channel_refuses_any_signature_but_the_right_one() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let other = open(&mut sim);

    let unsigned = subscribe(&mut sim, conn, "private-cache-scores");
    let garbage = subscribe_with(
        &mut sim,
        conn,
        json!({"channel": "private-cache-scores", "auth": format!("app-key:{}", "0".repeat(64))}),
    );
    let foreign = sim.private_auth(other, "private-cache-scores");
    let wrong_socket = subscribe_with(
        &mut sim,
        conn,
        json!({"channel": "private-cache-scores", "auth": foreign}),
    );
    let accepted = subscribe_private(&mut sim, conn, "private-cache-scores");

    for refused in [unsigned, garbage, wrong_socket] {
        assert_subscription_error(&refused, "private-cache-scores", "AuthError", 401);
    }
    let events: Vec<_> = accepted.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "pusher_internal:subscription_succeeded",
            "pusher:cache_miss"
        ]
    );
}

#[test]
fn private_encrypted_cache_channel_needs_a_signature() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let refused = subscribe(&mut sim, conn, "private-encrypted-cache-x");
    let accepted = subscribe_private(&mut sim, conn, "private-encrypted-cache-x");

    assert_subscription_error(&refused, "private-encrypted-cache-x", "AuthError", 401);
    let events: Vec<_> = accepted.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "pusher_internal:subscription_succeeded",
            "pusher:cache_miss"
        ]
    );
}

#[test]
fn presence_cache_channel_is_usable() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let channel_data = member("u1", "Alice");

    let unsigned = subscribe_with(
        &mut sim,
        conn,
        json!({"channel": "presence-cache-lobby", "channel_data": channel_data}),
    );
    let accepted = subscribe_presence(&mut sim, conn, "presence-cache-lobby", &channel_data);

    assert_subscription_error(&unsigned, "presence-cache-lobby", "AuthError", 401);
    assert_eq!(accepted.len(), 2);
    assert_eq!(accepted[0].event, "pusher_internal:subscription_succeeded");
    assert_eq!(
        accepted[0].data,
        json!({"presence": {"ids": ["u1"], "hash": {"u1": {"name": "Alice"}}, "count": 1}})
    );
    assert_eq!(accepted[1].event, "pusher:cache_miss");
}

#[test]
fn cache_channel_replays_the_last_event_instead_of_a_miss() {
    let mut sim = sim();
    sim.trigger("cache-weather", "forecast", "{\"sky\":\"grey\"}");
    sim.trigger("cache-weather", "forecast", "{\"sky\":\"blue\"}");
    let conn = open(&mut sim);

    let replies = subscribe(&mut sim, conn, "cache-weather");

    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0].event, "pusher_internal:subscription_succeeded");
    assert_eq!(
        replies[1].raw,
        r#"{"event":"forecast","channel":"cache-weather","data":"{\"sky\":\"blue\"}"}"#
    );
}

#[test]
fn channel_names_outside_the_charset_are_refused() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for name in [
        "",
        "with space",
        "a#b",
        "slash/es",
        "ü",
        "semi:colon",
        "star*",
        "#server-to-user-",
    ] {
        let replies = subscribe(&mut sim, conn, name);
        assert_subscription_error(&replies, name, "BadRequest", 400);
    }
    let ok = subscribe(&mut sim, conn, "Aa-Zz_09=@,.;");
    assert_eq!(ok[0].event, "pusher_internal:subscription_succeeded");
    assert_alive(&mut sim, conn);
}

#[test]
fn channel_names_are_limited_to_200_characters_by_default() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let longest = "a".repeat(200);
    let too_long = "a".repeat(201);

    assert_eq!(
        subscribe(&mut sim, conn, &longest)[0].event,
        "pusher_internal:subscription_succeeded"
    );
    assert_subscription_error(
        &subscribe(&mut sim, conn, &too_long),
        &too_long,
        "BadRequest",
        400,
    );
    let private = format!("private-{}", "b".repeat(193));
    assert_subscription_error(
        &subscribe(&mut sim, conn, &private),
        &private,
        "BadRequest",
        400,
    );
}

#[test]
fn channel_name_limit_is_configurable() {
    let mut sim = sim_with_app(|app| app.max_channel_name_len = 10);
    let conn = open(&mut sim);

    assert_eq!(
        subscribe(&mut sim, conn, "0123456789")[0].event,
        "pusher_internal:subscription_succeeded"
    );
    assert_subscription_error(
        &subscribe(&mut sim, conn, "0123456789a"),
        "0123456789a",
        "BadRequest",
        400,
    );
}

#[test]
fn server_to_user_channel_needs_a_signed_in_connection() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = subscribe_with(
        &mut sim,
        conn,
        json!({"channel": "#server-to-user-u1", "auth": ""}),
    );

    assert_subscription_error(&replies, "#server-to-user-u1", "Forbidden", 403);
}

#[test]
fn subscribe_without_a_channel_is_a_pusher_error() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for data in [
        json!({}),
        json!({"channel": 5}),
        json!({"channel": null}),
        json!("news"),
        json!(null),
    ] {
        sim.send_json(conn, json!({"event": "pusher:subscribe", "data": data}));
        let text = assert_error(&sim.take(conn), None);
        assert!(text.contains("pusher:subscribe"), "{text}");
    }
    sim.send_text(conn, r#"{"event":"pusher:subscribe"}"#);
    assert_error(&sim.take(conn), None);
    assert_alive(&mut sim, conn);
}

#[test]
fn unsubscribe_gets_no_reply_and_stops_delivery() {
    let mut sim = sim();
    let alice = open(&mut sim);
    let bob = open(&mut sim);
    subscribe_private(&mut sim, alice, "private-room");
    subscribe_private(&mut sim, bob, "private-room");

    sim.send_json(
        alice,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "private-room"}}),
    );
    assert!(sim.take(alice).is_empty());
    trigger(&mut sim, bob, "private-room", "client-hi", json!({}));

    assert!(sim.take(alice).is_empty());
    sim.send_json(
        bob,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "private-room"}}),
    );
    assert_eq!(sim.engine().state_counts().channels, 0);
}

#[test]
fn unsubscribe_stops_published_events() {
    let mut sim = sim();
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");
    sim.trigger("news", "headline", "one");
    assert_eq!(sim.take_events(conn), ["headline"]);

    sim.send_json(
        conn,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}),
    );
    sim.trigger("news", "headline", "two");

    assert!(sim.take(conn).is_empty());
}

#[test]
fn unsubscribe_from_a_channel_never_joined_is_silent() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for channel in ["news", "private-x", "not a name"] {
        sim.send_json(
            conn,
            json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
        );
    }

    assert!(sim.take(conn).is_empty());
    assert_alive(&mut sim, conn);
}

#[test]
fn unsubscribe_without_a_channel_is_a_pusher_error() {
    let mut sim = sim();
    let conn = open(&mut sim);

    sim.send_json(conn, json!({"event": "pusher:unsubscribe", "data": {}}));

    assert_error(&sim.take(conn), None);
}

#[test]
fn subscribing_twice_keeps_one_subscription() {
    let mut sim = sim();
    let alice = open(&mut sim);
    let bob = open(&mut sim);
    subscribe_private(&mut sim, alice, "private-room");
    subscribe_private(&mut sim, bob, "private-room");

    let again = subscribe_private(&mut sim, alice, "private-room");
    trigger(&mut sim, bob, "private-room", "client-hi", json!({}));

    assert_eq!(again[0].event, "pusher_internal:subscription_succeeded");
    assert_eq!(sim.take_events(alice), ["client-hi"]);
    sim.send_json(
        alice,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "private-room"}}),
    );
    trigger(&mut sim, bob, "private-room", "client-hi", json!({}));
    assert!(sim.take(alice).is_empty());
}

#[test]
fn a_refused_subscription_leaves_other_subscriptions_alone() {
    let mut sim = sim();
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");

    subscribe(&mut sim, conn, "private-room");
    sim.trigger("news", "headline", "still here");

    assert_eq!(sim.take_events(conn), ["headline"]);
}

#[test]
fn signatures_match_the_official_sdk_vectors() {
    // From signature-vectors.json (computed with the `pusher` Node SDK).
    let private = client_auth("app-key", "app-secret", b"1234.5678:private-foo");
    let presence = client_auth(
        "app-key",
        "app-secret",
        br#"1234.5678:presence-room:{"user_id":"u1","user_info":{"name":"Alice"}}"#,
    );
    let encrypted = client_auth("app-key", "app-secret", b"1234.5678:private-encrypted-foo");
    let signin = client_auth(
        "app-key",
        "app-secret",
        br#"1234.5678::user::{"id":"u1","user_info":{"name":"Alice"},"watchlist":["u2"]}"#,
    );

    assert_eq!(
        private,
        "app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d"
    );
    assert_eq!(
        presence,
        "app-key:8da8a274fe7cf8f5bde5e8c764fe1c4e1df1e323b9e8ea3687d0055ef7502f6e"
    );
    assert_eq!(
        encrypted,
        "app-key:d64478e9038bf061f1be2049fb8cf5796048b43a0a3d8c4e1361481beddd866b"
    );
    assert_eq!(
        signin,
        "app-key:93349634acd9f9f290f7aa6c4154876adf7a2f6b34086aa3dcfac389e7692b3f"
    );
}
