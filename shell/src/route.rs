//! Routing the engine's connection outputs to the I/O workers that own the connections.
//!
//! A connection id names its worker ([`worker_of`]), so routing never looks anything up. Each
//! engine turn collects one lane of items per worker and hands every non-empty lane over with
//! one mailbox append (and at most one wake-up): a fan-out to ten thousand subscribers costs a
//! few queue operations per worker, not one per recipient. A broadcast is not copied: each
//! worker gets the shared recipient list and the range of it that it owns.

use crate::mailbox::{MailboxSender, Unsent};
use crate::slots::worker_of;
use ferrocast_engine::{ConnId, Frame, ReqId};
use mio::net::TcpStream;
use std::ops::Range;
use std::sync::Arc;

/// What an I/O worker is handed.
pub enum ToWorker {
    /// A socket accepted by another worker, to serve from now on.
    Socket(TcpStream),
    /// Queue a frame for one connection.
    Send {
        /// The recipient.
        conn: ConnId,
        /// The pre-encoded frame.
        frame: Frame,
    },
    /// Queue a frame for the connections of `conns[range]` that this worker owns.
    Broadcast {
        /// The engine's recipient list, shared by every worker it concerns.
        conns: Arc<[ConnId]>,
        /// The part of `conns` to look at.
        range: Range<usize>,
        /// A recipient to skip.
        except: Option<ConnId>,
        /// The pre-encoded frame.
        frame: Frame,
    },
    /// The engine closed the connection.
    Close {
        /// The connection.
        conn: ConnId,
        /// The WebSocket close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// The engine's answer to an HTTP request.
    Respond {
        /// The request (named after its connection).
        req: ReqId,
        /// The status code.
        status: u16,
        /// The body.
        body: Vec<u8>,
    },
}

/// Per-worker lanes of routed outputs, handed over by [`Router::flush`].
pub struct Router {
    lanes: Vec<Vec<ToWorker>>,
    mailboxes: Vec<MailboxSender<ToWorker>>,
}

impl Router {
    /// A router to the workers behind `mailboxes` (worker `i` behind `mailboxes[i]`).
    pub fn new(mailboxes: Vec<MailboxSender<ToWorker>>) -> Self {
        Router {
            lanes: mailboxes.iter().map(|_| Vec::new()).collect(),
            mailboxes,
        }
    }

    /// Routes a frame for one connection.
    pub fn send(&mut self, conn: ConnId, frame: Frame) {
        self.push(worker_of(conn), ToWorker::Send { conn, frame });
    }

    /// Routes a close decided by the engine.
    pub fn close(&mut self, conn: ConnId, code: u16, reason: String) {
        self.push(worker_of(conn), ToWorker::Close { conn, code, reason });
    }

    /// Routes an HTTP response to the worker serving the request's connection.
    pub fn respond(&mut self, req: ReqId, status: u16, body: Vec<u8>) {
        let worker = worker_of(ConnId(req.0));
        self.push(worker, ToWorker::Respond { req, status, body });
    }

    /// Routes one broadcast: one item per worker owning recipients.
    pub fn broadcast(&mut self, conns: Arc<[ConnId]>, except: Option<ConnId>, frame: Frame) {
        if conns.is_empty() {
            return;
        }
        if self.lanes.len() == 1 || !ascending(&conns) {
            // One worker, or an order the ranges cannot rely on: every worker looks at the
            // whole list and keeps the ids it owns.
            for worker in 0..self.lanes.len() {
                let range = 0..conns.len();
                self.push_broadcast(worker, &conns, range, except, &frame);
            }
            return;
        }
        // Ascending ids are grouped by worker (the worker is the top byte of an id).
        let mut start = 0;
        while start < conns.len() {
            let worker = worker_of(conns[start]);
            let end = start + conns[start..].partition_point(|&c| worker_of(c) == worker);
            self.push_broadcast(worker, &conns, start..end, except, &frame);
            start = end;
        }
    }

    /// Takes worker `worker`'s lane instead of handing it over (for an engine run inline by
    /// that worker).
    pub fn take_lane(&mut self, worker: usize, into: &mut Vec<ToWorker>) {
        if let Some(lane) = self.lanes.get_mut(worker) {
            into.append(lane);
        }
    }

