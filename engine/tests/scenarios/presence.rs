//! Presence channels: rosters, member_added / member_removed, limits, bad channel_data.

use crate::common::*;
use serde_json::json;

const ROOM: &str = "presence-room";

#[test]
fn first_member_gets_a_roster_of_itself() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = subscribe_presence(&mut sim, conn, ROOM, &member("u1", "Alice"));

    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].event, "pusher_internal:subscription_succeeded");
    assert_eq!(replies[0].channel.as_deref(), Some(ROOM));
    assert!(envelope(&replies[0])["data"].is_string());
    assert_eq!(
        replies[0].data,
        json!({"presence": {"ids": ["u1"], "hash": {"u1": {"name": "Alice"}}, "count": 1}})
    );
}

#[test]
fn a_new_member_is_announced_to_the_others_only() {
    let mut sim = sim();
    let alice = join_presence(&mut sim, ROOM, "alice");
    let bob = open(&mut sim);

    let replies = subscribe_presence(&mut sim, bob, ROOM, &member("bob", "Bob"));

    assert_eq!(replies.len(), 1);
    assert_eq!(
        replies[0].data,
        json!({"presence": {
            "ids": ["alice", "bob"],
            "hash": {"alice": {"name": "alice"}, "bob": {"name": "Bob"}},
            "count": 2
        }})
    );
    let announced = sim.take(alice);
    assert_eq!(announced.len(), 1);
    assert_eq!(
        announced[0].raw,
        r#"{"event":"pusher_internal:member_added","channel":"presence-room","data":"{\"user_id\":\"bob\",\"user_info\":{\"name\":\"Bob\"}}"}"#
    );
}

#[test]
fn one_member_per_user_however_many_sockets() {
    let mut sim = sim();
    let watcher = join_presence(&mut sim, ROOM, "watcher");
    let phone = join_presence(&mut sim, ROOM, "alice");
    assert_eq!(sim.take_events(watcher), ["pusher_internal:member_added"]);
    let laptop = open(&mut sim);

    let replies = subscribe_presence(&mut sim, laptop, ROOM, &member("alice", "alice"));

    assert_eq!(replies[0].data["presence"]["count"], 2);
    assert_eq!(
        replies[0].data["presence"]["ids"],
        json!(["alice", "watcher"])
    );
    assert!(sim.take(watcher).is_empty(), "no second member_added");
    assert!(sim.take(phone).is_empty());
}

#[test]
fn member_removed_only_when_the_users_last_socket_leaves() {
    let mut sim = sim();
    let watcher = join_presence(&mut sim, ROOM, "watcher");
    let phone = join_presence(&mut sim, ROOM, "alice");
    let laptop = join_presence(&mut sim, ROOM, "alice");
    sim.take(watcher);
    sim.take(phone);

    sim.send_json(
        phone,
        json!({"event": "pusher:unsubscribe", "data": {"channel": ROOM}}),
    );
    assert!(sim.take(watcher).is_empty());
    assert!(sim.take(laptop).is_empty());

    sim.disconnect(laptop);
    let removed = sim.take(watcher);
    assert_eq!(removed.len(), 1);
    assert_eq!(
        removed[0].raw,
        r#"{"event":"pusher_internal:member_removed","channel":"presence-room","data":"{\"user_id\":\"alice\"}"}"#
    );
}

#[test]
fn a_member_who_leaves_and_returns_is_announced_again() {
    let mut sim = sim();
    let watcher = join_presence(&mut sim, ROOM, "watcher");
    let alice = join_presence(&mut sim, ROOM, "alice");
    sim.send_json(
        alice,
        json!({"event": "pusher:unsubscribe", "data": {"channel": ROOM}}),
    );

    let back = subscribe_presence(&mut sim, alice, ROOM, &member("alice", "alice"));

    assert_eq!(back[0].data["presence"]["count"], 2);
    assert_eq!(
        sim.take_events(watcher),
        [
            "pusher_internal:member_added",
            "pusher_internal:member_removed",
            "pusher_internal:member_added"
        ]
    );
}

