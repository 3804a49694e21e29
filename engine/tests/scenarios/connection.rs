//! Opening a connection: path, protocol version, app checks, the welcome frame.

use crate::common::*;
use ferrocast_engine::driver::FakeClock;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{AppConfig, CloseCode, Config, ConnId, Engine, Input, Output, WsRequest};
use serde_json::json;
use std::collections::BTreeSet;

fn is_socket_id(text: &str) -> bool {
    let Some((high, low)) = text.split_once('.') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(high) && digits(low)
}

/// Connects with `path` and `query` and returns what the client saw: events and close.
fn refused(sim: &mut Simulator, path: &str, query: &str) -> (u16, Option<u16>) {
    let conn = sim.connect_to(path, query);
    let messages = sim.take(conn);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].event, "pusher:error");
    let code = messages[0].data["code"].as_u64().map(|c| c as u16);
    let (close, _) = sim.closed(conn).expect("refused connections are closed");
    (close, code)
}

#[test]
fn connection_established_carries_a_socket_id_and_the_activity_timeout() {
    let mut sim = sim();

    let conn = sim.connect("app-key");

    let messages = sim.take(conn);
    assert_eq!(messages.len(), 1);
    let wire = envelope(&messages[0]);
    assert_eq!(wire["event"], "pusher:connection_established");
    assert!(
        wire["data"].is_string(),
        "data must be a JSON string: {wire}"
    );
    let socket_id = messages[0].data["socket_id"].as_str().unwrap();
    assert!(is_socket_id(socket_id), "{socket_id}");
    assert_eq!(socket_id, sim.socket_id(conn));
    assert_eq!(messages[0].data["activity_timeout"], 120);
    assert_eq!(
        messages[0].raw,
        format!(
            r#"{{"event":"pusher:connection_established","data":"{{\"socket_id\":\"{socket_id}\",\"activity_timeout\":120}}"}}"#
        )
    );
    assert_eq!(sim.closed(conn), None);
}

#[test]
fn activity_timeout_is_the_configured_one() {
    let mut sim = sim_with(|c| c.activity_timeout_secs = 45);

    let conn = sim.connect("app-key");

    assert_eq!(sim.take(conn)[0].data["activity_timeout"], 45);
}

#[test]
fn socket_ids_are_unique_and_well_formed() {
    let mut sim = sim();

    let ids: BTreeSet<String> = (0..500)
        .map(|_| {
            let conn = sim.connect("app-key");
            sim.take(conn)[0].data["socket_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();

    assert_eq!(ids.len(), 500);
    assert!(ids.iter().all(|id| is_socket_id(id)));
}

#[test]
fn protocol_may_be_absent_or_a_supported_version() {
    let mut sim = sim();

    for query in [
        "",
        "client=js&version=8.4.0",
        "protocol=7",
        "protocol=5",
        "protocol=6&flash=false",
    ] {
        let conn = sim.connect_to("/app/app-key", query);
        assert_eq!(
            sim.take_events(conn),
            ["pusher:connection_established"],
            "{query:?}"
        );
        assert_eq!(sim.closed(conn), None);
    }
}

#[test]
fn bad_protocol_versions_are_refused_with_their_codes() {
    let mut sim = sim();

    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol="),
        (4008, Some(4008))
    );
    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol=seven"),
        (4006, Some(4006))
    );
    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol=7.1"),
        (4006, Some(4006))
    );
    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol=8"),
        (4007, Some(4007))
    );
    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol=4"),
        (4007, Some(4007))
    );
    assert_no_state(&sim);
}

#[test]
fn paths_other_than_app_key_are_refused_with_4005() {
    let mut sim = sim();

    for path in [
        "/",
        "/app",
        "/app/",
        "/apps/app-key",
        "/app/app-key/extra",
        "/ws/app/app-key",
    ] {
        assert_eq!(
            refused(&mut sim, path, "protocol=7"),
            (4005, Some(4005)),
            "{path}"
        );
    }
}

#[test]
fn path_prefix_is_required_when_configured() {
    let mut sim = sim_with(|c| c.path_prefix = "/ws".into());

    let conn = sim.connect_to("/ws/app/app-key", "protocol=7");
    assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);

    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol=7"),
        (4005, Some(4005))
    );
    assert_eq!(
        refused(&mut sim, "/wsapp/app-key", "protocol=7"),
        (4005, Some(4005))
    );
}

#[test]
fn unknown_app_key_gets_4001_error_then_close() {
    let mut sim = sim();

    assert_eq!(
        refused(&mut sim, "/app/no-such-key", "protocol=7"),
        (4001, Some(4001))
    );
    assert_no_state(&sim);
}

#[test]
fn disabled_app_gets_4003_error_then_close() {
    let mut sim = sim_with_app(|app| app.enabled = false);

    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol=7"),
        (4003, Some(4003))
    );
    assert_no_state(&sim);
}

#[test]
fn an_app_requiring_tls_refuses_plain_connections_with_4000_and_serves_tls_ones() {
    let mut sim = sim_with_app(|app| app.require_tls = true);

    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol=7"),
        (4000, Some(4000))
    );
    assert_no_state(&sim);
    let secure = sim.connect_over("/app/app-key", "protocol=7", true);
    assert_eq!(sim.take_events(secure), ["pusher:connection_established"]);
    assert_eq!(sim.closed(secure), None);
}

