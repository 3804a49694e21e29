//! Loom model of the supervisor → worker stop request (`supervisor::Stop` plus the worker's
//! waker), run with `RUSTFLAGS="--cfg loom" cargo test -p ferrocast --release --test loom_stop`:
//! a stop request is never slept through. A deliberately broken twin, run in a child process
//! (loom aborts the process while unwinding out of a deadlock), must be caught. A worker's
//! `mio::Waker` is modelled by a loom `Notify`.
#![cfg(loom)]

use ferrocast::Wake;
use ferrocast::{Stop, StopLevel};
use loom::sync::{Arc, Notify};
use loom::thread;

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
