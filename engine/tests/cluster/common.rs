//! Helpers shared by the cluster scenarios.

use ferrocast_engine::cluster::sim::ClusterSim;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{Config, ConnId};
use serde_json::{json, Value};
use std::time::Duration;

/// A cluster of `count` nodes on the default config, with client events enabled.
pub(crate) fn cluster(count: usize) -> ClusterSim {
    cluster_with(count, |_| {})
}

/// A cluster whose config `edit` adjusts.
pub(crate) fn cluster_with(count: usize, edit: impl FnOnce(&mut Config)) -> ClusterSim {
    let mut config = Config::default();
    config.apps[0].client_events = true;
    edit(&mut config);
    ClusterSim::new(config, count, 42)
}

/// Milliseconds.
pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Lets the bus deliver everything in flight (a few bus delays).
pub(crate) fn settle(cluster: &mut ClusterSim) {
    cluster.run_for(ms(50));
}

/// Connects to the default app and consumes the welcome frame.
pub(crate) fn open(sim: &mut Simulator) -> ConnId {
    let conn = sim.connect("app-key");
    assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);
    conn
}

/// Subscribes to a channel that needs no auth; returns the events received.
pub(crate) fn subscribe(sim: &mut Simulator, conn: ConnId, channel: &str) -> Vec<String> {
    let data = if channel.starts_with("private-") {
        json!({ "channel": channel, "auth": sim.private_auth(conn, channel) })
    } else {
        json!({ "channel": channel })
    };
    sim.send_json(conn, json!({"event": "pusher:subscribe", "data": data}));
    sim.take_events(conn)
}

/// Opens a connection on node `node` and joins `channel` as `user`; returns it and the
/// roster ids it was given once the join was acknowledged.
pub(crate) fn join_presence(
    cluster: &mut ClusterSim,
    node: usize,
    channel: &str,
    user: &str,
) -> (ConnId, Vec<String>) {
    let conn = open(cluster.node(node));
    let ids = subscribe_presence(cluster, node, conn, channel, user);
    (conn, ids)
}

/// Joins `channel` as `user` on an open connection of node `node`; returns the roster ids
/// it was given once acknowledged (a cluster node answers at the join's bus echo).
pub(crate) fn subscribe_presence(
    cluster: &mut ClusterSim,
    node: usize,
    conn: ConnId,
    channel: &str,
    user: &str,
) -> Vec<String> {
    send_presence_subscribe(cluster.node(node), conn, channel, user);
    await_roster(cluster, node, conn)
}

/// Sends `conn`'s subscription to `channel` as `user`, without waiting for the answer.
pub(crate) fn send_presence_subscribe(
    sim: &mut Simulator,
    conn: ConnId,
    channel: &str,
    user: &str,
) {
    let channel_data = json!({ "user_id": user, "user_info": { "name": user } }).to_string();
    let auth = sim.presence_auth(conn, channel, &channel_data);
    sim.send_json(
        conn,
        json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": channel_data}}),
    );
}

/// Lets the bus run (1 ms at a time, at most 1 s) until `conn` on node `node` is told
/// `subscription_succeeded`; returns the roster ids it was given.
pub(crate) fn await_roster(cluster: &mut ClusterSim, node: usize, conn: ConnId) -> Vec<String> {
    let mut replies = Vec::new();
    for _ in 0..1_000 {
        replies.extend(cluster.node(node).take(conn));
        if let Some(succeeded) = replies
            .iter()
            .find(|m| m.event == "pusher_internal:subscription_succeeded")
        {
            let ids = succeeded.data["presence"]["ids"].as_array().expect("ids");
            return ids
                .iter()
                .map(|v| v.as_str().expect("string id").to_owned())
                .collect();
        }
        cluster.run_for(ms(1));
    }
    panic!("no subscription_succeeded within 1 s: {replies:?}");
}

/// The member events `conn` received, as `+user` / `-user`.
pub(crate) fn member_events(sim: &mut Simulator, conn: ConnId) -> Vec<String> {
    sim.take(conn)
        .into_iter()
        .filter_map(|m| match m.event.as_str() {
            "pusher_internal:member_added" => Some(format!("+{}", m.data["user_id"].as_str()?)),
            "pusher_internal:member_removed" => Some(format!("-{}", m.data["user_id"].as_str()?)),
            _ => None,
        })
        .collect()
}

/// A signed GET of the default app's HTTP API on `sim`.
pub(crate) fn get(sim: &mut Simulator, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = sim.signed_http("GET", &format!("/apps/app-id{path}"), params, "");
    assert_eq!(status, 200, "{body}");
    body
}

/// A signed POST of `body` to the default app's HTTP API on `sim`.
pub(crate) fn post(sim: &mut Simulator, path: &str, body: Value) -> (u16, Value) {
    sim.signed_http(
        "POST",
        &format!("/apps/app-id{path}"),
        &[],
        &body.to_string(),
    )
}
