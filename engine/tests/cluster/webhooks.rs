//! Semantic 5: webhooks are sent once per cluster, whichever node sends each one.
//!
//! Every test collects the POSTs of every node and checks each event appears exactly once
//! (or not at all) across them, under several seeds of bus delay and jitter.

use super::common::*;
use ferrocast_engine::cluster::sim::ClusterSim;
use ferrocast_engine::{Config, WebhookConfig};
use serde_json::{json, Value};

/// Seeds of the bus's random delays.
const SEEDS: [u64; 4] = [1, 7, 42, 1234];

/// `count` nodes whose app posts every webhook kind (`subscription_count` included), with
/// client events allowed and each delivery delayed 1–16 ms.
fn hooked_cluster(count: usize, seed: u64) -> ClusterSim {
    let mut config = Config::default();
    config.apps[0].client_events = true;
    config.apps[0].webhooks = vec![WebhookConfig {
        url: "http://hooks.test/".into(),
        event_types: vec![
            "channel_occupied".into(),
            "channel_vacated".into(),
            "member_added".into(),
            "member_removed".into(),
            "client_event".into(),
            "cache_miss".into(),
            "subscription_count".into(),
        ],
        ..Default::default()
    }];
    let mut cluster = ClusterSim::new(config, count, seed);
    cluster.set_delay(ms(1), 15);
    cluster
}

/// Every webhook event the cluster sent, as `name channel [user|count]` with the sender's
/// index, in the order the nodes sent them (node by node).
fn hooks(cluster: &mut ClusterSim) -> Vec<(usize, String)> {
    let mut events = Vec::new();
    for (node, delivery) in cluster.take_webhooks() {
        let body: Value = serde_json::from_slice(&delivery.body).expect("JSON body");
        assert!(body["time_ms"].is_u64());
        for event in body["events"].as_array().expect("events") {
            let mut text = format!(
                "{} {}",
                event["name"].as_str().unwrap(),
                event["channel"].as_str().unwrap()
            );
            if let Some(user) = event["user_id"].as_str() {
                text += &format!(" {user}");
            }
            if let Some(count) = event["subscription_count"].as_u64() {
                text += &format!(" {count}");
            }
            events.push((node, text));
        }
    }
    events
}

/// The events without their senders, sorted (for comparing multisets).
fn names(events: &[(usize, String)]) -> Vec<String> {
    let mut names: Vec<String> = events.iter().map(|(_, e)| e.clone()).collect();
    names.sort();
    names
}

/// Lets more than the 3 s leave delay (and a batch window) pass.
fn wait_out_leave_delay(cluster: &mut ClusterSim) {
    cluster.run_for(ms(3_500));
}

#[test]
fn a_channel_is_vacated_only_when_its_last_subscriber_anywhere_leaves() {
    for seed in SEEDS {
        let mut cluster = hooked_cluster(3, seed);
        let a = open(cluster.node(0));
        subscribe(cluster.node(0), a, "news");
        let b = open(cluster.node(1));
        subscribe(cluster.node(1), b, "news");
        wait_out_leave_delay(&mut cluster);
        let occupied = hooks(&mut cluster);
        assert_eq!(
            names(&occupied)
                .iter()
                .filter(|e| e.starts_with("channel_"))
                .collect::<Vec<_>>(),
            ["channel_occupied news"],
            "seed {seed}"
        );
        assert_eq!(
            occupied
                .iter()
                .find(|(_, e)| e.starts_with("channel_"))
                .unwrap()
                .0,
            0
        );

        cluster.node(0).disconnect(a);
        wait_out_leave_delay(&mut cluster);
        assert!(
            !names(&hooks(&mut cluster))
                .iter()
                .any(|e| e.starts_with("channel_vacated")),
            "seed {seed}: node 1 still has a subscriber"
        );
        cluster.node(1).disconnect(b);
        wait_out_leave_delay(&mut cluster);
        let vacated = hooks(&mut cluster);
        assert_eq!(
            vacated,
            [(1, "channel_vacated news".to_string())],
            "seed {seed}"
        );
    }
}