    /// Hands every non-empty lane to its worker: one append and at most one wake-up each.
    /// Waits while a worker's mailbox is full (workers never wait for the engine).
    pub fn flush(&mut self) {
        for (lane, mailbox) in self.lanes.iter_mut().zip(&self.mailboxes) {
            if let Err(Unsent::Closed) = mailbox.send(lane) {
                // Only during shutdown or after a worker failed (the supervisor reports it).
                tracing::debug!("outputs for a worker that has stopped were dropped");
            }
            lane.clear();
        }
    }

    fn push_broadcast(
        &mut self,
        worker: usize,
        conns: &Arc<[ConnId]>,
        range: Range<usize>,
        except: Option<ConnId>,
        frame: &Frame,
    ) {
        let item = ToWorker::Broadcast {
            conns: conns.clone(),
            range,
            except,
            frame: frame.clone(),
        };
        self.push(worker, item);
    }

    fn push(&mut self, worker: usize, item: ToWorker) {
        match self.lanes.get_mut(worker) {
            Some(lane) => lane.push(item),
            None => tracing::warn!(worker, "engine output for a worker that does not exist"),
        }
    }
}

fn ascending(conns: &[ConnId]) -> bool {
    conns.windows(2).all(|pair| pair[0] <= pair[1])
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::mailbox::{mailbox, MailboxReceiver};
    use crate::wake::Wake;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn id(worker: u64, index: u64) -> ConnId {
        ConnId(worker << 56 | index)
    }

    fn router(workers: usize) -> (Router, Vec<MailboxReceiver<ToWorker>>, Vec<Arc<Count>>) {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        let mut wakes = Vec::new();
        for _ in 0..workers {
            let count = Arc::new(Count::default());
            let (tx, rx) = mailbox(1024, Box::new(count.clone()));
            senders.push(tx);
            receivers.push(rx);
            wakes.push(count);
        }
        (Router::new(senders), receivers, wakes)
    }

    fn taken(rx: &MailboxReceiver<ToWorker>) -> Vec<ToWorker> {
        let mut items = Vec::new();
        rx.drain(&mut items);
        items
    }

    #[test]
    fn a_broadcast_is_one_item_per_owning_worker_and_one_wake_per_flush() {
        let (mut router, rx, wakes) = router(3);
        let conns: Arc<[ConnId]> = vec![id(0, 1), id(0, 2), id(2, 0), id(2, 5), id(2, 9)].into();
        let frame = Frame::text(b"{}");
        router.broadcast(conns.clone(), Some(id(2, 5)), frame.clone());
        router.send(id(2, 7), frame.clone());
        router.flush();
        let zero = taken(&rx[0]);
        assert!(matches!(&zero[..], [ToWorker::Broadcast { range, .. }] if *range == (0..2)));
        assert!(taken(&rx[1]).is_empty());
        let two = taken(&rx[2]);
        assert_eq!(two.len(), 2);
        assert!(
            matches!(&two[0], ToWorker::Broadcast { range, except, .. } if *range == (2..5) && *except == Some(id(2, 5)))
        );
        assert!(matches!(&two[1], ToWorker::Send { conn, .. } if *conn == id(2, 7)));
        let counts: Vec<usize> = wakes.iter().map(|w| w.0.load(Ordering::SeqCst)).collect();
        assert_eq!(counts, [1, 0, 1]);
    }

    #[test]
    fn an_unordered_list_goes_whole_to_every_worker() {
        let (mut router, rx, _) = router(2);
        let conns: Arc<[ConnId]> = vec![id(1, 0), id(0, 0)].into();
        router.broadcast(conns, None, Frame::text(b"{}"));
        router.flush();
        for worker in &rx {
            let items = taken(worker);
            assert!(matches!(&items[..], [ToWorker::Broadcast { range, .. }] if *range == (0..2)));
        }
    }

    #[test]
    fn responses_and_closes_go_to_the_owner() {
        let (mut router, rx, _) = router(2);
        router.respond(ReqId(id(1, 3).0), 200, b"{}".to_vec());
        router.close(id(0, 4), 4100, "slow".into());
        router.flush();
        assert!(matches!(
            &taken(&rx[1])[..],
            [ToWorker::Respond { status: 200, .. }]
        ));
        assert!(matches!(
            &taken(&rx[0])[..],
            [ToWorker::Close { code: 4100, .. }]
        ));
    }
}
