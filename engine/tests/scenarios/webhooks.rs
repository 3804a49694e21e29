//! Webhooks: which events are sent, when, batched and signed.

use crate::common::*;
use ferrocast_engine::signature::verify_hex;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{Config, WebhookConfig, WebhookDelivery};
use serde_json::{json, Value};
use std::time::Duration;

fn sim_with_hooks(hooks: &[(&str, &[&str])]) -> Simulator {
    let mut config = Config::default();
    config.apps[0].webhooks = hooks
        .iter()
        .map(|(url, types)| WebhookConfig {
            url: url.to_string(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        })
        .collect();
    Simulator::new(config, SEED)
}

/// Lets the batch window pass and returns the events of every delivery, checking each signature.
fn flushed(sim: &mut Simulator) -> Vec<(String, Value)> {
    sim.advance(Duration::from_millis(300));
    sim.take_webhooks()
        .into_iter()
        .flat_map(|d| checked_events(&d))
        .collect()
}

fn checked_events(delivery: &WebhookDelivery) -> Vec<(String, Value)> {
    let header = |name: &str| {
        delivery
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(header("X-Pusher-Key"), "app-key");
    assert!(verify_hex(
        "app-secret",
        &delivery.body,
        &header("X-Pusher-Signature")
    ));
    let body: Value = serde_json::from_slice(&delivery.body).unwrap();
    assert!(body["time_ms"].as_u64().unwrap() >= ferrocast_engine::driver::FAKE_EPOCH_UNIX_MS);
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (delivery.url.clone(), e.clone()))
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, e)| e["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn occupied_then_vacated_after_the_delay_in_one_signed_batch_each() {
    let mut sim = sim_with_hooks(&[("http://hooks.test/a", &[])]);
    let a = open(&mut sim);
    subscribe(&mut sim, a, "news");
    assert!(sim.take_webhooks().is_empty(), "batched, not sent at once");
    sim.advance(Duration::from_millis(200));
    assert!(sim.take_webhooks().is_empty(), "the batch window is 250 ms");

    let events = flushed(&mut sim);
    assert_eq!(
        events,
        [(
            "http://hooks.test/a".into(),
            json!({"name": "channel_occupied", "channel": "news"})
        )]
    );

    sim.disconnect(a);
    sim.advance(secs(2));
    assert!(
        sim.take_webhooks().is_empty(),
        "vacated waits out the delay"
    );
    sim.advance(secs(2));
    assert_eq!(names(&flushed(&mut sim)), ["channel_vacated"]);
    assert_no_state(&sim);
}

#[test]
fn shutdown_sends_the_held_back_leaves_and_the_batch_at_once() {
    let mut sim = sim_with_hooks(&[("http://hooks.test/a", &[])]);
    join_presence(&mut sim, "presence-room", "u1");
    let b = open(&mut sim);
    subscribe(&mut sim, b, "news");
    assert_eq!(
        names(&flushed(&mut sim)),
        ["channel_occupied", "member_added", "channel_occupied"]
    );
    // Someone else arrives, still inside the batch window when the shutdown comes.
    let c = open(&mut sim);
    subscribe(&mut sim, c, "sport");

    sim.input(ferrocast_engine::Input::Shutdown).unwrap();

    // No time passes: the leave delay and the batch window are not waited out.
    let events: Vec<Value> = sim
        .take_webhooks()
        .iter()
        .flat_map(checked_events)
        .map(|(_, e)| e)
        .collect();
    let mut seen: Vec<String> = events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["name"].as_str().unwrap(),
                e["channel"].as_str().unwrap()
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            "channel_occupied sport",
            "channel_vacated news",
            "channel_vacated presence-room",
            "channel_vacated sport",
            "member_removed presence-room",
        ]
    );
    // Nothing more comes later.
    sim.advance(secs(10));
    assert!(sim.take_webhooks().is_empty());
}

#[test]
fn a_page_reload_within_the_delay_sends_nothing() {
    let mut sim = sim_with_hooks(&[("http://hooks.test/a", &[])]);
    let a = join_presence(&mut sim, "presence-room", "u1");
    assert_eq!(
        names(&flushed(&mut sim)),
        ["channel_occupied", "member_added"]
    );

    sim.disconnect(a);
    sim.advance(secs(1));
    join_presence(&mut sim, "presence-room", "u1");
    sim.advance(secs(10));

    assert!(sim.take_webhooks().is_empty());
}

