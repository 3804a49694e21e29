//! Keeping the threads honest: each reports how it ended, signals become stop requests, and a
//! thread that fails or panics brings the process down with an error instead of leaving it
//! half alive.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU8, Ordering};
use std::fmt;
use std::io;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// How far a shutdown has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopLevel {
    /// Serving.
    Run,
    /// Close every connection, flush, then stop (first signal).
    Graceful,
    /// Stop at once (second signal).
    Now,
}

/// The shutdown request shared by the supervisor and the workers. The supervisor raises it
/// and then wakes every worker; a worker reads it each loop turn, after its poll returned, so
/// a raise is never slept through (loom-checked in `tests/loom_workers.rs`).
#[derive(Debug, Default)]
pub struct Stop(AtomicU8);

impl Stop {
    /// The current request.
    pub fn level(&self) -> StopLevel {
        match self.0.load(Ordering::SeqCst) {
            0 => StopLevel::Run,
            1 => StopLevel::Graceful,
            _ => StopLevel::Now,
        }
    }

    /// Raises the request to `level` (it never goes back down).
    pub fn raise(&self, level: StopLevel) {
        let value = match level {
            StopLevel::Run => 0,
            StopLevel::Graceful => 1,
            StopLevel::Now => 2,
        };
        self.0.fetch_max(value, Ordering::SeqCst);
    }
}

/// Which thread a notice is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The engine thread.
    Engine,
    /// I/O worker `n`.
    Worker(usize),
    /// The thread turning signals into notices.
    Signals,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Engine => write!(f, "the engine thread"),
            Role::Worker(n) => write!(f, "I/O worker {n}"),
            Role::Signals => write!(f, "the signal thread"),
        }
    }
}

/// What the supervisor hears about.
#[derive(Debug)]
pub(crate) enum Notice {
    /// SIGINT or SIGTERM arrived.
    Signal,
    /// A thread ended: `Ok` when it finished its work, `Err` with why otherwise.
    Exited {
        /// The thread.
        role: Role,
        /// How it ended.
        outcome: Result<(), String>,
    },
}

/// Sends the thread's outcome when dropped, which also happens while a panic unwinds.
struct ExitReport {
    notices: mpsc::Sender<Notice>,
    role: Role,
    outcome: Option<Result<(), String>>,
}

impl Drop for ExitReport {
    fn drop(&mut self) {
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| Err("panicked".into()));
        let _ = self.notices.send(Notice::Exited {
            role: self.role,
            outcome,
        });
    }
}

/// Starts a named thread that reports how it ended on `notices`.
pub(crate) fn spawn(
    name: String,
    role: Role,
    notices: mpsc::Sender<Notice>,
    body: impl FnOnce() -> io::Result<()> + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        let mut report = ExitReport {
            notices,
            role,
            outcome: None,
        };
        report.outcome = Some(body().map_err(|e| e.to_string()));
    })
}

/// What the supervisor does for the threads it watches.
pub(crate) trait Crew {
    /// Asks the workers to stop at `level` (and wakes them to notice).
    fn stop(&mut self, level: StopLevel);
    /// Every worker has finished: let the engine take its last inputs and end.
    fn close_engine(&mut self);
}

