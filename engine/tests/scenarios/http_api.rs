//! The signed HTTP API: publishing, queries, termination, signatures, limits and caches.

use crate::common::*;
use ferrocast_engine::http_auth::signed_query;
use ferrocast_engine::sim::Simulator;
use serde_json::{json, Value};

fn post(sim: &mut Simulator, path: &str, body: Value) -> (u16, Value) {
    sim.signed_http("POST", path, &[], &body.to_string())
}

fn get(sim: &mut Simulator, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
    sim.signed_http("GET", path, params, "")
}

#[test]
fn a_trigger_reaches_every_subscriber_with_data_as_a_string() {
    let mut sim = sim();
    let (a, b) = (open(&mut sim), open(&mut sim));
    subscribe(&mut sim, a, "news");
    subscribe(&mut sim, b, "news");

    let answer = post(
        &mut sim,
        "/apps/app-id/events",
        json!({"name": "flash", "channel": "news", "data": "{\"x\":1}"}),
    );

    assert_eq!(answer, (200, json!({})));
    for conn in [a, b] {
        let got = sim.take(conn);
        assert_eq!(got.len(), 1);
        assert_eq!(
            envelope(&got[0]),
            json!({"event": "flash", "channel": "news", "data": "{\"x\":1}"})
        );
    }
}

#[test]
fn socket_id_excludes_that_connection_across_many_channels() {
    let mut sim = sim();
    let (a, b) = (open(&mut sim), open(&mut sim));
    for conn in [a, b] {
        subscribe(&mut sim, conn, "one");
        subscribe(&mut sim, conn, "two");
    }
    let socket_a = sim.socket_id(a);

    let body = json!({"name": "e", "channels": ["one", "two"], "data": "d", "socket_id": socket_a});
    assert_eq!(post(&mut sim, "/apps/app-id/events", body).0, 200);

    assert!(sim.take(a).is_empty());
    let got: Vec<_> = sim
        .take(b)
        .into_iter()
        .map(|m| m.channel.unwrap())
        .collect();
    assert_eq!(got, ["one", "two"]);
}

#[test]
fn a_channel_named_twice_gets_the_event_once_in_first_occurrence_order() {
    let mut sim = sim();
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "one");
    subscribe(&mut sim, conn, "two");

    let body = json!({"name": "e", "channels": ["two", "one", "two", "one"], "data": "d"});
    assert_eq!(post(&mut sim, "/apps/app-id/events", body).0, 200);

    let got: Vec<_> = sim
        .take(conn)
        .into_iter()
        .map(|m| m.channel.unwrap())
        .collect();
    assert_eq!(got, ["two", "one"]);
}

#[test]
fn info_reports_user_and_subscription_counts() {
    let mut sim = sim();
    join_presence(&mut sim, "presence-room", "u1");
    join_presence(&mut sim, "presence-room", "u1");
    let c = open(&mut sim);
    subscribe(&mut sim, c, "plain");

    let body = json!({"name": "e", "channels": ["presence-room", "plain"], "data": "d", "info": "user_count,subscription_count"});
    let (status, answer) = post(&mut sim, "/apps/app-id/events", body);

    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"channels": {
            "presence-room": {"user_count": 1, "subscription_count": 2},
            "plain": {"subscription_count": 1}
        }})
    );
}

#[test]
fn batch_events_are_delivered_in_order_and_answer_info_per_item() {
    let mut sim = sim();
    let a = open(&mut sim);
    subscribe(&mut sim, a, "x");
    let body = json!({"batch": [
        {"name": "first", "channel": "x", "data": "1", "info": "subscription_count"},
        {"name": "second", "channel": "y", "data": "2"},
        {"name": "third", "channel": "x", "data": "3"},
    ]});

    let (status, answer) = post(&mut sim, "/apps/app-id/batch_events", body);

    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"batch": [{"subscription_count": 1}, {}, {}]})
    );
    assert_eq!(sim.take_events(a), ["first", "third"]);
}

