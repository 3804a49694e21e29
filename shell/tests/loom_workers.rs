//! Loom models of the hand-offs between the I/O workers and the engine thread, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p ferrocast --release --test loom_workers`.
//!
//! - Worker → engine (`inbox`): two workers hand over batches without ever blocking; a batch
//!   that does not fit is kept and retried once the worker is woken for room. Checked: no lost
//!   wake-up (either the engine's or a refused worker's), nothing lost or duplicated, FIFO per
//!   worker, batches kept whole, close after the last batch.
//! - Engine → worker (`mailbox`): the engine appends batches (waiting while the mailbox is
//!   full), the worker sleeps until its waker is called, as it sleeps in `mio::Poll::poll`.
//!   Checked: no lost wake-up, no lost room notification, order, and that closing the mailbox
//!   releases an engine waiting for room. The accepting worker appends sockets to the same
//!   mailbox without ever waiting; a model with both producers checks that too.
//! - Supervisor → worker (`supervisor::Stop` plus the worker's waker): a stop request is
//!   never slept through.
//!
//! Each model has a deliberately broken twin, run in a child process (loom aborts the process
//! while unwinding out of a deadlock) by a test that expects the model to report a deadlock.
//! A worker's `mio::Waker` is modelled by a loom `Notify`: one stored permit, and a wait may
//! return spuriously, like a poll returning for some other event.
#![cfg(loom)]

use ferrocast::inbox::{self, InboxReceiver, InboxSender, Refused, Taken};
use ferrocast::mailbox::{self, MailboxReceiver, MailboxSender, Unsent};
use ferrocast::supervisor::{Stop, StopLevel};
use ferrocast::wake::Wake;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex, Notify};
use loom::thread;
use std::collections::VecDeque;

/// A thread's waker in the model.
struct Flag(Arc<Notify>);

impl Wake for Flag {
    fn wake(&self) {
        self.0.notify();
    }
}

fn flag() -> (Arc<Notify>, Box<dyn Wake>) {
    let notify = Arc::new(Notify::new());
    (notify.clone(), Box::new(Flag(notify)))
}

// ---- worker → engine ------------------------------------------------------------------------

/// What the inbox model needs: non-blocking sends per producer, a blocking take-all.
trait Inbox: Send + Sync + 'static {
    fn new(capacity: usize, wakers: Vec<Box<dyn Wake>>) -> Self;
    /// Queues the batch or gives it back (the producer is then woken once there is room).
    fn try_send(&self, producer: usize, batch: Vec<u32>) -> Result<(), Vec<u32>>;
    /// Blocks until batches are queued and takes them all; `None` once closed and empty.
    fn take_all(&self) -> Option<Vec<Vec<u32>>>;
    fn close(&self);
}

struct RealInbox(Vec<InboxSender<u32>>, InboxReceiver<u32>);

impl Inbox for RealInbox {
    fn new(capacity: usize, wakers: Vec<Box<dyn Wake>>) -> Self {
        let (senders, receiver) = inbox::inbox(capacity, wakers);
        RealInbox(senders, receiver)
    }
    fn try_send(&self, producer: usize, batch: Vec<u32>) -> Result<(), Vec<u32>> {
        match self.0[producer].try_send(batch) {
            Ok(()) => Ok(()),
            Err(Refused::Full(batch)) => Err(batch),
            Err(Refused::Closed(_)) => panic!("closed while a worker was still sending"),
        }
    }
    fn take_all(&self) -> Option<Vec<Vec<u32>>> {
        match self.1.recv(None) {
            Taken::Batches(batches) => Some(batches.into()),
            Taken::Closed => None,
            Taken::TimedOut => unreachable!("no timeout was given"),
        }
    }
    fn close(&self) {
        self.0[0].close();
    }
}

/// The broken twin: refuses a batch in one critical section and asks to be woken for room
/// in another, so the engine can take the queue in between and wake nobody.
struct ForgetfulInbox {
    state: Mutex<ForgetfulState>,
    ready: Condvar,
    capacity: usize,
    wakers: Vec<Box<dyn Wake>>,
}

struct ForgetfulState {
    batches: VecDeque<Vec<u32>>,
    items: usize,
    waiting: Vec<bool>,
    closed: bool,
}

