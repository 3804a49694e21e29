//! Running several engines as one cluster over a shared bus (Redis pub/sub in the server).
//!
//! The engine decides what goes on the bus ([`crate::Output::Bus`]) and what an arriving
//! message means ([`crate::Input::Bus`]); the shell only carries bytes. Every node is
//! authoritative for its own connections and announces *absolute* values (a channel's
//! subscriber count, a presence member present or absent, a user signed in or not, its
//! connection count), so a repeated or re-ordered announcement can never double-count.
//! The cluster view is the union of every live node's latest contributions.
//!
//! # Ordering and freshness
//!
//! The bus delivers every message to every node in one global order, the sender included.
//! Presence membership changes take effect in that order on every node, the node's own
//! changes included (they apply when their echo comes back), so every node sees the same
//! sequence of roster changes and tells its members the same `member_added`/`member_removed`.
//! Channel queries answer from the node's own live state plus the other nodes' last
//! announcements: they lag the truth by one bus delay (the time from one node's change to
//! its delivery at the queried node), never more while the bus is up.
//!
//! While the node's own link is down (before the first [`crate::Input::BusUp`] and after a
//! [`crate::Input::BusDown`]) it runs in *local mode*: its changes apply at once, nothing is
//! published, and the other nodes' contributions are frozen (no node is declared dead from
//! our side of a broken link). On [`crate::Input::BusUp`] it publishes a snapshot asking the
//! others for theirs; snapshots replace a node's contributions and clients are told only
//! the differences.

pub(crate) mod message;
pub(crate) mod view;

#[cfg(feature = "sim")]
pub mod sim;

use serde::{Deserialize, Serialize};
use std::fmt;

/// A cluster node's identity, unique among the nodes sharing one bus prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node-{}", self.0)
    }
}

/// The `[cluster]` settings the engine uses (the bus address is the shell's business).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Where the shell finds Redis; read by the shell, ignored by the engine.
    pub redis_url: Option<String>,
    /// Names the cluster on a shared bus: messages of another prefix are dropped.
    pub prefix: String,
    /// How often a node says it is alive, in milliseconds.
    pub heartbeat_ms: u64,
    /// A node not heard from for this long is dropped with everything it contributed.
    pub node_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis_url: None,
            prefix: "ferrocast".into(),
            heartbeat_ms: 1_000,
            node_timeout_ms: 5_000,
        }
    }
}

/// What arrived on the bus and what became of it, for operators and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BusStats {
    /// Messages handed in by the shell.
    pub received: u64,
    /// Of those, our own messages coming back.
    pub own_echoes: u64,
    /// Messages that were not a valid bus message (bad JSON, bad names): dropped.
    pub malformed: u64,
    /// Messages of another format version: dropped.
    pub foreign_version: u64,
    /// Messages of another cluster prefix: dropped.
    pub other_cluster: u64,
    /// Messages naming an app this node does not serve: dropped.
    pub unknown_app: u64,
    /// Messages this node published.
    pub published: u64,
    /// Gaps seen in another node's sequence numbers (each one asks it for a snapshot).
    pub gaps: u64,
    /// Snapshots applied (another node's or our own echo).
    pub snapshots_applied: u64,
    /// Nodes dropped for silence.
    pub nodes_dropped: u64,
    /// Times the link went down.
    pub bus_downs: u64,
}