/// Waits for signals and thread ends until every worker and then the engine thread (when
/// there is one) have finished (`Ok`), or a thread failed, panicked or ended out of turn
/// (`Err`, logged).
pub(crate) fn watch(
    notices: &mpsc::Receiver<Notice>,
    workers: usize,
    engine_thread: bool,
    crew: &mut dyn Crew,
) -> io::Result<()> {
    let mut running = workers;
    let mut stopping = false;
    loop {
        let Ok(notice) = notices.recv() else {
            return Err(io::Error::other("every thread vanished without a word"));
        };
        match notice {
            Notice::Signal => {
                if stopping {
                    tracing::info!("second signal: stopping now");
                    crew.stop(StopLevel::Now);
                } else {
                    tracing::info!("shutting down: closing every connection");
                    stopping = true;
                    crew.stop(StopLevel::Graceful);
                }
            }
            Notice::Exited { role, outcome } => {
                let failure = match (role, outcome) {
                    (_, Err(why)) => Some(why),
                    (Role::Worker(_), Ok(())) if !stopping => Some("stopped unasked".into()),
                    (Role::Engine, Ok(())) if running > 0 => Some("stopped early".into()),
                    _ => None,
                };
                if let Some(why) = failure {
                    tracing::error!("{role} {why}; stopping the server");
                    return Err(io::Error::other(format!("{role} {why}")));
                }
                match role {
                    Role::Worker(_) => {
                        running -= 1;
                        if running == 0 {
                            if !engine_thread {
                                tracing::info!("shut down");
                                return Ok(());
                            }
                            crew.close_engine();
                        }
                    }
                    Role::Engine => {
                        tracing::info!("shut down");
                        return Ok(());
                    }
                    // Its end matters only when it failed (handled above).
                    Role::Signals => {}
                }
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Log(Vec<String>);
    impl Crew for Log {
        fn stop(&mut self, level: StopLevel) {
            self.0.push(format!("stop {level:?}"));
        }
        fn close_engine(&mut self) {
            self.0.push("close engine".into());
        }
    }

    #[test]
    fn a_panicking_thread_is_an_error() {
        let (tx, rx) = mpsc::channel();
        let quiet = spawn("quiet".into(), Role::Worker(0), tx.clone(), || {
            std::thread::sleep(std::time::Duration::from_secs(5));
            Ok(())
        })
        .unwrap();
        let _ = quiet;
        spawn("bad".into(), Role::Worker(1), tx, || panic!("boom")).unwrap();
        let err = watch(&rx, 2, true, &mut Log::default()).unwrap_err();
        assert!(err.to_string().contains("I/O worker 1 panicked"), "{err}");
    }

    #[test]
    fn signals_escalate_and_the_engine_is_closed_after_the_last_worker() {
        let (tx, rx) = mpsc::channel();
        tx.send(Notice::Signal).unwrap();
        tx.send(Notice::Signal).unwrap();
        for n in 0..2 {
            spawn(format!("w{n}"), Role::Worker(n), tx.clone(), || Ok(()))
                .unwrap()
                .join()
                .unwrap();
        }
        spawn("engine".into(), Role::Engine, tx, || Ok(()))
            .unwrap()
            .join()
            .unwrap();
        let mut log = Log::default();
        watch(&rx, 2, true, &mut log).unwrap();
        assert_eq!(log.0, ["stop Graceful", "stop Now", "close engine"]);
    }

    #[test]
    fn without_an_engine_thread_the_last_worker_ends_the_watch() {
        let (tx, rx) = mpsc::channel();
        tx.send(Notice::Signal).unwrap();
        spawn("w0".into(), Role::Worker(0), tx, || Ok(()))
            .unwrap()
            .join()
            .unwrap();
        let mut log = Log::default();
        watch(&rx, 1, false, &mut log).unwrap();
        assert_eq!(log.0, ["stop Graceful"]);
    }

    #[test]
    fn a_worker_ending_before_any_signal_is_an_error() {
        let (tx, rx) = mpsc::channel();
        spawn("w0".into(), Role::Worker(0), tx, || Ok(())).unwrap();
        assert!(watch(&rx, 1, false, &mut Log::default()).is_err());
    }

    #[test]
    fn stop_only_goes_up() {
        let stop = Stop::default();
        assert_eq!(stop.level(), StopLevel::Run);
        stop.raise(StopLevel::Graceful);
        assert_eq!(stop.level(), StopLevel::Graceful);
        stop.raise(StopLevel::Now);
        stop.raise(StopLevel::Graceful);
        assert_eq!(stop.level(), StopLevel::Now);
    }
}
