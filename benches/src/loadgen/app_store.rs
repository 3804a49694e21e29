//! The app-store scenario (`--app-store postgres|mysql`): connect+subscribe server CPU per
//! connection with apps read from a real database, against the same with apps in the TOML
//! file, in one run.
//!
//! A real PostgreSQL or MariaDB is started on loopback in a temporary directory by the same
//! launchers the shell's tests use (`shell/tests/support/`, compiled into this binary as they
//! are), the table is made from `packaging/sql/`, and the bench's apps are inserted. Then, in
//! each repeat and in an order that rotates from one repeat to the next, a fresh server per
//! run: (a) *file*: the app in the TOML file, no database; (b) *warm*: the app only in the
//! database, one app for every connection, so the first connection pays the one lookup and
//! the rest are served from the cache; (c) *cold*: N apps in the database and each connection
//! a different key, so every connection pays one lookup. Each run also reads the server's
//! `ferrocast_app_store_queries_total` from its metrics listener and the SELECTs the database
//! itself counted (`pg_stat_statements`, MariaDB's `performance_schema`).
//!
//! The database inherits the generator's CPU pinning (it starts after the generator pins
//! itself), so the server's CPU is left to the server; its time is not in the server's figure.

#[allow(dead_code, clippy::unwrap_used)]
#[path = "../../../shell/tests/support/db_process.rs"]
mod db_process;
#[allow(dead_code, clippy::unwrap_used)]
#[path = "../../../shell/tests/support/mariadb.rs"]
mod mariadb;
#[allow(dead_code, clippy::unwrap_used)]
#[path = "../../../shell/tests/support/postgres.rs"]
mod postgres;

use super::fanout::check_stats;
use super::http_pub::Credentials;
use super::ipc::{ChannelSpec, WsTarget};
use super::report::{self, median, Report};
use super::rig::Rig;
use super::spawn::{self, ServerProc};
use super::sys;
use mariadb::MariaDbServer;
use postgres::PostgresServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long one connect phase may take.
const TIMEOUT: Duration = Duration::from_secs(120);
/// Rows per INSERT statement (each statement is one command-line argument of the client,
/// which Linux caps at 128 KiB).
const ROWS_PER_INSERT: usize = 500;
/// The only app of the TOML file in the database runs, never connected to: the database store
/// is asked for every other key.
const FILE_ONLY_KEY: &str = "loadgen-file-only-key";

/// The database kinds `--app-store` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Driver {
    /// PostgreSQL (Debian's `postgresql` server binaries).
    Postgres,
    /// MariaDB (Debian's `mariadb-server`), through the server's `mysql` driver.
    Mysql,
}

impl Driver {
    /// The value of the server's `--app-store-driver`.
    fn name(self) -> &'static str {
        match self {
            Driver::Postgres => "postgres",
            Driver::Mysql => "mysql",
        }
    }
}

/// A real database server started for the run.
enum Database {
    Postgres(PostgresServer),
    MariaDb(MariaDbServer),
}

