//! The real binary with `[app_store] driver = "postgres"` or `"mysql"`, against a real database
//! started for the test: apps that exist only in the database, added, changed, disabled and
//! deleted while the server runs, the database going away, and a burst of connections for one
//! unknown key costing one query.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]
// The tests play the client: they read the server's JSON.
#![allow(clippy::disallowed_types)]

#[macro_use]
mod support;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use support::mariadb::MariaDbServer;
use support::postgres::PostgresServer;
use support::{
    close_code, next_json, read_response, signed_events_request, unix_secs, Server, WAIT,
};
use tungstenite::protocol::WebSocket;

/// `packaging/sql/{file}`, as a user would run it.
fn packaged_sql(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging/sql")
        .join(file);
    std::fs::read_to_string(path).unwrap()
}

/// A server reading its apps from the database at `url`, with metrics on.
fn server_on(driver: &str, url: &str, workers: usize, extra: &[&str]) -> Server {
    let config = format!(
        "[app_store]\ndriver = \"{driver}\"\nurl = \"{url}\"\nmissing_ttl_secs = 1\n\
         lookup_timeout_ms = 3000\n"
    );
    let mut args = vec!["--metrics", "true", "--metrics-port", "0"];
    args.extend_from_slice(extra);
    Server::start_with(workers, Some(&config), &args, &[])
}

/// A WebSocket for `key`, and the first message the server sent on it.
fn connect(server: &Server, key: &str) -> (WebSocket<TcpStream>, serde_json::Value) {
    let mut ws = server.ws(&format!("/app/{key}?protocol=7"));
    let first = next_json(&mut ws);
    (ws, first)
}

/// Connects with `key` and expects the welcome frame.
fn welcomed(server: &Server, key: &str) -> WebSocket<TcpStream> {
    let (ws, first) = connect(server, key);
    assert_eq!(
        first["event"], "pusher:connection_established",
        "{key}: {first}"
    );
    ws
}

/// Connects with `key` and expects `pusher:error` with `code`, then a close with it.
fn refused(server: &Server, key: &str, code: u16) {
    let (mut ws, first) = connect(server, key);
    assert_eq!(first["event"], "pusher:error", "{key}: {first}");
    assert_eq!(first["data"]["code"], code, "{key}: {first}");
    assert_eq!(close_code(&mut ws), code);
}

/// The status of a signed publish to app `id` with `key` and `secret`.
fn publish_status(server: &Server, id: &str, key: &str, secret: &str) -> u16 {
    let body = r#"{"name":"e","channel":"c","data":"{}"}"#;
    let request = signed_events_request(id, (key, secret), body, unix_secs()).replacen(
        "Host: t\r\n",
        "Host: t\r\nConnection: close\r\n",
        1,
    );
    let stream = server.tcp();
    stream
        .try_clone()
        .unwrap()
        .write_all(request.as_bytes())
        .unwrap();
    read_response(&mut BufReader::new(stream)).status()
}

