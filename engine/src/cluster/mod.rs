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
//! # Presence joins
//!
//! **Once a client is told it joined a presence channel, every later
//! `subscription_succeeded` of that channel, on any node, lists it** (until it leaves). With
//! the bus up, a node answers a presence subscription only when the message carrying the
//! join (its delta) comes back from the bus, with the cluster roster as applied up to that
//! message. The join then has its place in the one global order, and every join acknowledged
//! before, anywhere, was ordered before it (its node waited for its echo too), so it is in
//! that roster. Until its answer the subscriber is counted (subscriber counts, occupancy) but
//! *held*: nothing of the channel reaches it, so its story is that roster and the member
//! events ordered after it. A second tab of a member waits the same way (its delta carries
//! the changed subscriber count), so it too sees every join acknowledged before it.
//!
//! - The member limit is decided in bus order: a join is refused at once when the roster
//!   this node sees is full, and a join that passed that check but reaches a roster already
//!   full on the bus (two nodes admitting the last place at once) is void on every node:
//!   nobody is told of it, and its node answers `pusher:subscription_error` at the echo.
//! - A subscriber that unsubscribes or closes before its echo is never answered; its join
//!   and leave are ordered as any other, so members hear both, balanced.
//! - A lost echo is noticed at our next message's echo (the heartbeat at the latest) and
//!   repaired by a snapshot; the joins it carried are answered when that snapshot comes
//!   back. A [`crate::Input::BusDown`] answers every waiting join at once (local mode), and
//!   a join still unanswered after `node_timeout` (echoes lost again and again) is answered
//!   with the roster as it stands, so no client waits for good.
//! - In local mode joins are answered at once, with the roster this node knows.
//!
//! While the node's own link is down (before the first [`crate::Input::BusUp`] and after a
//! [`crate::Input::BusDown`]) it runs in *local mode*: its changes apply at once, nothing is
//! published, and the other nodes' contributions are frozen (no node is declared dead from
//! our side of a broken link). On [`crate::Input::BusUp`] it publishes a snapshot asking the
//! others for theirs; snapshots replace a node's contributions and clients are told only
//! the differences.
//!
//! # Webhooks
//!
//! Each webhook is sent by one node. Every node keeps the same ledger per app (channels the
//! backend was told are occupied, `channel_vacated`/`member_removed` waiting out the leave
//! delay), changed only by cluster-wide transitions in bus order, so every node agrees which
//! bus message caused each one:
//!
//! - A transition caused by a node's delta is reported by that node: `channel_occupied`,
//!   `member_added` and the start of a delayed leave. `subscription_count` carries the
//!   cluster-wide total, reported by the node whose count changed; every node tells its own
//!   subscribers that total (`pusher_internal:subscription_count`) as it applies it.
//! - A delayed leave is owned by the node that caused it, which alone times it. When the
//!   delay has passed it publishes a `LeaveDue` naming the leave by its cause (sender and
//!   sequence number); every node resolves the leave when that message arrives, and the
//!   owner sends the webhook. A return through any node ordered before the `LeaveDue` on
//!   the bus cancels the leave everywhere (no `member_removed`, no second `member_added`);
//!   one ordered after it is a new arrival everywhere. So the decision at the 3 s boundary
//!   is the bus's, the same on every node.
//! - A node's death (its silence for `node_timeout`) is reported by the lowest live node,
//!   which also adopts the leaves the dead node was timing (the delay still counts from the
//!   leave). `client_event` is reported by the node the client sent it to, `cache_miss` by
//!   the node of the subscriber: neither is a cluster transition.
//! - In local mode a node applies and reports its own transitions at once, and resolves its
//!   delayed leaves without the bus. Differences learnt from snapshots (a node joining, or
//!   the heal after an outage) are applied to the ledger without being reported: they were
//!   reported in local mode by the node that made them, or are old news to the backend.
//!
//! Limits, all confined to failures: the backend can miss or get twice an event about a
//! channel or member that changed on both sides of a split while the bus was down (each side
//! reported what it saw; e.g. a channel emptied on both sides is not reported vacated until
//! its next occupancy cycle); a node restarted within `node_timeout` does not report the
//! departure of what its previous incarnation held (its snapshot replaces it silently);
//! events a node had batched but not yet posted when it died are lost with it, and two nodes
//! that briefly disagree on which node is lowest alive may both report a death.
//! All nodes of a cluster must share the apps' webhook configuration.

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
    /// How long our latest message that came back took, from publishing to hearing it, in
    /// microseconds (0 until one has).
    pub echo_lag_micros: u64,
}
