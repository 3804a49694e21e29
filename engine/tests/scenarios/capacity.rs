//! The node's connection capacity and the per-address cap: one connection too many is told
//! 4100 (back off, reconnect) and closed, and a closed connection frees its place.

use crate::common::*;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{ConnId, StateCounts, WsRequest};
use std::net::IpAddr;

fn from_address(sim: &mut Simulator, peer: &str) -> ConnId {
    sim.connect_with(WsRequest {
        path: "/app/app-key".into(),
        query: "protocol=7&client=js&version=8.4.0".into(),
        origin: None,
        peer: Some(peer.parse::<IpAddr>().unwrap()),
        secure: false,
    })
}

fn assert_over_capacity(sim: &mut Simulator, conn: ConnId) -> String {
    let messages = sim.take(conn);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].event, "pusher:error");
    assert_eq!(messages[0].data["code"], 4100);
    assert_eq!(sim.closed(conn).map(|(code, _)| code), Some(4100));
    messages[0].data["message"].as_str().unwrap().to_owned()
}

#[test]
fn an_address_past_its_cap_gets_4100_while_others_connect() {
    let mut sim = sim_with(|config| config.max_connections_per_address = 2);
    let first = from_address(&mut sim, "192.0.2.1");
    let second = from_address(&mut sim, "192.0.2.1");
    let third = from_address(&mut sim, "192.0.2.1");
    let elsewhere = from_address(&mut sim, "192.0.2.2");
    for conn in [first, second, elsewhere] {
        assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);
    }
    let why = assert_over_capacity(&mut sim, third);
    assert!(why.contains("address"), "{why}");
    // A connection that leaves frees its address's place.
    sim.disconnect(first);
    let again = from_address(&mut sim, "192.0.2.1");
    assert_eq!(sim.take_events(again), ["pusher:connection_established"]);
}

#[test]
fn a_full_node_refuses_with_4100_and_frees_places_on_close() {
    let mut sim = sim_with(|config| config.max_node_connections = 2);
    let a = sim.connect("app-key");
    let b = from_address(&mut sim, "192.0.2.9");
    let c = sim.connect("app-key");
    assert_eq!(sim.take_events(a), ["pusher:connection_established"]);
    assert_eq!(sim.take_events(b), ["pusher:connection_established"]);
    let why = assert_over_capacity(&mut sim, c);
    assert!(why.contains("capacity"), "{why}");
    sim.disconnect(b);
    let d = sim.connect("app-key");
    assert_eq!(sim.take_events(d), ["pusher:connection_established"]);
}

#[test]
fn address_counts_leave_nothing_behind() {
    let mut sim = sim_with(|config| config.max_connections_per_address = 1);
    let conns: Vec<ConnId> = ["192.0.2.1", "2001:db8::1", "192.0.2.1"]
        .iter()
        .map(|peer| from_address(&mut sim, peer))
        .collect();
    assert_eq!(sim.engine().state_counts().peer_addresses, 2);
    assert_over_capacity(&mut sim, conns[2]);
    for &conn in &conns[..2] {
        sim.disconnect(conn);
    }
    assert_eq!(sim.engine().state_counts(), StateCounts::default());
}