#[test]
fn member_events_are_sent_once_per_user_however_its_tabs_are_spread() {
    for seed in SEEDS {
        let mut cluster = hooked_cluster(3, seed);
        let mut tabs = Vec::new();
        for node in 0..3 {
            tabs.push((
                node,
                join_presence(&mut cluster, node, "presence-room", "u").0,
            ));
            cluster.run_for(ms(7));
        }
        wait_out_leave_delay(&mut cluster);
        let joined: Vec<String> = names(&hooks(&mut cluster))
            .into_iter()
            .filter(|e| e.starts_with("member_"))
            .collect();
        assert_eq!(joined, ["member_added presence-room u"], "seed {seed}");
        for (node, tab) in tabs {
            cluster.node(node).disconnect(tab);
            cluster.run_for(ms(7));
        }
        wait_out_leave_delay(&mut cluster);
        let left: Vec<String> = names(&hooks(&mut cluster))
            .into_iter()
            .filter(|e| e.starts_with("member_"))
            .collect();
        assert_eq!(left, ["member_removed presence-room u"], "seed {seed}");
        assert_eq!(cluster.node(0).engine().state_counts().webhook_entries, 0);
    }
}

#[test]
fn a_user_leaving_on_one_node_and_back_on_another_within_the_delay_is_not_reported() {
    for seed in SEEDS {
        let mut cluster = hooked_cluster(3, seed);
        let (_observer, _) = join_presence(&mut cluster, 2, "presence-room", "observer");
        let (tab, _) = join_presence(&mut cluster, 0, "presence-room", "u");
        wait_out_leave_delay(&mut cluster);
        hooks(&mut cluster);

        // Leaves through node 0; its member_removed is pending at node 0 when the user
        // comes back through node 1 two seconds later.
        cluster.node(0).disconnect(tab);
        cluster.run_for(ms(2_000));
        let (back, _) = join_presence(&mut cluster, 1, "presence-room", "u");
        wait_out_leave_delay(&mut cluster);
        assert_eq!(hooks(&mut cluster), [], "seed {seed}");

        // Gone for longer than the delay: removed once, and a later return added once.
        cluster.node(1).disconnect(back);
        wait_out_leave_delay(&mut cluster);
        join_presence(&mut cluster, 2, "presence-room", "u");
        wait_out_leave_delay(&mut cluster);
        assert_eq!(
            names(&hooks(&mut cluster)),
            [
                "member_added presence-room u",
                "member_removed presence-room u"
            ],
            "seed {seed}"
        );
    }
}

#[test]
fn a_channel_reoccupied_through_another_node_within_the_delay_is_not_reported() {
    for seed in SEEDS {
        let mut cluster = hooked_cluster(3, seed);
        let a = open(cluster.node(0));
        subscribe(cluster.node(0), a, "news");
        wait_out_leave_delay(&mut cluster);
        hooks(&mut cluster);
        cluster.node(0).disconnect(a);
        cluster.run_for(ms(2_500));
        let c = open(cluster.node(2));
        subscribe(cluster.node(2), c, "news");
        wait_out_leave_delay(&mut cluster);
        let after: Vec<String> = names(&hooks(&mut cluster))
            .into_iter()
            .filter(|e| e.starts_with("channel_"))
            .collect();
        assert_eq!(after, Vec::<String>::new(), "seed {seed}");
    }
}

#[test]
fn a_return_racing_the_end_of_the_delay_is_decided_the_same_way_everywhere() {
    // Returns land on every side of the 3 s boundary; whatever bus order decides, the
    // backend hears a balanced story: removed and added again, or neither.
    for seed in SEEDS {
        for offset_ms in [2_980, 2_995, 3_000, 3_005, 3_020] {
            let mut cluster = hooked_cluster(3, seed);
            let (tab, _) = join_presence(&mut cluster, 0, "presence-room", "u");
            wait_out_leave_delay(&mut cluster);
            hooks(&mut cluster);
            cluster.node(0).disconnect(tab);
            cluster.run_for(ms(offset_ms));
            join_presence(&mut cluster, 1, "presence-room", "u");
            wait_out_leave_delay(&mut cluster);
            let story = names(&hooks(&mut cluster));
            let members: Vec<&String> = story.iter().filter(|e| e.starts_with("member_")).collect();
            assert!(
                members.is_empty()
                    || members
                        == [
                            "member_added presence-room u",
                            "member_removed presence-room u"
                        ],
                "seed {seed}, +{offset_ms} ms: {members:?}"
            );
        }
    }
}

