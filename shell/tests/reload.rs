//! SIGHUP re-reads the configuration file: apps added, disabled and removed take effect on the
//! running server, the other apps' connections are untouched, and a bad file changes nothing.

#[macro_use]
mod support;

use std::time::{Duration, Instant};
use support::{close_code, next_json, subscribe_public, Server};

/// `[[apps]]` tables for `(id, key, enabled)`; the app `app-id` has the secret the test
/// support signs publishes with.
fn config(apps: &[(&str, &str, bool)]) -> String {
    apps.iter()
        .map(|(id, key, enabled)| {
            let secret = if *id == "app-id" { "app-secret" } else { "other-secret" };
            format!(
                "[[apps]]\nid = \"{id}\"\nkey = \"{key}\"\nsecret = \"{secret}\"\nenabled = {enabled}\n"
            )
        })
        .collect()
}

/// Waits until the server's log says `line`.
fn logged(server: &Server, line: &str) {
    let start = Instant::now();
    while !server.stderr().contains(line) {
        assert!(
            start.elapsed() < support::WAIT,
            "no {line:?} in:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn connected(server: &Server, key: &str) -> tungstenite::WebSocket<std::net::TcpStream> {
    let mut ws = server.ws(&format!("/app/{key}?protocol=7"));
    assert_eq!(next_json(&mut ws)["event"], "pusher:connection_established");
    ws
}

fn sighup_applies_added_disabled_and_removed_apps(workers: usize) {
    let initial = config(&[
        ("app-id", "app-key", true),
        ("2", "two", true),
        ("3", "three", true),
    ]);
    let server = Server::start_with(workers, Some(&initial), &[], &[]);
    let mut one = connected(&server, "app-key");
    subscribe_public(&mut one, "news");
    let mut two = connected(&server, "two");
    let mut three = connected(&server, "three");

    server.rewrite_config(&config(&[
        ("app-id", "app-key", true),
        ("2", "two", false),
        ("4", "four", true),
    ]));
    server.signal("HUP");

    let error = next_json(&mut two);
    assert_eq!(error["data"]["code"], 4003, "{error}");
    assert_eq!(close_code(&mut two), 4003);
    let error = next_json(&mut three);
    assert_eq!(error["data"]["code"], 4001, "{error}");
    assert_eq!(close_code(&mut three), 4001);
    logged(&server, "apps reloaded: 1 added, 1 changed, 1 removed");
    connected(&server, "four");
    // The untouched app's connection is still subscribed.
    support::publish(&server, "news", "after-reload", "{}");
    assert_eq!(next_json(&mut one)["event"], "after-reload");
}

fn a_bad_file_is_refused_whole_and_the_old_apps_stay(workers: usize) {
    let initial = config(&[("app-id", "app-key", true)]);
    let server = Server::start_with(workers, Some(&initial), &[], &[]);
    let mut one = connected(&server, "app-key");
    subscribe_public(&mut one, "news");

    server.rewrite_config(&format!(
        "{}[server]\nport = \"x\"\n",
        config(&[("2", "two", true)])
    ));
    server.signal("HUP");

    logged(&server, "the configuration is refused; the old one stays");
    support::publish(&server, "news", "still-served", "{}");
    assert_eq!(next_json(&mut one)["event"], "still-served");
    let mut refused = server.ws("/app/two?protocol=7");
    assert_eq!(next_json(&mut refused)["data"]["code"], 4001);
}

per_workers!(
    sighup_applies_added_disabled_and_removed_apps,
    a_bad_file_is_refused_whole_and_the_old_apps_stay,
);
