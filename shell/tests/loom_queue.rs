//! Loom model of the one hand-off queue (`queue`), run with
//! `RUSTFLAGS="--cfg loom" cargo test -p ferrocast --release --test loom_queue`.
//!
//! The model is every use the shell makes of the queue at once, on a queue with room for two
//! items: a worker that never blocks (`try_send`; refused, it keeps its batch and sleeps on its
//! waker until woken for room, as it sleeps in `mio::Poll::poll`), a producer that waits for
//! room (`send`, the engine thread on a full `to_worker`), and a consumer that sleeps either
//! on its waker and drains (a worker, or the inline engine draining the door) or on the
//! queue's condition variable (the engine thread, the webhook threads). Checked over every
//! interleaving (up to a preemption bound): no lost wake-up of any sleeper (loom reports a
//! deadlock), nothing lost or duplicated, FIFO per producer, batches kept whole, and a close
//! seen only after the last item.
//!
//! A deliberately broken twin (it refuses a batch in one critical section and asks to be woken
//! for room in another, so the consumer can take the queue in between and wake nobody) is run
//! in a child process by a test that expects the model to report a deadlock (loom aborts the
//! process while unwinding out of one). A `mio::Waker` is modelled by a loom `Notify`: one
//! stored permit, and a wait may return spuriously, like a poll returning for another event.
#![cfg(loom)]

use ferrocast::Wake;
use ferrocast::{bounded_queue, ProducerWake, Received, Receiver, Sender, Unsent};
use loom::sync::{Arc, Mutex, Notify};
use loom::thread;

/// A sleeping thread's waker in the model.
struct Flag(Arc<Notify>);

impl Wake for Flag {
    fn wake(&self) {
        self.0.notify();
    }
}

/// How the consumer sleeps.
#[derive(Clone, Copy, Debug)]
enum Consumer {
    /// On its waker, draining everything each turn (an I/O worker).
    Waker,
    /// On the queue's condition variable (the engine thread).
    Condvar,
}

/// What the model needs from a queue.
trait Queue: Send + Sync + 'static {
    fn new(capacity: usize, consumer: Option<Box<dyn Wake>>, worker: ProducerWake) -> Self;
    /// The worker's non-blocking send; a refusal leaves `batch` and promises a wake for room.
    fn try_send(&self, batch: &mut Vec<u32>) -> bool;
    /// The blocking producer's send.
    fn send(&self, batch: Vec<u32>);
    /// Takes everything without waiting.
    fn drain(&self, into: &mut Vec<u32>);
    /// Waits for items; `false` once closed and empty.
    fn recv(&self, into: &mut Vec<u32>) -> bool;
    fn close(&self);
}

/// The real queue, its ends kept together for the model.
struct Real {
    worker: Sender<u32>,
    engine: Sender<u32>,
    rx: Receiver<u32>,
}

impl Queue for Real {
    fn new(capacity: usize, consumer: Option<Box<dyn Wake>>, worker: ProducerWake) -> Self {
        let (engine, rx) = bounded_queue(capacity, consumer);
        Real {
            worker: engine.waking(worker),
            engine,
            rx,
        }
    }
    fn try_send(&self, batch: &mut Vec<u32>) -> bool {
        match self.worker.try_send(batch) {
            Ok(()) => true,
            Err(Unsent::Full) => false,
            Err(Unsent::Closed) => panic!("closed while a producer was still sending"),
        }
    }
    fn send(&self, mut batch: Vec<u32>) {
        self.engine.send(&mut batch).expect("the consumer is alive");
    }
    fn drain(&self, into: &mut Vec<u32>) {
        self.rx.drain(into);
    }
    fn recv(&self, into: &mut Vec<u32>) -> bool {
        match self.rx.recv(into, usize::MAX, None) {
            Received::Items => true,
            Received::Closed => false,
            Received::TimedOut => unreachable!("no timeout was given"),
        }
    }
    fn close(&self) {
        self.engine.close();
    }
}

/// The broken twin: the real queue, except that a refused worker asks to be woken for room in
/// a second critical section after the refusal (modelled by a flag of its own that the
/// consumer checks when it takes).
struct Forgetful {
    inner: Real,
    state: Mutex<Vec<u32>>,
    wants_room: Mutex<bool>,
    worker: ProducerWake,
    capacity: usize,
}