#[test]
fn a_client_event_is_reported_once_by_its_origin() {
    for seed in SEEDS {
        let mut cluster = hooked_cluster(3, seed);
        let mut members = Vec::new();
        for node in 0..3 {
            let conn = open(cluster.node(node));
            subscribe(cluster.node(node), conn, "private-chat");
            members.push(conn);
        }
        wait_out_leave_delay(&mut cluster);
        hooks(&mut cluster);
        cluster.node(1).send_json(
            members[1],
            json!({"event": "client-typing", "channel": "private-chat", "data": {}}),
        );
        wait_out_leave_delay(&mut cluster);
        assert_eq!(
            hooks(&mut cluster),
            [(1, "client_event private-chat".to_string())],
            "seed {seed}"
        );
    }
}

#[test]
fn a_cache_miss_is_reported_once_by_the_subscribers_node() {
    for seed in SEEDS {
        let mut cluster = hooked_cluster(3, seed);
        let conn = open(cluster.node(2));
        subscribe(cluster.node(2), conn, "cache-scores");
        wait_out_leave_delay(&mut cluster);
        let misses: Vec<_> = hooks(&mut cluster)
            .into_iter()
            .filter(|(_, e)| e.starts_with("cache_miss"))
            .collect();
        assert_eq!(
            misses,
            [(2, "cache_miss cache-scores".to_string())],
            "seed {seed}"
        );
    }
}

