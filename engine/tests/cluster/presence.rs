//! Semantic 2: one roster per channel for the whole cluster, member events exactly once.

use super::common::*;

#[test]
fn subscription_succeeded_lists_the_members_of_every_node() {
    let mut cluster = cluster(3);
    let (_a, _) = join_presence(cluster.node(0), "presence-room", "alice");
    let (_b, _) = join_presence(cluster.node(1), "presence-room", "bob");
    settle(&mut cluster);
    let (_c, ids) = join_presence(cluster.node(2), "presence-room", "carol");
    assert_eq!(ids, ["alice", "bob", "carol"]);
}

#[test]
fn a_user_with_tabs_on_two_nodes_is_one_member_announced_once() {
    let mut cluster = cluster(3);
    let observers: Vec<_> = (0..3)
        .map(|node| {
            (
                node,
                join_presence(cluster.node(node), "presence-room", &format!("o{node}")).0,
            )
        })
        .collect();
    settle(&mut cluster);
    for (node, conn) in &observers {
        member_events(cluster.node(*node), *conn);
    }

    let (tab1, _) = join_presence(cluster.node(0), "presence-room", "u");
    settle(&mut cluster);
    let (tab2, ids) = join_presence(cluster.node(1), "presence-room", "u");
    assert_eq!(ids.iter().filter(|i| *i == "u").count(), 1);
    settle(&mut cluster);
    cluster.node(0).disconnect(tab1);
    settle(&mut cluster);
    for (node, conn) in &observers {
        assert_eq!(
            member_events(cluster.node(*node), *conn),
            ["+u"],
            "node {node}"
        );
    }
    cluster.node(1).disconnect(tab2);
    settle(&mut cluster);
    for (node, conn) in &observers {
        assert_eq!(
            member_events(cluster.node(*node), *conn),
            ["-u"],
            "node {node}"
        );
    }
}

#[test]
fn a_tab_moving_between_nodes_does_not_flap_even_when_the_messages_cross() {
    let mut cluster = cluster(3);
    cluster.set_delay(ms(20), 0);
    let observers: Vec<_> = (0..3)
        .map(|node| {
            (
                node,
                join_presence(cluster.node(node), "presence-room", &format!("o{node}")).0,
            )
        })
        .collect();
    let (old_tab, _) = join_presence(cluster.node(0), "presence-room", "u");
    settle(&mut cluster);
    for (node, conn) in &observers {
        member_events(cluster.node(*node), *conn);
    }

    // The new tab opens on node 1 and the old one closes on node 0 within one bus delay.
    let (_new_tab, _) = join_presence(cluster.node(1), "presence-room", "u");
    cluster.run_for(ms(5));
    cluster.node(0).disconnect(old_tab);
    settle(&mut cluster);

    for (node, conn) in &observers {
        assert!(
            member_events(cluster.node(*node), *conn).is_empty(),
            "node {node} saw a flap"
        );
    }
}

#[test]
fn every_observer_hears_the_same_balanced_story() {
    let mut cluster = cluster(3);
    cluster.set_delay(ms(3), 15);
    let observers: Vec<_> = (0..3)
        .map(|node| {
            (
                node,
                join_presence(cluster.node(node), "presence-room", &format!("o{node}")).0,
            )
        })
        .collect();
    settle(&mut cluster);
    for (node, conn) in &observers {
        member_events(cluster.node(*node), *conn);
    }
    // Tabs of two users open and close on every node, interleaved within bus delays.
    let mut tabs = Vec::new();
    for round in 0..6 {
        let node = round % 3;
        let user = if round % 2 == 0 { "x" } else { "y" };
        tabs.push((
            node,
            join_presence(cluster.node(node), "presence-room", user).0,
        ));
        cluster.run_for(ms(4));
        if round >= 2 {
            let (node, tab) = tabs.remove(0);
            cluster.node(node).disconnect(tab);
        }
    }
    for (node, tab) in tabs {
        cluster.node(node).disconnect(tab);
    }
    settle(&mut cluster);

    let stories: Vec<Vec<String>> = observers
        .iter()
        .map(|(node, conn)| member_events(cluster.node(*node), *conn))
        .collect();
    assert_eq!(stories[0], stories[1]);
    assert_eq!(stories[1], stories[2]);
    for user in ["x", "y"] {
        let added = stories[0]
            .iter()
            .filter(|e| **e == format!("+{user}"))
            .count();
        let removed = stories[0]
            .iter()
            .filter(|e| **e == format!("-{user}"))
            .count();
        assert_eq!(added, removed, "{:?}", stories[0]);
    }
}

#[test]
fn the_member_limit_holds_for_the_cluster() {
    let mut cluster = cluster_with(2, |config| config.apps[0].max_presence_members = 2);
    join_presence(cluster.node(0), "presence-room", "a");
    join_presence(cluster.node(1), "presence-room", "b");
    settle(&mut cluster);
    let late = open(cluster.node(0));
    let channel_data = serde_json::json!({"user_id": "c"}).to_string();
    let auth = cluster
        .node(0)
        .presence_auth(late, "presence-room", &channel_data);
    cluster.node(0).send_json(
        late,
        serde_json::json!({"event": "pusher:subscribe", "data": {"channel": "presence-room", "auth": auth, "channel_data": channel_data}}),
    );
    assert_eq!(
        cluster.node(0).take_events(late),
        ["pusher:subscription_error"]
    );
    // A member already in the roster (on another node) may still open a tab.
    let (_, ids) = join_presence(cluster.node(0), "presence-room", "b");
    assert_eq!(ids, ["a", "b"]);
}
