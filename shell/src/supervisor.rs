//! Keeping the threads honest: each reports how it ended, signals become stop requests (or,
//! SIGHUP, a reload of the TLS certificate), and a thread that fails or panics brings the
//! process down with an error instead of leaving it half alive.

#[cfg(loom)]
use loom::sync::atomic::{AtomicU8, Ordering};
use std::fmt;
use std::io;
#[cfg(not(loom))]
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
/// a raise is never slept through (loom-checked in `tests/loom_stop.rs`).
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
    /// Webhook delivery thread `n`.
    Webhooks(usize),
    /// The metrics listener.
    Metrics,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Engine => write!(f, "the engine thread"),
            Role::Worker(n) => write!(f, "I/O worker {n}"),
            Role::Signals => write!(f, "the signal thread"),
            Role::Webhooks(n) => write!(f, "webhook delivery thread {n}"),
            Role::Metrics => write!(f, "the metrics listener"),
        }
    }
}

/// What the supervisor hears about.
#[derive(Debug)]
pub(crate) enum Notice {
    /// SIGINT or SIGTERM arrived.
    Signal,
    /// SIGHUP arrived, or `POST /admin/reload`: re-read the files that can change under a
    /// running server.
    Reload,
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
    /// The engine has stopped, so no webhook will be queued any more: let the webhook
    /// threads attempt what is queued and end.
    fn close_webhooks(&mut self);
    /// Re-reads the TLS certificate and key for the handshakes to come.
    fn reload(&mut self);
    /// Webhook deliveries queued and neither delivered nor given up yet.
    fn unsent_webhooks(&self) -> u64;
}

/// The threads the supervisor waits for, besides the signal thread.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Watched {
    /// I/O workers.
    pub(crate) workers: usize,
    /// Whether the engine runs on a thread of its own (else inline in the one worker).
    pub(crate) engine_thread: bool,
    /// Webhook delivery threads.
    pub(crate) webhook_threads: usize,
    /// How long the webhook threads may take over the queue's last deliveries.
    pub(crate) webhook_linger: Duration,
}

/// Waits for signals and thread ends until every worker, then the engine thread (when there
/// is one), then the webhook threads (for at most their linger) have finished (`Ok`), or a
/// thread failed, panicked or ended out of turn (`Err`, logged).
pub(crate) fn watch(
    notices: &mpsc::Receiver<Notice>,
    watched: &Watched,
    crew: &mut dyn Crew,
) -> io::Result<()> {
    let mut running = watched.workers;
    let mut stopping = false;
    loop {
        let Ok(notice) = notices.recv() else {
            return Err(io::Error::other("every thread vanished without a word"));
        };
        match notice {
            Notice::Reload => crew.reload(),
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
                    (Role::Webhooks(_) | Role::Metrics, Ok(())) => Some("stopped unasked".into()),
                    _ => None,
                };
                if let Some(why) = failure {
                    return Err(failed(role, &why));
                }
                match role {
                    Role::Worker(_) => {
                        running -= 1;
                        if running == 0 {
                            if !watched.engine_thread {
                                break;
                            }
                            crew.close_engine();
                        }
                    }
                    Role::Engine => break,
                    // Its end matters only when it failed (handled above).
                    Role::Signals | Role::Webhooks(_) | Role::Metrics => {}
                }
            }
        }
    }
    // The engine has stopped (its last webhooks are queued).
    if watched.webhook_threads > 0 {
        crew.close_webhooks();
        wait_for_webhooks(notices, watched, crew)?;
    }
    tracing::info!("shut down");
    Ok(())
}

/// Waits up to the linger for the webhook threads to finish the queue; one still busy after
/// that (a slow receiver) is left to the process exit rather than holding shutdown up.
fn wait_for_webhooks(
    notices: &mpsc::Receiver<Notice>,
    watched: &Watched,
    crew: &dyn Crew,
) -> io::Result<()> {
    let deadline = Instant::now() + watched.webhook_linger;
    let mut running = watched.webhook_threads;
    while running > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match notices.recv_timeout(left) {
            Ok(Notice::Exited { role, outcome }) => match (role, outcome) {
                (_, Err(why)) => return Err(failed(role, &why)),
                (Role::Webhooks(_), Ok(())) => running -= 1,
                _ => {}
            },
            Ok(Notice::Signal) => {
                let unsent = crew.unsent_webhooks();
                tracing::warn!(unsent, "second signal: webhook deliveries left unsent");
                return Ok(());
            }
            // No connection is accepted any more: nothing to reload for.
            Ok(Notice::Reload) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let unsent = crew.unsent_webhooks();
                tracing::warn!(
                    unsent,
                    running,
                    "shutting down with webhook deliveries unsent after the grace period"
                );
                return Ok(());
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(io::Error::other("every thread vanished without a word"));
            }
        }
    }
    Ok(())
}

