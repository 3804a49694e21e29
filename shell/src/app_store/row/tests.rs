//! The row mapping, column by column: each value soketi's layout allows, NULL, and the
//! wrong ones.

use super::*;
use ferrocast_engine::config::WebhookFilter;

/// A row with only the three required columns.
fn minimal() -> Row {
    Row::from([
        ("id".to_owned(), Value::Text("42".into())),
        ("key".to_owned(), Value::Text("k42".into())),
        ("secret".to_owned(), Value::Text("s42".into())),
    ])
}

fn with(column: &str, value: Value) -> Row {
    let mut row = minimal();
    row.insert(column.to_owned(), value);
    row
}

fn app(column: &str, value: Value) -> AppConfig {
    app_from_row(&with(column, value)).unwrap_or_else(|e| panic!("{column}: {e}"))
}

/// The error for one bad column, checked to name the app and that column.
fn refused(column: &'static str, value: Value) -> RowError {
    let error = app_from_row(&with(column, value.clone()))
        .expect_err(&format!("{column} = {value:?} is refused"));
    assert_eq!(error.app, "42", "{error}");
    assert_eq!(error.column, Some(column), "{error}");
    assert!(error.to_string().contains(column), "{error}");
    error
}

#[test]
fn the_three_required_columns_and_engine_defaults_for_the_rest() {
    let app = app_from_row(&minimal()).unwrap();
    let expected = AppConfig {
        id: "42".into(),
        key: "k42".into(),
        secret: "s42".into(),
        ..AppConfig::default()
    };
    assert_eq!(app, expected);
    // NULL everywhere is the same as absent.
    let mut nulls = minimal();
    for column in COLUMNS.iter().skip(3) {
        nulls.insert((*column).to_owned(), Value::Null);
    }
    assert_eq!(app_from_row(&nulls).unwrap(), expected);
    // Columns the mapping does not know are ignored.
    let extra = with("created_at", Value::Text("2024-01-01".into()));
    assert_eq!(app_from_row(&extra).unwrap(), expected);
}

#[test]
fn id_key_and_secret_are_required_text() {
    let mut no_id = minimal();
    no_id.remove("id");
    let error = app_from_row(&no_id).unwrap_err();
    assert_eq!((error.app.as_str(), error.column), ("?", Some("id")));
    assert_eq!(
        app("id", Value::Int(7)).id,
        "7",
        "an integer id is read as text"
    );
    for column in ["key", "secret"] {
        let mut row = minimal();
        row.remove(column);
        let error = app_from_row(&row).unwrap_err();
        assert_eq!((error.app.as_str(), error.column), ("42", Some(column)));
        let column = if column == "key" { "key" } else { "secret" };
        refused(column, Value::Null);
        refused(column, Value::Text(String::new()));
        refused(column, Value::Int(5));
    }
    let error = refused("secret", Value::Int(123456));
    assert!(
        !error.to_string().contains("123456"),
        "an error never shows the secret column's value: {error}"
    );
    let bad_key = app_from_row(&with("key", Value::Text("a b".into()))).unwrap_err();
    assert_eq!(bad_key.app, "42");
    assert!(bad_key.to_string().contains("URL"), "{bad_key}");
}

#[test]
fn max_connections_minus_one_is_unlimited_and_negative_is_refused() {
    assert_eq!(app("max_connections", Value::Int(-1)).max_connections, None);
    assert_eq!(
        app("max_connections", Value::Int(0)).max_connections,
        Some(0)
    );
    assert_eq!(
        app("max_connections", Value::Int(500)).max_connections,
        Some(500)
    );
    assert_eq!(
        app("max_connections", Value::Text("20".into())).max_connections,
        Some(20)
    );
    assert_eq!(
        app("max_connections", Value::Float(30.0)).max_connections,
        Some(30)
    );
    refused("max_connections", Value::Int(-2));
    refused("max_connections", Value::Int(1 << 40));
    refused("max_connections", Value::Text("many".into()));
    refused("max_connections", Value::Float(1.5));
    refused("max_connections", Value::Text("true".into()));
}

#[test]
fn switches_read_booleans_zero_one_and_their_text() {
    for (column, field) in [
        (
            "enable_client_messages",
            (|a: &AppConfig| a.client_events) as fn(&AppConfig) -> bool,
        ),
        ("enabled", |a| a.enabled),
        ("enable_user_authentication", |a| a.user_auth_required),
    ] {
        for (value, expected) in [
            (Value::Int(1), true),
            (Value::Int(0), false),
            (Value::Text("1".into()), true),
            (Value::Text("false".into()), false),
            (Value::Text("t".into()), true),
        ] {
            assert_eq!(
                field(&app(column, value.clone())),
                expected,
                "{column} {value:?}"
            );
        }
        refused(column, Value::Int(2));
        refused(column, Value::Text("yes please".into()));
        refused(column, Value::Float(0.5));
    }
    // Unset: the engine's defaults.
    let app = app_from_row(&minimal()).unwrap();
    assert!(app.client_events && app.enabled && !app.user_auth_required);
}

