//! User sign-in, required sign-in, `#server-to-user-{id}` and watchlists.

use crate::common::*;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::ConnId;
use serde_json::json;

fn signed_in(sim: &mut Simulator, user_data: &str) -> ConnId {
    let conn = open(sim);
    let replies = signin(sim, conn, user_data);
    assert_eq!(replies[0].event, "pusher:signin_success", "{replies:?}");
    conn
}

fn watchlist_events(sim: &mut Simulator, conn: ConnId) -> Vec<serde_json::Value> {
    sim.take(conn)
        .into_iter()
        .map(|m| {
            assert_eq!(m.event, "pusher_internal:watchlist_events");
            assert_eq!(m.channel, None);
            m.data["events"].clone()
        })
        .collect()
}

#[test]
fn signin_success_echoes_the_signed_user_data() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let user_data = r#"{"id":"u1","user_info":{"name":"Alice"}}"#;

    let replies = signin(&mut sim, conn, user_data);

    assert_eq!(replies.len(), 1);
    let wire = envelope(&replies[0]);
    assert_eq!(wire["event"], "pusher:signin_success");
    // pusher-js runs JSON.parse(data.user_data): it must be the exact string signed.
    assert_eq!(replies[0].data, json!({ "user_data": user_data }));
    assert_eq!(sim.engine().state_counts().users, 1);
}

#[test]
fn signin_data_may_arrive_as_a_json_string() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let user_data = r#"{"id":"u1"}"#;
    let auth = sim.signin_auth(conn, user_data);
    let data = json!({"auth": auth, "user_data": user_data}).to_string();

    sim.send_json(conn, json!({"event": "pusher:signin", "data": data}));

    assert_eq!(sim.take_events(conn), ["pusher:signin_success"]);
}

#[test]
fn a_bad_signature_is_a_pusher_error_and_the_connection_stays() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let other = open(&mut sim);
    let user_data = r#"{"id":"u1"}"#;
    let for_other_socket = sim.signin_auth(other, user_data);
    let for_other_data = sim.signin_auth(conn, r#"{"id":"admin"}"#);

    for auth in [
        for_other_socket,
        for_other_data,
        "app-key:00".into(),
        String::new(),
    ] {
        sim.send_json(
            conn,
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        );
        let text = assert_error(&sim.take(conn), None);
        assert!(text.contains("signature"), "{text}");
    }
    assert_alive(&mut sim, conn);
    assert_eq!(sim.engine().state_counts().users, 0);
}

#[test]
fn user_data_needs_a_non_empty_id() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for user_data in [
        "not json",
        "[]",
        "{}",
        r#"{"id":""}"#,
        r#"{"id":null}"#,
        r#"{"id":true}"#,
    ] {
        let replies = signin(&mut sim, conn, user_data);
        assert_error(&replies, None);
    }
    assert_eq!(sim.engine().state_counts().users, 0);
}

#[test]
fn malformed_signin_messages_are_pusher_errors() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for data in [
        json!({}),
        json!({"auth": "x"}),
        json!({"user_data": "{}"}),
        json!({"auth": 1, "user_data": "{}"}),
        json!(null),
    ] {
        sim.send_json(conn, json!({"event": "pusher:signin", "data": data}));
        let text = assert_error(&sim.take(conn), None);
        assert!(text.contains("pusher:signin"), "{text}");
    }
    assert_alive(&mut sim, conn);
}

