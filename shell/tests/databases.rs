//! The real database servers the app-store tests use, proven on their own: each starts on a
//! free loopback port in a temporary directory, stores and returns a row, counts its reads
//! exactly, refuses connections while stopped, and keeps its data across a restart.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Instant;
use support::mariadb::MariaDbServer;
use support::postgres::PostgresServer;

/// The round trip of `PostgresServer`: table, row, counted SELECTs, outage, restart.
#[test]
fn postgres_server_stores_counts_stops_and_restarts() {
    let began = Instant::now();
    let mut db = PostgresServer::start();
    eprintln!("PostgreSQL started in {:?}", db.started_in());
    assert!(db.url().starts_with("postgres://ferrocast:"));
    assert!(db
        .url()
        .ends_with(&format!("@127.0.0.1:{}/ferrocast", db.port())));

    db.sql("CREATE TABLE apps (id text PRIMARY KEY, secret text NOT NULL)");
    db.sql("INSERT INTO apps (id, secret) VALUES ('app-1', 's3cret')");
    // Another table's reads must not count for `apps`.
    db.sql("CREATE TABLE apps_other (id text)");

    let before = db.select_count("apps");
    assert_eq!(
        db.sql("SELECT secret FROM apps WHERE id = 'app-1'"),
        "s3cret"
    );
    assert_eq!(db.sql("SELECT count(*) FROM apps"), "1");
    // Two SELECTs in one session, as a long-lived client connection makes them.
    assert_eq!(
        db.sql("SELECT id FROM apps; SELECT id FROM apps WHERE secret = 'none'"),
        "app-1"
    );
    db.sql("SELECT * FROM apps_other");
    db.sql("UPDATE apps SET secret = 's3cret' WHERE id = 'app-1'");
    assert_eq!(
        db.select_count("apps") - before,
        4,
        "one per SELECT on apps"
    );
    assert_eq!(
        db.select_count("apps") - before,
        4,
        "reading the count reads nothing"
    );

    db.stop();
    let refused = db.try_sql("SELECT 1").unwrap_err();
    assert!(
        refused.contains("127.0.0.1") || refused.contains("connect"),
        "{refused}"
    );

    db.start_again();
    eprintln!("PostgreSQL started again in {:?}", db.started_in());
    assert_eq!(
        db.sql("SELECT secret FROM apps WHERE id = 'app-1'"),
        "s3cret"
    );
    eprintln!("whole test {:?}", began.elapsed());
}

/// The round trip of `MariaDbServer`: table, row, counted SELECTs, outage, restart.
#[test]
fn mariadb_server_stores_counts_stops_and_restarts() {
    let began = Instant::now();
    let mut db = MariaDbServer::start();
    eprintln!("MariaDB started in {:?}", db.started_in());
    assert!(db.url().starts_with("mysql://ferrocast:"));
    assert!(db
        .url()
        .ends_with(&format!("@127.0.0.1:{}/ferrocast", db.port())));

    db.sql("CREATE TABLE apps (id VARCHAR(64) PRIMARY KEY, secret TEXT NOT NULL)");
    db.sql("INSERT INTO apps (id, secret) VALUES ('app-1', 's3cret')");
    // Another table's reads must not count for `apps`.
    db.sql("CREATE TABLE apps_other (id TEXT)");

    let before = db.select_count("apps");
    assert_eq!(
        db.sql("SELECT secret FROM apps WHERE id = 'app-1'"),
        "s3cret"
    );
    assert_eq!(db.sql("SELECT COUNT(*) FROM apps"), "1");
    // Two SELECTs in one session, as a long-lived client connection makes them: one a
    // prepared statement, one inside a transaction.
    assert_eq!(
        db.sql(
            "PREPARE lookup FROM 'SELECT id FROM apps WHERE id = ?'; SET @id = 'app-1'; \
             EXECUTE lookup USING @id; \
             BEGIN; SELECT id FROM apps WHERE secret = 'none'; COMMIT"
        ),
        "app-1"
    );
    db.sql("SELECT * FROM apps_other");
    db.sql("UPDATE apps SET secret = 's3cret' WHERE id = 'app-1'");
    assert_eq!(
        db.select_count("apps") - before,
        4,
        "one per SELECT on apps"
    );
    assert_eq!(
        db.select_count("apps") - before,
        4,
        "reading the count reads nothing"
    );

    db.stop();
    let refused = db.try_sql("SELECT 1").unwrap_err();
    assert!(
        refused.contains("127.0.0.1") || refused.contains("connect"),
        "{refused}"
    );

    db.start_again();
    eprintln!("MariaDB started again in {:?}", db.started_in());
    assert_eq!(
        db.sql("SELECT secret FROM apps WHERE id = 'app-1'"),
        "s3cret"
    );
    eprintln!("whole test {:?}", began.elapsed());
}
