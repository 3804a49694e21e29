//! The admin console's meeting point between its listener and the engine thread.
//!
//! Three things cross here, each costing the engine nothing until the console asks:
//! - the live feed: each open event stream is a viewer with a bounded queue; the first viewer
//!   turns the engine's debug feed on (`Input::Watch`), the last one to leave turns it off,
//!   and the engine thread hands each debug event, as JSON the engine encoded, to every
//!   viewer's queue without waiting (a viewer that reads too slowly loses events, the engine
//!   never stalls);
//! - the snapshot of apps and channels: the listener raises a flag and pushes a `Tick`, the
//!   engine thread sees the flag after its batch and publishes [`Engine::console_snapshot`];
//! - console publishes: `Input::AdminPublish` with a request id of the [`ADMIN`] feeder, whose
//!   answer the engine thread hands back here instead of to a worker.
//!
//! [`Engine::console_snapshot`]: ferrocast_engine::Engine::console_snapshot

use crate::door::{ADMIN, FEEDER_SHIFT};
use crate::queue::Sender;
use ferrocast_engine::{Input, ReqId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Most event streams open at once (each holds a thread of the admin listener).
pub(crate) const MAX_VIEWERS: usize = 8;
/// Debug events queued per viewer before new ones are dropped for it.
const VIEWER_QUEUE: usize = 4096;
/// How long the listener waits for the engine's snapshot or publish answer.
const ENGINE_WAIT: Duration = Duration::from_secs(3);

/// One debug event, as the engine encoded it.
pub(crate) type EventJson = Arc<[u8]>;

/// Console publishes: the last sequence number, and the answers not yet collected.
type Answers = (u64, HashMap<ReqId, (u16, Vec<u8>)>);

/// The shared state between the admin listener and the engine thread.
pub(crate) struct ConsoleHub {
    door: Sender<Input>,
    /// Viewer count, held while telling the engine to start or stop, so that on/off inputs
    /// reach the door in the order the count changed. Never taken by the engine thread.
    watching: Mutex<usize>,
    /// The viewers' queues by viewer id: taken by the engine thread for each event.
    viewers: Mutex<HashMap<u64, SyncSender<EventJson>>>,
    next_viewer: Mutex<u64>,
    snapshot_asked: AtomicBool,
    snapshot: Mutex<(u64, Vec<u8>)>,
    snapshot_ready: Condvar,
    /// Console publishes: the next sequence number, and answers not yet collected.
    answers: Mutex<Answers>,
    answered: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here is left half-updated by a panic: keep serving.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl ConsoleHub {
    /// A hub whose inputs go through `door`.
    pub(crate) fn new(door: Sender<Input>) -> Self {
        ConsoleHub {
            door,
            watching: Mutex::new(0),
            viewers: Mutex::new(HashMap::new()),
            next_viewer: Mutex::new(0),
            snapshot_asked: AtomicBool::new(false),
            snapshot: Mutex::new((0, Vec::new())),
            snapshot_ready: Condvar::new(),
            answers: Mutex::new((0, HashMap::new())),
            answered: Condvar::new(),
        }
    }

    // ---- the engine thread's side ----

    /// Hands one debug event to every viewer, never waiting.
    pub(crate) fn event(&self, json: Vec<u8>) {
        let json: EventJson = json.into();
        let viewers = lock(&self.viewers);
        for queue in viewers.values() {
            match queue.try_send(json.clone()) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                // A slow viewer misses events; the page says the log may have gaps.
                Err(TrySendError::Full(_)) => {}
            }
        }
    }

    /// Whether the listener waits for a snapshot (clears the request): one relaxed load
    /// after each batch when nobody asks.
    pub(crate) fn take_snapshot_request(&self) -> bool {
        self.snapshot_asked.load(Ordering::Relaxed)
            && self.snapshot_asked.swap(false, Ordering::AcqRel)
    }

    /// Publishes the engine's snapshot and wakes whoever waits for it.
    pub(crate) fn publish_snapshot(&self, json: Vec<u8>) {
        let mut snapshot = lock(&self.snapshot);
        snapshot.0 += 1;
        snapshot.1 = json;
        self.snapshot_ready.notify_all();
    }

    /// Whether `req` is a console publish (then [`ConsoleHub::answer`] takes its answer).
    pub(crate) fn owns(req: ReqId) -> bool {
        crate::door::Feeder::of_request(req) == ADMIN
    }

    /// The engine's answer to a console publish.
    pub(crate) fn answer(&self, req: ReqId, status: u16, body: Vec<u8>) {
        lock(&self.answers).1.insert(req, (status, body));
        self.answered.notify_all();
    }

    // ---- the admin listener's side ----

    /// A new viewer of the live feed, or `None` when [`MAX_VIEWERS`] already watch.
    pub(crate) fn watch(self: &Arc<Self>) -> Option<Viewer> {
        let mut watching = lock(&self.watching);
        if *watching >= MAX_VIEWERS {
            return None;
        }
        let id = {
            let mut next = lock(&self.next_viewer);
            *next += 1;
            *next
        };
        let (queue, events) = mpsc::sync_channel(VIEWER_QUEUE);
        lock(&self.viewers).insert(id, queue);
        *watching += 1;
        if *watching == 1 {
            self.tell(Input::Watch { on: true });
        }
        Some(Viewer {
            hub: self.clone(),
            id,
            events,
        })
    }

    fn unwatch(&self, id: u64) {
        let mut watching = lock(&self.watching);
        lock(&self.viewers).remove(&id);
        *watching -= 1;
        if *watching == 0 {
            self.tell(Input::Watch { on: false });
        }
    }

    fn tell(&self, input: Input) {
        // Waiting for room is fine: the engine always drains the door.
        if self.door.send(&mut vec![input]).is_err() {
            tracing::debug!("the engine was gone before a console input");
        }
    }

    /// The engine's snapshot as of now (the last one if the engine does not answer in time).
    pub(crate) fn snapshot(&self) -> Vec<u8> {
        let snapshot = lock(&self.snapshot);
        let asked_at = snapshot.0;
        self.snapshot_asked.store(true, Ordering::Release);
        // A `Tick` wakes an idle engine; a full door means it is busy and will see the flag.
        let _ = self.door.try_send(&mut vec![Input::Tick]);
        let (snapshot, _) = self
            .snapshot_ready
            .wait_timeout_while(snapshot, ENGINE_WAIT, |s| s.0 == asked_at)
            .unwrap_or_else(|e| e.into_inner());
        snapshot.1.clone()
    }

    /// Publishes `body` (an HTTP API event) in `app`; the engine's status and JSON answer,
    /// or `None` when it did not answer in time.
    pub(crate) fn publish(&self, app: &str, body: Vec<u8>) -> Option<(u16, Vec<u8>)> {
        let req = {
            let mut answers = lock(&self.answers);
            answers.0 = (answers.0 + 1) & ((1 << FEEDER_SHIFT) - 1);
            ReqId(u64::from(ADMIN.0) << FEEDER_SHIFT | answers.0)
        };
        self.tell(Input::AdminPublish {
            req,
            app: app.to_owned(),
            body,
        });
        let answers = lock(&self.answers);
        let (mut answers, _) = self
            .answered
            .wait_timeout_while(answers, ENGINE_WAIT, |a| !a.1.contains_key(&req))
            .unwrap_or_else(|e| e.into_inner());
        answers.1.remove(&req)
    }
}

/// One open event stream; dropping it stops watching.
pub(crate) struct Viewer {
    hub: Arc<ConsoleHub>,
    id: u64,
    /// The debug events for this viewer.
    pub(crate) events: Receiver<EventJson>,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.hub.unwatch(self.id);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::queue;

    fn drained(door: &queue::Receiver<Input>) -> Vec<Input> {
        let mut inputs = Vec::new();
        door.recv(&mut inputs, usize::MAX, Some(Duration::ZERO));
        inputs
    }

    #[test]
    fn the_first_viewer_turns_the_feed_on_and_the_last_one_off() {
        let (to_engine, door) = queue::bounded(16, None);
        let hub = Arc::new(ConsoleHub::new(to_engine));
        let first = hub.watch().unwrap();
        let second = hub.watch().unwrap();
        assert_eq!(drained(&door), vec![Input::Watch { on: true }]);

        hub.event(b"{}".to_vec());
        assert_eq!(&*first.events.try_recv().unwrap(), b"{}");
        assert_eq!(&*second.events.try_recv().unwrap(), b"{}");

        drop(first);
        assert_eq!(drained(&door), vec![], "one viewer still watches");
        drop(second);
        assert_eq!(drained(&door), vec![Input::Watch { on: false }]);
    }

    #[test]
    fn viewers_beyond_the_bound_are_refused_and_a_slow_one_loses_events() {
        let (to_engine, _door) = queue::bounded(16, None);
        let hub = Arc::new(ConsoleHub::new(to_engine));
        let viewers: Vec<Viewer> = (0..MAX_VIEWERS).map(|_| hub.watch().unwrap()).collect();
        assert!(hub.watch().is_none());
        for _ in 0..VIEWER_QUEUE + 10 {
            hub.event(b"{}".to_vec());
        }
        assert_eq!(viewers[0].events.try_iter().count(), VIEWER_QUEUE);
        drop(viewers);
        assert!(hub.watch().is_some(), "room again once they left");
    }

    #[test]
    fn console_publishes_use_the_admin_feeder() {
        let req = ReqId(u64::from(ADMIN.0) << FEEDER_SHIFT | 7);
        assert!(ConsoleHub::owns(req));
        assert!(!ConsoleHub::owns(ReqId(7)));
    }
}
