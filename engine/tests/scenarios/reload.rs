//! `Input::Reload`: apps added, changed and removed while the engine runs, the others untouched.

use crate::common::*;
use ferrocast_engine::http_auth::signed_query;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{AppConfig, Config, Input};

/// The default app plus a second one, `two` / `two-key` / `two-secret`.
fn two_apps() -> Config {
    let mut config = Config::default();
    config.apps.push(AppConfig {
        id: "two".into(),
        key: "two-key".into(),
        secret: "two-secret".into(),
        ..AppConfig::default()
    });
    config
}

fn reload(sim: &mut Simulator, config: Config) {
    sim.input(Input::Reload(Box::new(config))).unwrap();
}

/// A connection to the default app, subscribed to `news`, with its inbox emptied.
fn news_reader(sim: &mut Simulator) -> ferrocast_engine::ConnId {
    let conn = open(sim);
    subscribe(sim, conn, "news");
    sim.take(conn);
    conn
}

fn last_notice(sim: &mut Simulator) -> String {
    sim.take_notices().pop().expect("a notice").message
}

#[test]
fn an_added_app_accepts_connections_and_the_others_are_untouched() {
    let mut sim = sim();
    let reader = news_reader(&mut sim);
    let before = sim.connect("two-key");
    assert_eq!(sim.closed(before).map(|(code, _)| code), Some(4001));

    reload(&mut sim, two_apps());

    assert_eq!(
        last_notice(&mut sim),
        "apps reloaded: 1 added, 0 changed, 0 removed"
    );
    let after = sim.connect("two-key");
    assert_eq!(sim.take_events(after), ["pusher:connection_established"]);
    sim.trigger("news", "still-here", "{}");
    assert_eq!(sim.take_events(reader), ["still-here"]);
}

#[test]
fn a_new_secret_refuses_the_old_signatures_and_accepts_the_new() {
    let mut sim = sim();
    let mut config = Config::default();
    config.apps[0].secret = "rotated-secret".into();
    reload(&mut sim, config);

    let path = "/apps/app-id/channels";
    let unix_secs = sim.moment().unix_ms / 1000;
    let old = signed_query("app-key", "app-secret", "GET", path, &[], b"", unix_secs);
    assert_eq!(sim.http("GET", path, &old, b"").0, 401);
    let new = signed_query(
        "app-key",
        "rotated-secret",
        "GET",
        path,
        &[],
        b"",
        unix_secs,
    );
    assert_eq!(sim.http("GET", path, &new, b"").0, 200);
}

#[test]
fn a_disabled_app_closes_its_connections_with_4003_and_no_others() {
    let mut sim = Simulator::new(two_apps(), SEED);
    let one = news_reader(&mut sim);
    let two = sim.connect("two-key");
    sim.take(two);
    let mut config = two_apps();
    config.apps[1].enabled = false;

    reload(&mut sim, config);

    assert_error(&sim.take(two), Some(4003));
    assert_eq!(sim.closed(two).map(|(code, _)| code), Some(4003));
    assert_eq!(sim.closed(one), None);
    let late = sim.connect("two-key");
    assert_eq!(sim.closed(late).map(|(code, _)| code), Some(4003));
}

#[test]
fn a_removed_app_closes_its_connections_with_4001_and_sends_its_last_webhooks() {
    let mut config = two_apps();
    config.apps[1].webhooks = vec![ferrocast_engine::WebhookConfig {
        url: "http://hooks.test/two".into(),
        event_types: vec!["channel_vacated".into(), "channel_occupied".into()],
        ..Default::default()
    }];
    let mut sim = Simulator::new(config, SEED);
    let one = news_reader(&mut sim);
    let two = sim.connect("two-key");
    subscribe(&mut sim, two, "room");
    sim.take(two);
    sim.advance(secs(1));
    sim.take_webhooks();

    reload(&mut sim, Config::default());

    assert_error(&sim.take(two), Some(4001));
    assert_eq!(sim.closed(two).map(|(code, _)| code), Some(4001));
    assert_eq!(sim.closed(one), None);
    let hooks = sim.take_webhooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert!(String::from_utf8_lossy(&hooks[0].body).contains("channel_vacated"));
    assert_eq!(sim.http("GET", "/up/two", "", b"").0, 404);
    assert_eq!(sim.engine().state_counts().channels, 1, "only news is left");
}

#[test]
fn an_invalid_configuration_changes_nothing() {
    let mut sim = sim();
    let reader = news_reader(&mut sim);
    let mut config = two_apps();
    config.apps[1].key = "app-key".into();

    reload(&mut sim, config);

    let notice = last_notice(&mut sim);
    assert!(
        notice.starts_with("reload refused, the apps stay as they were: "),
        "{notice}"
    );
    assert_eq!(sim.engine().config().apps.len(), 1);
    sim.trigger("news", "unchanged", "{}");
    assert_eq!(sim.take_events(reader), ["unchanged"]);
}

#[test]
fn the_same_configuration_again_changes_nothing() {
    let mut sim = sim();
    let reader = news_reader(&mut sim);
    reload(&mut sim, Config::default());
    assert_eq!(
        last_notice(&mut sim),
        "apps reloaded: 0 added, 0 changed, 0 removed"
    );
    assert_eq!(sim.take(reader), vec![]);
    assert_eq!(sim.closed(reader), None);
}

#[test]
fn other_settings_are_said_to_wait_for_a_restart() {
    let mut sim = sim();
    let mut config = Config::default();
    config.activity_timeout_secs += 1;
    reload(&mut sim, config);
    let notices: Vec<String> = sim.take_notices().into_iter().map(|n| n.message).collect();
    assert!(
        notices[0].contains("take effect at the next restart"),
        "{notices:?}"
    );
    assert_eq!(
        sim.engine().config().activity_timeout_secs,
        Config::default().activity_timeout_secs
    );
}

#[test]
fn two_apps_swapping_keys_are_both_served_under_their_new_keys() {
    let mut sim = Simulator::new(two_apps(), SEED);
    let mut swapped = two_apps();
    swapped.apps[0].key = "two-key".into();
    swapped.apps[1].key = "app-key".into();
    reload(&mut sim, swapped);
    let served = |sim: &Simulator, key: &str| sim.engine().served_app(key).map(|a| a.id.clone());
    assert_eq!(served(&sim, "two-key").as_deref(), Some("app-id"));
    assert_eq!(served(&sim, "app-key").as_deref(), Some("two"));
}
