//! Apps read from a database (`[app_store] driver = "postgres" | "mysql"`), on threads of their
//! own: no database call ever runs on an I/O worker or the engine thread.
//!
//! The engine asks for an app it does not know with [`ferrocast_engine::Output::LookupApp`]; the
//! engine thread hands the lookup to [`AppLookups::ask`] (a channel send) and goes on. The
//! store's query thread gathers what is waiting, asks the database once per distinct key or
//! id (lookups that arrive while that query runs share its answer), turns each row into an
//! [`AppConfig`](ferrocast_engine::AppConfig) ([`row`]), and pushes `Input::App` through the
//! engine's door, as the cluster bus pushes its inputs.
//!
//! While the database cannot be reached, every lookup is answered `Unavailable` at once (the
//! engine keeps serving the apps it knows), the outage is logged once at warn and its end once
//! at info, and the thread reconnects in the background, 0.2 s doubling to 5 s between tries.
//! With PostgreSQL a second connection LISTENs on `notify_channel`: each notification names an
//! app id, read again and pushed unasked, so a change applies at once; after the listener
//! (re)connects, every app served from the store is read again, since notifications sent
//! meanwhile are lost.

mod mysql;
// A loom build (`--cfg loom`) models the thread hand-offs only; the flag also switches tokio,
// under the PostgreSQL client, to a model without sockets, so that client is left out of it.
#[cfg(not(loom))]
mod postgres;
pub(crate) mod row;

use crate::queue::Sender;
use crate::settings::{AppStoreDriver, AppStoreSettings};
use ferrocast_engine::{AppAnswer, AppLookup, Input};
use row::{app_from_row, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first pause before reconnecting; it doubles after each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the query connection may sit idle before it is checked, so that an outage shows
/// (in the log and `ferrocast_app_store_up`) even while no lookup comes.
const PING_AFTER: Duration = Duration::from_secs(5);

/// What the store's query thread is asked to do.
#[derive(Debug)]
enum Job {
    /// The engine waits for this app.
    Lookup(AppLookup),
    /// The database says this app changed: read it again and tell the engine, unasked.
    Changed(String),
    /// Notifications may have been lost: read every app served from the store again.
    Resync,
    /// The server is stopping.
    Stop,
}

/// One connection to the database, able to read one app.
trait Connection: Send {
    /// The row of the app `lookup` names, if the table has one; an error means the
    /// connection is unusable (it is dropped and opened again).
    fn fetch(&mut self, lookup: &AppLookup) -> Result<Option<Row>, String>;

    /// Checks the connection with the cheapest round trip the database has.
    fn ping(&mut self) -> Result<(), String>;
}

/// Opens connections to one database.
trait Connector: Send {
    /// A new connection, within the lookup timeout.
    fn connect(&self) -> Result<Box<dyn Connection>, String>;
}

/// The store's counters, read by the metrics listener.
#[derive(Debug, Default)]
pub struct AppStoreStats {
    queries: AtomicU64,
    errors: AtomicU64,
    notifications: AtomicU64,
    up: AtomicBool,
}

/// A plain copy of [`AppStoreStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AppStoreStatsSnapshot {
    /// Queries sent to the database (one per distinct app looked up or re-read).
    pub queries: u64,
    /// Failed connection attempts and queries, and rows refused as malformed.
    pub errors: u64,
    /// Change notifications heard (PostgreSQL's LISTEN).
    pub notifications: u64,
    /// Whether the query connection is open now.
    pub up: bool,
}

