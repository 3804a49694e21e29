//! Semantic 3: channel queries on any node answer for the cluster (one bus delay behind).

use super::common::*;
use serde_json::json;

#[test]
fn channel_queries_count_every_nodes_subscribers() {
    let mut cluster = cluster(3);
    for node in 0..3 {
        for _ in 0..=node {
            let conn = open(cluster.node(node));
            subscribe(cluster.node(node), conn, "news");
        }
    }
    let (_alice, _) = join_presence(&mut cluster, 0, "presence-room", "alice");
    let (_bob, _) = join_presence(&mut cluster, 1, "presence-room", "bob");
    let (_bob2, _) = join_presence(&mut cluster, 2, "presence-room", "bob");
    settle(&mut cluster);

    for node in 0..3 {
        let sim = cluster.node(node);
        let news = get(sim, "/channels/news", &[("info", "subscription_count")]);
        assert_eq!(news, json!({"occupied": true, "subscription_count": 6}));
        let room = get(
            sim,
            "/channels/presence-room",
            &[("info", "user_count,subscription_count")],
        );
        assert_eq!(
            room,
            json!({"occupied": true, "user_count": 2, "subscription_count": 3})
        );
        let users = get(sim, "/channels/presence-room/users", &[]);
        assert_eq!(users, json!({"users": [{"id": "alice"}, {"id": "bob"}]}));
        let list = get(
            sim,
            "/channels",
            &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        );
        assert_eq!(
            list,
            json!({"channels": {"presence-room": {"user_count": 2}}})
        );
        let all = get(sim, "/channels", &[]);
        assert_eq!(all, json!({"channels": {"news": {}, "presence-room": {}}}));
    }
}

#[test]
fn publish_info_answers_for_the_cluster() {
    let mut cluster = cluster(2);
    let remote = open(cluster.node(1));
    subscribe(cluster.node(1), remote, "news");
    settle(&mut cluster);
    let body = json!({"name": "e", "channel": "news", "data": "x", "info": "subscription_count"});
    let (status, answer) = post(cluster.node(0), "/events", body);
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"channels": {"news": {"subscription_count": 1}}})
    );
}

#[test]
fn a_channel_left_on_one_node_stays_occupied_while_another_has_subscribers() {
    let mut cluster = cluster(2);
    let a = open(cluster.node(0));
    subscribe(cluster.node(0), a, "news");
    let b = open(cluster.node(1));
    subscribe(cluster.node(1), b, "news");
    settle(&mut cluster);
    cluster.node(0).disconnect(a);
    settle(&mut cluster);
    let info = get(cluster.node(0), "/channels/news", &[]);
    assert_eq!(info, json!({"occupied": true}));
    cluster.node(1).disconnect(b);
    settle(&mut cluster);
    assert_eq!(
        get(cluster.node(0), "/channels/news", &[]),
        json!({"occupied": false})
    );
}
