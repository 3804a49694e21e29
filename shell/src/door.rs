//! The one door into the engine, and how answers find their way back.
//!
//! Every thread that feeds the engine is a *feeder*: the I/O workers today, the signal
//! handling supervisor (which feeds `Shutdown`), and next a cluster bus, an app store, an
//! admin endpoint. All of them push [`Input`]s into one bounded queue, `to_engine`, drained by
//! the engine thread or, in a one-worker server, by the worker that runs the engine inline.
//!
//! A feeder that expects answers has a [`Feeder`] index and a `to_worker` queue of its own;
//! the ids it allocates carry that index in their top byte (connection ids via
//! [`crate::slots::Slots`], request ids via [`Requests`]), so the router sends every output
//! back to the feeder whose id it names without looking anything up. A feeder that asks
//! nothing (the supervisor) needs neither.

use ferrocast_engine::{ConnId, ReqId};
use std::collections::HashMap;

/// The top-byte shift naming a feeder in connection and request ids.
pub(crate) const FEEDER_SHIFT: u32 = 56;
const SEQUENCE_MASK: u64 = (1 << FEEDER_SHIFT) - 1;

/// The admin listener's feeder index: its console publishes are answered to it, not to a
/// worker (so workers are numbered below it).
pub(crate) const ADMIN: Feeder = Feeder(u8::MAX);

/// A feeder that gets answers: the index of its return queue in the router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Feeder(pub u8);

impl Feeder {
    /// The feeder a request id was allocated by.
    pub(crate) fn of_request(req: ReqId) -> Feeder {
        Feeder((req.0 >> FEEDER_SHIFT) as u8)
    }

    /// The feeder (I/O worker) a connection belongs to.
    pub(crate) fn of_conn(conn: ConnId) -> Feeder {
        Feeder((conn.0 >> FEEDER_SHIFT) as u8)
    }

    /// The index of its return queue.
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The HTTP requests a worker has handed to the engine and not seen answered yet: each gets a
/// fresh [`ReqId`] naming this feeder, mapped to the connection that asked.
#[derive(Debug)]
pub(crate) struct Requests {
    feeder: Feeder,
    next: u64,
    waiting: HashMap<ReqId, ConnId>,
}

impl Requests {
    /// An empty map for requests from `feeder`.
    pub(crate) fn new(feeder: Feeder) -> Self {
        Requests {
            feeder,
            next: 0,
            waiting: HashMap::new(),
        }
    }

    /// A new request id for a request from `conn`.
    pub(crate) fn open(&mut self, conn: ConnId) -> ReqId {
        let req = ReqId(u64::from(self.feeder.0) << FEEDER_SHIFT | self.next);
        self.next = (self.next + 1) & SEQUENCE_MASK;
        self.waiting.insert(req, conn);
        req
    }

    /// The connection that asked `req`, forgetting the request (answered once).
    pub(crate) fn answered(&mut self, req: ReqId) -> Option<ConnId> {
        self.waiting.remove(&req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_name_their_feeder_and_map_back_to_the_connection_once() {
        let mut requests = Requests::new(Feeder(3));
        let conn = ConnId(3 << FEEDER_SHIFT | 7);
        let first = requests.open(conn);
        let second = requests.open(conn);
        assert_ne!(first, second);
        assert_ne!(first.0, conn.0, "a request id is not its connection's id");
        assert_eq!(Feeder::of_request(first), Feeder(3));
        assert_eq!(requests.answered(first), Some(conn));
        assert_eq!(requests.answered(first), None);
        assert_eq!(requests.answered(second), Some(conn));
    }
}