impl AppStoreStats {
    /// The counters now.
    pub fn snapshot(&self) -> AppStoreStatsSnapshot {
        AppStoreStatsSnapshot {
            queries: self.queries.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            notifications: self.notifications.load(Ordering::Relaxed),
            up: self.up.load(Ordering::Relaxed),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Where the engine's lookups go: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct AppLookups {
    jobs: mpsc::Sender<Job>,
}

impl AppLookups {
    /// Hands `lookup` to the store; its answer comes through the door as `Input::App`.
    /// Unbounded: the engine bounds the lookups it has in flight.
    pub fn ask(&self, lookup: AppLookup) {
        if self.jobs.send(Job::Lookup(lookup)).is_err() {
            tracing::debug!("an app lookup after the app store stopped");
        }
    }
}

/// A running app store: its query thread and, for PostgreSQL, its listener thread.
pub struct AppStore {
    jobs: mpsc::Sender<Job>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Arc<AppStoreStats>,
}

impl AppStore {
    /// Starts the store `settings` describe (a database driver), answering into `to_engine`.
    /// Nothing is asked of the database here: an unreachable one is retried in the background.
    pub fn start(settings: &AppStoreSettings, to_engine: Sender<Input>) -> io::Result<AppStore> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let url = settings
            .url
            .clone()
            .ok_or_else(|| invalid("app_store.url is required".into()))?;
        let timeout = Duration::from_millis(settings.lookup_timeout_ms.max(1));
        let connector: Box<dyn Connector> = match settings.driver {
            #[cfg(not(loom))]
            AppStoreDriver::Postgres => Box::new(
                postgres::PgConnector::new(&url, &settings.table, timeout).map_err(invalid)?,
            ),
            #[cfg(loom)]
            AppStoreDriver::Postgres => {
                return Err(invalid("a loom build has no PostgreSQL client".into()))
            }
            AppStoreDriver::Mysql => {
                Box::new(mysql::MyConnector::new(&url, &settings.table, timeout).map_err(invalid)?)
            }
            AppStoreDriver::Config => return Err(invalid("app_store.driver is config".into())),
        };
        let (jobs, from_engine) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(AppStoreStats::default());
        let mut threads = Vec::with_capacity(2);
        let query = QueryThread {
            driver: match settings.driver {
                AppStoreDriver::Postgres => "postgres",
                _ => "mysql",
            },
            connector,
            connection: None,
            jobs: from_engine,
            to_engine,
            stats: stats.clone(),
            backoff: FIRST_BACKOFF,
            next_attempt: Instant::now(),
            logged_down: false,
            known: BTreeSet::new(),
        };
        threads.push(
            std::thread::Builder::new()
                .name("app-store".into())
                .spawn(move || query.run())?,
        );
        #[cfg(not(loom))]
        if settings.driver == AppStoreDriver::Postgres {
            let listener = postgres::Listener {
                config: postgres::pg_config(&url, timeout).map_err(invalid)?,
                channel: settings.notify_channel.clone(),
                jobs: jobs.clone(),
                stop: stop.clone(),
                stats: stats.clone(),
            };
            threads.push(
                std::thread::Builder::new()
                    .name("app-store-listen".into())
                    .spawn(move || listener.run())?,
            );
        }
        tracing::info!(driver = ?settings.driver, table = %settings.table, "app store starting");
        Ok(AppStore {
            jobs,
            stop,
            threads,
            stats,
        })
    }

    /// Where the engine's lookups go.
    pub fn lookups(&self) -> AppLookups {
        AppLookups {
            jobs: self.jobs.clone(),
        }
    }

    /// The store's counters.
    pub fn stats(&self) -> Arc<AppStoreStats> {
        self.stats.clone()
    }

    /// Stops the threads and waits for them: bounded by the lookup timeout (a query or
    /// connection attempt in progress) plus the listener's poll. The door must be closed
    /// first, or an answer waiting for room in it would wait on.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.jobs.send(Job::Stop);
        for thread in self.threads {
            let _ = thread.join();
        }
        tracing::debug!("app store stopped");
    }
}

/// The thread that asks the database and answers the engine.
struct QueryThread {
    /// Named in log lines, beside the message.
    driver: &'static str,
    connector: Box<dyn Connector>,
    connection: Option<Box<dyn Connection>>,
    jobs: mpsc::Receiver<Job>,
    to_engine: Sender<Input>,
    stats: Arc<AppStoreStats>,
    /// The pause before the next reconnection attempt after this one fails.
    backoff: Duration,
    /// When the next reconnection attempt is due, while there is no connection.
    next_attempt: Instant,
    /// Whether the current outage has been logged.
    logged_down: bool,
    /// The ids of the apps answered `Found`: what a resync reads again.
    known: BTreeSet<String>,
}

/// Lookups gathered in one turn: each distinct lookup once, with whether the engine waits for
/// it (`false`: only a change to pass on).
type Pending = BTreeMap<AppLookup, bool>;

