//! PostgreSQL: the query connection and the LISTEN connection.
//!
//! A row is read as `(column, value as text)` pairs (`json_each_text(row_to_json(row))`), so
//! every column type (booleans, `smallint` flags, `json`, `jsonb`, numerics) arrives as text
//! and a table with fewer or more columns than soketi's is read all the same. Both statements
//! are prepared once per connection and take the key or id as a parameter.

use super::row::{Row, Value};
use super::{pause_unless_stopped, quoted, AppStoreStats, Connection, Connector, Job};
use super::{FIRST_BACKOFF, MAX_BACKOFF};
use ferrocast_engine::AppLookup;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls, Statement};
use std::error::Error as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How often the listener looks up from waiting for a notification to see whether it must
/// stop (and whether its connection is still open).
const LISTEN_POLL: Duration = Duration::from_millis(200);

/// A client error with its cause (`db error` alone says nothing): the server's message, or
/// the I/O error, never the URL.
fn describe(error: postgres::Error) -> String {
    match error.source() {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// The client configuration of `url`, each step bounded by `timeout`.
pub(super) fn pg_config(url: &str, timeout: Duration) -> Result<postgres::Config, String> {
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| format!("app_store.url is not a PostgreSQL URL: {e}"))?;
    config
        .connect_timeout(timeout)
        .tcp_user_timeout(timeout)
        .keepalives(true)
        .application_name("ferrocast");
    Ok(config)
}

/// Opens query connections.
pub(super) struct PgConnector {
    config: postgres::Config,
    table: String,
    timeout: Duration,
}

impl PgConnector {
    /// A connector for `url` and `table` (a checked identifier).
    pub(super) fn new(url: &str, table: &str, timeout: Duration) -> Result<Self, String> {
        Ok(PgConnector {
            config: pg_config(url, timeout)?,
            table: quoted(table, '"'),
            timeout,
        })
    }
}

impl Connector for PgConnector {
    fn connect(&self) -> Result<Box<dyn Connection>, String> {
        let mut client = self.config.connect(NoTls).map_err(describe)?;
        // A query that hangs (a lock, a sick server) is given up like a slow connect.
        client
            .batch_execute(&format!(
                "SET statement_timeout = {}",
                self.timeout.as_millis()
            ))
            .map_err(describe)?;
        let select = |column: &str| {
            format!(
                "SELECT c.key, c.value FROM (SELECT * FROM {} WHERE \"{column}\" = $1::text \
                 LIMIT 1) AS t, json_each_text(row_to_json(t)) AS c",
                self.table
            )
        };
        let by_key = client.prepare(&select("key")).map_err(describe)?;
        let by_id = client.prepare(&select("id")).map_err(describe)?;
        Ok(Box::new(PgConnection {
            client,
            by_key,
            by_id,
        }))
    }
}

/// One query connection with its two statements.
struct PgConnection {
    client: Client,
    by_key: Statement,
    by_id: Statement,
}

impl Connection for PgConnection {
    fn fetch(&mut self, lookup: &AppLookup) -> Result<Option<Row>, String> {
        let (statement, value) = match lookup {
            AppLookup::Key(key) => (&self.by_key, key),
            AppLookup::Id(id) => (&self.by_id, id),
        };
        let rows = self.client.query(statement, &[value]).map_err(describe)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut row = Row::new();
        for pair in rows {
            let column: String = pair.try_get(0).map_err(describe)?;
            let value: Option<String> = pair.try_get(1).map_err(describe)?;
            row.insert(column, value.map_or(Value::Null, Value::Text));
        }
        Ok(Some(row))
    }

    fn ping(&mut self) -> Result<(), String> {
        self.client.simple_query("").map(drop).map_err(describe)
    }
}

/// The thread that LISTENs for changes and hands each changed id to the query thread.
pub(super) struct Listener {
    pub(super) config: postgres::Config,
    pub(super) channel: String,
    pub(super) jobs: mpsc::Sender<Job>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) stats: Arc<AppStoreStats>,
}

impl Listener {
    /// Listens until stopped, reconnecting with the query thread's back-off.
    pub(super) fn run(self) {
        let mut backoff = FIRST_BACKOFF;
        while !self.stop.load(Ordering::Relaxed) {
            match self.listen() {
                Ok(()) => return,
                Err(error) => {
                    tracing::debug!(%error, "app store notifications interrupted; reconnecting");
                    if !pause_unless_stopped(backoff, &self.stop) {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One connection's life: LISTEN, ask for a resync (notifications may have been missed
    /// before it), then pass on notifications until the connection fails (`Err`) or the
    /// store stops (`Ok`).
    fn listen(&self) -> Result<(), String> {
        let mut client = self.config.connect(NoTls).map_err(describe)?;
        client
            .batch_execute(&format!("LISTEN {}", quoted(&self.channel, '"')))
            .map_err(describe)?;
        tracing::debug!(channel = %self.channel, "app store listening for changes");
        if self.jobs.send(Job::Resync).is_err() {
            return Ok(());
        }
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let heard = client.notifications().timeout_iter(LISTEN_POLL).next();
            match heard {
                Ok(Some(notification)) => {
                    AppStoreStats::count(&self.stats.notifications);
                    let id = notification.payload().to_owned();
                    if self.jobs.send(Job::Changed(id)).is_err() {
                        return Ok(());
                    }
                }
                Ok(None) if client.is_closed() => return Err("connection closed".into()),
                Ok(None) => {}
                Err(error) => return Err(describe(error)),
            }
        }
    }
}
