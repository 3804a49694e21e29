//! Routing the engine's outputs back to the feeders they are addressed to.
//!
//! Connection and request ids name their feeder ([`Feeder`]), so routing never looks anything
//! up. Each engine turn collects one lane of items per feeder and hands every non-empty lane
//! over with one `to_worker` push (and at most one wake-up): a fan-out to ten thousand
//! subscribers costs a few queue operations per worker, not one per recipient. A broadcast is
//! not copied: each worker gets the shared recipient list and the range of it that it owns,
//! which is one contiguous range because the engine lists recipients in ascending order.

use crate::door::Feeder;
use crate::queue::{Sender, Unsent};
use ferrocast_engine::{ConnId, Frame, Output};
use mio::net::TcpStream;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

/// What an I/O worker is handed: the engine's own outputs, its share of a broadcast, or a
/// socket accepted by another worker.
pub(crate) enum ToWorker {
    /// An output addressed to this worker: `Send`, `Close` or `HttpResponse`.
    Output(Output),
    /// The part of an `Output::Broadcast` this worker owns: the connections of
    /// `conns[range]`, except `except`.
    Slice {
        /// The engine's recipient list, shared by every worker it concerns.
        conns: Arc<[ConnId]>,
        /// The part of `conns` owned by this worker.
        range: Range<usize>,
        /// A recipient to skip.
        except: Option<ConnId>,
        /// The pre-encoded frame.
        frame: Frame,
    },
    /// A socket accepted by another worker, to serve from now on, and its peer's address
    /// (as `accept` returned it: asking the socket again would cost a `getpeername`).
    Socket(TcpStream, IpAddr),
}

/// Per-feeder lanes of routed outputs, handed over by [`Router::flush`].
pub(crate) struct Router {
    lanes: Vec<Vec<ToWorker>>,
    to_worker: Vec<Sender<ToWorker>>,
}

impl Router {
    /// A router to the feeders behind `to_worker` (feeder `i` behind `to_worker[i]`).
    pub(crate) fn new(to_worker: Vec<Sender<ToWorker>>) -> Self {
        Router {
            lanes: to_worker.iter().map(|_| Vec::new()).collect(),
            to_worker,
        }
    }

    /// Routes an output addressed to one feeder (`Send`, `Close`, `HttpResponse`) to it.
    pub(crate) fn route(&mut self, output: Output) {
        let feeder = match &output {
            Output::Send { conn, .. } | Output::Close { conn, .. } => Feeder::of_conn(*conn),
            Output::HttpResponse { req, .. } => Feeder::of_request(*req),
            Output::Broadcast { .. }
            | Output::Webhook(_)
            | Output::Bus(_)
            | Output::Notice(_)
            | Output::Debug(_)
            | Output::LookupApp(_)
            | Output::Timeout(_) => {
                tracing::warn!("an output with no single addressee was routed");
                return;
            }
        };
        self.push(feeder, ToWorker::Output(output));
    }

    /// Routes one broadcast: one slice per worker owning recipients.
    pub(crate) fn broadcast(&mut self, conns: Arc<[ConnId]>, except: Option<ConnId>, frame: Frame) {
        // The engine promises ascending recipients (see `Output::Broadcast`), so the ids of one
        // worker, its index being their top byte, form one contiguous range.
        debug_assert!(
            conns.windows(2).all(|pair| pair[0] < pair[1]),
            "the engine broke its promise of ascending broadcast recipients"
        );
        let mut start = 0;
        while start < conns.len() {
            let feeder = Feeder::of_conn(conns[start]);
            let end = start + conns[start..].partition_point(|&c| Feeder::of_conn(c) == feeder);
            let slice = ToWorker::Slice {
                conns: conns.clone(),
                range: start..end,
                except,
                frame: frame.clone(),
            };
            self.push(feeder, slice);
            start = end;
        }
    }

    /// Takes feeder `feeder`'s lane instead of handing it over (for an engine run inline by
    /// that worker).
    pub(crate) fn take_lane(&mut self, feeder: Feeder, into: &mut Vec<ToWorker>) {
        if let Some(lane) = self.lanes.get_mut(feeder.index()) {
            into.append(lane);
        }
    }

