//! Helpers shared by the scenario tests: a simulator per test, and the client steps every
//! scenario repeats (connect, subscribe, sign in) so the tests read as the conversation.
#![allow(dead_code)]

use ferrocast_engine::sim::{Message, Simulator};
use ferrocast_engine::{AppConfig, Config, ConnId, StateCounts};
use serde_json::{json, Value};
use std::time::Duration;

/// The seed every scenario uses unless it is about seeds.
pub(crate) const SEED: u64 = 7;

/// A simulator serving the default app (`app-key` / `app-secret`).
pub(crate) fn sim() -> Simulator {
    Simulator::new(Config::default(), SEED)
}

/// A simulator whose one app is adjusted by `edit`.
pub(crate) fn sim_with_app(edit: impl FnOnce(&mut AppConfig)) -> Simulator {
    let mut config = Config::default();
    edit(&mut config.apps[0]);
    Simulator::new(config, SEED)
}

/// A simulator whose server-wide settings are adjusted by `edit`.
pub(crate) fn sim_with(edit: impl FnOnce(&mut Config)) -> Simulator {
    let mut config = Config::default();
    edit(&mut config);
    Simulator::new(config, SEED)
}

/// `n` whole seconds.
pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Connects to the default app and consumes the welcome frame.
pub(crate) fn open(sim: &mut Simulator) -> ConnId {
    let conn = sim.connect("app-key");
    assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);
    conn
}

/// The whole frame as JSON, to check what the wire carries (e.g. `data` as a string).
pub(crate) fn envelope(message: &Message) -> Value {
    serde_json::from_str(&message.raw).expect("the engine sends JSON")
}

/// Sends `pusher:subscribe` with the given extra fields and returns what the client got.
pub(crate) fn subscribe_with(sim: &mut Simulator, conn: ConnId, data: Value) -> Vec<Message> {
    sim.send_json(conn, json!({"event": "pusher:subscribe", "data": data}));
    sim.take(conn)
}

/// Subscribes to a channel that needs no auth.
pub(crate) fn subscribe(sim: &mut Simulator, conn: ConnId, channel: &str) -> Vec<Message> {
    subscribe_with(sim, conn, json!({ "channel": channel }))
}

/// Subscribes to a private (or encrypted) channel with a valid signature.
pub(crate) fn subscribe_private(sim: &mut Simulator, conn: ConnId, channel: &str) -> Vec<Message> {
    let auth = sim.private_auth(conn, channel);
    subscribe_with(sim, conn, json!({ "channel": channel, "auth": auth }))
}

/// Subscribes to a presence channel with `channel_data` signed by the backend.
pub(crate) fn subscribe_presence(
    sim: &mut Simulator,
    conn: ConnId,
    channel: &str,
    channel_data: &str,
) -> Vec<Message> {
    let auth = sim.presence_auth(conn, channel, channel_data);
    subscribe_with(
        sim,
        conn,
        json!({ "channel": channel, "auth": auth, "channel_data": channel_data }),
    )
}

/// `{"user_id": id, "user_info": {"name": name}}` as the backend would sign it.
pub(crate) fn member(id: &str, name: &str) -> String {
    json!({ "user_id": id, "user_info": { "name": name } }).to_string()
}

/// Joins a presence channel as a fresh connection; consumes its replies.
pub(crate) fn join_presence(sim: &mut Simulator, channel: &str, user: &str) -> ConnId {
    let conn = open(sim);
    let replies = subscribe_presence(sim, conn, channel, &member(user, user));
    assert_eq!(replies[0].event, "pusher_internal:subscription_succeeded");
    conn
}

/// Signs in with `user_data` signed by the backend; returns what the client got.
pub(crate) fn signin(sim: &mut Simulator, conn: ConnId, user_data: &str) -> Vec<Message> {
    let auth = sim.signin_auth(conn, user_data);
    sim.send_json(
        conn,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    );
    sim.take(conn)
}

/// Sends a client event and returns nothing; read inboxes afterwards.
pub(crate) fn trigger(sim: &mut Simulator, conn: ConnId, channel: &str, event: &str, data: Value) {
    sim.send_json(
        conn,
        json!({"event": event, "channel": channel, "data": data}),
    );
}

/// Asserts `messages` is exactly one `pusher:error` with `code` and returns its message text.
pub(crate) fn assert_error(messages: &[Message], code: Option<u16>) -> String {
    assert_eq!(
        messages.len(),
        1,
        "expected one pusher:error, got {messages:?}"
    );
    let error = &messages[0];
    assert_eq!(error.event, "pusher:error", "{error:?}");
    assert_eq!(error.channel, None);
    assert_eq!(error.data["code"], json!(code), "{error:?}");
    let text = error.data["message"]
        .as_str()
        .expect("pusher:error carries a message")
        .to_owned();
    assert!(!text.is_empty());
    text
}

/// Asserts `messages` is exactly one `pusher:subscription_error` on `channel`; returns its data.
pub(crate) fn assert_subscription_error(
    messages: &[Message],
    channel: &str,
    kind: &str,
    status: u16,
) -> Value {
    assert_eq!(
        messages.len(),
        1,
        "expected one subscription error, got {messages:?}"
    );
    let error = &messages[0];
    assert_eq!(error.event, "pusher:subscription_error");
    assert_eq!(error.channel.as_deref(), Some(channel));
    assert_eq!(error.data["type"], kind, "{error:?}");
    assert_eq!(error.data["status"], status, "{error:?}");
    assert!(error.data["error"].as_str().is_some_and(|e| !e.is_empty()));
    error.data.clone()
}

/// Whether a connection still answers: `pusher:ping` gets `pusher:pong`.
pub(crate) fn assert_alive(sim: &mut Simulator, conn: ConnId) {
    assert_eq!(sim.closed(conn), None);
    sim.send_json(conn, json!({"event": "pusher:ping", "data": {}}));
    assert_eq!(sim.take_events(conn), ["pusher:pong"]);
}

/// Asserts the engine holds no per-connection state at all.
pub(crate) fn assert_no_state(sim: &Simulator) {
    assert_eq!(sim.engine().state_counts(), StateCounts::default());
}
