//! Semantic 1: a publish reaches every eligible subscriber on every node exactly once.

use super::common::*;
use serde_json::json;

#[test]
fn an_http_publish_reaches_every_node_once_in_order() {
    let mut cluster = cluster(3);
    let subscribers: Vec<_> = (0..3)
        .map(|node| {
            let conn = open(cluster.node(node));
            subscribe(cluster.node(node), conn, "news");
            (node, conn)
        })
        .collect();
    cluster.set_delay(ms(1), 10);
    for i in 0..20 {
        cluster
            .node(i % 3)
            .trigger("news", "update", &format!("{i}"));
    }
    settle(&mut cluster);

    for (node, conn) in subscribers {
        let got: Vec<_> = cluster
            .node(node)
            .take(conn)
            .into_iter()
            .filter(|m| m.event == "update")
            .map(|m| m.data.to_string())
            .collect();
        assert_eq!(got.len(), 20, "node {node} got {got:?}");
        // Each origin's publishes keep their order everywhere.
        for origin in 0..3 {
            let from: Vec<_> = got
                .iter()
                .filter(|d| d.parse::<usize>().unwrap() % 3 == origin)
                .collect();
            let mut sorted = from.clone();
            sorted.sort_by_key(|d| d.parse::<usize>().unwrap());
            assert_eq!(from, sorted);
        }
    }
}

#[test]
fn socket_id_exclusion_works_for_a_socket_on_another_node() {
    let mut cluster = cluster(2);
    let excluded = open(cluster.node(1));
    subscribe(cluster.node(1), excluded, "news");
    let other = open(cluster.node(1));
    subscribe(cluster.node(1), other, "news");
    let socket_id = cluster.node(1).socket_id(excluded);

    let body = json!({"name": "update", "channel": "news", "data": "x", "socket_id": socket_id});
    assert_eq!(post(cluster.node(0), "/events", body).0, 200);
    settle(&mut cluster);

    assert!(cluster.node(1).take_events(excluded).is_empty());
    assert_eq!(cluster.node(1).take_events(other), ["update"]);
}

#[test]
fn client_events_reach_other_nodes_members_never_the_sender() {
    let mut cluster = cluster(2);
    let sender = open(cluster.node(0));
    subscribe(cluster.node(0), sender, "private-chat");
    let local = open(cluster.node(0));
    subscribe(cluster.node(0), local, "private-chat");
    let remote = open(cluster.node(1));
    subscribe(cluster.node(1), remote, "private-chat");

    cluster.node(0).send_json(
        sender,
        json!({"event": "client-typing", "channel": "private-chat", "data": {"who": "me"}}),
    );
    settle(&mut cluster);

    assert!(cluster.node(0).take_events(sender).is_empty());
    assert_eq!(cluster.node(0).take_events(local), ["client-typing"]);
    let got = cluster.node(1).take(remote);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event, "client-typing");
    assert_eq!(got[0].data, json!({"who": "me"}));
}

#[test]
fn apps_sharing_the_bus_never_see_each_others_events() {
    let mut cluster = cluster_with(2, |config| {
        let mut other = config.apps[0].clone();
        (other.id, other.key, other.secret) = ("2".into(), "key-2".into(), "secret-2".into());
        config.apps.push(other);
    });
    let other_app = cluster.node(1).connect("key-2");
    cluster.node(1).take(other_app);
    subscribe(cluster.node(1), other_app, "news");
    let same_app = open(cluster.node(1));
    subscribe(cluster.node(1), same_app, "news");

    cluster.node(0).trigger("news", "update", "{}");
    settle(&mut cluster);

    assert!(cluster.node(1).take_events(other_app).is_empty());
    assert_eq!(cluster.node(1).take_events(same_app), ["update"]);
}

#[test]
fn apps_sharing_the_bus_never_see_each_others_members_or_counts() {
    let mut cluster = cluster_with(2, |config| {
        let mut other = config.apps[0].clone();
        (other.id, other.key, other.secret) = ("2".into(), "key-2".into(), "secret-2".into());
        config.apps.push(other);
    });
    let (observer, _) = join_presence(&mut cluster, 0, "presence-room", "watcher");
    settle(&mut cluster);
    member_events(cluster.node(0), observer);

    // The other app's member and subscriber, on the other node, on the same channel names.
    let stranger = cluster.node(1).connect("key-2");
    cluster.node(1).take(stranger);
    let channel_data = json!({"user_id": "stranger"}).to_string();
    let auth = cluster
        .node(1)
        .presence_auth(stranger, "presence-room", &channel_data);
    cluster.node(1).send_json(
        stranger,
        json!({"event": "pusher:subscribe", "data": {"channel": "presence-room", "auth": auth, "channel_data": channel_data}}),
    );
    assert_eq!(await_roster(&mut cluster, 1, stranger), ["stranger"]);
    let subscribed = subscribe(cluster.node(1), stranger, "news");
    assert_eq!(subscribed, ["pusher_internal:subscription_succeeded"]);
    settle(&mut cluster);

    assert!(member_events(cluster.node(0), observer).is_empty());
    for node in 0..2 {
        let users = get(cluster.node(node), "/channels/presence-room/users", &[]);
        assert_eq!(users, json!({"users": [{"id": "watcher"}]}), "node {node}");
        let news = get(
            cluster.node(node),
            "/channels/news",
            &[("info", "subscription_count")],
        );
        assert_eq!(
            news,
            json!({"occupied": false, "subscription_count": 0}),
            "node {node}"
        );
    }
    let (late, ids) = join_presence(&mut cluster, 1, "presence-room", "late");
    assert_eq!(ids, ["late", "watcher"]);
    let _ = late;
}
