//! Apps from an app store on a cluster: a node that learns of an app late still sees what
//! the other nodes hold of it.

use super::common::*;
use ferrocast_engine::cluster::sim::ClusterSim;
use ferrocast_engine::{AppAnswer, AppConfig, AppLookup, ConnId};

fn store_cluster() -> ClusterSim {
    cluster_with(2, |config| config.app_store.lookups = true)
}

/// Connects to the store's app `db` on `node`, answering the node's lookup if it asks.
fn db_connection(cluster: &mut ClusterSim, node: usize) -> ConnId {
    let sim = cluster.node(node);
    let conn = sim.connect("db-key");
    for lookup in sim.take_lookups() {
        let app = AppConfig {
            id: "db".into(),
            key: "db-key".into(),
            secret: "db-secret".into(),
            ..AppConfig::default()
        };
        assert_eq!(lookup, AppLookup::Key("db-key".into()));
        sim.app_answer(lookup, AppAnswer::Found(Box::new(app)));
    }
    assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);
    conn
}

#[test]
fn a_node_that_looks_an_app_up_late_gets_the_roster_the_others_hold() {
    let mut cluster = store_cluster();
    settle(&mut cluster);
    let alice = db_connection(&mut cluster, 0);
    assert_eq!(
        subscribe_presence(&mut cluster, 0, alice, "presence-room", "alice"),
        ["alice"]
    );
    settle(&mut cluster);

    // Node 1 ignored everything about `db` until its first client for it arrived.
    let bob = db_connection(&mut cluster, 1);
    settle(&mut cluster);
    let ids = subscribe_presence(&mut cluster, 1, bob, "presence-room", "bob");
    assert_eq!(ids, ["alice", "bob"]);
}
