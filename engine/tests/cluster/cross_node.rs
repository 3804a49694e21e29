//! Semantics 4, 6 and 7: terminate, send-to-user, watchlists, cache channels, connection quota.

use super::common::*;
use serde_json::json;

fn signin(
    sim: &mut ferrocast_engine::sim::Simulator,
    conn: ferrocast_engine::ConnId,
    user_data: &str,
) -> Vec<String> {
    let auth = sim.signin_auth(conn, user_data);
    sim.send_json(
        conn,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
    );
    sim.take_events(conn)
}

#[test]
fn a_cache_channel_subscriber_on_b_gets_what_was_published_through_a() {
    let mut cluster = cluster(2);
    cluster
        .node(0)
        .trigger("cache-scores", "score", "{\"home\":1}");
    settle(&mut cluster);
    let late = open(cluster.node(1));
    let events = subscribe(cluster.node(1), late, "cache-scores");
    assert_eq!(events, ["pusher_internal:subscription_succeeded", "score"]);
}

#[test]
fn terminate_connections_closes_the_users_sockets_on_every_node() {
    let mut cluster = cluster(2);
    let here = open(cluster.node(0));
    signin(cluster.node(0), here, "{\"id\":\"u\"}");
    let there = open(cluster.node(1));
    signin(cluster.node(1), there, "{\"id\":\"u\"}");
    let bystander = open(cluster.node(1));
    let (status, _) = post(cluster.node(0), "/users/u/terminate_connections", json!({}));
    assert_eq!(status, 200);
    settle(&mut cluster);
    assert!(cluster.node(0).closed(here).is_some());
    assert_eq!(cluster.node(1).closed(there).map(|c| c.0), Some(4009));
    assert!(cluster.node(1).closed(bystander).is_none());
}

#[test]
fn send_to_user_reaches_the_user_on_another_node() {
    let mut cluster = cluster(2);
    let there = open(cluster.node(1));
    signin(cluster.node(1), there, "{\"id\":\"u\"}");
    subscribe(cluster.node(1), there, "#server-to-user-u");
    cluster.node(0).trigger("#server-to-user-u", "hello", "{}");
    settle(&mut cluster);
    assert_eq!(cluster.node(1).take_events(there), ["hello"]);
}

#[test]
fn watchlists_see_users_come_and_go_on_other_nodes() {
    let mut cluster = cluster(2);
    let watcher = open(cluster.node(0));
    signin(
        cluster.node(0),
        watcher,
        "{\"id\":\"w\",\"watchlist\":[\"friend\"]}",
    );
    settle(&mut cluster);
    let friend = open(cluster.node(1));
    signin(cluster.node(1), friend, "{\"id\":\"friend\"}");
    settle(&mut cluster);
    let online = cluster.node(0).take(watcher);
    assert_eq!(online.len(), 1);
    assert_eq!(
        online[0].data,
        json!({"events": [{"name": "online", "user_ids": ["friend"]}]})
    );
    cluster.node(1).disconnect(friend);
    settle(&mut cluster);
    let offline = cluster.node(0).take(watcher);
    assert_eq!(
        offline[0].data,
        json!({"events": [{"name": "offline", "user_ids": ["friend"]}]})
    );
    // A late watcher on the other node is told the friend's state across the cluster.
    let friend = open(cluster.node(1));
    signin(cluster.node(1), friend, "{\"id\":\"friend\"}");
    settle(&mut cluster);
    let late = open(cluster.node(0));
    let auth_data = "{\"id\":\"w2\",\"watchlist\":[\"friend\"]}";
    let auth = cluster.node(0).signin_auth(late, auth_data);
    cluster.node(0).send_json(
        late,
        json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": auth_data}}),
    );
    let report = cluster.node(0).take(late);
    assert_eq!(
        report[1].data,
        json!({"events": [{"name": "online", "user_ids": ["friend"]}]})
    );
}

#[test]
fn max_connections_holds_for_the_cluster() {
    let mut cluster = cluster_with(2, |config| config.apps[0].max_connections = Some(3));
    open(cluster.node(0));
    open(cluster.node(0));
    open(cluster.node(1));
    settle(&mut cluster);
    let refused = cluster.node(1).connect("app-key");
    assert_eq!(cluster.node(1).closed(refused).map(|c| c.0), Some(4004));
}
