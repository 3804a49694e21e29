//! Proptest strategies for cluster scenarios: client operations spread over the nodes, with
//! the bus made hostile now and then (delays, partitions, deaths) and quiet points to check.

use crate::cluster::{ClusterChannel, ClusterOp, NODES, USERS};
use proptest::prelude::*;

fn channel() -> impl Strategy<Value = ClusterChannel> {
    prop_oneof![
        2 => Just(ClusterChannel::Public),
        2 => Just(ClusterChannel::Private),
        4 => Just(ClusterChannel::Presence),
    ]
}

fn node() -> impl Strategy<Value = u8> {
    0..NODES as u8
}

/// One operation.
pub fn op() -> impl Strategy<Value = ClusterOp> {
    prop_oneof![
        5 => node().prop_map(|node| ClusterOp::Connect { node }),
        9 => (any::<u8>(), channel(), 0..USERS.len() as u8)
            .prop_map(|(conn, channel, user)| ClusterOp::Subscribe { conn, channel, user }),
        2 => (any::<u8>(), channel()).prop_map(|(conn, channel)| ClusterOp::Unsubscribe { conn, channel }),
        2 => any::<u8>().prop_map(|conn| ClusterOp::Disconnect { conn }),
        5 => (node(), channel(), prop::option::weighted(0.3, any::<u8>()))
            .prop_map(|(node, channel, exclude)| ClusterOp::Publish { node, channel, exclude }),
        3 => (any::<u8>(), prop_oneof![Just(ClusterChannel::Private), Just(ClusterChannel::Presence)])
            .prop_map(|(conn, channel)| ClusterOp::ClientEvent { conn, channel }),
        4 => prop_oneof![3 => 0..30u16, 1 => 30..1_500u16].prop_map(|ms| ClusterOp::Advance { ms }),
        1 => (0..20u8, 0..15u8).prop_map(|(base_ms, jitter_ms)| ClusterOp::SetDelay { base_ms, jitter_ms }),
        1 => prop_oneof![Just(0u8), 1..40u8].prop_map(|percent| ClusterOp::SetLoss { percent }),
        1 => node().prop_map(|node| ClusterOp::Partition { node }),
        1 => node().prop_map(|node| ClusterOp::Heal { node }),
        1 => node().prop_map(|node| ClusterOp::Kill { node }),
        1 => node().prop_map(|node| ClusterOp::Restart { node }),
        1 => Just(ClusterOp::Settle),
    ]
}

/// A scenario: a connection on every node, then up to `max_len` operations.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<ClusterOp>> {
    proptest::collection::vec(op(), 1..=max_len.max(1)).prop_map(|rest| {
        let opening = (0..NODES as u8).map(|node| ClusterOp::Connect { node });
        opening.chain(rest).collect()
    })
}