#[test]
fn rate_limits_minus_one_is_none_and_zero_or_negative_is_refused() {
    let backend = app("max_backend_events_per_sec", Value::Int(100));
    assert_eq!(backend.max_events_per_sec, Some(100));
    let backend = app("max_backend_events_per_sec", Value::Int(-1));
    assert_eq!(backend.max_events_per_sec, None);
    let reads = app("max_read_req_per_sec", Value::Int(7));
    assert_eq!(reads.max_reads_per_sec, Some(7));
    assert_eq!(
        app("max_read_req_per_sec", Value::Int(-1)).max_reads_per_sec,
        None
    );
    let client = app("max_client_events_per_sec", Value::Int(25));
    assert_eq!(
        (client.client_event_rate_per_sec, client.client_event_burst),
        (25, 25)
    );
    let unlimited = app("max_client_events_per_sec", Value::Int(-1));
    assert_eq!(
        (
            unlimited.client_event_rate_per_sec,
            unlimited.client_event_burst
        ),
        (u32::MAX, u32::MAX)
    );
    for column in [
        "max_backend_events_per_sec",
        "max_client_events_per_sec",
        "max_read_req_per_sec",
    ] {
        refused(column, Value::Int(0));
        refused(column, Value::Int(-5));
        refused(column, Value::Text("fast".into()));
        refused(column, Value::Int(i64::from(u32::MAX) + 1));
    }
}

#[test]
fn counts_and_lengths_must_be_at_least_one() {
    type Field = fn(&AppConfig) -> usize;
    let cases: [(&'static str, Field); 5] = [
        ("max_presence_members_per_channel", |a| {
            a.max_presence_members
        }),
        ("max_channel_name_length", |a| a.max_channel_name_len),
        ("max_event_channels_at_once", |a| a.max_event_channels),
        ("max_event_name_length", |a| a.max_event_name_len),
        ("max_event_batch_size", |a| a.max_batch_size),
    ];
    for (column, field) in cases {
        assert_eq!(field(&app(column, Value::Int(3))), 3, "{column}");
        assert_eq!(
            field(&app(column, Value::Text(" 4 ".into()))),
            4,
            "{column}"
        );
        assert_eq!(
            field(&app(column, Value::Text(String::new()))),
            field(&AppConfig::default()),
            "{column}: '' keeps the default, as soketi reads it"
        );
        refused(column, Value::Int(0));
        refused(column, Value::Int(-1));
        refused(column, Value::Text("3.5".into()));
        refused(column, Value::Text("false".into()));
    }
}

#[test]
fn kilobyte_sizes_become_bytes() {
    let presence = app("max_presence_member_size_in_kb", Value::Int(2));
    assert_eq!(presence.max_presence_user_info_bytes, 2048);
    let half = app("max_presence_member_size_in_kb", Value::Float(0.5));
    assert_eq!(half.max_presence_user_info_bytes, 512);
    let payload = app("max_event_payload_in_kb", Value::Int(100));
    assert_eq!(payload.max_event_payload_bytes, 100 * 1024);
    let text = app("max_event_payload_in_kb", Value::Text("1.5".into()));
    assert_eq!(text.max_event_payload_bytes, 1536);
    for column in ["max_presence_member_size_in_kb", "max_event_payload_in_kb"] {
        refused(column, Value::Int(0));
        refused(column, Value::Int(-1));
        refused(column, Value::Float(f64::INFINITY));
        refused(column, Value::Text("big".into()));
        refused(column, Value::Int(1 << 40));
        refused(column, Value::Text("true".into()));
    }
}

#[test]
fn webhooks_in_soketis_shape_are_mapped() {
    let hooks = r#"[
        {"url": "http://127.0.0.1:9/a", "event_types": ["channel_occupied", "member_added"]},
        {
            "url": "https://hooks.test/b",
            "headers": {"Authorization": "Bearer t", "X-Team": "7"},
            "filter": {"channel_name_starts_with": "beta-", "channel_name_ends_with": "-app"},
            "lambda": {"async": true}
        },
        {"url": "http://127.0.0.1:9/c", "filter": {"channel_name_ends_with": "-x"}, "headers": null}
    ]"#;
    let expected = vec![
        WebhookConfig {
            url: "http://127.0.0.1:9/a".into(),
            event_types: vec!["channel_occupied".into(), "member_added".into()],
            ..WebhookConfig::default()
        },
        WebhookConfig {
            url: "https://hooks.test/b".into(),
            headers: BTreeMap::from([
                ("Authorization".to_owned(), "Bearer t".to_owned()),
                ("X-Team".to_owned(), "7".to_owned()),
            ]),
            filter: Some(WebhookFilter {
                channel_name_starts_with: Some("beta-".into()),
                channel_name_ends_with: Some("-app".into()),
            }),
            ..WebhookConfig::default()
        },
        WebhookConfig {
            url: "http://127.0.0.1:9/c".into(),
            filter: Some(WebhookFilter {
                channel_name_starts_with: None,
                channel_name_ends_with: Some("-x".into()),
            }),
            ..WebhookConfig::default()
        },
    ];
    assert_eq!(
        app("webhooks", Value::Text(hooks.into())).webhooks,
        expected
    );
    assert!(app("webhooks", Value::Text("[]".into()))
        .webhooks
        .is_empty());
    assert!(app("webhooks", Value::Text(String::new()))
        .webhooks
        .is_empty());
    assert!(app("webhooks", Value::Null).webhooks.is_empty());
}

