//! The cluster bus: the shell's link to the Redis pub/sub channel that joins Ferrocast nodes.
//!
//! The link moves opaque bytes. The engine decides what goes on the bus (`Output::Bus`) and
//! what an arriving message means (`Input::Bus`); the shell never looks inside. One outgoing
//! message costs exactly one Redis `PUBLISH` on the cluster's channel, and every node on the
//! channel (the sender included) receives it once; the engine drops its own echoes.
//!
//! What the link reports, through a [`BusSink`] called from one thread only, in this order:
//! `up`, then any number of `received`, then `down` (after a loss), then `up` again once Redis
//! is back, and so on. A message is only handed over between an `up` and the next `down`.

mod config;
mod redis_link;
// Its items are public for the loom model (`tests/loom_bus.rs`), which sees them under loom only.
#[cfg(not(loom))]
#[allow(unreachable_pub)]
mod shared;
/// The hand-off between the engine side and the link's threads, public for its loom model.
#[cfg(loom)]
pub mod shared;

pub(crate) use config::redact_url;
pub use config::{BusConfig, BusConfigError};
pub use redis_link::{BusSender, BusStartError, RedisLink};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

/// Where the link delivers what it hears; wired later to the engine's one input door.
///
/// Every method is called from the link's subscriber thread, never two at once, so an
/// implementation should only hand the event on (a queue push), never block for long.
pub trait BusSink: Send + 'static {
    /// One message published on the cluster's channel by any node, this one included.
    fn received(&mut self, bytes: Vec<u8>);
    /// The link is established: subscribed, and outgoing messages are being published.
    fn up(&mut self);
    /// The link was lost; outgoing messages wait (bounded) until the next `up`.
    fn down(&mut self);
}

/// One thing the link reported, for sinks that forward events as values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// A message from the channel.
    Received(Vec<u8>),
    /// The link is established.
    Up,
    /// The link was lost.
    Down,
}

/// A channel sender is a sink: each report becomes one [`BusEvent`]. A closed receiver just
/// discards them (the receiving side has shut down; the link is about to be stopped).
impl BusSink for mpsc::Sender<BusEvent> {
    fn received(&mut self, bytes: Vec<u8>) {
        let _ = self.send(BusEvent::Received(bytes));
    }
    fn up(&mut self) {
        let _ = self.send(BusEvent::Up);
    }
    fn down(&mut self) {
        let _ = self.send(BusEvent::Down);
    }
}

/// Counters of one link, shared with whoever reports metrics.
#[derive(Debug, Default)]
pub struct BusStats {
    outages: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    published: AtomicU64,
    publish_failures: AtomicU64,
    dropped_outgoing: AtomicU64,
    received: AtomicU64,
}

/// A plain copy of [`BusStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusStatsSnapshot {
    /// Times the link was lost (each reported as one `down`).
    pub outages: u64,
    /// Times the link was established again after a loss.
    pub reconnects: u64,
    /// Attempts to open a Redis connection (or subscribe) that failed.
    pub connect_failures: u64,
    /// Messages published (one `PUBLISH` each).
    pub published: u64,
    /// `PUBLISH` commands that failed; their messages are lost (the engine resyncs after `up`).
    pub publish_failures: u64,
    /// Outgoing messages discarded because the bounded queue was full (the oldest go first).
    pub dropped_outgoing: u64,
    /// Messages handed to the sink.
    pub received: u64,
}

/// Which counter to bump; keeps the field names out of the threads' code.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Counter {
    Outages,
    Reconnects,
    ConnectFailures,
    Published,
    PublishFailures,
    DroppedOutgoing,
    Received,
}

impl BusStats {
    /// The counters now.
    pub fn snapshot(&self) -> BusStatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BusStatsSnapshot {
            outages: read(&self.outages),
            reconnects: read(&self.reconnects),
            connect_failures: read(&self.connect_failures),
            published: read(&self.published),
            publish_failures: read(&self.publish_failures),
            dropped_outgoing: read(&self.dropped_outgoing),
            received: read(&self.received),
        }
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let field = match counter {
            Counter::Outages => &self.outages,
            Counter::Reconnects => &self.reconnects,
            Counter::ConnectFailures => &self.connect_failures,
            Counter::Published => &self.published,
            Counter::PublishFailures => &self.publish_failures,
            Counter::DroppedOutgoing => &self.dropped_outgoing,
            Counter::Received => &self.received,
        };
        field.fetch_add(n, Ordering::Relaxed);
    }
}
