//! The admin console's debug feed: events while someone watches, nothing otherwise, and the
//! console's trusted publish.

use crate::common::*;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{DebugKind, Input};
use serde_json::{json, Value};

/// Connects, subscribes to a public and a private channel, relays a client event, publishes
/// through the API and disconnects: one of each kind the feed reports.
fn traffic(sim: &mut Simulator) {
    let alice = open(sim);
    let bob = open(sim);
    subscribe(sim, alice, "news");
    subscribe_private(sim, alice, "private-chat");
    subscribe_private(sim, bob, "private-chat");
    trigger(
        sim,
        alice,
        "private-chat",
        "client-typing",
        json!({"who": "alice"}),
    );
    sim.trigger("news", "headline", "\"hello\"");
    sim.send_json(
        alice,
        json!({"event": "pusher:unsubscribe", "data": {"channel": "news"}}),
    );
    subscribe(sim, bob, "private-without-auth");
    sim.disconnect(alice);
    sim.disconnect(bob);
}

fn watch(sim: &mut Simulator, on: bool) {
    sim.input(Input::Watch { on }).unwrap();
}

#[test]
fn nothing_is_emitted_while_nobody_watches() {
    let mut sim = sim();
    traffic(&mut sim);
    assert_eq!(sim.take_debug(), vec![]);

    watch(&mut sim, true);
    watch(&mut sim, false);
    traffic(&mut sim);
    assert_eq!(
        sim.take_debug(),
        vec![],
        "off again after the last viewer left"
    );
}

#[test]
fn every_kind_of_event_is_emitted_while_watching() {
    let mut sim = sim();
    watch(&mut sim, true);
    traffic(&mut sim);
    let events = sim.take_debug();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        DebugKind::Connected,
        DebugKind::Subscribed,
        DebugKind::ClientEvent,
        DebugKind::ApiPublish,
        DebugKind::Unsubscribed,
        DebugKind::Error,
        DebugKind::Disconnected,
    ] {
        assert!(
            kinds.contains(&kind.as_str()),
            "{kind:?} missing from {kinds:?}"
        );
    }
    assert!(events.iter().all(|e| e.app.as_str() == "app-id"));

    let publish = events
        .iter()
        .find(|e| e.kind == DebugKind::ApiPublish)
        .unwrap();
    assert_eq!(publish.channel.as_deref(), Some("news"));
    assert_eq!(publish.event.as_deref(), Some("headline"));
    assert_eq!(publish.data.as_deref(), Some("\"hello\""));
    assert_eq!(publish.unix_ms, sim.moment().unix_ms);

    let client = events
        .iter()
        .find(|e| e.kind == DebugKind::ClientEvent)
        .unwrap();
    assert_eq!(client.channel.as_deref(), Some("private-chat"));
    assert_eq!(client.event.as_deref(), Some("client-typing"));
    assert!(client.socket_id.is_some());

    let json: Value = serde_json::from_slice(&publish.to_json()).unwrap();
    assert_eq!(json["kind"], "api_publish");
    assert_eq!(json["channel"], "news");
    assert_eq!(json["app"], "app-id");
}

#[test]
fn a_closed_connection_leaves_its_channels_then_disconnects() {
    let mut sim = sim();
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");
    watch(&mut sim, true);
    sim.disconnect(conn);
    let events = sim.take_debug();
    let kinds: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.channel.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        vec![("unsubscribed", Some("news")), ("disconnected", None)]
    );
}

#[test]
fn a_long_payload_is_cut_in_the_preview() {
    let mut sim = sim();
    watch(&mut sim, true);
    let data = "x".repeat(5000);
    sim.trigger("news", "big", &data);
    let events = sim.take_debug();
    let preview = events[0].data.as_deref().unwrap();
    assert_eq!(
        preview.chars().count(),
        201,
        "200 characters and an ellipsis"
    );
    assert!(preview.ends_with('…'));
}

#[test]
fn webhooks_queued_are_reported() {
    let mut sim = sim_with_app(|app| {
        app.webhooks = vec![ferrocast_engine::WebhookConfig {
            url: "http://hooks.test/".into(),
            event_types: vec![],
            ..Default::default()
        }];
    });
    watch(&mut sim, true);
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");
    sim.advance(secs(5));
    let events = sim.take_debug();
    let hook = events
        .iter()
        .find(|e| e.kind == DebugKind::WebhookQueued)
        .expect("the channel_occupied webhook");
    assert!(hook.data.as_deref().unwrap().contains("channel_occupied"));
}

#[test]
fn the_console_publishes_without_a_signature() {
    let mut sim = sim();
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");
    let body = json!({"name": "test", "channel": "news", "data": "{\"n\":1}"}).to_string();

    let (status, _) = sim.admin_publish("app-id", &body);
    assert_eq!(status, 200);
    assert_eq!(sim.take_events(conn), vec!["test".to_owned()]);

    let (status, answer) = sim.admin_publish("no-such-app", &body);
    assert_eq!(status, 404, "{answer}");
    let (status, _) = sim.admin_publish("app-id", "{\"name\":\"test\"}");
    assert_eq!(status, 400, "validated as the HTTP API validates");
}

#[test]
fn the_snapshot_lists_occupied_channels_with_their_counts() {
    let mut sim = sim();
    let alice = open(&mut sim);
    let bob = open(&mut sim);
    subscribe(&mut sim, alice, "news");
    subscribe(&mut sim, bob, "news");
    join_presence(&mut sim, "presence-room", "ann");

    let snapshot: Value = serde_json::from_slice(&sim.engine().console_snapshot()).unwrap();
    let app = &snapshot["apps"][0];
    assert_eq!(app["id"], "app-id");
    assert_eq!(app["connections"], 3);
    assert_eq!(
        app["channels"],
        json!([
            {"name": "news", "subscribers": 2, "members": null},
            {"name": "presence-room", "subscribers": 1, "members": 1},
        ])
    );
}