/// Logs why a thread ended badly, as the error that stops the server.
fn failed(role: Role, why: &str) -> io::Error {
    tracing::error!("{role} {why}; stopping the server");
    io::Error::other(format!("{role} {why}"))
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
        fn close_webhooks(&mut self) {
            self.0.push("close webhooks".into());
        }
        fn reload(&mut self) {
            self.0.push("reload".into());
        }
        fn unsent_webhooks(&self) -> u64 {
            0
        }
    }

    fn watched(workers: usize, engine_thread: bool, webhook_threads: usize) -> Watched {
        Watched {
            workers,
            engine_thread,
            webhook_threads,
            webhook_linger: Duration::from_secs(5),
        }
    }

    fn exited(role: Role) -> Notice {
        Notice::Exited {
            role,
            outcome: Ok(()),
        }
    }

    #[test]
    fn a_panicking_thread_is_an_error() {
        let (tx, rx) = mpsc::channel();
        let quiet = spawn("quiet".into(), Role::Worker(0), tx.clone(), || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        })
        .unwrap();
        let _ = quiet;
        spawn("bad".into(), Role::Worker(1), tx, || panic!("boom")).unwrap();
        let err = watch(&rx, &watched(2, true, 0), &mut Log::default()).unwrap_err();
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
        watch(&rx, &watched(2, true, 0), &mut log).unwrap();
        assert_eq!(log.0, ["stop Graceful", "stop Now", "close engine"]);
    }

    #[test]
    fn a_reload_neither_stops_nor_counts_as_a_stop_signal() {
        let (tx, rx) = mpsc::channel();
        tx.send(Notice::Reload).unwrap();
        tx.send(Notice::Signal).unwrap();
        tx.send(Notice::Reload).unwrap();
        tx.send(exited(Role::Worker(0))).unwrap();
        let mut log = Log::default();
        watch(&rx, &watched(1, false, 0), &mut log).unwrap();
        assert_eq!(log.0, ["reload", "stop Graceful", "reload"]);
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
        watch(&rx, &watched(1, false, 0), &mut log).unwrap();
        assert_eq!(log.0, ["stop Graceful"]);
    }

    #[test]
    fn a_worker_ending_before_any_signal_is_an_error() {
        let (tx, rx) = mpsc::channel();
        spawn("w0".into(), Role::Worker(0), tx, || Ok(())).unwrap();
        assert!(watch(&rx, &watched(1, false, 0), &mut Log::default()).is_err());
    }

    #[test]
    fn a_panicking_webhook_thread_is_an_error() {
        let (tx, rx) = mpsc::channel();
        spawn("webhooks-0".into(), Role::Webhooks(0), tx, || {
            panic!("boom")
        })
        .unwrap();
        let err = watch(&rx, &watched(1, false, 1), &mut Log::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("webhook delivery thread 0 panicked"),
            "{err}"
        );
    }

    #[test]
    fn a_webhook_thread_ending_before_the_engine_is_an_error() {
        let (tx, rx) = mpsc::channel();
        tx.send(Notice::Signal).unwrap();
        tx.send(exited(Role::Webhooks(0))).unwrap();
        tx.send(exited(Role::Worker(0))).unwrap();
        assert!(watch(&rx, &watched(1, false, 1), &mut Log::default()).is_err());
    }

    #[test]
    fn the_webhook_queue_is_closed_after_the_engine_stopped_and_its_threads_awaited() {
        let (tx, rx) = mpsc::channel();
        tx.send(Notice::Signal).unwrap();
        tx.send(exited(Role::Worker(0))).unwrap();
        tx.send(exited(Role::Worker(1))).unwrap();
        tx.send(exited(Role::Engine)).unwrap();
        tx.send(exited(Role::Webhooks(0))).unwrap();
        // The second webhook thread reports only once the queue was closed.
        let late = tx.clone();
        let mut log = Log::default();
        let reporter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            late.send(exited(Role::Webhooks(1))).unwrap();
        });
        watch(&rx, &watched(2, true, 2), &mut log).unwrap();
        reporter.join().unwrap();
        assert_eq!(log.0, ["stop Graceful", "close engine", "close webhooks"]);
        assert!(rx.try_recv().is_err(), "every notice was taken");
    }

    #[test]
    fn a_webhook_thread_still_busy_after_the_linger_is_left_behind() {
        let (tx, rx) = mpsc::channel();
        tx.send(Notice::Signal).unwrap();
        tx.send(exited(Role::Worker(0))).unwrap();
        let linger = Duration::from_millis(100);
        let started = Instant::now();
        let watched = Watched {
            webhook_linger: linger,
            ..watched(1, false, 1)
        };
        watch(&rx, &watched, &mut Log::default()).unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= linger && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        drop(tx);
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