impl Inbox for ForgetfulInbox {
    fn new(capacity: usize, wakers: Vec<Box<dyn Wake>>) -> Self {
        ForgetfulInbox {
            state: Mutex::new(ForgetfulState {
                batches: VecDeque::new(),
                items: 0,
                waiting: vec![false; wakers.len()],
                closed: false,
            }),
            ready: Condvar::new(),
            capacity,
            wakers,
        }
    }
    fn try_send(&self, producer: usize, batch: Vec<u32>) -> Result<(), Vec<u32>> {
        let full = {
            let state = self.state.lock().unwrap();
            state.items > 0 && state.items + batch.len() > self.capacity
        };
        if full {
            self.state.lock().unwrap().waiting[producer] = true;
            return Err(batch);
        }
        let mut state = self.state.lock().unwrap();
        state.items += batch.len();
        state.batches.push_back(batch);
        self.ready.notify_one();
        Ok(())
    }
    fn take_all(&self) -> Option<Vec<Vec<u32>>> {
        let mut state = self.state.lock().unwrap();
        loop {
            if !state.batches.is_empty() {
                let batches: Vec<Vec<u32>> = state.batches.drain(..).collect();
                state.items = 0;
                let woken: Vec<usize> = (0..state.waiting.len())
                    .filter(|&p| std::mem::take(&mut state.waiting[p]))
                    .collect();
                drop(state);
                for p in woken {
                    self.wakers[p].wake();
                }
                return Some(batches);
            }
            if state.closed {
                return None;
            }
            state = self.ready.wait(state).unwrap();
        }
    }
    fn close(&self) {
        self.state.lock().unwrap().closed = true;
        self.ready.notify_all();
    }
}

/// A worker's loop, reduced to its hand-off: offer each batch, and after a refusal sleep
/// until woken (as in `poll`), then offer the same batch again.
fn worker<I: Inbox>(inbox: &I, producer: usize, waker: &Notify, batches: Vec<Vec<u32>>) {
    for mut batch in batches {
        loop {
            match inbox.try_send(producer, batch) {
                Ok(()) => break,
                Err(refused) => {
                    batch = refused;
                    waker.wait();
                }
            }
        }
    }
}

/// Worker 0 offers [1], [2, 3]; worker 1 (if `two_workers`) offers [10]; the engine has room
/// for two inputs, so worker 0's second batch is refused until the engine takes the first.
/// With two workers the search is bounded (see [`bounded`]; exhaustive takes minutes).
fn check_inbox<I: Inbox>(two_workers: bool) {
    let model = if two_workers {
        bounded(3)
    } else {
        loom::model::Builder::new()
    };
    model.check(move || {
        let (wake0, waker0) = flag();
        let (wake1, waker1) = flag();
        let inbox = Arc::new(I::new(2, vec![waker0, waker1]));
        let first = {
            let inbox = inbox.clone();
            thread::spawn(move || worker(&*inbox, 0, &wake0, vec![vec![1], vec![2, 3]]))
        };
        let second = two_workers.then(|| {
            let inbox = inbox.clone();
            thread::spawn(move || worker(&*inbox, 1, &wake1, vec![vec![10]]))
        });
        let expected: &[u32] = if two_workers {
            &[1, 2, 3, 10]
        } else {
            &[1, 2, 3]
        };
        let mut batches = Vec::new();
        while batches.iter().map(Vec::len).sum::<usize>() < expected.len() {
            batches.extend(inbox.take_all().expect("closed too early"));
        }
        first.join().unwrap();
        if let Some(second) = second {
            second.join().unwrap();
        }
        inbox.close();
        assert!(inbox.take_all().is_none(), "close after the last batch");

        let got: Vec<u32> = batches.concat();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "lost or duplicated: {got:?}");
        assert!(
            batches.contains(&vec![2, 3]),
            "a batch was split: {batches:?}"
        );
        let at = |x| got.iter().position(|&i| i == x).unwrap();
        assert!(at(1) < at(2), "FIFO per worker broken: {got:?}");
    });
}

#[test]
fn worker_to_engine_backpressure_loses_no_wakeup_or_input() {
    check_inbox::<RealInbox>(false);
}

#[test]
fn two_workers_and_the_engine_lose_no_wakeup_or_input() {
    check_inbox::<RealInbox>(true);
}

#[test]
#[ignore = "run as a child process by the_inbox_model_catches_a_lost_room_wakeup"]
fn forgetful_inbox_model() {
    check_inbox::<ForgetfulInbox>(false);
}

#[test]
#[should_panic(expected = "deadlock")]
fn the_inbox_model_catches_a_lost_room_wakeup() {
    expect_deadlock("forgetful_inbox_model");
}

// ---- engine → worker ------------------------------------------------------------------------

