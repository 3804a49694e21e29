//! The engine thread's inbox: I/O workers hand it batches of inputs, it takes all of them at
//! once.
//!
//! Bounded in inputs and never lossy. A worker never blocks here: a batch that does not fit is
//! given back, the worker keeps it, stops reading its sockets, and is woken through its
//! [`Wake`] once the engine has taken what was queued (the refusal and the request for that
//! wake happen under one lock, so the wake cannot be missed). The engine blocks on a condition
//! variable, with a timeout for its next timer. Loom-checked in `tests/loom_workers.rs`: no
//! lost wake-up either way, nothing lost or duplicated, FIFO per worker, clean close.

use crate::wake::Wake;
#[cfg(loom)]
use loom::sync::{Arc, Condvar, Mutex};
use std::collections::VecDeque;
#[cfg(not(loom))]
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

struct State<T> {
    batches: VecDeque<Vec<T>>,
    /// Items in `batches`.
    items: usize,
    closed: bool,
    /// Producers refused for lack of room since the consumer last took the queue.
    waiting: Vec<bool>,
    any_waiting: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
    producers: Vec<Box<dyn Wake>>,
}

/// One producer's end (one per I/O worker; a clone speaks for the same producer).
pub struct InboxSender<T> {
    shared: Arc<Shared<T>>,
    producer: usize,
}

impl<T> Clone for InboxSender<T> {
    fn clone(&self) -> Self {
        InboxSender {
            shared: self.shared.clone(),
            producer: self.producer,
        }
    }
}

/// The consumer's end (the engine thread).
pub struct InboxReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// Why [`InboxSender::try_send`] gave the batch back.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<T> {
    /// No room now; the producer's [`Wake`] is called once the consumer has made some.
    Full(Vec<T>),
    /// The inbox was closed.
    Closed(Vec<T>),
}

/// What [`InboxReceiver::recv`] produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Taken<T> {
    /// Every queued batch, oldest first.
    Batches(VecDeque<Vec<T>>),
    /// The timeout passed with nothing queued.
    TimedOut,
    /// Closed and empty: nothing will ever come.
    Closed,
}

/// An inbox holding at most `capacity` items (a larger batch is taken when the inbox is
/// empty), with one sender per waker in `producers`, in the same order.
pub fn inbox<T>(
    capacity: usize,
    producers: Vec<Box<dyn Wake>>,
) -> (Vec<InboxSender<T>>, InboxReceiver<T>) {
    let count = producers.len();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            batches: VecDeque::new(),
            items: 0,
            closed: false,
            waiting: vec![false; count],
            any_waiting: false,
        }),
        ready: Condvar::new(),
        capacity,
        producers,
    });
    let senders = (0..count)
        .map(|producer| InboxSender {
            shared: shared.clone(),
            producer,
        })
        .collect();
    (senders, InboxReceiver { shared })
}

impl<T> InboxSender<T> {
    /// Queues `batch` without blocking, or gives it back.
    pub fn try_send(&self, batch: Vec<T>) -> Result<(), Refused<T>> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.closed {
            return Err(Refused::Closed(batch));
        }
        if state.items > 0 && state.items + batch.len() > self.shared.capacity {
            // Asked for under the same lock as the refusal: the consumer's next take sees it.
            state.waiting[self.producer] = true;
            state.any_waiting = true;
            return Err(Refused::Full(batch));
        }
        state.items += batch.len();
        state.batches.push_back(batch);
        // Under the lock: a consumer between its emptiness check and its wait cannot miss it.
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Closes the inbox: the consumer takes what is left, then sees `Closed`.
    pub fn close(&self) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        self.shared.ready.notify_all();
        let waiting = take_waiting(&mut state);
        drop(state);
        self.shared.wake(&waiting);
    }
}

impl<T> InboxReceiver<T> {
    /// Waits (forever when `timeout` is `None`) until something is queued, then takes it all
    /// and wakes the producers that were refused.
    pub fn recv(&self, timeout: Option<Duration>) -> Taken<T> {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !state.batches.is_empty() {
                let batches = std::mem::take(&mut state.batches);
                state.items = 0;
                let waiting = take_waiting(&mut state);
                drop(state);
                self.shared.wake(&waiting);
                return Taken::Batches(batches);
            }
            if state.closed {
                return Taken::Closed;
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
                    if result.timed_out() && state.batches.is_empty() && !state.closed {
                        return Taken::TimedOut;
                    }
                }
            }
        }
    }
}

fn take_waiting<T>(state: &mut State<T>) -> Vec<usize> {
    if !std::mem::take(&mut state.any_waiting) {
        return Vec::new();
    }
    let mut woken = Vec::new();
    for (producer, waiting) in state.waiting.iter_mut().enumerate() {
        if std::mem::take(waiting) {
            woken.push(producer);
        }
    }
    woken
}

impl<T> Shared<T> {
    fn wake(&self, producers: &[usize]) {
        for &producer in producers {
            if let Some(waker) = self.producers.get(producer) {
                waker.wake();
            }
        }
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

    fn two_producers(
        capacity: usize,
    ) -> (Vec<Arc<Count>>, Vec<InboxSender<u32>>, InboxReceiver<u32>) {
        let counts: Vec<Arc<Count>> = (0..2).map(|_| Arc::new(Count::default())).collect();
        let wakers = counts
            .iter()
            .map(|c| Box::new(c.clone()) as Box<dyn Wake>)
            .collect();
        let (senders, receiver) = inbox(capacity, wakers);
        (counts, senders, receiver)
    }

    #[test]
    fn takes_every_batch_at_once_in_order() {
        let (_, tx, rx) = two_producers(10);
        tx[0].try_send(vec![1, 2]).unwrap();
        tx[1].try_send(vec![10]).unwrap();
        tx[0].try_send(vec![3]).unwrap();
        let Taken::Batches(batches) = rx.recv(None) else {
            panic!("expected batches");
        };
        assert_eq!(Vec::from(batches), [vec![1, 2], vec![10], vec![3]]);
        assert_eq!(rx.recv(Some(Duration::from_millis(5))), Taken::TimedOut);
    }

    #[test]
    fn a_refused_producer_keeps_its_batch_and_is_woken_when_room_is_made() {
        let (counts, tx, rx) = two_producers(3);
        tx[0].try_send(vec![1, 2]).unwrap();
        assert_eq!(
            tx[1].try_send(vec![10, 11]),
            Err(Refused::Full(vec![10, 11]))
        );
        assert_eq!(counts[1].0.load(Ordering::SeqCst), 0);
        assert!(matches!(rx.recv(None), Taken::Batches(_)));
        assert_eq!(counts[1].0.load(Ordering::SeqCst), 1);
        assert_eq!(counts[0].0.load(Ordering::SeqCst), 0);
        // An empty inbox takes a batch larger than its capacity rather than refuse it forever.
        tx[1].try_send(vec![1, 2, 3, 4, 5]).unwrap();
    }

    #[test]
    fn close_drains_then_reports_closed_and_wakes_refused_producers() {
        let (counts, tx, rx) = two_producers(1);
        tx[0].try_send(vec![1]).unwrap();
        assert!(matches!(tx[1].try_send(vec![2]), Err(Refused::Full(_))));
        tx[0].close();
        assert_eq!(counts[1].0.load(Ordering::SeqCst), 1);
        assert_eq!(tx[1].try_send(vec![3]), Err(Refused::Closed(vec![3])));
        assert!(matches!(rx.recv(None), Taken::Batches(_)));
        assert_eq!(rx.recv(None), Taken::Closed);
    }
}