/// Retries `check` until it holds, for at most `wait`.
fn eventually(wait: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + wait;
    while !check() {
        assert!(Instant::now() < until, "not within {wait:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The metrics text at `addr`.
fn metrics(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

/// The value of the unlabelled sample `name` in the metrics text.
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

const INSERT: &str = "INSERT INTO apps (id, \"key\", secret, enable_client_messages) VALUES ";

fn apps_live_in_postgres_and_change_at_runtime(workers: usize) {
    let mut db = PostgresServer::start();
    db.sql(&packaged_sql("postgres.sql"));
    db.sql(&format!("{INSERT}('db-app', 'db-key', 'db-secret', 1)"));
    let server = server_on("postgres", &db.url(), workers, &[]);
    let metrics_at = server.metrics_addr();

    // An app that exists only in the database; the example app is not served.
    let mut first = welcomed(&server, "db-key");
    refused(&server, "app-key", 4001);
    refused(&server, "no-such-key", 4001);
    assert_eq!(
        publish_status(&server, "db-app", "db-key", "db-secret"),
        200
    );
    assert_eq!(
        publish_status(&server, "no-app", "db-key", "db-secret"),
        404
    );

    // Inserted while the server runs.
    db.sql(&format!("{INSERT}('new-app', 'new-key', 'new-secret', 0)"));
    let _new = welcomed(&server, "new-key");

    // A new secret: the old signature is refused, the new one accepted.
    db.sql("UPDATE apps SET secret = 'db-secret-2' WHERE id = 'db-app'");
    eventually(Duration::from_secs(2), "old secret refused", || {
        publish_status(&server, "db-app", "db-key", "db-secret") == 401
    });
    assert_eq!(
        publish_status(&server, "db-app", "db-key", "db-secret-2"),
        200
    );

    // The database goes away: known apps are still served, new keys get a clear refusal.
    db.stop();
    let _still = welcomed(&server, "db-key");
    assert_eq!(
        publish_status(&server, "db-app", "db-key", "db-secret-2"),
        200
    );
    refused(&server, "never-seen", 4100);
    eventually(Duration::from_secs(8), "the outage in the metrics", || {
        sample(&metrics(metrics_at), "ferrocast_app_store_up") == 0.0
    });
    assert_eq!(
        server.stderr().matches("app store unavailable").count(),
        1,
        "logged once"
    );
    db.start_again();
    eventually(Duration::from_secs(10), "the store back", || {
        sample(&metrics(metrics_at), "ferrocast_app_store_up") == 1.0
    });

    // Disabled: its open connections are closed with 4003, other apps' stay.
    let mut other = welcomed(&server, "new-key");
    db.sql("UPDATE apps SET enabled = 0 WHERE id = 'db-app'");
    assert_eq!(close_code(&mut first), 4003);
    refused(&server, "db-key", 4003);

    // Deleted: 4001 for its connections and for new ones.
    db.sql("DELETE FROM apps WHERE id = 'new-app'");
    assert_eq!(close_code(&mut other), 4001);
    refused(&server, "new-key", 4001);

    let text = metrics(metrics_at);
    assert!(
        sample(&text, "ferrocast_app_store_queries_total") >= 4.0,
        "{text}"
    );
    assert!(
        sample(&text, "ferrocast_app_store_errors_total") >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "ferrocast_app_store_notifications_total") >= 3.0,
        "{text}"
    );
    let log = server.stderr();
    assert!(!log.contains(&db.password().to_string()), "{log}");
    assert!(!log.contains("db-secret"), "{log}");
}

per_workers!(apps_live_in_postgres_and_change_at_runtime);

#[test]
fn apps_live_in_mariadb_and_stay_served_while_it_is_down() {
    let mut db = MariaDbServer::start();
    db.sql(&packaged_sql("mysql.sql"));
    db.sql(&format!(
        "{}('my-app', 'my-key', 'my-secret', 1)",
        INSERT.replace('"', "`")
    ));
    let server = server_on("mysql", &db.url(), 2, &[]);
    let _first = welcomed(&server, "my-key");
    refused(&server, "app-key", 4001);
    assert_eq!(
        publish_status(&server, "my-app", "my-key", "my-secret"),
        200
    );
    db.stop();
    let _still = welcomed(&server, "my-key");
    assert_eq!(
        publish_status(&server, "my-app", "my-key", "my-secret"),
        200
    );
    refused(&server, "never-seen", 4100);
    db.start_again();
    db.sql(&format!(
        "{}('late-app', 'late-key', 's', 0)",
        INSERT.replace('"', "`")
    ));
    eventually(
        Duration::from_secs(10),
        "a new app after the return",
        || {
            let (_ws, first) = connect(&server, "late-key");
            first["event"] == "pusher:connection_established"
        },
    );
    assert!(!server.stderr().contains(db.password()));
}

#[test]
fn a_thousand_connections_for_one_unknown_key_make_one_query() {
    let db = PostgresServer::start();
    db.sql(&packaged_sql("postgres.sql"));
    db.sql(&format!("{INSERT}('burst-app', 'burst-key', 's', 0)"));
    let server = server_on("postgres", &db.url(), 2, &["--rate-limit", "false"]);
    // Connected, and the statements prepared, before counting.
    refused(&server, "warm-up", 4001);
    let before = db.select_count("apps");
    // The table is locked while the connections come, so all of them wait on the lookup.
    let started = Instant::now();
    let connections = std::thread::scope(|scope| {
        scope.spawn(|| {
            db.sql("BEGIN; LOCK TABLE apps IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(2); COMMIT")
        });
        std::thread::sleep(Duration::from_millis(200));
        (0..1000)
            .map(|_| server.ws("/app/burst-key?protocol=7"))
            .collect::<Vec<_>>()
    });
    eprintln!("1000 handshakes done in {:?}", started.elapsed());
    for mut ws in connections {
        assert_eq!(next_json(&mut ws)["event"], "pusher:connection_established");
    }
    assert_eq!(db.select_count("apps") - before, 1);
}
