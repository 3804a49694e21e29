//! An app's `allowed_origins` and `require_origin`: which handshakes become connections.

use crate::common::*;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{ConnId, StateCounts};

const QUERY: &str = "protocol=7&client=js&version=8.4.0";

fn shop() -> Simulator {
    sim_with_app(|app| {
        app.allowed_origins = vec![
            "https://shop.example.com".into(),
            "https://*.shop.example.com".into(),
        ];
        app.max_connections = Some(2);
    })
}

fn from(sim: &mut Simulator, origin: Option<&str>) -> ConnId {
    sim.connect_from("/app/app-key", QUERY, origin)
}

/// The client saw `pusher:error` with `code`, then a close with the same code.
fn assert_refused(sim: &mut Simulator, conn: ConnId, code: u16) -> String {
    let messages = sim.take(conn);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0].event, "pusher:error");
    assert_eq!(messages[0].data["code"], code);
    let (closed, _) = sim.closed(conn).expect("a refused handshake is closed");
    assert_eq!(closed, code);
    messages[0].data["message"].as_str().unwrap().to_owned()
}

#[test]
fn a_page_of_a_listed_origin_connects_and_receives_events() {
    let mut sim = shop();
    let exact = from(&mut sim, Some("https://shop.example.com"));
    let below = from(&mut sim, Some("https://eu.SHOP.example.com"));

    for conn in [exact, below] {
        assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);
        subscribe(&mut sim, conn, "news");
    }
    sim.trigger("news", "hello", "{}");

    for conn in [exact, below] {
        assert_eq!(sim.take_events(conn), ["hello"]);
        assert_eq!(sim.closed(conn), None);
    }
}

#[test]
fn a_page_of_another_origin_is_refused_with_4009_and_leaves_nothing_behind() {
    let mut sim = shop();
    let bare_parent = from(&mut sim, Some("https://example.com"));
    let other_scheme = from(&mut sim, Some("http://shop.example.com"));
    let lookalike = from(&mut sim, Some("https://shop.example.com.evil.test"));
    let opaque = from(&mut sim, Some("null"));

    for conn in [bare_parent, other_scheme, lookalike, opaque] {
        let message = assert_refused(&mut sim, conn, 4009);
        assert!(message.contains("origin"), "{message}");
    }
    assert_eq!(sim.engine().state_counts(), StateCounts::default());
    // Refusals take no place in the quota of two.
    let first = from(&mut sim, Some("https://shop.example.com"));
    let second = from(&mut sim, None);
    assert_eq!(sim.take_events(first), ["pusher:connection_established"]);
    assert_eq!(sim.take_events(second), ["pusher:connection_established"]);
}

#[test]
fn no_origin_is_a_server_side_client_let_in_unless_the_app_requires_one() {
    let mut open = shop();
    let server_side = from(&mut open, None);
    assert_eq!(
        open.take_events(server_side),
        ["pusher:connection_established"]
    );

    let mut strict = sim_with_app(|app| {
        app.allowed_origins = vec!["https://shop.example.com".into()];
        app.require_origin = true;
    });
    let server_side = from(&mut strict, None);
    let message = assert_refused(&mut strict, server_side, 4009);
    assert!(message.contains("Origin"), "{message}");
    let browser = from(&mut strict, Some("https://shop.example.com"));
    assert_eq!(
        strict.take_events(browser),
        ["pusher:connection_established"]
    );
}

#[test]
fn without_a_list_every_origin_connects() {
    let mut sim = sim();
    for origin in [Some("https://anywhere.test"), Some("null"), None] {
        let conn = from(&mut sim, origin);
        assert_eq!(sim.take_events(conn), ["pusher:connection_established"]);
    }
}

#[test]
fn the_app_is_found_before_its_origins_are_asked() {
    let mut sim = shop();
    let unknown = sim.connect_from("/app/no-such-key", QUERY, Some("https://evil.test"));
    assert_refused(&mut sim, unknown, 4001);

    let mut disabled = sim_with_app(|app| {
        app.allowed_origins = vec!["https://shop.example.com".into()];
        app.enabled = false;
    });
    let conn = from(&mut disabled, Some("https://evil.test"));
    assert_refused(&mut disabled, conn, 4003);
}