impl Database {
    /// Starts the database, makes the table from `packaging/sql/`, and inserts the bench's
    /// app (`creds`) and `cold` more apps keyed by [`cold_key`].
    fn start(driver: Driver, creds: &Credentials, cold: u32) -> Result<Database, String> {
        let began = Instant::now();
        let db = guard("starting the database", || match driver {
            Driver::Postgres => Database::Postgres(PostgresServer::start()),
            Driver::Mysql => Database::MariaDb(MariaDbServer::start()),
        })?;
        let file = match driver {
            Driver::Postgres => "postgres.sql",
            Driver::Mysql => "mysql.sql",
        };
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/sql")
            .join(file);
        let schema = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        db.sql(&schema)?;
        let mut rows = vec![app_row(&creds.app_id, &creds.key, &creds.secret)];
        rows.extend((0..cold).map(|i| app_row(&format!("cold-{i}"), &cold_key(i), "cold-secret")));
        let key = match driver {
            Driver::Postgres => "\"key\"",
            Driver::Mysql => "`key`",
        };
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            db.sql(&format!(
                "INSERT INTO apps (id, {key}, secret) VALUES {}",
                chunk.join(",")
            ))?;
        }
        let count = db.sql("SELECT COUNT(*) FROM apps")?;
        if count.trim() != rows.len().to_string() {
            return Err(format!(
                "{count} apps in the table, {} inserted",
                rows.len()
            ));
        }
        println!(
            "  {} on 127.0.0.1:{} with {} apps, ready in {}",
            driver.name(),
            db.port(),
            rows.len(),
            report::ns(began.elapsed().as_nanos() as f64)
        );
        Ok(db)
    }

    fn sql(&self, statement: &str) -> Result<String, String> {
        match self {
            Database::Postgres(db) => db.try_sql(statement),
            Database::MariaDb(db) => db.try_sql(statement),
        }
    }

    fn url(&self) -> String {
        match self {
            Database::Postgres(db) => db.url(),
            Database::MariaDb(db) => db.url(),
        }
    }

    fn port(&self) -> u16 {
        match self {
            Database::Postgres(db) => db.port(),
            Database::MariaDb(db) => db.port(),
        }
    }

    /// SELECTs of the `apps` table the database has counted so far.
    fn selects(&self) -> Result<u64, String> {
        guard("reading the database's statistics", || match self {
            Database::Postgres(db) => db.select_count("apps"),
            Database::MariaDb(db) => db.select_count("apps"),
        })
    }
}

/// One row of the INSERT; the values are the bench's own (letters, digits and dashes).
fn app_row(id: &str, key: &str, secret: &str) -> String {
    format!("('{id}', '{key}', '{secret}')")
}

/// The key of cold app `i`.
fn cold_key(i: u32) -> String {
    format!("loadgen-cold-key-{i}")
}

/// Runs `f`, turning a panic of the launchers (which are test code and panic on failure)
/// into an error naming `what`.
fn guard<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown failure".into());
        format!("{what}: {message}")
    })
}

/// Where the apps of a run come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    /// (a) The app in the TOML file.
    File,
    /// (b) One app in the database, looked up once.
    Warm,
    /// (c) One app per connection in the database, each looked up.
    Cold,
}

impl Store {
    const ALL: [Store; 3] = [Store::File, Store::Warm, Store::Cold];

    fn label(self) -> &'static str {
        match self {
            Store::File => "file store",
            Store::Warm => "database, warm cache",
            Store::Cold => "database, cold (a lookup per connection)",
        }
    }
}

/// What one run measured.
struct Measured {
    cpu_per_connection: Option<f64>,
    /// `ferrocast_app_store_queries_total` gained during the connect phase.
    queries: u64,
    /// SELECTs of `apps` the database counted during the connect phase.
    selects: u64,
}

/// The app-store scenario; see the module's documentation.
pub(crate) fn run(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    let driver = rig
        .args
        .app_store
        .ok_or("the app-store scenario needs --app-store postgres|mysql")?;
    let bin = rig
        .args
        .spawn_server
        .clone()
        .ok_or("the app-store scenario needs --spawn-server PATH")?;
    let n = rig.plan.storm;
    println!(
        "app store ({}): {n} clients connect and subscribe, {} in flight, {} repeats",
        driver.name(),
        rig.args.inflight,
        rig.plan.repeats
    );
    // This scenario starts servers of its own.
    rig.stop_server();
    let db = Database::start(driver, &rig.creds, n)?;
    let mut runs: Vec<(Store, Measured)> = Vec::new();
    for repeat in 0..rig.plan.repeats {
        // Rotating the order spreads slow drifts of the machine over the three stores.
        for k in 0..Store::ALL.len() {
            let store = Store::ALL[(k + repeat as usize) % Store::ALL.len()];
            let measured = measure(rig, report, &bin, &db, store, n)?;
            println!(
                "  repeat {} {:<42} server CPU per connection {}, {} queries (database saw {} SELECTs)",
                repeat + 1,
                store.label(),
                measured
                    .cpu_per_connection
                    .map_or("n/a".into(), report::ns),
                measured.queries,
                measured.selects
            );
            let expected = match store {
                Store::File => 0,
                Store::Warm => 1,
                Store::Cold => u64::from(n),
            };
            if measured.queries != expected {
                report.fail(format!(
                    "app store, {}: {} queries, expected {expected}",
                    store.label(),
                    measured.queries
                ));
            }
            runs.push((store, measured));
        }
    }
    summarize(report, driver, n, &runs);
    Ok(())
}