    /// Hands every non-empty lane to its feeder: one push and at most one wake-up each.
    /// Waits while a feeder's queue is full (workers never wait for the engine).
    pub(crate) fn flush(&mut self) {
        for (lane, to_worker) in self.lanes.iter_mut().zip(&self.to_worker) {
            if let Err(Unsent::Closed) = to_worker.send(lane) {
                // Only during shutdown or after a worker failed (the supervisor reports it).
                tracing::debug!("outputs for a worker that has stopped were dropped");
            }
        }
    }

    fn push(&mut self, feeder: Feeder, item: ToWorker) {
        match self.lanes.get_mut(feeder.index()) {
            Some(lane) => lane.push(item),
            None => tracing::warn!(?feeder, "engine output for a feeder that does not exist"),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::door::{Requests, FEEDER_SHIFT};
    use crate::queue::{self, Receiver};
    use crate::wake::Wake;
    use ferrocast_engine::CloseCode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn id(worker: u64, index: u64) -> ConnId {
        ConnId(worker << FEEDER_SHIFT | index)
    }

    fn router(workers: usize) -> (Router, Vec<Receiver<ToWorker>>, Vec<Arc<Count>>) {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        let mut wakes = Vec::new();
        for _ in 0..workers {
            let count = Arc::new(Count::default());
            let (tx, rx) = queue::bounded(1024, Some(Box::new(count.clone())));
            senders.push(tx);
            receivers.push(rx);
            wakes.push(count);
        }
        (Router::new(senders), receivers, wakes)
    }

    fn taken(rx: &Receiver<ToWorker>) -> Vec<ToWorker> {
        let mut items = Vec::new();
        rx.drain(&mut items);
        items
    }

    #[test]
    fn a_broadcast_is_one_slice_per_owning_worker_and_one_wake_per_flush() {
        let (mut router, rx, wakes) = router(3);
        let conns: Arc<[ConnId]> = vec![id(0, 1), id(0, 2), id(2, 0), id(2, 5), id(2, 9)].into();
        let frame = Frame::text(b"{}");
        router.broadcast(conns.clone(), Some(id(2, 5)), frame.clone());
        router.route(Output::Send {
            conn: id(2, 7),
            frame,
        });
        router.flush();
        let zero = taken(&rx[0]);
        assert!(matches!(&zero[..], [ToWorker::Slice { range, .. }] if *range == (0..2)));
        assert!(taken(&rx[1]).is_empty());
        let two = taken(&rx[2]);
        assert_eq!(two.len(), 2);
        assert!(
            matches!(&two[0], ToWorker::Slice { range, except, .. } if *range == (2..5) && *except == Some(id(2, 5)))
        );
        assert!(
            matches!(&two[1], ToWorker::Output(Output::Send { conn, .. }) if *conn == id(2, 7))
        );
        let counts: Vec<usize> = wakes.iter().map(|w| w.0.load(Ordering::SeqCst)).collect();
        assert_eq!(counts, [1, 0, 1]);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "ascending")]
    fn an_unordered_recipient_list_is_caught_in_debug_builds() {
        let (mut router, _rx, _) = router(2);
        router.broadcast(vec![id(1, 0), id(0, 0)].into(), None, Frame::text(b"{}"));
    }

    #[test]
    fn responses_go_to_the_feeder_that_asked_and_closes_to_the_owner() {
        let (mut router, rx, _) = router(2);
        let req = Requests::new(Feeder(1)).open(id(1, 3));
        router.route(Output::HttpResponse {
            req,
            status: 200,
            body: b"{}".to_vec(),
        });
        router.route(Output::Close {
            conn: id(0, 4),
            code: CloseCode::OVER_CAPACITY,
            reason: "slow".into(),
        });
        router.flush();
        assert!(matches!(
            &taken(&rx[1])[..],
            [ToWorker::Output(Output::HttpResponse { status: 200, .. })]
        ));
        assert!(matches!(
            &taken(&rx[0])[..],
            [ToWorker::Output(Output::Close {
                code: CloseCode::OVER_CAPACITY,
                ..
            })]
        ));
    }
}
