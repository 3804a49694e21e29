//! A bounded queue handing work from the event loop to worker threads.
//!
//! The event loop must never block, so producers only `try_send`: a full queue is the
//! caller's to count and report. Consumers block (optionally with a timeout) until an item
//! arrives or the queue is closed and drained. Built on a mutex and a condition variable so
//! that loom can check it (`RUSTFLAGS="--cfg loom"`): no lost wake-up, nothing lost or
//! duplicated, FIFO per producer, clean shutdown.

#[cfg(loom)]
use loom::sync::{Arc, Condvar, Mutex};
use std::collections::VecDeque;
#[cfg(not(loom))]
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

struct State<T> {
    items: VecDeque<T>,
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
    capacity: usize,
}

/// The producing end; cheap to clone.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The consuming end; cheap to clone (several workers may share one queue).
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        Sender {
            shared: self.shared.clone(),
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

/// Why `try_send` gave the item back.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError<T> {
    /// The queue holds `capacity` items already.
    Full(T),
    /// The queue was closed.
    Closed(T),
}

/// What a receive produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<T> {
    /// The oldest item.
    Item(T),
    /// The timeout passed with the queue still empty.
    TimedOut,
    /// The queue is closed and empty: no item will ever come.
    Closed,
}

/// A queue that holds at most `capacity` items.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::with_capacity(capacity.min(1024)),
            closed: false,
        }),
        ready: Condvar::new(),
        capacity,
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `item` without ever blocking on a full queue.
    pub fn try_send(&self, item: T) -> Result<(), SendError<T>> {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.closed {
            return Err(SendError::Closed(item));
        }
        if state.items.len() >= self.shared.capacity {
            return Err(SendError::Full(item));
        }
        state.items.push_back(item);
        // Notify while holding the lock: a consumer between its emptiness check and its
        // wait still holds the lock, so it cannot miss this.
        self.shared.ready.notify_one();
        Ok(())
    }

    /// Closes the queue: consumers drain what is left, then see `Closed`.
    pub fn close(&self) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        self.shared.ready.notify_all();
    }
}

impl<T> Receiver<T> {
    /// Waits for an item (forever when `timeout` is `None`).
    pub fn recv(&self, timeout: Option<Duration>) -> Received<T> {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(item) = state.items.pop_front() {
                return Received::Item(item);
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
                        .unwrap_or_else(|e| e.into_inner())
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
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn full_queue_gives_the_item_back_and_order_is_kept() {
        let (tx, rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(SendError::Full(3)));
        assert_eq!(rx.recv(None), Received::Item(1));
        assert_eq!(rx.recv(None), Received::Item(2));
        assert_eq!(rx.recv(Some(Duration::from_millis(5))), Received::TimedOut);
    }

    #[test]
    fn close_drains_then_reports_closed_and_refuses_more() {
        let (tx, rx) = bounded(4);
        tx.try_send("a").unwrap();
        tx.close();
        assert_eq!(tx.try_send("b"), Err(SendError::Closed("b")));
        assert_eq!(rx.recv(None), Received::Item("a"));
        assert_eq!(rx.recv(None), Received::Closed);
    }

    #[test]
    fn a_blocked_consumer_wakes_for_an_item_from_another_thread() {
        let (tx, rx) = bounded(1);
        let consumer = std::thread::spawn(move || rx.recv(Some(Duration::from_secs(10))));
        tx.try_send(7).unwrap();
        assert_eq!(consumer.join().unwrap(), Received::Item(7));
    }
}
