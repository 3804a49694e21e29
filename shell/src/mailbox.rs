//! An I/O worker's mailbox: the engine thread (and the accepting worker) append batches, the
//! worker takes everything at the start of each loop turn.
//!
//! The worker sleeps in `mio::Poll::poll`, so an append that finds the mailbox empty calls the
//! worker's [`Wake`] (a `mio::Waker`); appends to a non-empty mailbox need none, because the
//! wake that made it non-empty has not been answered by a take yet. Both the emptiness check
//! and the append happen under one lock, which is what makes that reasoning hold (the loom
//! model in `tests/loom_workers.rs` checks it, and catches a twin that gets it wrong).
//!
//! Bounded in items: [`MailboxSender::send`] waits for room (the engine thread may block, as
//! workers never wait for the engine), [`MailboxSender::try_send`] never does.

use crate::wake::Wake;
#[cfg(loom)]
use loom::sync::{Arc, Condvar, Mutex};
#[cfg(not(loom))]
use std::sync::{Arc, Condvar, Mutex};

struct State<T> {
    items: Vec<T>,
    closed: bool,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    room: Condvar,
    capacity: usize,
    waker: Box<dyn Wake>,
}

/// The appending end; cheap to clone.
pub struct MailboxSender<T> {
    shared: Arc<Shared<T>>,
}

/// The worker's end.
pub struct MailboxReceiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        MailboxSender {
            shared: self.shared.clone(),
        }
    }
}

/// Why an append did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unsent {
    /// No room now (only from [`MailboxSender::try_send`]).
    Full,
    /// The worker is gone; the batch was dropped.
    Closed,
}

/// A mailbox of at most `capacity` items (a larger batch is taken when it is empty) whose
/// consumer is woken through `waker`.
pub fn mailbox<T>(capacity: usize, waker: Box<dyn Wake>) -> (MailboxSender<T>, MailboxReceiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: Vec::new(),
            closed: false,
        }),
        room: Condvar::new(),
        capacity,
        waker,
    });
    (
        MailboxSender {
            shared: shared.clone(),
        },
        MailboxReceiver { shared },
    )
}

impl<T> MailboxSender<T> {
    /// Moves every item of `batch` into the mailbox, waiting while it is full; `batch` is left
    /// empty (and keeps an allocation worth reusing).
    pub fn send(&self, batch: &mut Vec<T>) -> Result<(), Unsent> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while !state.closed && !fits(&state, batch.len(), self.shared.capacity) {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        self.append(state, batch)
    }

    /// Like [`MailboxSender::send`] but never waits: a full mailbox leaves `batch` as it was.
    pub fn try_send(&self, batch: &mut Vec<T>) -> Result<(), Unsent> {
        if batch.is_empty() {
            return Ok(());
        }
        let state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.closed && !fits(&state, batch.len(), self.shared.capacity) {
            return Err(Unsent::Full);
        }
        self.append(state, batch)
    }

    fn append(&self, mut state: Guard<'_, T>, batch: &mut Vec<T>) -> Result<(), Unsent> {
        if state.closed {
            batch.clear();
            return Err(Unsent::Closed);
        }
        let was_empty = state.items.is_empty();
        if was_empty {
            std::mem::swap(&mut state.items, batch);
        } else {
            state.items.append(batch);
        }
        drop(state);
        if was_empty {
            self.shared.waker.wake();
        }
        Ok(())
    }
}

#[cfg(loom)]
type Guard<'a, T> = loom::sync::MutexGuard<'a, State<T>>;
#[cfg(not(loom))]
type Guard<'a, T> = std::sync::MutexGuard<'a, State<T>>;

fn fits<T>(state: &State<T>, extra: usize, capacity: usize) -> bool {
    state.items.is_empty() || state.items.len() + extra <= capacity
}

impl<T> MailboxReceiver<T> {
    /// Moves everything queued into `into` (expected empty: its allocation is handed back to
    /// the producers) and lets a producer waiting for room go on.
    pub fn drain(&self, into: &mut Vec<T>) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.items.is_empty() {
            return;
        }
        if into.is_empty() {
            std::mem::swap(&mut state.items, into);
        } else {
            into.append(&mut state.items);
        }
        self.shared.room.notify_all();
    }

    /// The worker is leaving: drop what is queued and refuse everything from now on, so that
    /// no producer waits for room that will never come.
    pub fn close(&self) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.closed = true;
        let dropped = std::mem::take(&mut state.items);
        self.shared.room.notify_all();
        drop(state);
        drop(dropped);
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

    fn counted(capacity: usize) -> (Arc<Count>, MailboxSender<u32>, MailboxReceiver<u32>) {
        let count = Arc::new(Count::default());
        let (tx, rx) = mailbox(capacity, Box::new(count.clone()));
        (count, tx, rx)
    }

    #[test]
    fn only_the_append_that_finds_it_empty_wakes_the_worker() {
        let (wakes, tx, rx) = counted(10);
        tx.send(&mut vec![1, 2]).unwrap();
        tx.send(&mut vec![3]).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        let mut got = Vec::new();
        rx.drain(&mut got);
        assert_eq!(got, [1, 2, 3]);
        tx.send(&mut vec![4]).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn try_send_leaves_the_batch_when_full_and_send_waits_for_room() {
        let (_, tx, rx) = counted(2);
        tx.send(&mut vec![1, 2]).unwrap();
        let mut batch = vec![3];
        assert_eq!(tx.try_send(&mut batch), Err(Unsent::Full));
        assert_eq!(batch, [3]);
        let sender = tx.clone();
        let blocked = std::thread::spawn(move || sender.send(&mut vec![3]));
        let mut got = Vec::new();
        while got.len() < 3 {
            rx.drain(&mut got);
            std::thread::yield_now();
        }
        assert_eq!(got, [1, 2, 3]);
        assert_eq!(blocked.join().unwrap(), Ok(()));
    }

    #[test]
    fn a_closed_mailbox_refuses_and_releases_a_waiting_sender() {
        let (_, tx, rx) = counted(1);
        tx.send(&mut vec![1]).unwrap();
        let sender = tx.clone();
        let blocked = std::thread::spawn(move || sender.send(&mut vec![2]));
        std::thread::sleep(std::time::Duration::from_millis(20));
        rx.close();
        assert_eq!(blocked.join().unwrap(), Err(Unsent::Closed));
        let mut batch = vec![3];
        assert_eq!(tx.try_send(&mut batch), Err(Unsent::Closed));
        assert!(batch.is_empty());
    }
}
