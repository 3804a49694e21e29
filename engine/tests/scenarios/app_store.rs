//! Apps from an app store: unknown keys and ids wait for one lookup, answers are cached,
//! refreshed and applied, and a store that is down or slow never blocks the known apps.

use crate::common::*;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{AppAnswer, AppConfig, AppLookup, Config, ConnId, Input};
use std::time::Duration;

/// A simulator that looks unknown apps up, beside the file's default app.
fn store_sim(edit: impl FnOnce(&mut Config)) -> Simulator {
    sim_with(|config| {
        config.app_store.lookups = true;
        edit(config);
    })
}

/// The app the store holds: `db` / `db-key` / `db-secret`.
fn db_app() -> AppConfig {
    AppConfig {
        id: "db".into(),
        key: "db-key".into(),
        secret: "db-secret".into(),
        ..AppConfig::default()
    }
}

fn by_key() -> AppLookup {
    AppLookup::Key("db-key".into())
}

fn by_id() -> AppLookup {
    AppLookup::Id("db".into())
}

fn found(app: AppConfig) -> AppAnswer {
    AppAnswer::Found(Box::new(app))
}

fn close_code(sim: &Simulator, conn: ConnId) -> Option<u16> {
    sim.closed(conn).map(|(code, _)| code)
}

/// A connection to the store's app, admitted after its lookup, with its inbox emptied.
fn db_connection(sim: &mut Simulator) -> ConnId {
    let conn = sim.connect("db-key");
    if let [lookup] = &sim.take_lookups()[..] {
        sim.app_answer(lookup.clone(), found(db_app()));
    }
    assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);
    conn
}

fn publish_to_db(sim: &mut Simulator, secret: &str) -> Option<u16> {
    let body = r#"{"name":"e","channel":"news","data":"{}"}"#;
    let req = sim.signed_request_as(("db-key", secret), "POST", "/apps/db/events", body);
    sim.response(req).map(|(status, _)| status)
}

#[test]
fn an_unknown_key_waits_for_the_store_and_is_then_welcomed_like_a_file_app() {
    let mut sim = store_sim(|_| {});
    let conn = sim.connect("db-key");
    assert!(
        sim.take_events(conn).is_empty(),
        "nothing before the answer"
    );
    assert_eq!(sim.take_lookups(), [by_key()]);

    sim.app_answer(by_key(), found(db_app()));

    assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);
    subscribe(&mut sim, conn, "news");
    sim.take(conn);
    assert_eq!(publish_to_db(&mut sim, "db-secret"), Some(200));
    assert_eq!(sim.take_events(conn), ["e"]);
    // Cached: the next connection is welcomed at once, without asking.
    let again = sim.connect("db-key");
    assert_eq!(sim.take_events(again), ["pusher:connection_established"]);
    assert!(sim.take_lookups().is_empty());
}

#[test]
fn a_burst_of_connections_for_one_unknown_key_asks_the_store_once() {
    let mut sim = store_sim(|_| {});
    let conns: Vec<ConnId> = (0..1000).map(|_| sim.connect("db-key")).collect();
    assert_eq!(sim.take_lookups(), [by_key()], "one lookup for the burst");

    sim.app_answer(by_key(), found(db_app()));

    for conn in conns {
        assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);
    }
    assert_eq!(sim.engine().state_counts().app_store_entries, 0);
}

#[test]
fn a_key_the_store_lacks_is_refused_with_4001_and_not_asked_again_for_a_while() {
    let mut sim = store_sim(|config| config.app_store.missing_ttl_secs = 5);
    let first = sim.connect("nope");
    assert_eq!(sim.take_lookups(), [AppLookup::Key("nope".into())]);
    sim.app_answer(AppLookup::Key("nope".into()), AppAnswer::Missing);
    assert_eq!(close_code(&sim, first), Some(4001));

    let retry = sim.connect("nope");
    assert_eq!(close_code(&sim, retry), Some(4001), "remembered");
    assert!(sim.take_lookups().is_empty());

    sim.advance(secs(5));
    let later = sim.connect("nope");
    assert_eq!(close_code(&sim, later), None, "waits again");
    assert_eq!(sim.take_lookups(), [AppLookup::Key("nope".into())]);
}