#[test]
fn numeric_user_ids_are_strings_everywhere() {
    let mut sim = sim();
    let watcher = join_presence(&mut sim, ROOM, "watcher");
    let conn = open(&mut sim);

    let replies = subscribe_presence(
        &mut sim,
        conn,
        ROOM,
        r#"{"user_id":42,"user_info":{"n":1}}"#,
    );

    assert_eq!(replies[0].data["presence"]["ids"], json!(["42", "watcher"]));
    assert_eq!(replies[0].data["presence"]["hash"]["42"], json!({"n": 1}));
    let added = sim.take(watcher);
    assert_eq!(
        added[0].data,
        json!({"user_id": "42", "user_info": {"n": 1}})
    );
    sim.disconnect(conn);
    assert_eq!(sim.take(watcher)[0].data, json!({"user_id": "42"}));
}

#[test]
fn integer_user_ids_above_2_pow_53_keep_every_digit() {
    let mut sim = sim();
    let first = open(&mut sim);
    let replies = subscribe_presence(&mut sim, first, ROOM, r#"{"user_id":18446744073709551616}"#);
    assert_eq!(
        replies[0].data["presence"]["ids"],
        json!(["18446744073709551616"])
    );
    let second = open(&mut sim);
    let replies = subscribe_presence(
        &mut sim,
        second,
        ROOM,
        r#"{"user_id":18446744073709551617}"#,
    );

    assert_eq!(replies[0].data["presence"]["count"], 2);
    assert_eq!(
        sim.take(first)[0].data["user_id"],
        json!("18446744073709551617")
    );
}

#[test]
fn user_ids_over_128_characters_are_refused() {
    let mut sim = sim();
    let conn = open(&mut sim);
    for len in [129, 4_900] {
        let replies = subscribe_presence(&mut sim, conn, ROOM, &member(&"u".repeat(len), "n"));
        assert_subscription_error(&replies, ROOM, "BadRequest", 400);
    }
    assert_eq!(sim.engine().state_counts().channels, 0);
    let replies = subscribe_presence(&mut sim, conn, ROOM, &member(&"é".repeat(128), "n"));
    assert_eq!(replies[0].event, "pusher_internal:subscription_succeeded");
}

#[test]
fn user_info_is_optional() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = subscribe_presence(&mut sim, conn, ROOM, r#"{"user_id":"u1"}"#);

    assert_eq!(replies[0].event, "pusher_internal:subscription_succeeded");
    assert_eq!(replies[0].data["presence"]["ids"], json!(["u1"]));
    assert_eq!(replies[0].data["presence"]["count"], 1);
}

#[test]
fn missing_channel_data_is_a_clear_error_not_a_crash() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let auth = sim.private_auth(conn, ROOM);

    let replies = subscribe_with(&mut sim, conn, json!({"channel": ROOM, "auth": auth}));

    let data = assert_subscription_error(&replies, ROOM, "BadRequest", 400);
    assert!(
        data["error"].as_str().unwrap().contains("channel_data"),
        "{data}"
    );
    assert_alive(&mut sim, conn);
    assert_eq!(sim.engine().state_counts().channels, 0);
}

#[test]
fn malformed_channel_data_is_a_clear_error_not_a_crash() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for channel_data in [
        "",
        "not json",
        "[]",
        "42",
        "{}",
        r#"{"user_id":""}"#,
        r#"{"user_id":null}"#,
        r#"{"user_id":true}"#,
        r#"{"user_id":["a"]}"#,
        r#"{"user_id":{"id":"a"}}"#,
        r#"{"user_info":{"name":"nobody"}}"#,
    ] {
        let replies = subscribe_presence(&mut sim, conn, ROOM, channel_data);
        assert_subscription_error(&replies, ROOM, "BadRequest", 400);
    }
    assert_alive(&mut sim, conn);
    assert_eq!(sim.engine().state_counts().channels, 0);
}

#[test]
fn channel_data_of_the_wrong_type_is_a_pusher_error() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for channel_data in [json!({"user_id": "u1"}), json!(7), json!(["u1"])] {
        let replies = subscribe_with(
            &mut sim,
            conn,
            json!({"channel": ROOM, "auth": "app-key:00", "channel_data": channel_data}),
        );
        assert_error(&replies, None);
    }
    assert_alive(&mut sim, conn);
}

