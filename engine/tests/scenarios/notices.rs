//! The engine's log lines (`Output::Notice`): every refusal and close it decides is said, with
//! the app, the socket id and the peer when known, so that an operator can see why a client
//! was turned away.

use crate::common::*;

#[test]
fn a_refused_subscription_is_noticed_with_its_app_socket_id_and_reason() {
    let mut sim = sim();
    let conn = open(&mut sim);
    let socket_id = sim.socket_id(conn);
    sim.take_notices();

    subscribe(&mut sim, conn, "private-room");

    let notices = sim.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = &notices[0];
    assert_eq!(
        notice.app.as_ref().map(ToString::to_string).as_deref(),
        Some("app-id")
    );
    assert_eq!(notice.socket_id.map(|id| id.to_string()), Some(socket_id));
    assert!(
        notice.message.contains("private-room") && notice.message.contains("401"),
        "{}",
        notice.message
    );
}

#[test]
fn a_connection_refused_for_its_key_is_noticed_with_the_close_code() {
    let mut sim = sim();
    let conn = sim.connect("no-such-key");
    assert_eq!(sim.closed(conn).map(|(code, _)| code), Some(4001));
    let notices = sim.take_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert_eq!(
        notices[0].message,
        "connection to /app/no-such-key refused with 4001: app key no-such-key does not exist"
    );
}

#[test]
fn a_refused_http_request_is_noticed_with_its_status() {
    let mut sim = sim();
    assert_eq!(sim.http("GET", "/apps/app-id/channels", "", b"").0, 401);
    let messages: Vec<String> = sim.take_notices().into_iter().map(|n| n.message).collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].starts_with("HTTP GET /apps/app-id/channels answered 401: "),
        "{messages:?}"
    );
}

#[test]
fn an_accepted_connection_and_subscription_notice_nothing() {
    let mut sim = sim();
    let conn = open(&mut sim);
    subscribe(&mut sim, conn, "news");
    assert_eq!(sim.take_notices(), vec![]);
}
