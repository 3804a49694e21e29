//! Semantic 2: one roster per channel for the whole cluster, member events exactly once.

use super::common::*;

#[test]
fn subscription_succeeded_lists_the_members_of_every_node() {
    let mut cluster = cluster(3);
    let (_a, _) = join_presence(&mut cluster, 0, "presence-room", "alice");
    let (_b, _) = join_presence(&mut cluster, 1, "presence-room", "bob");
    settle(&mut cluster);
    let (_c, ids) = join_presence(&mut cluster, 2, "presence-room", "carol");
    assert_eq!(ids, ["alice", "bob", "carol"]);
}

#[test]
fn a_user_with_tabs_on_two_nodes_is_one_member_announced_once() {
    let mut cluster = cluster(3);
    let observers: Vec<_> = (0..3)
        .map(|node| {
            (
                node,
                join_presence(&mut cluster, node, "presence-room", &format!("o{node}")).0,
            )
        })
        .collect();
    settle(&mut cluster);
    for (node, conn) in &observers {
        member_events(cluster.node(*node), *conn);
    }

    let (tab1, _) = join_presence(&mut cluster, 0, "presence-room", "u");
    settle(&mut cluster);
    let (tab2, ids) = join_presence(&mut cluster, 1, "presence-room", "u");
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
                join_presence(&mut cluster, node, "presence-room", &format!("o{node}")).0,
            )
        })
        .collect();
    let (old_tab, _) = join_presence(&mut cluster, 0, "presence-room", "u");
    settle(&mut cluster);
    for (node, conn) in &observers {
        member_events(cluster.node(*node), *conn);
    }

    // The new tab opens on node 1 and the old one closes on node 0 within one bus delay.
    let (_new_tab, _) = join_presence(&mut cluster, 1, "presence-room", "u");
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
                join_presence(&mut cluster, node, "presence-room", &format!("o{node}")).0,
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
            join_presence(&mut cluster, node, "presence-room", user).0,
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
    join_presence(&mut cluster, 0, "presence-room", "a");
    join_presence(&mut cluster, 1, "presence-room", "b");
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
    let (_, ids) = join_presence(&mut cluster, 0, "presence-room", "b");
    assert_eq!(ids, ["a", "b"]);
}

#[test]
fn once_a_client_is_told_it_joined_every_later_roster_anywhere_lists_it() {
    let mut cluster = cluster(3);
    // The bus is slower than the gap between one client's answer and the next subscribe.
    cluster.set_delay(ms(20), 0);
    let (_alice, ids) = join_presence(&mut cluster, 0, "presence-room", "alice");
    assert_eq!(ids, ["alice"]);
    let (_bob, ids) = join_presence(&mut cluster, 1, "presence-room", "bob");
    assert_eq!(ids, ["alice", "bob"]);
    let (_carol, ids) = join_presence(&mut cluster, 2, "presence-room", "carol");
    assert_eq!(ids, ["alice", "bob", "carol"]);
}

#[test]
fn a_second_tab_of_a_member_is_answered_with_the_joins_acknowledged_elsewhere() {
    let mut cluster = cluster(2);
    let (_first_tab, _) = join_presence(&mut cluster, 0, "presence-room", "u");
    settle(&mut cluster);
    cluster.set_delay(ms(20), 0);
    let (_bob, ids) = join_presence(&mut cluster, 1, "presence-room", "bob");
    assert_eq!(ids, ["bob", "u"]);
    let (_second_tab, ids) = join_presence(&mut cluster, 0, "presence-room", "u");
    assert_eq!(ids, ["bob", "u"]);
}

#[test]
fn a_waiting_subscriber_hears_nothing_of_the_channel_before_its_roster() {
    let mut cluster = cluster(2);
    cluster.set_delay(ms(20), 0);
    let (_watcher, _) = join_presence(&mut cluster, 0, "presence-room", "w");
    let late = open(cluster.node(1));
    send_presence_subscribe(cluster.node(1), late, "presence-room", "late");
    // An event published, and a member joining, while `late` waits for its echo: the event
    // is ordered before its join, the other member after it.
    cluster.node(0).trigger("presence-room", "before", "{}");
    let (_other, _) = join_presence(&mut cluster, 1, "presence-room", "other");
    settle(&mut cluster);
    let told = cluster.node(1).take(late);
    let names: Vec<&str> = told.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(
        names,
        [
            "pusher_internal:subscription_succeeded",
            "pusher_internal:member_added"
        ],
        "{told:?}"
    );
    assert_eq!(
        told[0].data["presence"]["ids"],
        serde_json::json!(["late", "w"])
    );
    assert_eq!(told[1].data["user_id"], "other");
}