/// One run: a fresh server with `store`, `n` clients connect and subscribe, then close.
fn measure(
    rig: &mut Rig,
    report: &mut Report,
    bin: &Path,
    db: &Database,
    store: Store,
    n: u32,
) -> Result<Measured, String> {
    // The spawned server always serves metrics, on a port it prints.
    let mut extra = Vec::new();
    let file_creds = match store {
        Store::File => rig.creds.clone(),
        Store::Warm | Store::Cold => {
            extra.extend([
                "--app-store-driver".to_string(),
                match db {
                    Database::Postgres(_) => "postgres".into(),
                    Database::MariaDb(_) => "mysql".into(),
                },
                "--app-store-url".into(),
                db.url(),
                // Nothing is read again during a run: what is measured is one lookup per key.
                "--app-store-cache-ttl-secs".into(),
                "3600".into(),
            ]);
            Credentials {
                app_id: "loadgen-file-only".into(),
                key: FILE_ONLY_KEY.into(),
                secret: "loadgen-file-only-secret".into(),
            }
        }
    };
    let cpu = rig.pinned.then_some(rig.args.server_cpu());
    let mut server = ServerProc::spawn(bin, &file_creds, 100, cpu, &extra)?;
    let metrics = server
        .metrics_addr()
        .ok_or_else(|| format!("the server ({}) printed no metrics address", store.label()))?;
    let base = format!("ws://{}", server.addr);
    let targets: Vec<WsTarget> = match store {
        Store::File | Store::Warm => vec![spawn::ws_target(&base, &rig.creds.key)?],
        Store::Cold => (0..n)
            .map(|i| spawn::ws_target(&base, &cold_key(i)))
            .collect::<Result<_, _>>()?,
    };
    let queries0 = queries_total(metrics)?;
    let selects0 = db.selects()?;
    let cpu0 = sys::process_cpu_ns(server.pid).map(|c| c.0);
    let connected = rig.connect_spread(
        &targets,
        0,
        n,
        ChannelSpec::PerClient("loadgen-store-".into()),
        false,
        true,
        TIMEOUT,
    )?;
    let cpu1 = sys::process_cpu_ns(server.pid).map(|c| c.0);
    let queries = queries_total(metrics)?.saturating_sub(queries0);
    let selects = db.selects()?.saturating_sub(selects0);
    if connected.subscribed != n {
        report.fail(format!(
            "app store, {}: {} of {n} failed: {:?}",
            store.label(),
            connected.failed,
            connected.errors
        ));
    }
    let merged = rig.stats(true)?;
    check_stats(
        report,
        &format!("app store, {}", store.label()),
        &merged.stats,
        0,
    );
    rig.close_all()?;
    if !server.alive() {
        return Err(format!(
            "the server ({}) exited unexpectedly; its last stderr lines: {}",
            store.label(),
            server.stderr_tail()
        ));
    }
    server.stop();
    Ok(Measured {
        cpu_per_connection: match (cpu0, cpu1) {
            (Some(a), Some(b)) => Some((b - a) as f64 / f64::from(n)),
            _ => None,
        },
        queries,
        selects,
    })
}