/// What the mailbox model needs: a blocking append, a take-all, and the worker's last step
/// before it sleeps.
trait Mailbox: Send + Sync + 'static {
    fn new(capacity: usize, waker: Box<dyn Wake>) -> Self;
    fn send(&self, batch: Vec<u32>);
    fn drain(&self, into: &mut Vec<u32>);
    /// Called by the worker right before it sleeps.
    fn idle(&self) {}
}

struct RealMailbox(MailboxSender<u32>, MailboxReceiver<u32>);

impl Mailbox for RealMailbox {
    fn new(capacity: usize, waker: Box<dyn Wake>) -> Self {
        let (tx, rx) = mailbox::mailbox(capacity, waker);
        RealMailbox(tx, rx)
    }
    fn send(&self, mut batch: Vec<u32>) {
        self.0.send(&mut batch).expect("the worker is alive");
    }
    fn drain(&self, into: &mut Vec<u32>) {
        self.1.drain(into);
    }
}

/// The broken twin: only wakes a worker that said it was going to sleep, and the worker says
/// so after it took its mail, in a separate critical section. An append in between finds the
/// worker "awake", does not wake it, and the worker then sleeps on it.
struct SleepyMailbox {
    state: Mutex<(Vec<u32>, bool)>,
    waker: Box<dyn Wake>,
}

impl Mailbox for SleepyMailbox {
    fn new(_: usize, waker: Box<dyn Wake>) -> Self {
        SleepyMailbox {
            state: Mutex::new((Vec::new(), false)),
            waker,
        }
    }
    fn send(&self, mut batch: Vec<u32>) {
        let asleep = {
            let mut state = self.state.lock().unwrap();
            state.0.append(&mut batch);
            state.1
        };
        if asleep {
            self.waker.wake();
        }
    }
    fn drain(&self, into: &mut Vec<u32>) {
        let mut state = self.state.lock().unwrap();
        into.append(&mut state.0);
        state.1 = false;
    }
    fn idle(&self) {
        self.state.lock().unwrap().1 = true;
    }
}

/// The engine appends [1], [2, 3] and [4] to a mailbox with room for two items; the worker
/// takes its mail each turn and sleeps on its waker in between.
fn check_mailbox<M: Mailbox>() {
    loom::model(|| {
        let (wake, waker) = flag();
        let mailbox = Arc::new(M::new(2, waker));
        let engine = {
            let mailbox = mailbox.clone();
            thread::spawn(move || {
                mailbox.send(vec![1]);
                mailbox.send(vec![2, 3]);
                mailbox.send(vec![4]);
            })
        };
        let mut got = Vec::new();
        loop {
            mailbox.drain(&mut got);
            if got.len() == 4 {
                break;
            }
            mailbox.idle();
            wake.wait();
        }
        engine.join().unwrap();
        assert_eq!(got, [1, 2, 3, 4]);
    });
}

#[test]
fn engine_to_worker_loses_no_wakeup_and_keeps_order() {
    check_mailbox::<RealMailbox>();
}

#[test]
#[ignore = "run as a child process by the_mailbox_model_catches_a_lost_wakeup"]
fn sleepy_mailbox_model() {
    check_mailbox::<SleepyMailbox>();
}

#[test]
#[should_panic(expected = "deadlock")]
fn the_mailbox_model_catches_a_lost_wakeup() {
    expect_deadlock("sleepy_mailbox_model");
}

/// A worker that stops (returns or panics) closes its mailbox: an engine waiting for room in
/// it goes on instead of hanging the shutdown.
#[test]
fn a_closed_mailbox_releases_an_engine_waiting_for_room() {
    loom::model(|| {
        let (_wake, waker) = flag();
        let (tx, rx) = mailbox::mailbox::<u32>(1, waker);
        let engine = thread::spawn(move || {
            let first = tx.send(&mut vec![1]);
            let second = tx.send(&mut vec![2]);
            (first, second)
        });
        rx.close();
        let (first, second) = engine.join().unwrap();
        assert!(first.is_ok() || first == Err(Unsent::Closed));
        assert_eq!(second, Err(Unsent::Closed));
    });
}

