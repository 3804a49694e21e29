//! The app store's threads against real databases (PostgreSQL and MariaDB, each started for
//! the test on loopback): lookups by key and by id, a bad row, an outage and the return, a
//! change heard through LISTEN/NOTIFY, and many identical lookups costing one query. The
//! store answers into a door of its own here, read by the test as the engine would.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use ferrocast::{AppStore, AppStoreDriver, AppStoreSettings, Received, Receiver};
use ferrocast_engine::{AppAnswer, AppConfig, AppLookup, Input};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::mariadb::MariaDbServer;
use support::postgres::PostgresServer;
use support::WAIT;

/// What the store logged, from every test of this binary (each looks for its own app ids).
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Installs a subscriber that keeps the store's log lines, once per test binary.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter("ferrocast=debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .init();
        buffer
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines logged so far that contain every one of `words`.
fn logged(words: &[&str]) -> Vec<String> {
    logged_since(0, words)
}

/// How much has been logged: a mark for [`logged_since`].
fn log_mark() -> usize {
    logs().lock().unwrap().len()
}

/// The lines logged after `mark` that contain every one of `words`.
fn logged_since(mark: usize, words: &[&str]) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().lock().unwrap()[mark..]).into_owned();
    text.lines()
        .filter(|line| words.iter().all(|word| line.contains(word)))
        .map(str::to_owned)
        .collect()
}

/// Held by the tests that take a database away, so that the outage lines each one counts are
/// its own and not those of another outage at the same time.
static OUTAGE: Mutex<()> = Mutex::new(());

fn outage_alone() -> std::sync::MutexGuard<'static, ()> {
    OUTAGE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The two databases, behind what the tests need of them.
trait Database: Sync {
    fn driver(&self) -> AppStoreDriver;
    fn url(&self) -> String;
    fn sql(&self, statement: &str) -> String;
    fn select_count(&self, table: &str) -> u64;
    fn stop(&mut self);
    fn start_again(&mut self);
    /// Runs `statement` on a session of its own while the table is locked against reads
    /// for about a second.
    fn lock_table_for_a_second(&self) -> String;
}

impl Database for PostgresServer {
    fn driver(&self) -> AppStoreDriver {
        AppStoreDriver::Postgres
    }
    fn url(&self) -> String {
        PostgresServer::url(self)
    }
    fn sql(&self, statement: &str) -> String {
        PostgresServer::sql(self, statement)
    }
    fn select_count(&self, table: &str) -> u64 {
        PostgresServer::select_count(self, table)
    }
    fn stop(&mut self) {
        PostgresServer::stop(self)
    }
    fn start_again(&mut self) {
        PostgresServer::start_again(self)
    }
    fn lock_table_for_a_second(&self) -> String {
        "BEGIN; LOCK TABLE apps IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(1); COMMIT".into()
    }
}

impl Database for MariaDbServer {
    fn driver(&self) -> AppStoreDriver {
        AppStoreDriver::Mysql
    }
    fn url(&self) -> String {
        MariaDbServer::url(self)
    }
    fn sql(&self, statement: &str) -> String {
        MariaDbServer::sql(self, statement)
    }
    fn select_count(&self, table: &str) -> u64 {
        MariaDbServer::select_count(self, table)
    }
    fn stop(&mut self) {
        MariaDbServer::stop(self)
    }
    fn start_again(&mut self) {
        MariaDbServer::start_again(self)
    }
    fn lock_table_for_a_second(&self) -> String {
        "LOCK TABLES apps WRITE; SELECT SLEEP(1); UNLOCK TABLES".into()
    }
}

