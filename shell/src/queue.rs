//! The one bounded hand-off queue between the shell's threads.
//!
//! Every cross-thread hand-off is this type: inputs to the engine (`to_engine`), engine outputs
//! and sockets to an I/O worker (`to_worker`), deliveries to the webhook threads
//! (`webhook_queue`). It is bounded in items and never lossy: a batch is taken whole or given
//! back whole.
//!
//! - Producers that must never block (I/O workers, the accepting worker, the event loop giving
//!   webhooks away) call [`Sender::try_send`]. A refusal for lack of room is given together
//!   with a promise, made under the same lock: the producer's own [`Wake`] (when it has one) is
//!   called once a consumer has taken what was queued. So a refused worker can stop reading and
//!   sleep in `poll` without missing the moment it may go on.
//! - Producers that may block (the engine thread on a full worker queue, since workers never
//!   wait for the engine) call [`Sender::send`].
//! - A consumer sleeps either on the queue's condition variable ([`Receiver::recv`], with a
//!   timeout for its next timer), or somewhere the queue cannot see, such as `mio::Poll::poll`:
//!   then the queue calls the consumer's [`Wake`] whenever a push finds it empty, and the
//!   consumer takes everything with [`Receiver::drain`] each turn. Pushes into a non-empty
//!   queue need no wake: the wake that made it non-empty has not been answered by a drain yet.
//!   The emptiness check and the push happen under one lock, which is what makes that hold.
//!
//! Loom-checked in `tests/loom_queue.rs`, with broken twins the model must catch.

use crate::wake::Wake;
#[cfg(loom)]
use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::collections::VecDeque;
// std's `Arc` by another name: the same as `Arc` without loom, never loom's under it.
use std::sync::Arc as StdArc;
#[cfg(not(loom))]
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A producer's wake handle. Always std's `Arc`, also under loom: it only shares the handle
/// (loom's `Arc` cannot hold a `dyn Wake`), the waking itself is what the models check.
pub type ProducerWake = StdArc<dyn Wake>;

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    /// Producers refused for lack of room since a consumer last took items.
    refused: Vec<ProducerWake>,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Consumers sleeping in [`Receiver::recv`] wait here.
    ready: Condvar,
    /// Producers waiting in [`Sender::send`] wait here.
    room: Condvar,
    capacity: usize,
    /// How to wake a consumer that sleeps elsewhere.
    consumer: Option<Box<dyn Wake>>,
}

/// A producing end; cheap to clone. A clone made with [`Sender::waking`] speaks for another
/// producer.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
    /// Called once there is room again after a refusal.
    producer: Option<ProducerWake>,
}

/// A consuming end; cheap to clone (the webhook threads share one queue).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            shared: self.shared.clone(),
            producer: self.producer.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        Receiver {
            shared: self.shared.clone(),
        }
    }
}

/// Why a batch was given back (it is left in the caller's vector, untouched).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsent {
    /// No room now; a producer with a [`Wake`] is woken once there is.
    Full,
    /// The queue was closed: nothing will ever be taken again.
    Closed,
}

/// What [`Receiver::recv`] produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// At least one item was moved into the caller's vector.
    Items,
    /// The timeout passed with the queue still empty.
    TimedOut,
    /// Closed and empty: no item will ever come.
    Closed,
}