#[test]
fn subscription_counts_are_the_clusters_in_webhooks_and_events() {
    let mut config = Config::default();
    config.apps[0].subscription_count_events = true;
    config.apps[0].webhooks = vec![WebhookConfig {
        url: "http://hooks.test/".into(),
        event_types: vec!["subscription_count".into()],
        ..Default::default()
    }];
    let mut cluster = ClusterSim::new(config, 3, 5);
    let first = open(cluster.node(0));
    subscribe(cluster.node(0), first, "news");
    settle(&mut cluster);
    let second = open(cluster.node(1));
    subscribe(cluster.node(1), second, "news");
    settle(&mut cluster);
    let third = open(cluster.node(2));
    subscribe(cluster.node(2), third, "news");
    settle(&mut cluster);
    cluster.run_for(ms(500));

    let counts = |sim: &mut ferrocast_engine::sim::Simulator, conn| -> Vec<u64> {
        sim.take(conn)
            .into_iter()
            .filter(|m| m.event == "pusher_internal:subscription_count")
            .map(|m| m.data["subscription_count"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(counts(cluster.node(0), first), [1, 2, 3]);
    assert_eq!(counts(cluster.node(1), second), [2, 3]);
    assert_eq!(counts(cluster.node(2), third), [3]);
    assert_eq!(
        hooks(&mut cluster),
        [
            (0, "subscription_count news 1".to_string()),
            (1, "subscription_count news 2".to_string()),
            (2, "subscription_count news 3".to_string()),
        ]
    );
    cluster.node(1).disconnect(second);
    settle(&mut cluster);
    cluster.run_for(ms(500));
    assert_eq!(counts(cluster.node(0), first), [2]);
    assert_eq!(counts(cluster.node(2), third), [2]);
    assert_eq!(
        hooks(&mut cluster),
        [(1, "subscription_count news 2".to_string())]
    );
}

#[test]
fn a_dead_nodes_members_and_channels_are_reported_gone_once_by_the_lowest_live_node() {
    for seed in SEEDS {
        let mut cluster = hooked_cluster(3, seed);
        let (_watcher, _) = join_presence(&mut cluster, 1, "presence-room", "w");
        join_presence(&mut cluster, 2, "presence-room", "ghost");
        let sub = open(cluster.node(2));
        subscribe(cluster.node(2), sub, "news");
        wait_out_leave_delay(&mut cluster);
        hooks(&mut cluster);

        cluster.kill(2);
        // node_timeout (5 s) plus a heartbeat, plus the leave delay.
        cluster.run_for(ms(6_100));
        wait_out_leave_delay(&mut cluster);
        let gone = hooks(&mut cluster);
        let mut expected = vec![
            (0, "channel_vacated news".to_string()),
            (0, "member_removed presence-room ghost".to_string()),
        ];
        let mut got = gone.clone();
        got.sort();
        expected.sort();
        assert_eq!(got, expected, "seed {seed}");
        cluster.run_for(ms(10_000));
        assert_eq!(hooks(&mut cluster), [], "seed {seed}: nothing more");
    }
}

#[test]
fn a_leave_pending_at_a_node_that_dies_is_reported_once_by_its_heir() {
    for seed in SEEDS {
        let mut cluster = hooked_cluster(3, seed);
        join_presence(&mut cluster, 1, "presence-room", "w");
        let (tab, _) = join_presence(&mut cluster, 0, "presence-room", "u");
        wait_out_leave_delay(&mut cluster);
        hooks(&mut cluster);

        // Node 0 times u's member_removed, and dies before the delay is over.
        cluster.node(0).disconnect(tab);
        cluster.run_for(ms(1_000));
        cluster.kill(0);
        cluster.run_for(ms(6_100));
        wait_out_leave_delay(&mut cluster);
        assert_eq!(
            hooks(&mut cluster),
            [(1, "member_removed presence-room u".to_string())],
            "seed {seed}"
        );
    }
}

#[test]
fn in_an_outage_a_node_reports_its_own_changes_and_not_again_after_the_heal() {
    for seed in SEEDS {
        let mut cluster = hooked_cluster(3, seed);
        join_presence(&mut cluster, 1, "presence-room", "w");
        let (tab, _) = join_presence(&mut cluster, 0, "presence-room", "leaver");
        let only_here = open(cluster.node(0));
        subscribe(cluster.node(0), only_here, "news");
        wait_out_leave_delay(&mut cluster);
        hooks(&mut cluster);

        cluster.partition(0);
        cluster.node(0).disconnect(tab);
        cluster.node(0).disconnect(only_here);
        join_presence(&mut cluster, 0, "presence-room", "newcomer");
        // The connected side changes too, and reports it itself.
        join_presence(&mut cluster, 1, "presence-room", "elsewhere");
        wait_out_leave_delay(&mut cluster);
        let mut during = hooks(&mut cluster);
        during.sort();
        assert_eq!(
            during,
            [
                (0, "channel_vacated news".to_string()),
                (0, "member_added presence-room newcomer".to_string()),
                (0, "member_removed presence-room leaver".to_string()),
                (1, "member_added presence-room elsewhere".to_string()),
            ],
            "seed {seed}"
        );

        cluster.heal(0);
        settle(&mut cluster);
        wait_out_leave_delay(&mut cluster);
        assert_eq!(hooks(&mut cluster), [], "seed {seed}: nothing twice");

        // The ledgers agree again: the next occupancy is reported once.
        let back = open(cluster.node(2));
        subscribe(cluster.node(2), back, "news");
        wait_out_leave_delay(&mut cluster);
        let again: Vec<_> = hooks(&mut cluster)
            .into_iter()
            .filter(|(_, e)| e.starts_with("channel_"))
            .collect();
        assert_eq!(
            again,
            [(2, "channel_occupied news".to_string())],
            "seed {seed}"
        );
    }
}

#[test]
fn a_node_joining_late_reports_nothing_it_learns_from_snapshots() {
    // The lowest node restarts, so a "lowest live node reports" rule would show here.
    let mut cluster = hooked_cluster(3, 9);
    join_presence(&mut cluster, 2, "presence-room", "alice");
    let sub = open(cluster.node(1));
    subscribe(cluster.node(1), sub, "news");
    wait_out_leave_delay(&mut cluster);
    hooks(&mut cluster);
    cluster.kill(0);
    cluster.run_for(ms(6_100));
    cluster.restart(0);
    settle(&mut cluster);
    wait_out_leave_delay(&mut cluster);
    assert_eq!(hooks(&mut cluster), []);
}
