//! Semantics 8 and 9: a node dies, the bus goes away, and the cluster heals.

use super::common::*;
use serde_json::json;

#[test]
fn a_dead_nodes_members_and_counts_are_dropped_once() {
    let mut cluster = cluster(3);
    let (watcher, _) = join_presence(&mut cluster, 0, "presence-room", "w");
    let (_doomed, _) = join_presence(&mut cluster, 2, "presence-room", "ghost");
    let sub = open(cluster.node(2));
    subscribe(cluster.node(2), sub, "news");
    settle(&mut cluster);
    assert_eq!(member_events(cluster.node(0), watcher), ["+ghost"]);

    cluster.kill(2);
    // node_timeout (5 s) plus a heartbeat.
    cluster.run_for(ms(6_100));

    assert_eq!(member_events(cluster.node(0), watcher), ["-ghost"]);
    for node in 0..2 {
        let users = get(cluster.node(node), "/channels/presence-room/users", &[]);
        assert_eq!(users, json!({"users": [{"id": "w"}]}));
        assert_eq!(
            get(cluster.node(node), "/channels/news", &[]),
            json!({"occupied": false})
        );
    }
    cluster.run_for(ms(10_000));
    assert!(
        member_events(cluster.node(0), watcher).is_empty(),
        "no ghost ever after"
    );
}

#[test]
fn a_restarted_node_gets_the_clusters_state() {
    let mut cluster = cluster(3);
    join_presence(&mut cluster, 0, "presence-room", "alice");
    settle(&mut cluster);
    cluster.kill(2);
    cluster.run_for(ms(6_100));
    cluster.restart(2);
    settle(&mut cluster);
    let (_, ids) = join_presence(&mut cluster, 2, "presence-room", "carol");
    assert_eq!(ids, ["alice", "carol"]);
}

#[test]
fn a_lost_message_is_repaired_by_a_snapshot() {
    let mut cluster = cluster(2);
    let (watcher, _) = join_presence(&mut cluster, 0, "presence-room", "w");
    settle(&mut cluster);
    member_events(cluster.node(0), watcher);
    cluster.set_loss(100);
    let u = open(cluster.node(1));
    send_presence_subscribe(cluster.node(1), u, "presence-room", "u");
    cluster.run_for(ms(20));
    cluster.set_loss(0);
    // The next message from node 1 (its heartbeat) shows the gap; node 0 asks for a snapshot.
    cluster.run_for(ms(1_500));
    assert_eq!(member_events(cluster.node(0), watcher), ["+u"]);
    // The joiner whose echo was lost is answered by the repair, with the whole roster.
    assert_eq!(await_roster(&mut cluster, 1, u), ["u", "w"]);
    assert!(cluster.node(0).engine().bus_stats().gaps >= 1);
}

#[test]
fn while_the_bus_is_down_each_node_serves_its_own_and_heals_with_the_differences() {
    let mut cluster = cluster(2);
    let (a_watch, _) = join_presence(&mut cluster, 0, "presence-room", "wa");
    let (b_watch, _) = join_presence(&mut cluster, 1, "presence-room", "wb");
    let (stays, _) = join_presence(&mut cluster, 1, "presence-room", "stays");
    let (leaves, _) = join_presence(&mut cluster, 1, "presence-room", "leaves");
    settle(&mut cluster);
    member_events(cluster.node(0), a_watch);
    member_events(cluster.node(1), b_watch);

    cluster.partition(0);
    cluster.partition(1);
    // Local presence and local fan-out go on.
    let (_comes, _) = join_presence(&mut cluster, 1, "presence-room", "comes");
    cluster.node(1).disconnect(leaves);
    let local = open(cluster.node(0));
    subscribe(cluster.node(0), local, "news");
    cluster.node(0).trigger("news", "update", "{}");
    assert_eq!(cluster.node(0).take_events(local), ["update"]);
    assert_eq!(
        member_events(cluster.node(1), b_watch),
        ["+comes", "-leaves"]
    );
    // Far longer than node_timeout: nobody is declared dead from behind a broken link.
    cluster.run_for(ms(8_000));
    assert!(member_events(cluster.node(0), a_watch).is_empty());

    cluster.heal(0);
    cluster.heal(1);
    settle(&mut cluster);
    assert_eq!(
        member_events(cluster.node(0), a_watch),
        ["+comes", "-leaves"]
    );
    assert!(
        member_events(cluster.node(1), b_watch).is_empty(),
        "no duplicates"
    );
    let _ = stays;
    let users = get(cluster.node(0), "/channels/presence-room/users", &[]);
    assert_eq!(
        users,
        json!({"users": [{"id": "comes"}, {"id": "stays"}, {"id": "wa"}, {"id": "wb"}]})
    );
}

#[test]
fn a_lost_echo_of_its_own_change_is_repaired_even_when_no_peer_saw_a_gap() {
    // A node alone on the bus: nobody else can notice that its own message went missing.
    let mut cluster = cluster(1);
    let (watcher, _) = join_presence(&mut cluster, 0, "presence-room", "w");
    settle(&mut cluster);
    member_events(cluster.node(0), watcher);
    cluster.set_loss(100);
    let u = open(cluster.node(0));
    send_presence_subscribe(cluster.node(0), u, "presence-room", "u");
    cluster.run_for(ms(20));
    assert!(
        cluster.node(0).take_events(u).is_empty(),
        "answered before its echo"
    );
    cluster.set_loss(0);
    // Its next heartbeat's echo shows the gap in its own sequence.
    cluster.run_for(ms(1_500));
    assert_eq!(member_events(cluster.node(0), watcher), ["+u"]);
    assert_eq!(await_roster(&mut cluster, 0, u), ["u", "w"]);
    let users = get(cluster.node(0), "/channels/presence-room/users", &[]);
    assert_eq!(users, json!({"users": [{"id": "u"}, {"id": "w"}]}));
}

#[test]
fn a_lost_snapshot_request_is_asked_again_until_answered() {
    // With this seed, node 0 sees the gap left by node 1's lost join, and its request for
    // node 1's snapshot is itself lost; node 1's later messages follow on without a gap.
    let mut config = ferrocast_engine::Config::default();
    config.apps[0].client_events = true;
    let mut cluster = ferrocast_engine::cluster::sim::ClusterSim::new(config, 3, 28);
    join_presence(&mut cluster, 0, "presence-room", "w");
    settle(&mut cluster);
    cluster.set_loss(30);
    join_presence(&mut cluster, 1, "presence-room", "u");
    cluster.run_for(ms(1_100));
    cluster.set_loss(0);
    cluster.run_for(ms(3_000));
    for node in 0..3 {
        let users = get(cluster.node(node), "/channels/presence-room/users", &[]);
        assert_eq!(
            users,
            json!({"users": [{"id": "u"}, {"id": "w"}]}),
            "node {node}"
        );
    }
}