#[test]
fn a_second_signin_on_the_same_connection_is_refused() {
    let mut sim = sim();
    let conn = signed_in(&mut sim, r#"{"id":"u1"}"#);

    let replies = signin(&mut sim, conn, r#"{"id":"u2"}"#);

    assert_error(&replies, None);
    assert_eq!(sim.engine().state_counts().users, 1);
    let own = subscribe(&mut sim, conn, "#server-to-user-u1");
    assert_eq!(own[0].event, "pusher_internal:subscription_succeeded");
}

#[test]
fn server_to_user_channel_is_only_for_that_signed_in_user() {
    let mut sim = sim();
    let u1 = signed_in(&mut sim, r#"{"id":"u1"}"#);
    let u2 = signed_in(&mut sim, r#"{"id":"u2"}"#);
    let anonymous = open(&mut sim);

    // pusher-js subscribes with an empty auth once signed in.
    let own = subscribe_with(
        &mut sim,
        u1,
        json!({"channel": "#server-to-user-u1", "auth": ""}),
    );
    let someone_elses = subscribe(&mut sim, u2, "#server-to-user-u1");
    let not_signed_in = subscribe(&mut sim, anonymous, "#server-to-user-u1");

    assert_eq!(
        own[0].raw,
        r##"{"event":"pusher_internal:subscription_succeeded","channel":"#server-to-user-u1","data":"{}"}"##
    );
    assert_subscription_error(&someone_elses, "#server-to-user-u1", "Forbidden", 403);
    assert_subscription_error(&not_signed_in, "#server-to-user-u1", "Forbidden", 403);
}

#[test]
fn numeric_user_ids_are_stringified() {
    let mut sim = sim();
    let conn = signed_in(&mut sim, r#"{"id":42}"#);

    let own = subscribe(&mut sim, conn, "#server-to-user-42");

    assert_eq!(own[0].event, "pusher_internal:subscription_succeeded");
}

#[test]
fn integer_ids_above_2_pow_53_keep_every_digit() {
    let mut sim = sim();
    let conn = signed_in(
        &mut sim,
        r#"{"id":18446744073709551617,"watchlist":[18446744073709551616]}"#,
    );

    let own = subscribe(&mut sim, conn, "#server-to-user-18446744073709551617");
    assert_eq!(own[0].event, "pusher_internal:subscription_succeeded");
    signed_in(&mut sim, r#"{"id":18446744073709551616}"#);
    assert_eq!(
        watchlist_events(&mut sim, conn),
        [json!([{"name": "online", "user_ids": ["18446744073709551616"]}])]
    );
}

#[test]
fn ids_over_128_characters_are_refused() {
    let mut sim = sim();
    let conn = open(&mut sim);
    for len in [129, 4_900] {
        let user_data = json!({ "id": "u".repeat(len) }).to_string();
        assert_error(&signin(&mut sim, conn, &user_data), None);
        let watching = json!({ "id": "w", "watchlist": ["u".repeat(len)] }).to_string();
        assert_error(&signin(&mut sim, conn, &watching), None);
    }
    signed_in(&mut sim, &json!({ "id": "u".repeat(128) }).to_string());
}

#[test]
fn send_to_user_reaches_every_signed_in_socket_of_the_user() {
    let mut sim = sim();
    let phone = signed_in(&mut sim, r#"{"id":"u1"}"#);
    let laptop = signed_in(&mut sim, r#"{"id":"u1"}"#);
    let other = signed_in(&mut sim, r#"{"id":"u2"}"#);
    for (conn, id) in [(phone, "u1"), (laptop, "u1"), (other, "u2")] {
        subscribe(&mut sim, conn, &format!("#server-to-user-{id}"));
    }

    sim.trigger("#server-to-user-u1", "notice", "hello");

    for conn in [phone, laptop] {
        assert_eq!(
            sim.take(conn)[0].raw,
            r##"{"event":"notice","channel":"#server-to-user-u1","data":"hello"}"##
        );
    }
    assert!(sim.take(other).is_empty());
}

#[test]
fn required_signin_closes_with_4009_after_the_timeout() {
    let mut sim = sim_with_app(|app| {
        app.user_auth_required = true;
        app.user_auth_timeout_secs = 15;
    });
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");

    sim.advance(secs(14));
    assert_eq!(sim.closed(conn), None);
    sim.advance(secs(1));

    assert_error(&sim.take(conn), Some(4009));
    assert_eq!(sim.closed(conn).map(|c| c.0), Some(4009));
    assert_no_state(&sim);
}

/// Pusher counts a connection as authorized when it signed in *or* joined a private or presence
/// channel: such a connection is not closed by the sign-in deadline, even after it leaves.
#[test]
fn required_signin_is_satisfied_by_a_private_or_presence_subscription() {
    let mut sim = sim_with_app(|app| {
        app.user_auth_required = true;
        app.user_auth_timeout_secs = 15;
    });
    let private = open(&mut sim);
    let presence = open(&mut sim);
    let refused = open(&mut sim);
    assert_eq!(
        subscribe_private(&mut sim, private, "private-chat")[0].event,
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(
        subscribe_presence(&mut sim, presence, "presence-room", &member("u1", "Ann"))[0].event,
        "pusher_internal:subscription_succeeded"
    );
    let replies = subscribe_with(
        &mut sim,
        refused,
        json!({"channel": "private-chat", "auth": "app-key:00"}),
    );
    assert_eq!(replies[0].event, "pusher:subscription_error");
    sim.send_json(
        private,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "private-chat"}}),
    );

    sim.advance(secs(20));

    assert_alive(&mut sim, private);
    assert_alive(&mut sim, presence);
    assert_error(&sim.take(refused), Some(4009));
    assert_eq!(sim.closed(refused).map(|c| c.0), Some(4009));
}

#[test]
fn required_signin_in_time_keeps_the_connection() {
    let mut sim = sim_with_app(|app| {
        app.user_auth_required = true;
        app.user_auth_timeout_secs = 15;
    });
    let conn = open(&mut sim);
    sim.advance(secs(10));

    assert_eq!(
        signin(&mut sim, conn, r#"{"id":"u1"}"#)[0].event,
        "pusher:signin_success"
    );
    sim.advance(secs(100));

    assert_eq!(sim.closed(conn), None);
    assert!(sim.take(conn).is_empty());
    assert_eq!(
        sim.engine().state_counts().timers,
        1,
        "only the liveness timer"
    );
}

#[test]
fn required_signin_with_a_bad_signature_closes_with_4009() {
    let mut sim = sim_with_app(|app| app.user_auth_required = true);
    let conn = open(&mut sim);

    sim.send_json(
        conn,
        json!({"event": "pusher:signin", "data": {"auth": "app-key:00", "user_data": "{\"id\":\"u1\"}"}}),
    );

    assert_error(&sim.take(conn), Some(4009));
    assert_eq!(sim.closed(conn).map(|c| c.0), Some(4009));
    assert_no_state(&sim);
}

#[test]
fn signin_is_not_required_by_default() {
    let mut sim = sim();
    let conn = open(&mut sim);

    sim.advance(secs(100));

    assert_eq!(sim.closed(conn), None);
}

#[test]
fn signin_reports_the_watchlist_status() {
    let mut sim = sim();
    let _u2 = signed_in(&mut sim, r#"{"id":"u2"}"#);
    let conn = open(&mut sim);
    let user_data = r#"{"id":"u1","watchlist":["u2","u3"]}"#;

    let replies = signin(&mut sim, conn, user_data);

    let events: Vec<_> = replies.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(
        events,
        ["pusher:signin_success", "pusher_internal:watchlist_events"]
    );
    assert_eq!(
        replies[1].data,
        json!({"events": [
            {"name": "online", "user_ids": ["u2"]},
            {"name": "offline", "user_ids": ["u3"]}
        ]})
    );
}

#[test]
fn watchers_hear_when_a_watched_user_comes_online_and_goes_offline() {
    let mut sim = sim();
    let watcher = signed_in(&mut sim, r#"{"id":"u1","watchlist":["u2"]}"#);
    sim.take(watcher);

    let phone = signed_in(&mut sim, r#"{"id":"u2"}"#);
    assert_eq!(
        watchlist_events(&mut sim, watcher),
        [json!([{"name": "online", "user_ids": ["u2"]}])]
    );

    let laptop = signed_in(&mut sim, r#"{"id":"u2"}"#);
    sim.disconnect(phone);
    assert!(sim.take(watcher).is_empty(), "u2 stayed online throughout");

    sim.disconnect(laptop);
    assert_eq!(
        watchlist_events(&mut sim, watcher),
        [json!([{"name": "offline", "user_ids": ["u2"]}])]
    );
}

#[test]
fn watchlist_events_wire_format_is_what_pusher_js_reads() {
    let mut sim = sim();
    let watcher = signed_in(&mut sim, r#"{"id":"u1","watchlist":["u2"]}"#);
    sim.take(watcher);

    signed_in(&mut sim, r#"{"id":"u2"}"#);

    let got = sim.take(watcher);
    assert_eq!(
        got[0].raw,
        r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[\"u2\"]}]}"}"#
    );
}

#[test]
fn watchers_who_left_hear_nothing() {
    let mut sim = sim();
    let watcher = signed_in(&mut sim, r#"{"id":"u1","watchlist":["u2"]}"#);
    let bystander = signed_in(&mut sim, r#"{"id":"u3"}"#);
    sim.disconnect(watcher);

    let u2 = signed_in(&mut sim, r#"{"id":"u2"}"#);
    sim.disconnect(u2);

    assert!(sim.take(bystander).is_empty());
    assert_eq!(sim.engine().state_counts().watched_users, 0);
}

#[test]
fn numeric_watchlist_ids_are_stringified() {
    let mut sim = sim();
    let watcher = signed_in(&mut sim, r#"{"id":1,"watchlist":[2]}"#);
    sim.take(watcher);

    signed_in(&mut sim, r#"{"id":2}"#);

    assert_eq!(
        watchlist_events(&mut sim, watcher),
        [json!([{"name": "online", "user_ids": ["2"]}])]
    );
}

#[test]
fn watchlists_are_limited_to_100_ids() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let ids = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>();
    let too_long = json!({"id": "u1", "watchlist": ids(101)}).to_string();
    let longest = json!({"id": "u1", "watchlist": ids(100)}).to_string();

    assert_error(&signin(&mut sim, conn, &too_long), None);
    assert_eq!(
        signin(&mut sim, conn, &longest)[0].event,
        "pusher:signin_success"
    );
}

#[test]
fn a_malformed_watchlist_is_refused() {
    let mut sim = sim();
    let conn = open(&mut sim);

    for user_data in [
        r#"{"id":"u1","watchlist":"u2"}"#,
        r#"{"id":"u1","watchlist":[""]}"#,
        r#"{"id":"u1","watchlist":[{}]}"#,
    ] {
        assert_error(&signin(&mut sim, conn, user_data), None);
    }
    assert_eq!(sim.engine().state_counts().users, 0);
}

#[test]
fn signing_out_by_closing_leaves_no_users_or_watchers() {
    let mut sim = sim();
    let a = signed_in(&mut sim, r#"{"id":"u1","watchlist":["u2","u3"]}"#);
    let b = signed_in(&mut sim, r#"{"id":"u2","watchlist":["u1"]}"#);
    subscribe(&mut sim, a, "#server-to-user-u1");

    sim.disconnect(a);
    sim.disconnect(b);

    assert_no_state(&sim);
}

#[test]
fn a_user_named_twice_in_the_watchlist_is_reported_once() {
    let mut sim = sim();
    let conn = open(&mut sim);

    let replies = signin(
        &mut sim,
        conn,
        r#"{"id":"u1","watchlist":["u2","u3","u2"]}"#,
    );

    assert_eq!(
        replies[1].data,
        json!({"events": [{"name": "offline", "user_ids": ["u2", "u3"]}]})
    );
    signed_in(&mut sim, r#"{"id":"u2"}"#);
    assert_eq!(
        watchlist_events(&mut sim, conn),
        [json!([{"name": "online", "user_ids": ["u2"]}])]
    );
}