impl QueryThread {
    fn run(mut self) {
        let mut pending = Pending::new();
        loop {
            if pending.is_empty() {
                let wait = match self.connection {
                    Some(_) => PING_AFTER,
                    None => self.next_attempt.saturating_duration_since(Instant::now()),
                };
                match self.jobs.recv_timeout(wait) {
                    Ok(job) => {
                        if !self.gather(job, &mut pending) {
                            return;
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => self.ping(),
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            if !self.drain(&mut pending) {
                return;
            }
            if self.connection.is_none() && Instant::now() >= self.next_attempt {
                self.reconnect();
            }
            if pending.is_empty() {
                continue;
            }
            let answers = self.answer(std::mem::take(&mut pending));
            if !self.push(&answers) {
                return;
            }
            // Lookups that came while those queries ran share their answers.
            if !self.drain(&mut pending) {
                return;
            }
            let shared: Vec<_> = answers
                .into_iter()
                .filter(|(lookup, _)| pending.get(lookup) == Some(&true))
                .collect();
            for (lookup, _) in &shared {
                pending.remove(lookup);
            }
            if !self.push(&shared) {
                return;
            }
        }
    }

    /// Takes every job waiting now into `pending`; `false` when the store must stop.
    fn drain(&mut self, pending: &mut Pending) -> bool {
        loop {
            match self.jobs.try_recv() {
                Ok(job) => {
                    if !self.gather(job, pending) {
                        return false;
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Adds one job to `pending`; `false` for [`Job::Stop`].
    fn gather(&self, job: Job, pending: &mut Pending) -> bool {
        match job {
            Job::Lookup(lookup) => {
                pending.insert(lookup, true);
            }
            Job::Changed(id) => {
                pending.entry(AppLookup::Id(id)).or_insert(false);
            }
            Job::Resync => {
                for id in &self.known {
                    pending.entry(AppLookup::Id(id.clone())).or_insert(false);
                }
            }
            Job::Stop => return false,
        }
        true
    }

    /// Asks the database for each pending lookup, in order; once it fails, the rest are
    /// answered `Unavailable` (changes to pass on are dropped: there is nothing to say).
    fn answer(&mut self, pending: Pending) -> Vec<(AppLookup, AppAnswer)> {
        let mut answers = Vec::with_capacity(pending.len());
        for (lookup, asked) in pending {
            let answer = self.fetch(&lookup);
            if asked || answer != AppAnswer::Unavailable {
                answers.push((lookup, answer));
            }
        }
        answers
    }

    /// One lookup's answer. A failed query on an open connection is retried once on a new
    /// one (a database restarted since the last query leaves a dead connection behind).
    fn fetch(&mut self, lookup: &AppLookup) -> AppAnswer {
        for attempt in 0..2 {
            let Some(connection) = self.connection.as_mut() else {
                if attempt == 0 && Instant::now() >= self.next_attempt {
                    self.reconnect();
                    continue;
                }
                return AppAnswer::Unavailable;
            };
            AppStoreStats::count(&self.stats.queries);
            match connection.fetch(lookup) {
                Ok(None) => return self.missing(lookup),
                Ok(Some(row)) => return self.found(lookup, &row),
                Err(error) => {
                    AppStoreStats::count(&self.stats.errors);
                    self.connection = None;
                    if attempt == 0 {
                        tracing::debug!(driver = self.driver, %error, "app store query failed; reconnecting");
                        self.next_attempt = Instant::now();
                        self.reconnect();
                    } else {
                        self.down(&error);
                    }
                }
            }
        }
        AppAnswer::Unavailable
    }

    fn missing(&mut self, lookup: &AppLookup) -> AppAnswer {
        if let AppLookup::Id(id) = lookup {
            self.known.remove(id);
        }
        AppAnswer::Missing
    }

    fn found(&mut self, lookup: &AppLookup, row: &Row) -> AppAnswer {
        match app_from_row(row) {
            Ok(app) => {
                self.known.insert(app.id.clone());
                AppAnswer::Found(Box::new(app))
            }
            Err(refused) => {
                AppStoreStats::count(&self.stats.errors);
                tracing::warn!(
                    driver = self.driver,
                    app = %refused.app,
                    column = refused.column,
                    "app store: the app's row is refused, so the app is treated as missing: {refused}"
                );
                self.known.remove(&refused.app);
                self.missing(lookup)
            }
        }
    }

    /// Checks an idle connection; a dead one is an outage like a failed query.
    fn ping(&mut self) {
        let Some(connection) = self.connection.as_mut() else {
            return;
        };
        if let Err(error) = connection.ping() {
            AppStoreStats::count(&self.stats.errors);
            self.next_attempt = Instant::now();
            self.down(&error);
        }
    }

    /// Opens the query connection, logging the end of an outage or, once, its start.
    fn reconnect(&mut self) {
        match self.connector.connect() {
            Ok(connection) => {
                self.connection = Some(connection);
                self.backoff = FIRST_BACKOFF;
                self.stats.up.store(true, Ordering::Relaxed);
                if self.logged_down {
                    tracing::info!(driver = self.driver, "app store available again");
                    self.logged_down = false;
                }
            }
            Err(error) => {
                AppStoreStats::count(&self.stats.errors);
                self.down(&error);
            }
        }
    }

    /// Marks the store down until the next attempt, which backs off.
    fn down(&mut self, error: &str) {
        self.connection = None;
        self.stats.up.store(false, Ordering::Relaxed);
        if !self.logged_down {
            tracing::warn!(driver = self.driver, "app store unavailable: {error}");
            self.logged_down = true;
        }
        self.next_attempt = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Hands answers to the engine, waiting for room; `false` once the door is closed.
    fn push(&self, answers: &[(AppLookup, AppAnswer)]) -> bool {
        if answers.is_empty() {
            return true;
        }
        let mut batch: Vec<Input> = answers
            .iter()
            .map(|(lookup, answer)| Input::App {
                lookup: lookup.clone(),
                answer: answer.clone(),
            })
            .collect();
        self.to_engine.send(&mut batch).is_ok()
    }
}

/// Sleeps `pause` in short steps, returning early (`false`) once `stop` is raised.
fn pause_unless_stopped(pause: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + pause;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    false
}

/// `"name"` or `"schema"."name"`: a checked identifier quoted with `quote` (`"` or `` ` ``).
fn quoted(table: &str, quote: char) -> String {
    table
        .split('.')
        .map(|part| format!("{quote}{part}{quote}"))
        .collect::<Vec<_>>()
        .join(".")
}