#[test]
fn channel_data_must_be_the_signed_one() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let signed = member("u1", "Alice");
    let auth = sim.presence_auth(conn, ROOM, &signed);
    let other_socket = open(&mut sim);
    let foreign_auth = sim.presence_auth(other_socket, ROOM, &signed);

    let tampered = subscribe_with(
        &mut sim,
        conn,
        json!({"channel": ROOM, "auth": auth, "channel_data": member("admin", "Alice")}),
    );
    let stolen = subscribe_with(
        &mut sim,
        conn,
        json!({"channel": ROOM, "auth": foreign_auth, "channel_data": signed}),
    );
    let private_style = sim.private_auth(conn, ROOM);
    let unsigned_data = subscribe_with(
        &mut sim,
        conn,
        json!({"channel": ROOM, "auth": private_style, "channel_data": signed}),
    );

    for replies in [tampered, stolen, unsigned_data] {
        assert_subscription_error(&replies, ROOM, "AuthError", 401);
    }
}

#[test]
fn a_full_channel_refuses_new_users_but_not_more_sockets_of_members() {
    let mut sim = sim_with_app(|app| app.max_presence_members = 2);
    let _a = join_presence(&mut sim, ROOM, "a");
    let b = join_presence(&mut sim, ROOM, "b");
    let c = open(&mut sim);

    let refused = subscribe_presence(&mut sim, c, ROOM, &member("c", "c"));
    let second_socket_of_a = open(&mut sim);
    let accepted = subscribe_presence(&mut sim, second_socket_of_a, ROOM, &member("a", "a"));

    assert_subscription_error(&refused, ROOM, "Forbidden", 403);
    assert_eq!(accepted[0].data["presence"]["count"], 2);

    sim.disconnect(b);
    let now_room = subscribe_presence(&mut sim, c, ROOM, &member("c", "c"));
    assert_eq!(now_room[0].data["presence"]["count"], 2);
}

#[test]
fn default_member_limit_is_100() {
    let mut sim = sim();
    for i in 0..100 {
        join_presence(&mut sim, ROOM, &format!("user{i}"));
    }
    let late = open(&mut sim);

    let refused = subscribe_presence(&mut sim, late, ROOM, &member("late", "late"));

    assert_subscription_error(&refused, ROOM, "Forbidden", 403);
}

#[test]
fn user_info_is_limited_to_1_kb_by_default() {
    let mut sim = sim();
    let conn = open(&mut sim);
    // {"n":"…"} is 8 bytes around the string.
    let fits = json!({"user_id": "u1", "user_info": {"n": "x".repeat(1024 - 8)}}).to_string();
    let too_big = json!({"user_id": "u2", "user_info": {"n": "x".repeat(1024 - 7)}}).to_string();

    let refused = subscribe_presence(&mut sim, conn, ROOM, &too_big);
    let accepted = subscribe_presence(&mut sim, conn, ROOM, &fits);

    assert_subscription_error(&refused, ROOM, "BadRequest", 400);
    assert_eq!(accepted[0].event, "pusher_internal:subscription_succeeded");
}

#[test]
fn user_info_limit_is_configurable() {
    let mut sim = sim_with_app(|app| app.max_presence_user_info_bytes = 10);
    let conn = open(&mut sim);

    let refused = subscribe_presence(
        &mut sim,
        conn,
        ROOM,
        r#"{"user_id":"u","user_info":"0123456789"}"#,
    );
    let accepted = subscribe_presence(
        &mut sim,
        conn,
        ROOM,
        r#"{"user_id":"u","user_info":"01234567"}"#,
    );

    assert_subscription_error(&refused, ROOM, "BadRequest", 400);
    assert_eq!(accepted[0].event, "pusher_internal:subscription_succeeded");
}

#[test]
fn presence_channels_are_separate_rosters() {
    let mut sim = sim();
    let alice = join_presence(&mut sim, "presence-a", "alice");
    let bob = open(&mut sim);

    let replies = subscribe_presence(&mut sim, bob, "presence-b", &member("bob", "bob"));

    assert_eq!(replies[0].data["presence"]["ids"], json!(["bob"]));
    assert!(sim.take(alice).is_empty());
}

#[test]
fn everyone_leaving_leaves_no_roster_behind() {
    let mut sim = sim();
    let conns: Vec<_> = ["a", "b", "a", "c"]
        .iter()
        .map(|u| join_presence(&mut sim, ROOM, u))
        .collect();

    for conn in conns {
        sim.disconnect(conn);
    }

    assert_eq!(sim.engine().state_counts().channels, 0);
    let fresh = open(&mut sim);
    let replies = subscribe_presence(&mut sim, fresh, ROOM, &member("z", "z"));
    assert_eq!(replies[0].data["presence"]["ids"], json!(["z"]));
}