#[test]
fn a_subscriber_that_closes_or_leaves_before_its_echo_is_never_answered() {
    let mut cluster = cluster(2);
    cluster.set_delay(ms(20), 0);
    let (watcher, _) = join_presence(&mut cluster, 0, "presence-room", "w");
    settle(&mut cluster);
    member_events(cluster.node(0), watcher);

    let closes = open(cluster.node(1));
    send_presence_subscribe(cluster.node(1), closes, "presence-room", "closes");
    let leaves = open(cluster.node(1));
    send_presence_subscribe(cluster.node(1), leaves, "presence-room", "leaves");
    cluster.run_for(ms(5));
    // The simulator panics if anything is sent to a closed connection.
    cluster.node(1).disconnect(closes);
    cluster.node(1).send_json(
        leaves,
        serde_json::json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}),
    );
    settle(&mut cluster);
    assert!(cluster.node(1).take_events(leaves).is_empty());
    // Their joins were ordered, so members heard them come and go, balanced.
    let heard = member_events(cluster.node(0), watcher);
    for user in ["closes", "leaves"] {
        let added = heard.iter().filter(|e| **e == format!("+{user}")).count();
        let removed = heard.iter().filter(|e| **e == format!("-{user}")).count();
        assert_eq!((added, removed), (1, 1), "{heard:?}");
    }
    for node in 0..2 {
        let users = get(cluster.node(node), "/channels/presence-room/users", &[]);
        assert_eq!(users, serde_json::json!({"users": [{"id": "w"}]}), "{node}");
    }
    // The connection that left may join again and is answered once.
    assert_eq!(
        subscribe_presence(&mut cluster, 1, leaves, "presence-room", "leaves"),
        ["leaves", "w"]
    );
}

#[test]
fn subscribing_twice_while_waiting_is_answered_once() {
    let mut cluster = cluster(2);
    cluster.set_delay(ms(20), 0);
    let conn = open(cluster.node(0));
    send_presence_subscribe(cluster.node(0), conn, "presence-room", "u");
    send_presence_subscribe(cluster.node(0), conn, "presence-room", "u");
    settle(&mut cluster);
    assert_eq!(
        cluster.node(0).take_events(conn),
        ["pusher_internal:subscription_succeeded"]
    );
}

#[test]
fn the_member_limit_is_decided_in_bus_order_when_joins_race() {
    let mut cluster = cluster_with(3, |config| config.apps[0].max_presence_members = 2);
    cluster.set_delay(ms(20), 0);
    let (a, _) = join_presence(&mut cluster, 0, "presence-room", "a");
    // b and c subscribe on nodes that have not yet applied a's join: each sees room for one.
    let b = open(cluster.node(1));
    send_presence_subscribe(cluster.node(1), b, "presence-room", "b");
    cluster.run_for(ms(1));
    let c = open(cluster.node(2));
    send_presence_subscribe(cluster.node(2), c, "presence-room", "c");
    settle(&mut cluster);
    assert_eq!(
        cluster.node(1).take_events(b),
        ["pusher_internal:subscription_succeeded"]
    );
    assert_eq!(
        cluster.node(2).take_events(c),
        ["pusher:subscription_error"]
    );
    // Nobody ever hears of the refused member.
    assert_eq!(member_events(cluster.node(0), a), ["+b"]);
    for node in 0..3 {
        let users = get(cluster.node(node), "/channels/presence-room/users", &[]);
        assert_eq!(
            users,
            serde_json::json!({"users": [{"id": "a"}, {"id": "b"}]}),
            "node {node}"
        );
    }
}

#[test]
fn a_subscriber_waiting_when_the_bus_goes_down_is_answered_at_once() {
    let mut cluster = cluster(2);
    cluster.set_delay(ms(20), 0);
    let (_other, _) = join_presence(&mut cluster, 1, "presence-room", "other");
    settle(&mut cluster);
    let conn = open(cluster.node(0));
    send_presence_subscribe(cluster.node(0), conn, "presence-room", "u");
    cluster.partition(0);
    // Local mode: the roster it has, without waiting for a bus that is gone.
    let told = cluster.node(0).take(conn);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].event, "pusher_internal:subscription_succeeded");
    assert_eq!(told[0].data["presence"]["count"], 2);
}