/// The table of `packaging/sql/`, as a user would create it.
fn create_table(db: &dyn Database) {
    let file = match db.driver() {
        AppStoreDriver::Postgres => "postgres.sql",
        _ => "mysql.sql",
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/sql")
        .join(file);
    db.sql(&std::fs::read_to_string(path).unwrap());
}

/// A store on `db` answering into a door the test reads.
fn start_store(db: &dyn Database) -> (AppStore, Receiver<Input>) {
    logs();
    let settings = AppStoreSettings {
        driver: db.driver(),
        url: Some(db.url()),
        lookup_timeout_ms: 2_000,
        ..AppStoreSettings::default()
    };
    let (to_engine, door) = ferrocast::bounded_queue(1024, None);
    (AppStore::start(&settings, to_engine).unwrap(), door)
}

/// The next `Input::App` the store pushed within `wait`, if any.
fn next_app(door: &Receiver<Input>, wait: Duration) -> Option<(AppLookup, AppAnswer)> {
    let until = Instant::now() + wait;
    let mut got = Vec::new();
    while Instant::now() < until {
        let left = until.saturating_duration_since(Instant::now());
        if door.recv(&mut got, 1, Some(left)) == Received::Closed {
            return None;
        }
        if let Some(Input::App { lookup, answer }) = got.pop() {
            return Some((lookup, answer));
        }
    }
    None
}

/// Asks the store for `lookup` and waits for its answer (skipping unasked news).
fn ask(store: &AppStore, door: &Receiver<Input>, lookup: AppLookup) -> AppAnswer {
    store.lookups().ask(lookup.clone());
    let until = Instant::now() + WAIT;
    while let Some((answered, answer)) = next_app(door, until - Instant::now()) {
        if answered == lookup {
            return answer;
        }
    }
    panic!("no answer to {lookup:?}");
}

fn found(answer: AppAnswer) -> AppConfig {
    match answer {
        AppAnswer::Found(app) => *app,
        other => panic!("expected Found, got {other:?}"),
    }
}

fn key(k: &str) -> AppLookup {
    AppLookup::Key(k.into())
}

fn id(i: &str) -> AppLookup {
    AppLookup::Id(i.into())
}

const APP_ROW: &str = "INSERT INTO apps (id, `key`, secret, max_connections, enable_client_messages, \
    enabled, max_backend_events_per_sec, max_client_events_per_sec, max_read_req_per_sec, \
    max_presence_members_per_channel, max_presence_member_size_in_kb, max_event_payload_in_kb, \
    webhooks, enable_user_authentication) VALUES ('app-1', 'key-1', 'secret-1', 50, 1, 1, 100, \
    -1, -1, 7, 2, 20, \
    '[{\"url\": \"http://127.0.0.1:9/hook\", \"event_types\": [\"channel_occupied\"], \
       \"headers\": {\"X-Team\": \"blue\"}, \"filter\": {\"channel_name_starts_with\": \"beta-\"}}]', 1)";

/// The row insert with `key` quoted for `db`.
fn app_row(db: &dyn Database) -> String {
    match db.driver() {
        AppStoreDriver::Postgres => APP_ROW.replace('`', "\""),
        _ => APP_ROW.to_owned(),
    }
}

fn lookups_by_key_and_id_are_found_or_missing(db: &dyn Database) {
    create_table(db);
    db.sql(&app_row(db));
    let (store, door) = start_store(db);
    let app = found(ask(&store, &door, key("key-1")));
    assert_eq!(
        (app.id.as_str(), app.key.as_str(), app.secret.as_str()),
        ("app-1", "key-1", "secret-1")
    );
    assert_eq!(app.max_connections, Some(50));
    assert!(app.client_events && app.enabled && app.user_auth_required);
    assert_eq!(app.max_events_per_sec, Some(100));
    assert_eq!(app.client_event_rate_per_sec, u32::MAX);
    assert_eq!(app.max_reads_per_sec, None);
    assert_eq!(app.max_presence_members, 7);
    assert_eq!(app.max_presence_user_info_bytes, 2048);
    assert_eq!(app.max_event_payload_bytes, 20 * 1024);
    assert_eq!(
        app.max_channel_name_len,
        AppConfig::default().max_channel_name_len
    );
    assert_eq!(app.webhooks.len(), 1);
    assert_eq!(app.webhooks[0].headers["X-Team"], "blue");
    let filter = app.webhooks[0].filter.as_ref().unwrap();
    assert_eq!(filter.channel_name_starts_with.as_deref(), Some("beta-"));
    assert_eq!(found(ask(&store, &door, id("app-1"))), app);
    assert_eq!(ask(&store, &door, key("no-such-key")), AppAnswer::Missing);
    assert_eq!(ask(&store, &door, id("no-such-id")), AppAnswer::Missing);
    // A key that would be SQL is only a value.
    assert_eq!(ask(&store, &door, key("x' OR '1'='1")), AppAnswer::Missing);
    let stats = store.stats().snapshot();
    assert!(stats.up, "{stats:?}");
    // One query per lookup, and with PostgreSQL perhaps one more: the listener's first
    // LISTEN re-reads the apps served so far, which depends on when it connected.
    assert!((5..=6).contains(&stats.queries), "{stats:?}");
    store.stop();
}

fn a_bad_row_is_missing_with_a_log_line_naming_the_app(db: &dyn Database) {
    create_table(db);
    let bad_id = format!("bad-{:?}", db.driver()).to_lowercase();
    db.sql(&format!(
        "INSERT INTO apps (id, {k}, secret, max_event_batch_size, webhooks) \
         VALUES ('{bad_id}', 'bad-key', 's', -3, '[]')",
        k = if db.driver() == AppStoreDriver::Postgres {
            "\"key\""
        } else {
            "`key`"
        }
    ));
    db.sql(&format!(
        "INSERT INTO apps (id, {k}, secret, webhooks) VALUES ('{bad_id}-2', 'bad-hooks', 's', '{{}}')",
        k = if db.driver() == AppStoreDriver::Postgres { "\"key\"" } else { "`key`" }
    ));
    let (store, door) = start_store(db);
    assert_eq!(ask(&store, &door, key("bad-key")), AppAnswer::Missing);
    assert_eq!(
        ask(&store, &door, id(&format!("{bad_id}-2"))),
        AppAnswer::Missing
    );
    let lines = logged(&["WARN", &format!("\"{bad_id}\""), "max_event_batch_size"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let lines = logged(&["WARN", &format!("\"{bad_id}-2\""), "webhooks"]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(store.stats().snapshot().errors >= 2);
    store.stop();
}

fn a_stopped_database_is_unavailable_at_once_and_found_again_after_its_return(
    db: &mut dyn Database,
) {
    let _alone = outage_alone();
    create_table(db);
    db.sql(&app_row(db));
    let (store, door) = start_store(db);
    found(ask(&store, &door, key("key-1")));
    let mark = log_mark();
    db.stop();
    // Idle, the store still notices (it checks its connection after 5 s without lookups).
    let until = Instant::now() + Duration::from_secs(8);
    while store.stats().snapshot().up && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !store.stats().snapshot().up,
        "the outage shows without a lookup"
    );
    let driver = format!(
        "driver=\"{}\"",
        if db.driver() == AppStoreDriver::Postgres {
            "postgres"
        } else {
            "mysql"
        }
    );
    for lookup in [key("key-1"), id("app-1"), key("other")] {
        let asked = Instant::now();
        assert_eq!(ask(&store, &door, lookup), AppAnswer::Unavailable);
        assert!(
            asked.elapsed() < Duration::from_secs(3),
            "answered at once, not after a timeout: {:?}",
            asked.elapsed()
        );
    }
    assert!(!store.stats().snapshot().up);
    let down = logged_since(mark, &["WARN", "app store unavailable", &driver]);
    assert_eq!(
        down.len(),
        1,
        "logged once: {down:?} in {:?}",
        logged(&["app store"])
    );
    assert!(
        !down[0].contains(&db.url()) && !down[0].contains("password"),
        "{down:?}"
    );
    db.start_again();
    let until = Instant::now() + WAIT;
    let app = loop {
        match ask(&store, &door, key("key-1")) {
            AppAnswer::Found(app) => break app,
            AppAnswer::Unavailable if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(100))
            }
            other => panic!("after the return: {other:?}"),
        }
    };
    assert_eq!(app.id, "app-1");
    assert!(store.stats().snapshot().up);
    let back = logged(&["app store available again", &driver]);
    assert_eq!(back.len(), 1, "{back:?}");
    assert_eq!(logged(&["WARN", "app store unavailable", &driver]).len(), 1);
    store.stop();
}

fn identical_concurrent_lookups_cost_one_query(db: &dyn Database) {
    create_table(db);
    db.sql(&app_row(db));
    let (store, door) = start_store(db);
    // Connected and idle before counting.
    assert_eq!(ask(&store, &door, key("warm-up")), AppAnswer::Missing);
    let before = db.select_count("apps");
    // The table is locked while the lookups arrive, so they all wait on one query.
    let lock = db.lock_table_for_a_second();
    let barrier = Barrier::new(100);
    std::thread::scope(|scope| {
        scope.spawn(|| db.sql(&lock));
        std::thread::sleep(Duration::from_millis(200));
        for _ in 0..100 {
            let lookups = store.lookups();
            let barrier = &barrier;
            scope.spawn(move || {
                barrier.wait();
                lookups.ask(key("key-1"));
            });
        }
    });
    let (lookup, answer) = next_app(&door, WAIT).expect("an answer");
    assert_eq!(lookup, key("key-1"));
    assert_eq!(found(answer).id, "app-1");
    // Every other answer is the same, with no query of its own.
    while let Some((lookup, answer)) = next_app(&door, Duration::from_millis(300)) {
        assert_eq!(lookup, key("key-1"));
        assert_eq!(found(answer).id, "app-1");
    }
    let after = db.select_count("apps");
    assert_eq!(after - before, 1, "one query for 100 identical lookups");
    store.stop();
}

#[test]
fn postgres_lookups_by_key_and_id_are_found_or_missing() {
    lookups_by_key_and_id_are_found_or_missing(&PostgresServer::start());
}

#[test]
fn mariadb_lookups_by_key_and_id_are_found_or_missing() {
    lookups_by_key_and_id_are_found_or_missing(&MariaDbServer::start());
}

#[test]
fn postgres_a_bad_row_is_missing_with_a_log_line_naming_the_app() {
    a_bad_row_is_missing_with_a_log_line_naming_the_app(&PostgresServer::start());
}

#[test]
fn mariadb_a_bad_row_is_missing_with_a_log_line_naming_the_app() {
    a_bad_row_is_missing_with_a_log_line_naming_the_app(&MariaDbServer::start());
}

#[test]
fn postgres_a_stopped_database_is_unavailable_at_once_and_found_again_after_its_return() {
    a_stopped_database_is_unavailable_at_once_and_found_again_after_its_return(
        &mut PostgresServer::start(),
    );
}

#[test]
fn mariadb_a_stopped_database_is_unavailable_at_once_and_found_again_after_its_return() {
    a_stopped_database_is_unavailable_at_once_and_found_again_after_its_return(
        &mut MariaDbServer::start(),
    );
}

#[test]
fn postgres_identical_concurrent_lookups_cost_one_query() {
    identical_concurrent_lookups_cost_one_query(&PostgresServer::start());
}

#[test]
fn mariadb_identical_concurrent_lookups_cost_one_query() {
    identical_concurrent_lookups_cost_one_query(&MariaDbServer::start());
}

/// The next unasked news within `wait` of app `app_id`.
fn news(door: &Receiver<Input>, app_id: &str, wait: Duration) -> Option<AppAnswer> {
    let until = Instant::now() + wait;
    while let Some((lookup, answer)) =
        next_app(door, until.saturating_duration_since(Instant::now()))
    {
        if lookup == id(app_id) {
            return Some(answer);
        }
    }
    None
}

/// How long news of a change may take: generous for a loaded machine, and still telling, since
/// nothing but a notification makes the store read the table unasked.
const NOTIFIED: Duration = Duration::from_secs(10);

#[test]
fn postgres_changes_are_pushed_unasked() {
    let db = PostgresServer::start();
    create_table(&db);
    db.sql(&app_row(&db));
    let (store, door) = start_store(&db);
    assert_eq!(found(ask(&store, &door, key("key-1"))).secret, "secret-1");
    // The listener is up once its first resync re-read the app.
    let until = Instant::now() + WAIT;
    while store.stats().snapshot().queries < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    while next_app(&door, Duration::from_millis(100)).is_some() {}

    let changed = Instant::now();
    db.sql("UPDATE apps SET secret = 'secret-2' WHERE id = 'app-1'");
    let answer = news(&door, "app-1", NOTIFIED).expect("news of the new secret");
    assert_eq!(found(answer).secret, "secret-2");
    eprintln!("an UPDATE reached the door in {:?}", changed.elapsed());

    db.sql("UPDATE apps SET enabled = 0 WHERE id = 'app-1'");
    let answer = news(&door, "app-1", NOTIFIED).expect("news of the disable");
    assert!(!found(answer).enabled);

    db.sql("UPDATE apps SET id = 'app-1b' WHERE id = 'app-1'");
    let mut heard = [None, None];
    let until = Instant::now() + NOTIFIED;
    while heard.iter().any(Option::is_none) {
        let (lookup, answer) = next_app(&door, until - Instant::now()).expect("both ids");
        if lookup == id("app-1") {
            heard[0] = Some(answer);
        } else if lookup == id("app-1b") {
            heard[1] = Some(answer);
        }
    }
    assert_eq!(heard[0], Some(AppAnswer::Missing), "the old id is gone");
    assert_eq!(found(heard[1].take().unwrap()).id, "app-1b");

    db.sql("DELETE FROM apps WHERE id = 'app-1b'");
    assert_eq!(news(&door, "app-1b", NOTIFIED), Some(AppAnswer::Missing));
    assert!(store.stats().snapshot().notifications >= 5);
    store.stop();
}

#[test]
fn postgres_a_listener_whose_connection_dropped_reads_the_served_apps_again() {
    let _alone = outage_alone();
    let db = PostgresServer::start();
    create_table(&db);
    db.sql(&app_row(&db));
    let (store, door) = start_store(&db);
    found(ask(&store, &door, key("key-1")));
    let until = Instant::now() + WAIT;
    while logged(&["app store listening for changes"]).is_empty() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    while next_app(&door, Duration::from_millis(200)).is_some() {}
    // The listener's connection is cut, and the app changed before it can reconnect, with
    // the trigger off: no notification will ever say so. One transaction, so the change is
    // seen by none but all at once.
    db.sql(
        "ALTER TABLE apps DISABLE TRIGGER ferrocast_apps_changed; \
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid(); \
         UPDATE apps SET secret = 'changed-unheard' WHERE id = 'app-1'; \
         ALTER TABLE apps ENABLE TRIGGER ferrocast_apps_changed",
    );
    let until = Instant::now() + WAIT;
    loop {
        let answer = news(
            &door,
            "app-1",
            until.saturating_duration_since(Instant::now()),
        )
        .expect("the app read again after the listener reconnected");
        if found(answer).secret == "changed-unheard" {
            break;
        }
    }
    store.stop();
}

#[test]
fn the_store_stops_within_its_bounds_while_the_database_is_down() {
    let _alone = outage_alone();
    let mut db = PostgresServer::start();
    create_table(&db);
    let (store, _door) = start_store(&db);
    db.stop();
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    store.stop();
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "{:?}",
        stopping.elapsed()
    );
}