#[test]
fn a_batch_with_one_bad_item_publishes_nothing() {
    let mut sim = sim();
    let a = open(&mut sim);
    subscribe(&mut sim, a, "x");
    let body = json!({"batch": [{"name": "ok", "channel": "x", "data": "1"}, {"name": "bad", "channel": "a b", "data": "2"}]});

    let (status, answer) = post(&mut sim, "/apps/app-id/batch_events", body);

    assert_eq!(status, 400);
    assert!(
        answer["error"].as_str().unwrap().starts_with("batch[1]"),
        "{answer}"
    );
    assert!(sim.take(a).is_empty());
}

#[test]
fn channel_listing_shows_occupied_channels_filtered_by_prefix() {
    let mut sim = sim();
    let a = open(&mut sim);
    subscribe(&mut sim, a, "news");
    join_presence(&mut sim, "presence-a", "u1");
    join_presence(&mut sim, "presence-a", "u2");

    assert_eq!(
        get(&mut sim, "/apps/app-id/channels", &[]),
        (200, json!({"channels": {"news": {}, "presence-a": {}}}))
    );
    assert_eq!(
        get(
            &mut sim,
            "/apps/app-id/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")]
        ),
        (200, json!({"channels": {"presence-a": {"user_count": 2}}}))
    );
    assert_eq!(
        get(&mut sim, "/apps/app-id/channels", &[("info", "user_count")]).0,
        400
    );
}

#[test]
fn one_channel_reports_occupancy_and_counts() {
    let mut sim = sim();
    join_presence(&mut sim, "presence-a", "u1");

    assert_eq!(
        get(
            &mut sim,
            "/apps/app-id/channels/presence-a",
            &[("info", "user_count,subscription_count")]
        ),
        (
            200,
            json!({"occupied": true, "user_count": 1, "subscription_count": 1})
        )
    );
    assert_eq!(
        get(&mut sim, "/apps/app-id/channels/empty", &[]),
        (200, json!({"occupied": false}))
    );
    assert_eq!(
        get(
            &mut sim,
            "/apps/app-id/channels/plain",
            &[("info", "user_count")]
        )
        .0,
        400
    );
    assert_eq!(
        get(&mut sim, "/apps/app-id/channels/bad%20name", &[]).0,
        400
    );
}

#[test]
fn presence_users_are_listed_once_each_and_only_for_presence_channels() {
    let mut sim = sim();
    join_presence(&mut sim, "presence-a", "u2");
    join_presence(&mut sim, "presence-a", "u1");
    join_presence(&mut sim, "presence-a", "u1");

    assert_eq!(
        get(&mut sim, "/apps/app-id/channels/presence-a/users", &[]),
        (200, json!({"users": [{"id": "u1"}, {"id": "u2"}]}))
    );
    assert_eq!(
        get(&mut sim, "/apps/app-id/channels/private-a/users", &[]).0,
        400
    );
}

