//! The state the engine side, the publisher thread and the subscriber thread share: the bounded
//! outgoing queue and the link's health, under one lock with one condition variable.
//!
//! Health is an *epoch*: a number bumped each time a failure is declared, by whichever side
//! sees it first. A connection belongs to the epoch in which it was opened; once the epoch moves
//! on, both threads drop their connections and open new ones. That turns two connections (a
//! subscribed Redis connection cannot publish) into one link that goes down once per outage and
//! comes up only when both sides are connected again.
//!
//! Loom-checked in `tests/loom_bus.rs` (this module is public under `cfg(loom)` for it), with a
//! broken twin the model must catch.

use super::{BusStats, Counter};
#[cfg(loom)]
use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
use loom::sync::{Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU64, Ordering};
// The counters stay behind std's `Arc` under loom too: they are shared with the metrics
// reader, not part of the hand-off the model checks.
use std::sync::Arc;
#[cfg(not(loom))]
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A bounded FIFO of outgoing messages that makes room by dropping its oldest.
///
/// Oldest first, because what matters after a gap is the newest state: a message queued just
/// after `up` (the engine's resync) must survive a queue full of messages from the outage,
/// which the resync makes obsolete anyway. The receivers see a contiguous recent suffix.
#[derive(Debug)]
pub struct OutgoingQueue {
    messages: VecDeque<Vec<u8>>,
    bytes: usize,
    max_messages: usize,
    max_bytes: usize,
}

impl OutgoingQueue {
    /// An empty queue holding at most `max_messages` messages and `max_bytes` bytes.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        OutgoingQueue {
            messages: VecDeque::new(),
            bytes: 0,
            max_messages,
            max_bytes,
        }
    }

    /// Appends `message`, dropping the oldest until both bounds hold; returns how many were
    /// dropped (a message larger than the whole byte bound is itself dropped).
    pub fn push(&mut self, message: Vec<u8>) -> usize {
        if message.len() > self.max_bytes {
            return 1;
        }
        let mut dropped = 0;
        while self.messages.len() >= self.max_messages
            || self.bytes + message.len() > self.max_bytes
        {
            match self.messages.pop_front() {
                Some(old) => {
                    self.bytes -= old.len();
                    dropped += 1;
                }
                None => break,
            }
        }
        self.bytes += message.len();
        self.messages.push_back(message);
        dropped
    }

    /// Takes the oldest message.
    pub fn pop(&mut self) -> Option<Vec<u8>> {
        let message = self.messages.pop_front()?;
        self.bytes -= message.len();
        Some(message)
    }

    /// Messages queued.
    pub(crate) fn len(&self) -> usize {
        self.messages.len()
    }
}

#[derive(Debug)]
struct State {
    outgoing: OutgoingQueue,
    /// Bumped at each declared failure.
    epoch: u64,
    /// The epoch of the publisher's live connection, if it has one.
    publisher_ready: Option<u64>,
    /// The epoch in which `up` was reported, while it holds.
    up: Option<u64>,
    /// Why the current epoch's predecessor ended, for the one warning of the outage.
    last_failure: String,
    stopping: bool,
}

/// What the publisher gets when it asks for work.
#[derive(Debug, PartialEq, Eq)]
pub enum Work {
    /// A message to publish.
    Publish(Vec<u8>),
    /// Nothing for `idle` long: time to check the connection.
    Idle,
    /// The epoch moved on: reconnect.
    Stale,
    /// The link is stopping.
    Stop,
}

/// What the subscriber gets when it waits for the publisher before reporting `up`.
#[derive(Debug, PartialEq, Eq)]
pub enum Ready {
    /// Both sides are connected in this epoch; `up` is recorded.
    Up,
    /// The publisher is not connected yet; ask again.
    NotYet,
    /// The epoch moved on while waiting.
    Stale,
    /// The link is stopping.
    Stop,
}

/// The shared half of a link.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// A copy of `State::epoch` the subscriber can read per message without the lock.
    epoch: AtomicU64,
    /// The link's counters.
    pub stats: Arc<BusStats>,
}