#[test]
fn plain_connections_are_served_when_tls_is_not_required() {
    let mut sim = sim();

    let plain = sim.connect_over("/app/app-key", "protocol=7", false);

    assert_eq!(sim.take_events(plain), ["pusher:connection_established"]);
}

#[test]
fn connections_over_the_quota_get_4004_and_a_close_frees_a_place() {
    let mut sim = sim_with_app(|app| app.max_connections = Some(2));
    let first = open(&mut sim);
    let _second = open(&mut sim);

    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol=7"),
        (4004, Some(4004))
    );

    sim.disconnect(first);
    let third = sim.connect("app-key");
    assert_eq!(sim.take_events(third), ["pusher:connection_established"]);
    assert_eq!(
        refused(&mut sim, "/app/app-key", "protocol=7"),
        (4004, Some(4004))
    );
}

#[test]
fn quota_is_per_app() {
    let mut config = Config::default();
    config.apps[0].max_connections = Some(1);
    config.apps.push(AppConfig {
        id: "other-id".into(),
        key: "other-key".into(),
        secret: "other-secret".into(),
        ..AppConfig::default()
    });
    let mut sim = Simulator::new(config, SEED);
    let _full = open(&mut sim);

    let other = sim.connect("other-key");

    assert_eq!(sim.take_events(other), ["pusher:connection_established"]);
    assert_eq!(refused(&mut sim, "/app/app-key", ""), (4004, Some(4004)));
}

#[test]
fn refusal_is_an_error_frame_then_a_close_with_the_same_code() {
    let mut engine = Engine::new(Config::default(), SEED);
    let at = FakeClock::new().now();
    let request = WsRequest {
        path: "/app/nope".into(),
        query: "protocol=7".into(),
        origin: None,
        peer: None,
        secure: false,
    };

    engine
        .handle_input(
            at,
            Input::Opened {
                conn: ConnId(9),
                request,
            },
        )
        .unwrap();

    let Output::Send { conn, frame } = engine.poll_output() else {
        panic!("expected the pusher:error frame first");
    };
    assert_eq!(conn, ConnId(9));
    let error: serde_json::Value = serde_json::from_slice(frame.payload()).unwrap();
    assert_eq!(error["event"], "pusher:error");
    assert_eq!(error["data"]["code"], 4001);
    assert!(error["data"]["message"].as_str().unwrap().contains("nope"));
    match engine.poll_output() {
        Output::Close { conn, code, .. } => {
            assert_eq!((conn, code), (ConnId(9), CloseCode::APP_NOT_FOUND))
        }
        other => panic!("expected the close, got {other:?}"),
    }
    assert!(matches!(engine.poll_output(), Output::Notice(_)));
    assert_eq!(engine.poll_output(), Output::Timeout(None));
    // The refused connection never existed for the engine.
    assert_eq!(
        engine.handle_input(at, Input::Closed { conn: ConnId(9) }),
        Err(ferrocast_engine::ApiMisuse::UnknownConnection(ConnId(9)))
    );
}

#[test]
fn apps_are_isolated_from_each_other() {
    let mut config = Config::default();
    config.apps.push(AppConfig {
        id: "other-id".into(),
        key: "other-key".into(),
        secret: "other-secret".into(),
        ..AppConfig::default()
    });
    let mut sim = Simulator::new(config, SEED);
    let alice = open(&mut sim);
    let mallory = sim.connect("other-key");
    sim.take(mallory);
    subscribe_private(&mut sim, alice, "private-room");
    subscribe_private(&mut sim, mallory, "private-room");

    trigger(&mut sim, mallory, "private-room", "client-hi", json!({}));
    trigger(&mut sim, alice, "private-room", "client-hi", json!({}));

    assert!(sim.take(alice).is_empty());
    assert!(sim.take(mallory).is_empty());
}

#[test]
fn a_signature_from_another_apps_secret_is_refused() {
    let mut config = Config::default();
    config.apps.push(AppConfig {
        id: "other-id".into(),
        key: "other-key".into(),
        secret: "other-secret".into(),
        ..AppConfig::default()
    });
    let mut sim = Simulator::new(config, SEED);
    let conn = open(&mut sim);
    let message = format!("{}:private-room", sim.socket_id(conn));
    let foreign =
        ferrocast_engine::signature::client_auth("other-key", "other-secret", message.as_bytes());
    let forged_key =
        ferrocast_engine::signature::client_auth("app-key", "other-secret", message.as_bytes());

    for auth in [foreign, forged_key] {
        let replies = subscribe_with(
            &mut sim,
            conn,
            json!({"channel": "private-room", "auth": auth}),
        );
        assert_subscription_error(&replies, "private-room", "AuthError", 401);
    }
}

#[test]
fn socket_ids_stay_unique_across_many_connections() {
    let mut sim = sim();
    let ids: BTreeSet<String> = (0..300)
        .map(|_| {
            let conn = open(&mut sim);
            sim.socket_id(conn)
        })
        .collect();
    assert_eq!(ids.len(), 300);
}