#[test]
fn terminate_closes_every_connection_of_that_user_with_4009() {
    let mut sim = sim();
    let (tab1, tab2, other) = (open(&mut sim), open(&mut sim), open(&mut sim));
    signin(&mut sim, tab1, r#"{"id":"u1"}"#);
    signin(&mut sim, tab2, r#"{"id":"u1"}"#);
    signin(&mut sim, other, r#"{"id":"u2"}"#);

    assert_eq!(
        post(
            &mut sim,
            "/apps/app-id/users/u1/terminate_connections",
            json!({})
        ),
        (200, json!({}))
    );

    for tab in [tab1, tab2] {
        assert_error(&sim.take(tab), Some(4009));
        assert_eq!(sim.closed(tab).unwrap().0, 4009);
    }
    assert_alive(&mut sim, other);
}

#[test]
fn terminate_also_answers_the_path_without_the_app_prefix_naming_the_app_by_its_key() {
    let mut sim = sim();
    let tab = open(&mut sim);
    signin(&mut sim, tab, r#"{"id":"u1"}"#);

    let answer = sim.signed_http("POST", "/users/u1/terminate_connections", &[], "{}");

    assert_eq!(answer, (200, json!({})));
    assert_eq!(sim.closed(tab).unwrap().0, 4009);
    assert_eq!(
        sim.http(
            "POST",
            "/users/u1/terminate_connections",
            "auth_key=nope",
            b"{}"
        )
        .0,
        401
    );
}

#[test]
fn send_to_user_reaches_the_signed_in_users_channel() {
    let mut sim = sim();
    let (alice, bob) = (open(&mut sim), open(&mut sim));
    signin(&mut sim, alice, r#"{"id":"alice"}"#);
    signin(&mut sim, bob, r#"{"id":"bob"}"#);
    subscribe(&mut sim, alice, "#server-to-user-alice");
    subscribe(&mut sim, bob, "#server-to-user-bob");

    sim.trigger("#server-to-user-alice", "hello", "hi");

    assert_eq!(sim.take_events(alice), ["hello"]);
    assert!(sim.take(bob).is_empty());
}

#[test]
fn cache_channels_replay_the_last_event_until_it_expires() {
    let mut sim = sim();
    sim.trigger("cache-prices", "tick", "1");
    sim.trigger("cache-prices", "tick", "2");
    let a = open(&mut sim);

    let got = subscribe(&mut sim, a, "cache-prices");

    assert_eq!(got[0].event, "pusher_internal:subscription_succeeded");
    assert_eq!(
        envelope(&got[1]),
        json!({"event": "tick", "channel": "cache-prices", "data": "2"})
    );
    sim.advance(secs(29 * 60));
    let early = open(&mut sim);
    assert_eq!(
        subscribe(&mut sim, early, "cache-prices")[1].event,
        "tick",
        "kept for 30 minutes"
    );
    sim.advance(secs(60));
    let b = open(&mut sim);
    assert_eq!(
        subscribe(&mut sim, b, "cache-prices")[1].event,
        "pusher:cache_miss"
    );
    assert_eq!(sim.engine().state_counts().cached_events, 0);
}

#[test]
fn private_cache_channels_still_need_a_valid_signature() {
    let mut sim = sim();
    sim.trigger("private-cache-x", "e", "secret");
    let a = open(&mut sim);

    let refused = subscribe_with(
        &mut sim,
        a,
        json!({"channel": "private-cache-x", "auth": "app-key:00"}),
    );
    assert_subscription_error(&refused, "private-cache-x", "AuthError", 401);

    let got = subscribe_private(&mut sim, a, "private-cache-x");
    assert_eq!(got[1].event, "e");
}

#[test]
fn subscription_counts_are_pushed_when_the_app_enables_them() {
    let mut sim = sim_with_app(|app| app.subscription_count_events = true);
    let (a, b) = (open(&mut sim), open(&mut sim));
    subscribe(&mut sim, a, "room");

    let got = subscribe(&mut sim, b, "room");

    assert_eq!(got[1].event, "pusher_internal:subscription_count");
    assert_eq!(got[1].data, json!({"subscription_count": 2}));
    assert_eq!(sim.take(a)[0].data, json!({"subscription_count": 2}));
    sim.disconnect(b);
    assert_eq!(sim.take(a)[0].data, json!({"subscription_count": 1}));
}

#[test]
fn signatures_are_checked_exactly() {
    let mut sim = sim();
    let body = r#"{"name":"e","channel":"c","data":"d"}"#;
    let now = sim.moment().unix_ms / 1000;
    let mut send = |key: &str, secret: &str, path: &str, ts: u64, sent_body: &str| {
        let query = signed_query(key, secret, "POST", path, &[], body.as_bytes(), ts);
        sim.http("POST", path, &query, sent_body.as_bytes())
    };

    assert_eq!(
        send("app-key", "app-secret", "/apps/app-id/events", now, body).0,
        200
    );
    assert_eq!(
        send(
            "app-key",
            "app-secret",
            "/apps/app-id/events",
            now - 599,
            body
        )
        .0,
        200
    );
    assert_eq!(
        send(
            "app-key",
            "app-secret",
            "/apps/app-id/events",
            now + 599,
            body
        )
        .0,
        200
    );
    assert_eq!(
        send(
            "app-key",
            "app-secret",
            "/apps/app-id/events",
            now - 601,
            body
        )
        .0,
        401
    );
    assert_eq!(
        send(
            "app-key",
            "app-secret",
            "/apps/app-id/events",
            now + 601,
            body
        )
        .0,
        401
    );
    let (status, answer) = send("app-key", "wrong", "/apps/app-id/events", now, body);
    assert_eq!(
        (status, answer["error"].as_str()),
        (401, Some("invalid auth_signature"))
    );
    let (status, answer) = send(
        "app-key",
        "app-secret",
        "/apps/app-id/events",
        now - 601,
        body,
    );
    assert_eq!(status, 401);
    assert!(
        answer["error"].as_str().unwrap().contains("auth_timestamp"),
        "{answer}"
    );
    assert_eq!(
        send(
            "app-key",
            "app-secret",
            "/apps/app-id/events",
            now,
            r#"{"name":"e","channel":"c","data":"x"}"#
        )
        .0,
        401
    );
    let (status, answer) = send("app-key", "app-secret", "/apps/nope/events", now, body);
    assert_eq!((status, answer["error"].is_string()), (404, true));
    assert_eq!(
        sim.http("POST", "/apps/app-id/events", "", body.as_bytes())
            .0,
        401
    );
}

#[test]
fn one_apps_key_is_refused_on_another_apps_path() {
    let mut config = ferrocast_engine::Config::default();
    let mut other = config.apps[0].clone();
    other.id = "2".into();
    other.key = "key-2".into();
    other.secret = "secret-2".into();
    config.apps.push(other);
    let mut sim = Simulator::new(config, SEED);
    let body = r#"{"name":"e","channel":"c","data":"d"}"#;
    let now = sim.moment().unix_ms / 1000;

    let query = signed_query(
        "app-key",
        "app-secret",
        "POST",
        "/apps/2/events",
        &[],
        body.as_bytes(),
        now,
    );
    let (status, answer) = sim.http("POST", "/apps/2/events", &query, body.as_bytes());

    assert_eq!(status, 401, "{answer}");
    assert_eq!(sim.signed_http("POST", "/apps/2/events", &[], body).0, 200);
}

#[test]
fn disabled_apps_answer_403_after_a_valid_signature() {
    let mut sim = sim_with_app(|app| app.enabled = false);
    assert_eq!(
        post(
            &mut sim,
            "/apps/app-id/events",
            json!({"name": "e", "channel": "c", "data": "d"})
        )
        .0,
        403
    );
    assert_eq!(sim.http("GET", "/up/app-id", "", b"").0, 503);
}

#[test]
fn limits_answer_400_and_413_with_a_reason() {
    let mut sim = sim();
    let cases = [
        (
            json!({"name": "e", "channel": "c", "data": "x".repeat(10 * 1024 + 1)}),
            413,
        ),
        (
            json!({"name": "e".repeat(201), "channel": "c", "data": "d"}),
            400,
        ),
        (
            json!({"name": "e", "channels": (0..101).map(|i| format!("c{i}")).collect::<Vec<_>>(), "data": "d"}),
            400,
        ),
        (json!({"name": "e", "data": "d"}), 400),
        (
            json!({"name": "e", "channel": "c", "data": "d", "socket_id": "nope"}),
            400,
        ),
        (
            json!({"name": "e", "channel": "c", "data": "d", "info": "colour"}),
            400,
        ),
    ];
    for (body, status) in cases {
        let answer = post(&mut sim, "/apps/app-id/events", body.clone());
        assert_eq!(answer.0, status, "{body}");
        assert!(answer.1["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    let batch: Vec<Value> = (0..11)
        .map(|_| json!({"name": "e", "channel": "c", "data": "d"}))
        .collect();
    assert_eq!(
        post(
            &mut sim,
            "/apps/app-id/batch_events",
            json!({ "batch": batch })
        )
        .0,
        400
    );
    assert_eq!(
        sim.signed_http("POST", "/apps/app-id/events", &[], "{not json")
            .0,
        400
    );
}

#[test]
fn per_app_rate_limits_answer_429() {
    let mut sim = sim_with_app(|app| {
        app.max_events_per_sec = Some(3);
        app.max_reads_per_sec = Some(2);
    });
    let statuses: Vec<u16> = (0..4)
        .map(|_| {
            post(
                &mut sim,
                "/apps/app-id/events",
                json!({"name": "e", "channel": "c", "data": "d"}),
            )
            .0
        })
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429]);
    let reads: Vec<u16> = (0..3)
        .map(|_| get(&mut sim, "/apps/app-id/channels", &[]).0)
        .collect();
    assert_eq!(reads, [200, 200, 429]);
    sim.advance(secs(1));
    assert_eq!(get(&mut sim, "/apps/app-id/channels", &[]).0, 200);
}

#[test]
fn health_and_unknown_routes() {
    let mut sim = sim();
    assert_eq!(sim.http("GET", "/", "", b"").0, 200);
    assert_eq!(sim.http("GET", "/up", "", b"").0, 200);
    assert_eq!(sim.http("GET", "/up/app-id", "", b"").0, 200);
    assert_eq!(sim.http("GET", "/up/nope", "", b"").0, 404);
    assert_eq!(sim.http("GET", "/elsewhere", "", b"").0, 404);
    assert_eq!(get(&mut sim, "/apps/app-id/events", &[]).0, 405);
    assert_eq!(get(&mut sim, "/apps/app-id/nothing", &[]).0, 404);
}

#[test]
fn head_answers_like_get() {
    let mut sim = sim();
    assert_eq!(sim.http("HEAD", "/", "", b"").0, 200);
    assert_eq!(sim.http("HEAD", "/up/app-id", "", b"").0, 200);
    assert_eq!(sim.http("HEAD", "/ready", "", b"").0, 200);
    assert_eq!(sim.http("HEAD", "/elsewhere", "", b"").0, 404);
}

#[test]
fn a_plain_get_of_the_websocket_path_asks_for_an_upgrade() {
    let mut sim = sim();
    let (status, body) = sim.http("GET", "/app/app-key", "protocol=7", b"");
    assert_eq!(status, 426);
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("WebSocket upgrade"), "{message}");
    // Any key: the upgrade would say whether it is known.
    assert_eq!(sim.http("GET", "/app/unknown", "", b"").0, 426);
    assert_eq!(sim.http("GET", "/app/", "", b"").0, 404);
    assert_eq!(sim.http("GET", "/app/a/b", "", b"").0, 404);
}

#[test]
fn ready_turns_503_once_shutting_down_while_up_stays_200() {
    let mut sim = sim();
    assert_eq!(
        sim.http("GET", "/ready", "", b""),
        (200, json!({"ok": true}))
    );
    sim.input(ferrocast_engine::Input::Shutdown).unwrap();
    assert_eq!(sim.http("GET", "/ready", "", b"").0, 503);
    assert_eq!(sim.http("GET", "/up", "", b"").0, 200);
}

#[test]
fn limits_are_inclusive_at_their_exact_values() {
    let mut sim = sim();
    let at_limits = [
        json!({"name": "e", "channel": "c", "data": "x".repeat(10 * 1024)}),
        json!({"name": "e".repeat(200), "channel": "c", "data": "d"}),
        json!({"name": "e", "channels": (0..100).map(|i| format!("c{i}")).collect::<Vec<_>>(), "data": "d"}),
    ];
    for body in at_limits {
        assert_eq!(
            post(&mut sim, "/apps/app-id/events", body.clone()),
            (200, json!({})),
            "{body}"
        );
    }
    let batch: Vec<Value> = (0..10)
        .map(|_| json!({"name": "e", "channel": "c", "data": "d"}))
        .collect();
    assert_eq!(
        post(
            &mut sim,
            "/apps/app-id/batch_events",
            json!({ "batch": batch })
        ),
        (200, json!({}))
    );
}

#[test]
fn a_batch_item_names_one_channel() {
    let mut sim = sim();
    let body = json!({"batch": [{"name": "e", "channels": ["a", "b"], "data": "d"}]});
    assert_eq!(post(&mut sim, "/apps/app-id/batch_events", body).0, 400);
}