impl Shared {
    /// A link's shared state, at epoch 0, down, with `outgoing` as its queue.
    pub fn new(outgoing: OutgoingQueue, stats: Arc<BusStats>) -> Self {
        Shared {
            state: Mutex::new(State {
                outgoing,
                epoch: 0,
                publisher_ready: None,
                up: None,
                last_failure: String::new(),
                stopping: false,
            }),
            changed: Condvar::new(),
            epoch: AtomicU64::new(0),
            stats,
        }
    }

    /// The lock, even after a thread panicked holding it: every update leaves the state
    /// consistent, so a poisoned lock holds nothing half-done.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wait_timeout<'a>(
        &self,
        guard: MutexGuard<'a, State>,
        timeout: Duration,
    ) -> MutexGuard<'a, State> {
        match self.changed.wait_timeout(guard, timeout) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        }
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Queues one outgoing message. Overflow while the link is up means peers would silently
    /// miss messages, so it is declared a failure: the link goes down and up again, and the
    /// engine resyncs by snapshot.
    pub fn push(&self, message: Vec<u8>) {
        let mut state = self.lock();
        let dropped = state.outgoing.push(message);
        if dropped > 0 {
            self.stats.add(Counter::DroppedOutgoing, dropped as u64);
            if let Some(epoch) = state.up {
                self.fail_locked(
                    &mut state,
                    epoch,
                    "the outgoing queue overflowed while the link was up".into(),
                );
            }
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Declares the connections of `epoch` failed; a no-op when a failure was already declared
    /// for it. Returns whether this call moved the epoch on.
    pub fn fail(&self, epoch: u64, reason: String) -> bool {
        let mut state = self.lock();
        let moved = self.fail_locked(&mut state, epoch, reason);
        drop(state);
        self.changed.notify_all();
        moved
    }

    fn fail_locked(&self, state: &mut State, epoch: u64, reason: String) -> bool {
        if state.epoch != epoch {
            return false;
        }
        state.epoch += 1;
        state.publisher_ready = None;
        state.up = None;
        state.last_failure = reason;
        self.epoch.store(state.epoch, Ordering::Release);
        true
    }

    /// Why the last declared failure happened.
    pub fn last_failure(&self) -> String {
        self.lock().last_failure.clone()
    }

    /// The publisher opened a connection in `epoch`.
    pub fn publisher_connected(&self, epoch: u64) {
        let mut state = self.lock();
        if state.epoch == epoch {
            state.publisher_ready = Some(epoch);
        }
        drop(state);
        self.changed.notify_all();
    }

    /// Waits (the subscriber, already subscribed) until the publisher is connected in `epoch`,
    /// then records the link as up; gives up after `timeout`.
    pub fn wait_ready(&self, epoch: u64, timeout: Duration) -> Ready {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if state.stopping {
                return Ready::Stop;
            }
            if state.epoch != epoch {
                return Ready::Stale;
            }
            if state.publisher_ready == Some(epoch) {
                state.up = Some(epoch);
                drop(state);
                // The publisher may be waiting for `up` to flush what queued meanwhile.
                self.changed.notify_all();
                return Ready::Up;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ready::NotYet;
            }
            state = self.wait_timeout(state, deadline - now);
        }
    }

    /// Waits (the publisher, connected in `epoch`) for a message to publish. Messages are only
    /// handed out while the link is up in `epoch`, so nothing is published before the
    /// subscriber is listening (every node, the sender included, then hears it) and what queued
    /// during an outage goes out, in order, after `up`.
    pub fn next_work(&self, epoch: u64, idle: Duration) -> Work {
        let deadline = Instant::now() + idle;
        let mut state = self.lock();
        loop {
            if state.stopping {
                return Work::Stop;
            }
            if state.epoch != epoch {
                return Work::Stale;
            }
            if state.up == Some(epoch) {
                if let Some(message) = state.outgoing.pop() {
                    return Work::Publish(message);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Work::Idle;
            }
            state = self.wait_timeout(state, deadline - now);
        }
    }

    /// Sleeps `duration` unless the link stops first; returns false if it is stopping.
    pub fn sleep(&self, duration: Duration) -> bool {
        let deadline = Instant::now() + duration;
        let mut state = self.lock();
        loop {
            if state.stopping {
                return false;
            }
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            state = self.wait_timeout(state, deadline - now);
        }
    }

    /// Whether the link is stopping.
    pub fn stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Tells both threads to finish.
    pub fn stop(&self) {
        self.lock().stopping = true;
        self.changed.notify_all();
    }

    /// Messages waiting to be published: how far the bus lags behind this node.
    pub fn queued(&self) -> usize {
        self.lock().outgoing.len()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn shared(max_messages: usize) -> Shared {
        Shared::new(
            OutgoingQueue::new(max_messages, 1 << 20),
            Arc::new(BusStats::default()),
        )
    }

    const SHORT: Duration = Duration::from_millis(5);

    #[test]
    fn a_full_queue_drops_its_oldest_messages() {
        let mut queue = OutgoingQueue::new(3, 1 << 20);
        for n in 1..=5u8 {
            let dropped = queue.push(vec![n]);
            assert_eq!(dropped, usize::from(n > 3));
        }
        let left: Vec<_> = std::iter::from_fn(|| queue.pop()).collect();
        assert_eq!(left, vec![vec![3], vec![4], vec![5]]);
    }

    #[test]
    fn the_byte_bound_drops_as_many_old_messages_as_needed() {
        let mut queue = OutgoingQueue::new(100, 10);
        queue.push(vec![0; 4]);
        queue.push(vec![1; 4]);
        assert_eq!(queue.push(vec![2; 6]), 1);
        assert_eq!(queue.pop(), Some(vec![1; 4]));
        assert_eq!(
            queue.push(vec![3; 11]),
            1,
            "too big for the bound by itself"
        );
        assert_eq!(queue.pop(), Some(vec![2; 6]));
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn nothing_is_handed_out_until_the_link_is_up() {
        let shared = shared(10);
        shared.push(b"early".to_vec());
        assert_eq!(shared.next_work(0, SHORT), Work::Idle);
        shared.publisher_connected(0);
        assert_eq!(shared.wait_ready(0, SHORT), Ready::Up);
        assert_eq!(shared.next_work(0, SHORT), Work::Publish(b"early".to_vec()));
    }

    #[test]
    fn a_failure_moves_the_epoch_once_and_makes_both_sides_reconnect() {
        let shared = shared(10);
        shared.publisher_connected(0);
        assert_eq!(shared.wait_ready(0, SHORT), Ready::Up);
        assert!(shared.fail(0, "gone".into()));
        assert!(!shared.fail(0, "seen again by the other side".into()));
        assert_eq!(shared.epoch(), 1);
        assert_eq!(shared.last_failure(), "gone");
        assert_eq!(shared.next_work(0, SHORT), Work::Stale);
        assert_eq!(shared.wait_ready(0, SHORT), Ready::Stale);
        // A connection opened in the old epoch does not make the new one ready.
        shared.publisher_connected(0);
        assert_eq!(shared.wait_ready(1, SHORT), Ready::NotYet);
        shared.publisher_connected(1);
        assert_eq!(shared.wait_ready(1, SHORT), Ready::Up);
    }

    #[test]
    fn overflow_while_up_is_a_failure_but_while_down_only_a_drop() {
        let shared = shared(2);
        for n in 0..3u8 {
            shared.push(vec![n]);
        }
        assert_eq!(
            shared.epoch(),
            0,
            "down: dropping is safe, the engine resyncs after up"
        );
        assert_eq!(shared.stats.snapshot().dropped_outgoing, 1);
        shared.publisher_connected(0);
        assert_eq!(shared.wait_ready(0, SHORT), Ready::Up);
        shared.push(vec![9]);
        assert_eq!(
            shared.epoch(),
            1,
            "up: peers would miss a message, so resync"
        );
        assert_eq!(shared.stats.snapshot().dropped_outgoing, 2);
        assert_eq!(shared.queued(), 2);
    }

    #[test]
    fn stop_wakes_every_waiter() {
        let shared = Arc::new(shared(10));
        let waiter = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || shared.next_work(0, Duration::from_secs(30)))
        };
        std::thread::sleep(SHORT);
        let started = Instant::now();
        shared.stop();
        assert_eq!(waiter.join().unwrap(), Work::Stop);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!shared.sleep(Duration::from_secs(30)));
        assert_eq!(shared.wait_ready(0, SHORT), Ready::Stop);
    }
}