#[test]
fn messages_sent_while_waiting_are_acted_on_once_the_app_is_known() {
    let mut sim = store_sim(|_| {});
    let conn = sim.connect("db-key");
    subscribe(&mut sim, conn, "news");
    sim.app_answer(by_key(), found(db_app()));
    assert_eq!(
        sim.take_events(conn),
        [
            "pusher:connection_established",
            "pusher_internal:subscription_succeeded"
        ]
    );
}

#[test]
fn a_client_that_leaves_while_waiting_is_forgotten() {
    let mut sim = store_sim(|_| {});
    let conn = sim.connect("db-key");
    sim.disconnect(conn);
    sim.app_answer(by_key(), found(db_app()));
    assert!(sim.take_events(conn).is_empty());
    let counts = sim.engine().state_counts();
    assert_eq!((counts.connections, counts.app_store_entries), (0, 0));
}

#[test]
fn a_waiting_client_that_floods_is_closed() {
    let mut sim = store_sim(|_| {});
    let conn = sim.connect("db-key");
    for _ in 0..17 {
        if sim.closed(conn).is_none() {
            sim.send_text(conn, r#"{"event":"pusher:ping","data":{}}"#);
        }
    }
    assert_eq!(close_code(&sim, conn), Some(4100));
    sim.app_answer(by_key(), found(db_app()));
    assert_eq!(sim.engine().state_counts().connections, 0);
}

#[test]
fn a_store_that_is_down_refuses_new_keys_with_4100_and_keeps_serving_known_apps() {
    let mut sim = store_sim(|config| config.app_store.cache_ttl_secs = 60);
    let known = db_connection(&mut sim);
    subscribe(&mut sim, known, "news");
    sim.take(known);

    sim.advance(secs(60));
    assert_eq!(sim.take_lookups(), [by_id()], "refreshed while in use");
    sim.app_answer(by_id(), AppAnswer::Unavailable);

    assert_eq!(close_code(&sim, known), None, "stale rather than refused");
    assert_eq!(publish_to_db(&mut sim, "db-secret"), Some(200));
    assert_eq!(sim.take_events(known), ["e"]);
    let stranger = sim.connect("other-key");
    assert_eq!(sim.take_lookups(), [AppLookup::Key("other-key".into())]);
    sim.app_answer(AppLookup::Key("other-key".into()), AppAnswer::Unavailable);
    let (code, reason) = sim.closed(stranger).unwrap();
    assert_eq!(code, 4100);
    assert!(reason.contains("app store is unavailable"), "{reason}");
    // Asked again after another time to live, and served as the store says then.
    sim.advance(secs(60));
    assert_eq!(sim.take_lookups(), [by_id()]);
}

#[test]
fn a_lookup_not_answered_in_time_is_refused_as_unavailable_and_asked_again_later() {
    let mut sim = store_sim(|config| config.app_store.lookup_timeout_ms = 2_000);
    let conn = sim.connect("db-key");
    sim.take_lookups();
    sim.advance(Duration::from_millis(2_000));
    assert_eq!(close_code(&sim, conn), Some(4100));
    // The late answer is news of an app nobody waits for now: not cached.
    sim.app_answer(by_key(), found(db_app()));
    let next = sim.connect("db-key");
    assert_eq!(sim.take_lookups(), [by_key()]);
    assert!(sim.take_events(next).is_empty());
}

#[test]
fn api_requests_for_an_unknown_app_wait_for_its_lookup() {
    let mut sim = store_sim(|_| {});
    let body = r#"{"name":"e","channel":"news","data":"{}"}"#;
    let req = sim.signed_request_as(("db-key", "db-secret"), "POST", "/apps/db/events", body);
    assert_eq!(sim.response(req), None, "waits");
    assert_eq!(sim.take_lookups(), [by_id()]);
    sim.app_answer(by_id(), found(db_app()));
    assert_eq!(sim.response(req).map(|(status, _)| status), Some(200));

    let missing = sim.signed_request_as(("k", "s"), "GET", "/apps/gone/channels", "");
    sim.app_answer(AppLookup::Id("gone".into()), AppAnswer::Missing);
    assert_eq!(sim.response(missing).map(|(status, _)| status), Some(404));

    let down = sim.signed_request_as(("k", "s"), "GET", "/apps/other/channels", "");
    sim.app_answer(AppLookup::Id("other".into()), AppAnswer::Unavailable);
    let (status, answer) = sim.response(down).unwrap();
    assert_eq!(status, 503);
    assert!(answer["error"].as_str().unwrap().contains("unavailable"));
}

#[test]
fn a_refresh_applies_a_new_secret_a_disabled_app_and_a_deleted_one() {
    let mut sim = store_sim(|config| config.app_store.cache_ttl_secs = 10);
    let conn = db_connection(&mut sim);

    sim.advance(secs(10));
    assert_eq!(sim.take_lookups(), [by_id()]);
    let rotated = AppConfig {
        secret: "rotated".into(),
        ..db_app()
    };
    sim.app_answer(by_id(), found(rotated.clone()));
    assert_eq!(publish_to_db(&mut sim, "db-secret"), Some(401));
    assert_eq!(publish_to_db(&mut sim, "rotated"), Some(200));
    assert_eq!(
        close_code(&sim, conn),
        None,
        "a new secret keeps connections"
    );

    sim.advance(secs(10));
    sim.take_lookups();
    let disabled = AppConfig {
        enabled: false,
        ..rotated
    };
    sim.app_answer(by_id(), found(disabled));
    assert_eq!(close_code(&sim, conn), Some(4003));

    let refused = sim.connect("db-key");
    assert_eq!(
        close_code(&sim, refused),
        Some(4003),
        "still cached, disabled"
    );
    sim.app_answer(by_id(), AppAnswer::Missing);
    let after = sim.connect("db-key");
    assert_eq!(close_code(&sim, after), None, "deleted: looked up again");
    assert_eq!(sim.take_lookups(), [by_key()]);
}

#[test]
fn news_of_a_change_applies_to_cached_apps_and_is_otherwise_ignored() {
    let mut sim = store_sim(|config| config.app_store.missing_ttl_secs = 60);
    // An app nobody asked for is not taken in.
    sim.app_answer(
        AppLookup::Id("stranger".into()),
        found(AppConfig {
            id: "stranger".into(),
            key: "stranger-key".into(),
            ..db_app()
        }),
    );
    sim.connect("stranger-key");
    assert_eq!(sim.take_lookups(), [AppLookup::Key("stranger-key".into())]);

    // A key remembered as missing is asked for again once the store says it was inserted.
    let early = sim.connect("db-key");
    sim.take_lookups();
    sim.app_answer(by_key(), AppAnswer::Missing);
    assert_eq!(close_code(&sim, early), Some(4001));
    sim.app_answer(by_id(), found(db_app()));
    let conn = db_connection(&mut sim);

    // A deletion the store tells of closes the app's connections with 4001.
    sim.app_answer(by_id(), AppAnswer::Missing);
    assert_eq!(close_code(&sim, conn), Some(4001));
}

#[test]
fn an_unused_app_is_forgotten_after_its_time_to_live() {
    let mut sim = store_sim(|config| config.app_store.cache_ttl_secs = 10);
    let conn = db_connection(&mut sim);
    sim.disconnect(conn);
    sim.advance(secs(10));
    assert!(sim.take_lookups().is_empty(), "nothing to refresh");
    sim.connect("db-key");
    assert_eq!(sim.take_lookups(), [by_key()], "forgotten, so asked again");
}

#[test]
fn waiters_and_lookups_are_bounded() {
    let mut sim = store_sim(|config| {
        config.app_store.max_waiting_per_lookup = 2;
        config.app_store.max_lookups_in_flight = 1;
    });
    let (a, b, c) = (
        sim.connect("db-key"),
        sim.connect("db-key"),
        sim.connect("db-key"),
    );
    assert_eq!(
        [a, b, c].map(|conn| close_code(&sim, conn)),
        [None, None, Some(4100)]
    );
    let other = sim.connect("other-key");
    assert_eq!(close_code(&sim, other), Some(4100));
    assert_eq!(sim.take_lookups(), [by_key()]);
}

#[test]
fn an_invalid_app_or_one_with_a_taken_key_is_refused_with_a_notice() {
    let mut sim = store_sim(|_| {});
    let conn = sim.connect("db-key");
    let no_secret = AppConfig {
        secret: String::new(),
        ..db_app()
    };
    sim.app_answer(by_key(), found(no_secret));
    assert_eq!(close_code(&sim, conn), Some(4001));
    let notices: Vec<String> = sim.take_notices().into_iter().map(|n| n.message).collect();
    assert!(
        notices
            .iter()
            .any(|n| n == "app store: app db refused: app.secret is empty"),
        "{notices:?}"
    );

    // The default app's key belongs to the file's app, whatever the store says.
    let thief = AppConfig {
        id: "thief".into(),
        key: "app-key".into(),
        ..db_app()
    };
    let conn = sim.connect("thief-key");
    sim.app_answer(AppLookup::Key("thief-key".into()), found(thief));
    assert_eq!(close_code(&sim, conn), Some(4001));
}

#[test]
fn file_apps_are_never_looked_up_and_lookups_off_refuse_at_once() {
    let mut sim = store_sim(|config| config.app_store.cache_ttl_secs = 1);
    open(&mut sim);
    sim.advance(secs(5));
    assert!(sim.take_lookups().is_empty());

    let mut plain = sim_with(|_| {});
    let conn = plain.connect("db-key");
    assert_eq!(close_code(&plain, conn), Some(4001));
    assert!(plain.take_lookups().is_empty());
}

#[test]
fn shutdown_refuses_whoever_waits() {
    let mut sim = store_sim(|_| {});
    let conn = sim.connect("db-key");
    let body = r#"{"name":"e","channel":"news","data":"{}"}"#;
    let req = sim.signed_request_as(("db-key", "db-secret"), "POST", "/apps/other/events", body);
    sim.input(Input::Shutdown).unwrap();
    assert_eq!(close_code(&sim, conn), Some(4200));
    assert_eq!(sim.response(req).map(|(status, _)| status), Some(503));
    assert_eq!(sim.engine().state_counts().app_store_entries, 0);
}

#[test]
fn a_file_app_given_a_cached_store_apps_key_takes_it_over() {
    let mut sim = store_sim(|_| {});
    let conn = db_connection(&mut sim);
    // The file now gives the store app's key to an app of its own.
    let mut next = Config::default();
    next.app_store.lookups = true;
    next.apps.push(AppConfig {
        id: "file-db".into(),
        key: "db-key".into(),
        secret: "file-db-secret".into(),
        ..AppConfig::default()
    });
    sim.input(Input::Reload(Box::new(next.clone()))).unwrap();
    assert_eq!(
        close_code(&sim, conn),
        Some(4001),
        "the store app is dropped"
    );
    let served = |sim: &Simulator| sim.engine().served_app("db-key").map(|app| app.id.clone());
    assert_eq!(served(&sim).as_deref(), Some("file-db"));

    // The store's news of its app does not take the key back, nor does the file's app
    // lose it when the file goes back to listing the same apps.
    sim.app_answer(by_id(), found(db_app()));
    sim.app_answer(by_id(), AppAnswer::Missing);
    sim.input(Input::Reload(Box::new(next))).unwrap();
    assert_eq!(served(&sim).as_deref(), Some("file-db"));
    let after = sim.connect("db-key");
    assert_eq!(sim.take_events(after), ["pusher:connection_established"]);
    assert!(
        sim.take_lookups().is_empty(),
        "a file app is never looked up"
    );
}

#[test]
fn a_refresh_answered_with_another_app_still_lets_the_unused_app_be_forgotten() {
    let mut sim = store_sim(|config| config.app_store.cache_ttl_secs = 10);
    let conn = db_connection(&mut sim);
    sim.advance(secs(10));
    assert_eq!(sim.take_lookups(), [by_id()]);
    // A confused store answers the refresh of `db` with another app.
    let other = AppConfig {
        id: "other".into(),
        key: "other-key".into(),
        ..db_app()
    };
    sim.app_answer(by_id(), found(other));
    assert_eq!(close_code(&sim, conn), None, "db stays served as it was");
    sim.advance(secs(10));
    assert_eq!(sim.take_lookups(), [by_id()], "and is refreshed again");
    sim.app_answer(by_id(), AppAnswer::Unavailable);

    sim.disconnect(conn);
    sim.advance(secs(10));
    assert!(
        sim.engine().served_app("db-key").is_none(),
        "unused: forgotten"
    );
}

#[test]
fn a_refresh_in_flight_at_shutdown_still_lets_the_app_be_forgotten() {
    let mut sim = store_sim(|config| config.app_store.cache_ttl_secs = 10);
    let conn = db_connection(&mut sim);
    sim.advance(secs(10));
    assert_eq!(sim.take_lookups(), [by_id()]);
    sim.input(Input::Shutdown).unwrap();
    assert_eq!(close_code(&sim, conn), Some(4200));
    sim.advance(secs(10));
    assert!(
        sim.engine().served_app("db-key").is_none(),
        "unused: forgotten"
    );
    assert_eq!(sim.engine().state_counts().app_store_entries, 0);
}
