//! The server as one node of a cluster: the Redis bus link becomes one more feeder of the
//! engine, and the engine's bus messages go out through it.
//!
//! What the link hears (`up`, each message, `down`) becomes `Input::BusUp`, `Input::Bus` and
//! `Input::BusDown`, pushed through the one door in the order heard; every `Output::Bus` the
//! engine emits is handed to the link's [`BusSender`] (one Redis `PUBLISH` each). The link needs
//! no Redis to start: until it reports `up` the engine serves its own clients alone.

use crate::bus::{BusConfig, BusSender, BusSink, BusStartError, RedisLink};
use crate::engine_thread::random_seed;
use crate::queue::Sender;
use ferrocast_engine::{Input, NodeId};

/// A running cluster membership: the node's id and its link to the bus.
pub(crate) struct ClusterLink {
    node: NodeId,
    link: RedisLink,
}

impl ClusterLink {
    /// Starts the link for node `node`; what it hears is pushed into `to_engine`.
    pub(crate) fn start(
        node: NodeId,
        config: BusConfig,
        to_engine: Sender<Input>,
    ) -> Result<ClusterLink, BusStartError> {
        let link = RedisLink::start(config, DoorSink::new(to_engine))?;
        tracing::info!(%node, channel = %link.channel(), "cluster node starting");
        Ok(ClusterLink { node, link })
    }

    /// This node's id.
    pub(crate) fn node(&self) -> NodeId {
        self.node
    }

    /// Where the engine's bus messages go.
    pub(crate) fn sender(&self) -> BusSender {
        self.link.sender()
    }

    /// The link's counters.
    pub(crate) fn stats(&self) -> std::sync::Arc<crate::bus::BusStats> {
        self.link.stats()
    }

    /// Stops the link's threads and waits for them (bounded: see [`RedisLink::stop`]).
    /// The door must be closed first, or a subscriber waiting for room in it would wait on.
    pub(crate) fn stop(self) {
        self.link.stop();
        tracing::debug!(node = %self.node, "cluster bus stopped");
    }
}

/// A fresh node id per process: ids only need to differ among the nodes sharing one prefix,
/// and a restarted node must not be taken for its previous life (whose sequence it would break).
pub(crate) fn random_node_id() -> NodeId {
    NodeId(random_seed())
}

/// The link's reports, handed to the engine through the door.
struct DoorSink {
    to_engine: Sender<Input>,
    /// One input at a time, kept for its allocation.
    batch: Vec<Input>,
    /// The door was closed (shutting down): everything after is dropped.
    closed: bool,
}

impl DoorSink {
    fn new(to_engine: Sender<Input>) -> Self {
        DoorSink {
            to_engine,
            batch: Vec::with_capacity(1),
            closed: false,
        }
    }

    /// Waits for room rather than dropping: a lost bus message would be a gap the engine has
    /// to repair by snapshot, while waiting only delays the link's reads (Redis buffers them).
    fn hand(&mut self, input: Input) {
        if self.closed {
            return;
        }
        self.batch.push(input);
        if self.to_engine.send(&mut self.batch).is_err() {
            self.closed = true;
            self.batch.clear();
        }
    }
}

impl BusSink for DoorSink {
    fn received(&mut self, bytes: Vec<u8>) {
        self.hand(Input::Bus(bytes));
    }
    fn up(&mut self) {
        self.hand(Input::BusUp);
    }
    fn down(&mut self) {
        self.hand(Input::BusDown);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::queue::{self, Received};
    use std::time::Duration;

    #[test]
    fn the_links_reports_reach_the_door_in_order_and_stop_once_it_is_closed() {
        let (to_engine, door) = queue::bounded::<Input>(4, None);
        let mut sink = DoorSink::new(to_engine);
        sink.up();
        sink.received(b"m".to_vec());
        sink.down();
        let mut got = Vec::new();
        assert_eq!(
            door.recv(&mut got, usize::MAX, Some(Duration::from_secs(1))),
            Received::Items
        );
        assert!(matches!(
            &got[..],
            [Input::BusUp, Input::Bus(m), Input::BusDown] if m == b"m"
        ));
        door.close();
        sink.up();
        assert!(sink.closed);
    }
}