#[test]
fn bad_webhooks_are_refused_naming_the_column() {
    for bad in [
        r#"[{"url": "#,
        r#"{"url": "http://x/"}"#,
        r#"[{"event_types": []}]"#,
        r#"[{"lambda_function": "f", "event_types": []}]"#,
        r#"[{"url": 5}]"#,
        r#"[{"url": "http://x/", "event_types": "member_added"}]"#,
        r#"[{"url": "http://x/", "event_types": [1]}]"#,
        r#"[{"url": "http://x/", "headers": ["a"]}]"#,
        r#"[{"url": "http://x/", "headers": {"a": 1}}]"#,
        r#"[{"url": "http://x/", "filter": "beta-"}]"#,
        r#"[{"url": "http://x/", "filter": {"channel_name_starts_with": 1}}]"#,
        r#"["http://x/"]"#,
    ] {
        refused("webhooks", Value::Text(bad.into()));
    }
    refused("webhooks", Value::Int(1));
    // What only the engine's checks see is still refused with the app named.
    for bad in [
        r#"[{"url": "ftp://x/"}]"#,
        r#"[{"url": "http://x/", "event_types": ["member_joined"]}]"#,
        r#"[{"url": "http://x/", "headers": {"X-Pusher-Signature": "forged"}}]"#,
    ] {
        let error = app_from_row(&with("webhooks", Value::Text(bad.into()))).unwrap_err();
        assert_eq!(error.app, "42", "{error}");
        assert!(error.to_string().contains("webhook"), "{error}");
    }
}

#[test]
fn every_column_as_postgresql_gives_it_in_text() {
    let row: Row = [
        ("id", "7"),
        ("key", "k7"),
        ("secret", "s7"),
        ("max_connections", "-1"),
        ("enable_client_messages", "1"),
        ("enabled", "false"),
        ("max_backend_events_per_sec", "50"),
        ("max_client_events_per_sec", "5"),
        ("max_read_req_per_sec", "-1"),
        ("max_presence_members_per_channel", "20"),
        ("max_presence_member_size_in_kb", "2"),
        ("max_channel_name_length", "100"),
        ("max_event_channels_at_once", "10"),
        ("max_event_name_length", "64"),
        ("max_event_payload_in_kb", "4"),
        ("max_event_batch_size", "3"),
        ("webhooks", r#"[{"url": "http://127.0.0.1:9/"}]"#),
        ("enable_user_authentication", "true"),
    ]
    .into_iter()
    .map(|(column, text)| (column.to_owned(), Value::Text(text.to_owned())))
    .collect();
    assert_eq!(row.len(), COLUMNS.len());
    let app = app_from_row(&row).unwrap();
    let expected = AppConfig {
        id: "7".into(),
        key: "k7".into(),
        secret: "s7".into(),
        max_connections: None,
        client_events: true,
        enabled: false,
        max_events_per_sec: Some(50),
        client_event_rate_per_sec: 5,
        client_event_burst: 5,
        max_reads_per_sec: None,
        max_presence_members: 20,
        max_presence_user_info_bytes: 2048,
        max_channel_name_len: 100,
        max_event_channels: 10,
        max_event_name_len: 64,
        max_event_payload_bytes: 4096,
        max_batch_size: 3,
        webhooks: vec![WebhookConfig {
            url: "http://127.0.0.1:9/".into(),
            ..WebhookConfig::default()
        }],
        user_auth_required: true,
        ..AppConfig::default()
    };
    assert_eq!(app, expected);
}