/// A queue of at most `capacity` items (a larger batch is taken when the queue is empty, so
/// no batch is refused forever). `consumer` is the consumer's [`Wake`] when it sleeps
/// somewhere the queue cannot see.
pub fn bounded<T>(capacity: usize, consumer: Option<Box<dyn Wake>>) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(1024)),
            closed: false,
            refused: Vec::new(),
        }),
        ready: Condvar::new(),
        room: Condvar::new(),
        capacity,
        consumer,
    });
    (
        Sender {
            shared: shared.clone(),
            producer: None,
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// A sender for a producer that `wake` wakes after a refusal.
    pub fn waking(&self, wake: ProducerWake) -> Sender<T> {
        Sender {
            shared: self.shared.clone(),
            producer: Some(wake),
        }
    }

    /// Moves every item of `batch` into the queue without ever blocking, or leaves `batch` as
    /// it was. After [`Unsent::Full`] this sender's [`Wake`] is called once there is room.
    pub fn try_send(&self, batch: &mut Vec<T>) -> Result<(), Unsent> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        if state.closed {
            return Err(Unsent::Closed);
        }
        if !fits(&state, batch.len(), self.shared.capacity) {
            // Asked for under the same lock as the refusal: the consumer's next take sees it.
            if let Some(wake) = &self.producer {
                if !state.refused.iter().any(|w| StdArc::ptr_eq(w, wake)) {
                    state.refused.push(wake.clone());
                }
            }
            return Err(Unsent::Full);
        }
        self.push(state, batch);
        Ok(())
    }

    /// Moves every item of `batch` into the queue, waiting while it is full. On
    /// [`Unsent::Closed`] the items are dropped (`batch` is left empty either way, keeping an
    /// allocation worth reusing).
    pub fn send(&self, batch: &mut Vec<T>) -> Result<(), Unsent> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = self.lock();
        while !state.closed && !fits(&state, batch.len(), self.shared.capacity) {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if state.closed {
            drop(state);
            batch.clear();
            return Err(Unsent::Closed);
        }
        self.push(state, batch);
        Ok(())
    }

    /// Closes the queue: consumers take what is left, then see it closed; producers are
    /// refused from now on (and released if waiting).
    pub fn close(&self) {
        close(&self.shared, false);
    }

    /// Items waiting in the queue now (for the metrics: a depth, stale once read).
    pub fn queued(&self) -> usize {
        self.lock().items.len()
    }

    fn push(&self, mut state: MutexGuard<'_, State<T>>, batch: &mut Vec<T>) {
        let was_empty = state.items.is_empty();
        state.items.extend(batch.drain(..));
        // Under the lock: a consumer between its emptiness check and its wait cannot miss it.
        self.shared.ready.notify_all();
        drop(state);
        if was_empty {
            if let Some(consumer) = &self.shared.consumer {
                consumer.wake();
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn fits<T>(state: &State<T>, extra: usize, capacity: usize) -> bool {
    state.items.is_empty() || state.items.len() + extra <= capacity
}

impl<T> Receiver<T> {
    /// Moves everything queued into `into` without waiting; returns whether anything was.
    pub fn drain(&self, into: &mut Vec<T>) -> bool {
        let state = self.lock();
        if state.items.is_empty() {
            return false;
        }
        self.take(state, into, usize::MAX);
        true
    }

    /// Waits (forever when `timeout` is `None`) until something is queued, then moves up to
    /// `max` items (at least one) into `into`, oldest first.
    pub fn recv(&self, into: &mut Vec<T>, max: usize, timeout: Option<Duration>) -> Received {
        let mut state = self.lock();
        loop {
            if !state.items.is_empty() {
                self.take(state, into, max.max(1));
                return Received::Items;
            }
            if state.closed {
                return Received::Closed;
            }
            match timeout {
                None => {
                    state = self
                        .shared
                        .ready
                        .wait(state)
                        .unwrap_or_else(|e| e.into_inner());
                }
                Some(limit) => {
                    let (next, result) = self
                        .shared
                        .ready
                        .wait_timeout(state, limit)
                        .unwrap_or_else(|e| e.into_inner());
                    state = next;
                    if result.timed_out() && state.items.is_empty() && !state.closed {
                        return Received::TimedOut;
                    }
                }
            }
        }
    }

    /// The consumer is leaving: drop what is queued and refuse everything from now on, so
    /// that no producer waits for room that will never come.
    pub fn close(&self) {
        close(&self.shared, true);
    }

    fn take(&self, mut state: MutexGuard<'_, State<T>>, into: &mut Vec<T>, max: usize) {
        let count = state.items.len().min(max);
        into.extend(state.items.drain(..count));
        self.shared.room.notify_all();
        let refused = std::mem::take(&mut state.refused);
        drop(state);
        for wake in refused {
            wake.wake();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn close<T>(shared: &Shared<T>, drop_items: bool) {
    let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    state.closed = true;
    let dropped = if drop_items {
        std::mem::take(&mut state.items)
    } else {
        VecDeque::new()
    };
    shared.ready.notify_all();
    shared.room.notify_all();
    let refused = std::mem::take(&mut state.refused);
    drop(state);
    drop(dropped);
    for wake in refused {
        wake.wake();
    }
    if let Some(consumer) = &shared.consumer {
        consumer.wake();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    impl Count {
        fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn woken_consumer(capacity: usize) -> (Arc<Count>, Sender<u32>, Receiver<u32>) {
        let count = Arc::new(Count::default());
        let (tx, rx) = bounded(capacity, Some(Box::new(count.clone())));
        (count, tx, rx)
    }

    #[test]
    fn only_the_push_that_finds_it_empty_wakes_the_consumer() {
        let (wakes, tx, rx) = woken_consumer(10);
        tx.try_send(&mut vec![1, 2]).unwrap();
        tx.send(&mut vec![3]).unwrap();
        assert_eq!(wakes.get(), 1);
        let mut got = Vec::new();
        assert!(rx.drain(&mut got));
        assert_eq!(got, [1, 2, 3]);
        assert!(!rx.drain(&mut got));
        tx.try_send(&mut vec![4]).unwrap();
        assert_eq!(wakes.get(), 2);
    }

    #[test]
    fn a_refused_producer_keeps_its_batch_and_is_woken_when_room_is_made() {
        let (_, tx, rx) = woken_consumer(3);
        let first = Arc::new(Count::default());
        let second = Arc::new(Count::default());
        let a = tx.waking(first.clone());
        let b = tx.waking(second.clone());
        a.try_send(&mut vec![1, 2]).unwrap();
        let mut batch = vec![10, 11];
        assert_eq!(b.try_send(&mut batch), Err(Unsent::Full));
        assert_eq!(b.try_send(&mut batch), Err(Unsent::Full));
        assert_eq!(batch, [10, 11]);
        assert_eq!(second.get(), 0);
        rx.drain(&mut Vec::new());
        assert_eq!((first.get(), second.get()), (0, 1));
        // An empty queue takes a batch larger than its capacity rather than refuse it forever.
        b.try_send(&mut vec![1, 2, 3, 4, 5]).unwrap();
    }

    #[test]
    fn recv_takes_at_most_max_in_order_and_times_out_when_empty() {
        let (tx, rx) = bounded(4, None);
        tx.try_send(&mut vec![1, 2, 3]).unwrap();
        let mut got = Vec::new();
        assert_eq!(rx.recv(&mut got, 1, None), Received::Items);
        assert_eq!(rx.recv(&mut got, 10, None), Received::Items);
        assert_eq!(got, [1, 2, 3]);
        let timeout = Some(Duration::from_millis(5));
        assert_eq!(rx.recv(&mut got, 10, timeout), Received::TimedOut);
    }

    #[test]
    fn send_waits_for_room() {
        let (_, tx, rx) = woken_consumer(2);
        tx.send(&mut vec![1, 2]).unwrap();
        let sender = tx.clone();
        let blocked = std::thread::spawn(move || sender.send(&mut vec![3]));
        let mut got = Vec::new();
        for _ in 0..10_000 {
            if got.len() == 3 {
                break;
            }
            rx.drain(&mut got);
            std::thread::yield_now();
        }
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(blocked.join().unwrap(), Ok(()));
    }

    #[test]
    fn closing_by_the_producer_drains_then_reports_closed() {
        let (tx, rx) = bounded(4, None);
        tx.try_send(&mut vec![1]).unwrap();
        tx.close();
        let mut batch = vec![2];
        assert_eq!(tx.try_send(&mut batch), Err(Unsent::Closed));
        assert_eq!(batch, [2]);
        let mut got = Vec::new();
        assert_eq!(rx.recv(&mut got, 10, None), Received::Items);
        assert_eq!(rx.recv(&mut got, 10, None), Received::Closed);
        assert_eq!(got, [1]);
    }

    #[test]
    fn closing_by_the_consumer_releases_a_waiting_producer_and_wakes_refused_ones() {
        let (_, tx, rx) = woken_consumer(1);
        let refused = Arc::new(Count::default());
        tx.send(&mut vec![1]).unwrap();
        assert_eq!(
            tx.waking(refused.clone()).try_send(&mut vec![2]),
            Err(Unsent::Full)
        );
        let sender = tx.clone();
        let blocked = std::thread::spawn(move || sender.send(&mut vec![3]));
        std::thread::sleep(Duration::from_millis(20));
        rx.close();
        assert_eq!(blocked.join().unwrap(), Err(Unsent::Closed));
        assert_eq!(refused.get(), 1);
        assert!(!rx.drain(&mut Vec::new()), "queued items were dropped");
    }
}