/// The table rows: medians per store, the ratios to the file store, and the verdict.
fn summarize(report: &mut Report, driver: Driver, n: u32, runs: &[(Store, Measured)]) {
    let cpus = |store: Store| -> Vec<f64> {
        runs.iter()
            .filter(|(s, _)| *s == store)
            .filter_map(|(_, m)| m.cpu_per_connection)
            .collect()
    };
    let medians = |store: Store, pick: fn(&Measured) -> u64| -> f64 {
        let values: Vec<f64> = runs
            .iter()
            .filter(|(s, _)| *s == store)
            .map(|(_, m)| pick(m) as f64)
            .collect();
        median(&values)
    };
    let file = cpus(Store::File);
    let file_median = (!file.is_empty()).then(|| median(&file));
    let size = report::count(n);
    for store in Store::ALL {
        let values = cpus(store);
        let ours = (!values.is_empty()).then(|| median(&values));
        let against = (store != Store::File).then_some(file_median).flatten();
        report.row(
            format!(
                "app store {} {size}, {}: server CPU per connection",
                driver.name(),
                store.label()
            ),
            ours.map_or("n/a".into(), report::ns),
            against.map(|f| {
                let change = ours.map_or(String::new(), |o| {
                    format!(" ({:+.1}%)", (o / f - 1.0) * 100.0)
                });
                format!("file store {}{change}", report::ns(f))
            }),
            report::ratio(ours, against),
        );
        if store != Store::File {
            report.row(
                format!(
                    "app store {} {size}, {}: queries per run",
                    driver.name(),
                    store.label()
                ),
                format!(
                    "{:.0} (database saw {:.0} SELECTs)",
                    medians(store, |m| m.queries),
                    medians(store, |m| m.selects)
                ),
                None,
                None,
            );
        }
    }
    let warm = cpus(Store::Warm);
    if let Some(note) = verdict(&file, &warm) {
        println!("  {note}");
        report
            .notes
            .push(format!("app store {}: {note}", driver.name()));
    }
}

/// Whether the warm database store's median falls within the spread of the file store's own
/// runs (the noise of this machine in this run); `None` without figures.
fn verdict(file: &[f64], warm: &[f64]) -> Option<String> {
    if file.is_empty() || warm.is_empty() {
        return None;
    }
    let (lo, hi) = file
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let file_median = median(file);
    let warm_median = median(warm);
    let change = (warm_median / file_median - 1.0) * 100.0;
    let range = format!(
        "file store runs {} to {} (median {})",
        report::ns(lo),
        report::ns(hi),
        report::ns(file_median)
    );
    Some(if file.len() < 3 {
        format!(
            "warm cache {} ({change:+.1}%) against {range}: too few repeats to tell noise (use --repeats 5)",
            report::ns(warm_median)
        )
    } else if (lo..=hi).contains(&warm_median) {
        format!(
            "warm cache {} ({change:+.1}%) is within the noise: inside the {range}",
            report::ns(warm_median)
        )
    } else {
        format!(
            "warm cache {} ({change:+.1}%) is NOT within the noise: outside the {range}",
            report::ns(warm_median)
        )
    })
}

/// `ferrocast_app_store_queries_total` from the metrics listener at `addr` (0 when the
/// server has no app store, which leaves the counter out), retried while the listener starts.
fn queries_total(addr: SocketAddr) -> Result<u64, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match scrape(addr) {
            Ok(text) => return Ok(counter(&text, "ferrocast_app_store_queries_total")),
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("metrics on {addr}: {e}"));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The body of `GET /metrics` at `addr`.
fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&answer).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!(
            "unexpected answer {:?}",
            text.lines().next().unwrap_or("")
        )),
    }
}

/// The value of the unlabelled sample `name` in an OpenMetrics text, 0 when absent.
fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queries_counter_is_read_from_openmetrics_text() {
        let text = "# TYPE ferrocast_app_store_queries counter\n\
                    ferrocast_app_store_queries_total 1234\n\
                    ferrocast_app_store_queries_created 1.7e9\n# EOF\n";
        assert_eq!(counter(text, "ferrocast_app_store_queries_total"), 1234);
        assert_eq!(counter("# EOF\n", "ferrocast_app_store_queries_total"), 0);
    }

    #[test]
    fn the_verdict_compares_with_the_file_stores_spread() {
        let file = [10_000.0, 11_000.0, 12_000.0];
        let inside = verdict(&file, &[11_500.0, 11_600.0, 11_700.0]).unwrap();
        assert!(inside.contains("is within the noise"), "{inside}");
        let outside = verdict(&file, &[15_000.0, 15_500.0, 16_000.0]).unwrap();
        assert!(outside.contains("NOT within the noise"), "{outside}");
        assert!(verdict(&file[..1], &[1.0]).unwrap().contains("too few"));
        assert_eq!(verdict(&[], &[1.0]), None);
    }
}