/// Two producers into one worker's mailbox: the engine (which waits for room) and the
/// accepting worker handing over a socket (which never waits: on a full mailbox it keeps the
/// socket, and the model's acceptor then says so and wakes the worker itself). The worker must
/// be woken for every append it has not seen, and get every item once, the engine's in order.
#[test]
fn engine_and_acceptor_share_a_mailbox_without_lost_wakeups() {
    bounded(3).check(|| {
        let (wake, waker) = flag();
        let (tx, rx) = mailbox::mailbox::<u32>(2, waker);
        let kept = Arc::new(AtomicBool::new(false));
        let acceptor_tx = tx.clone();
        let engine = thread::spawn(move || {
            tx.send(&mut vec![1]).unwrap();
            tx.send(&mut vec![2]).unwrap();
        });
        let acceptor = {
            let kept = kept.clone();
            let wake = wake.clone();
            thread::spawn(move || match acceptor_tx.try_send(&mut vec![100]) {
                Ok(()) => {}
                Err(Unsent::Full) => {
                    kept.store(true, Ordering::SeqCst);
                    wake.notify();
                }
                Err(Unsent::Closed) => panic!("the worker is alive"),
            })
        };
        let mut got = Vec::new();
        loop {
            rx.drain(&mut got);
            let socket_done = got.contains(&100) || kept.load(Ordering::SeqCst);
            if got.contains(&1) && got.contains(&2) && socket_done {
                break;
            }
            wake.wait();
        }
        engine.join().unwrap();
        acceptor.join().unwrap();
        let at = |x| got.iter().position(|&i| i == x).unwrap();
        assert!(at(1) < at(2), "the engine's order was broken: {got:?}");
        assert_eq!(got.len(), if kept.load(Ordering::SeqCst) { 2 } else { 3 });
    });
}

// ---- supervisor → worker: stop requests --------------------------------------------------------

/// What the stop model needs: the supervisor's request, and the worker's check each turn.
trait StopRequest: Send + Sync + 'static {
    fn new(waker: Box<dyn Wake>) -> Self;
    fn request(&self);
    fn requested(&self) -> bool;
}

struct RealStop(Stop, Box<dyn Wake>);

impl StopRequest for RealStop {
    fn new(waker: Box<dyn Wake>) -> Self {
        RealStop(Stop::default(), waker)
    }
    fn request(&self) {
        self.0.raise(StopLevel::Graceful);
        self.1.wake();
    }
    fn requested(&self) -> bool {
        self.0.level() != StopLevel::Run
    }
}

/// The broken twin: wakes the worker before raising the request, so the worker can look,
/// see nothing, and go back to sleep for good.
struct HastyStop(Stop, Box<dyn Wake>);

impl StopRequest for HastyStop {
    fn new(waker: Box<dyn Wake>) -> Self {
        HastyStop(Stop::default(), waker)
    }
    fn request(&self) {
        self.1.wake();
        self.0.raise(StopLevel::Graceful);
    }
    fn requested(&self) -> bool {
        self.0.level() != StopLevel::Run
    }
}

/// A worker turning until it sees the stop request; the supervisor requests it once.
fn check_stop<S: StopRequest>() {
    loom::model(|| {
        let (wake, waker) = flag();
        let stop = Arc::new(S::new(waker));
        let supervisor = {
            let stop = stop.clone();
            thread::spawn(move || stop.request())
        };
        while !stop.requested() {
            wake.wait();
        }
        supervisor.join().unwrap();
    });
}

#[test]
fn a_stop_request_is_never_slept_through() {
    check_stop::<RealStop>();
}

#[test]
#[ignore = "run as a child process by the_stop_model_catches_a_wake_before_the_request"]
fn hasty_stop_model() {
    check_stop::<HastyStop>();
}

#[test]
#[should_panic(expected = "deadlock")]
fn the_stop_model_catches_a_wake_before_the_request() {
    expect_deadlock("hasty_stop_model");
}

/// A model searching schedules with at most `preemptions` preemptions, unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise (set it high for an exhaustive search: about 30 s for
/// the acceptor model, a few minutes for the two-worker inbox model on a 2-core machine).
fn bounded(preemptions: usize) -> loom::model::Builder {
    let mut model = loom::model::Builder::new();
    if model.preemption_bound.is_none() {
        model.preemption_bound = Some(preemptions);
    }
    model
}

// ---- twins ------------------------------------------------------------------------------------

/// Runs the ignored test `name` in a child process and re-raises its verdict here.
fn expect_deadlock(name: &str) {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--ignored", "--nocapture"])
        .output()
        .expect("run the broken model");
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        !child.status.success(),
        "the model passed a broken hand-off ({name})"
    );
    let verdict = stderr
        .lines()
        .find(|l| l.starts_with("deadlock"))
        .unwrap_or("no deadlock reported");
    panic!("{verdict}");
}