impl Queue for Forgetful {
    fn new(capacity: usize, consumer: Option<Box<dyn Wake>>, worker: ProducerWake) -> Self {
        Forgetful {
            // The inner queue's worker end is never refused (huge capacity); fullness is
            // judged by `state`, which mirrors what is queued.
            inner: Real::new(usize::MAX, consumer, worker.clone()),
            state: Mutex::new(Vec::new()),
            wants_room: Mutex::new(false),
            worker,
            capacity,
        }
    }
    fn try_send(&self, batch: &mut Vec<u32>) -> bool {
        {
            let mut queued = self.state.lock().unwrap();
            let fits = queued.is_empty() || queued.len() + batch.len() <= self.capacity;
            if fits {
                queued.extend(batch.iter().copied());
                let mut items = std::mem::take(batch);
                self.inner.worker.try_send(&mut items).unwrap();
                return true;
            }
        }
        // The bug: the consumer may take everything right here and see nobody waiting.
        *self.wants_room.lock().unwrap() = true;
        false
    }
    fn send(&self, batch: Vec<u32>) {
        self.state.lock().unwrap().extend(batch.iter().copied());
        self.inner.send(batch);
    }
    fn drain(&self, into: &mut Vec<u32>) {
        let mut queued = self.state.lock().unwrap();
        self.inner.drain(into);
        queued.clear();
        drop(queued);
        self.wake_refused();
    }
    fn recv(&self, into: &mut Vec<u32>) -> bool {
        let more = self.inner.recv(into);
        self.state.lock().unwrap().clear();
        self.wake_refused();
        more
    }
    fn close(&self) {
        self.inner.close();
    }
}

impl Forgetful {
    fn wake_refused(&self) {
        if std::mem::take(&mut *self.wants_room.lock().unwrap()) {
            self.worker.wake();
        }
    }
}

/// The worker offers [1] then [2, 3] (refused while [1] is queued next to the engine's item),
/// the blocking producer sends [10] then [11]; the consumer takes all six.
fn check<Q: Queue>(consumer: Consumer, preemptions: usize) {
    let mut model = loom::model::Builder::new();
    if model.preemption_bound.is_none() {
        model.preemption_bound = Some(preemptions);
    }
    model.check(move || {
        let consumer_wake = Arc::new(Notify::new());
        let worker_wake = Arc::new(Notify::new());
        let consumer_waker: Option<Box<dyn Wake>> = match consumer {
            Consumer::Waker => Some(Box::new(Flag(consumer_wake.clone()))),
            Consumer::Condvar => None,
        };
        let worker_waker: ProducerWake = std::sync::Arc::new(Flag(worker_wake.clone()));
        let queue = Arc::new(Q::new(2, consumer_waker, worker_waker));
        let worker = {
            let queue = queue.clone();
            thread::spawn(move || {
                for mut batch in [vec![1], vec![2, 3]] {
                    while !queue.try_send(&mut batch) {
                        worker_wake.wait();
                    }
                }
            })
        };
        let engine = {
            let queue = queue.clone();
            thread::spawn(move || {
                queue.send(vec![10]);
                queue.send(vec![11]);
            })
        };
        let mut got = Vec::new();
        let mut takes = Vec::new();
        while got.len() < 5 {
            let mut taken = Vec::new();
            match consumer {
                Consumer::Waker => {
                    queue.drain(&mut taken);
                    if taken.is_empty() {
                        consumer_wake.wait();
                    }
                }
                Consumer::Condvar => assert!(queue.recv(&mut taken), "closed too early"),
            }
            got.extend(taken.iter().copied());
            takes.push(taken);
        }
        worker.join().unwrap();
        engine.join().unwrap();
        queue.close();
        if let Consumer::Condvar = consumer {
            assert!(!queue.recv(&mut Vec::new()), "closed after the last item");
        }

        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2, 3, 10, 11], "lost or duplicated: {got:?}");
        let at = |x| got.iter().position(|&i| i == x).unwrap();
        assert!(at(1) < at(2) && at(2) < at(3), "FIFO broken: {got:?}");
        assert!(at(10) < at(11), "FIFO broken: {got:?}");
        assert!(at(3) == at(2) + 1, "a batch was split: {takes:?}");
    });
}

#[test]
fn a_consumer_on_its_waker_loses_no_wakeup_or_item() {
    check::<Real>(Consumer::Waker, 3);
}

#[test]
fn a_consumer_on_the_condvar_loses_no_wakeup_or_item() {
    check::<Real>(Consumer::Condvar, 3);
}

/// A consumer that leaves closes the queue: a producer waiting for room goes on.
#[test]
fn a_consumer_closing_releases_a_producer_waiting_for_room() {
    loom::model(|| {
        let (tx, rx) = bounded_queue::<u32>(1, None);
        let producer = thread::spawn(move || {
            let first = tx.send(&mut vec![1]);
            let second = tx.send(&mut vec![2]);
            (first, second)
        });
        rx.close();
        let (first, second) = producer.join().unwrap();
        assert!(first.is_ok() || first == Err(Unsent::Closed));
        assert_eq!(second, Err(Unsent::Closed));
    });
}

#[test]
#[ignore = "run as a child process by the_model_catches_a_lost_room_wakeup"]
fn forgetful_queue_model() {
    check::<Forgetful>(Consumer::Waker, 3);
}

#[test]
#[should_panic(expected = "deadlock")]
fn the_model_catches_a_lost_room_wakeup() {
    let name = "forgetful_queue_model";
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .output()
        .expect("run the broken model");
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        !child.status.success(),
        "the model passed a queue that loses wake-ups ({name})"
    );
    // Re-raise the model's verdict here, where it can be caught.
    let verdict = stderr
        .lines()
        .find(|l| l.starts_with("deadlock"))
        .unwrap_or("no deadlock reported");
    panic!("{verdict}");
}