#[test]
fn member_events_follow_the_users_first_and_last_socket() {
    let mut sim = sim_with_hooks(&[("http://hooks.test/a", &["member_added", "member_removed"])]);
    let tab1 = join_presence(&mut sim, "presence-room", "u1");
    let tab2 = join_presence(&mut sim, "presence-room", "u1");
    assert_eq!(
        flushed(&mut sim)
            .into_iter()
            .map(|(_, e)| e)
            .collect::<Vec<_>>(),
        [json!({"name": "member_added", "channel": "presence-room", "user_id": "u1"})]
    );

    sim.disconnect(tab1);
    sim.advance(secs(5));
    assert!(sim.take_webhooks().is_empty());
    sim.disconnect(tab2);
    sim.advance(secs(5));
    assert_eq!(
        names(
            &sim.take_webhooks()
                .iter()
                .flat_map(checked_events)
                .collect::<Vec<_>>()
        ),
        ["member_removed"]
    );
}

#[test]
fn a_quick_return_is_not_a_second_member_added_even_without_member_removed_wanted() {
    let mut sim = sim_with_hooks(&[("http://hooks.test/a", &["member_added"])]);
    let first = join_presence(&mut sim, "presence-room", "u1");
    assert_eq!(names(&flushed(&mut sim)), ["member_added"]);

    sim.disconnect(first);
    sim.advance(secs(1));
    join_presence(&mut sim, "presence-room", "u1");
    sim.advance(secs(10));

    assert!(sim.take_webhooks().is_empty());
}

#[test]
fn client_events_are_reported_with_the_presence_user_id() {
    let mut sim = sim_with_hooks(&[("http://hooks.test/a", &["client_event"])]);
    let a = join_presence(&mut sim, "presence-room", "u1");
    join_presence(&mut sim, "presence-room", "u2");
    let socket_id = sim.socket_id(a);

    trigger(
        &mut sim,
        a,
        "presence-room",
        "client-typing",
        json!({"on": true}),
    );

    let events: Vec<Value> = flushed(&mut sim).into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        events,
        [
            json!({"name": "client_event", "channel": "presence-room", "event": "client-typing",
                "data": "{\"on\":true}", "socket_id": socket_id, "user_id": "u1"})
        ]
    );
}

#[test]
fn cache_misses_and_subscription_counts_are_reported() {
    let mut sim = sim_with_hooks(&[("http://hooks.test/a", &["cache_miss", "subscription_count"])]);
    let a = open(&mut sim);
    subscribe(&mut sim, a, "cache-x");

    let events: Vec<Value> = flushed(&mut sim).into_iter().map(|(_, e)| e).collect();

    assert_eq!(
        events,
        [
            json!({"name": "cache_miss", "channel": "cache-x"}),
            json!({"name": "subscription_count", "channel": "cache-x", "subscription_count": 1}),
        ]
    );
}

#[test]
fn each_endpoint_gets_only_the_event_types_it_asked_for() {
    let mut sim = sim_with_hooks(&[
        ("http://a.test/", &["channel_occupied"]),
        ("http://b.test/", &["member_added"]),
    ]);
    join_presence(&mut sim, "presence-room", "u1");

    let events = flushed(&mut sim);

    assert_eq!(
        events
            .iter()
            .map(|(url, e)| (url.as_str(), e["name"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("http://a.test/", "channel_occupied"),
            ("http://b.test/", "member_added")
        ]
    );
}

#[test]
fn apps_without_webhooks_keep_no_webhook_state() {
    let mut sim = sim();
    let a = join_presence(&mut sim, "presence-room", "u1");
    sim.disconnect(a);
    sim.advance(secs(5));
    assert!(sim.take_webhooks().is_empty());
    assert_no_state(&sim);
}

#[test]
fn webhook_bookkeeping_is_counted_while_it_lives() {
    let mut sim = sim_with_hooks(&[("http://hooks.test/a", &[])]);
    let entries = |sim: &Simulator| sim.engine().state_counts().webhook_entries;
    let a = join_presence(&mut sim, "presence-room", "u1");
    // Two pending events (occupied, member_added) and the channel reported occupied.
    assert_eq!(entries(&sim), 3);
    flushed(&mut sim);
    assert_eq!(entries(&sim), 1);

    sim.disconnect(a);
    // Reported occupied, a vacate and a member removal waiting out the delay.
    assert_eq!(entries(&sim), 3);
    sim.advance(secs(4));
    assert_eq!(entries(&sim), 0, "everything sent");
}
