//! The settings' unit tests: layering, validation, and where errors point.

use super::*;
use crate::cli::Cli;
use crate::settings::app_store::AppStoreDriver;

/// The overrides `flags` give (the test process's own environment counts too, as it
/// would for the binary; these tests set no `FERROCAST_*` variable).
fn flags(flags: &[&str]) -> Overrides {
    Cli::try_parse_args(std::iter::once("ferrocast").chain(flags.iter().copied()))
        .expect("valid flags")
        .overrides
}

#[test]
fn a_bad_server_value_is_reported_with_its_key_line_and_column() {
    let text = "path_prefix = \"/ws\"\n\n[server]\nworkers = 2\n  port = \"x\"\n";
    let error = Settings::load(text, &Overrides::default()).unwrap_err();
    assert!(
        error.starts_with("in [server] at line 5, column 3: port: "),
        "{error}"
    );
    let unknown = "[rate_limit]\nenabled = true\nbogus = 1\n";
    let error = Settings::load(unknown, &Overrides::default()).unwrap_err();
    assert!(
        error.contains("at line 3, column 1: bogus: unknown field"),
        "{error}"
    );
}

#[test]
fn nothing_given_serves_the_default_app_on_6001() {
    let settings = Settings::load("", &Overrides::default()).unwrap();
    assert_eq!(settings.server, ServerSettings::default());
    assert_eq!(settings.server.port, 6001);
    assert_eq!(settings.server.close_linger_ms, 2000);
    assert_eq!(settings.engine.apps[0].key, "app-key");
    assert!(settings.engine.uses_default_credentials());
}

#[test]
fn every_server_flag_is_named_like_its_toml_key() {
    let flag_ids: Vec<String> = ServerSettings::augment_args(Command::new("t"))
        .get_arguments()
        .map(|arg| arg.get_id().to_string())
        .collect();
    let all_given = ServerSettings {
        log_level: Some("info".into()),
        tls: TlsSettings {
            cert_file: Some("c.pem".into()),
            key_file: Some("k.pem".into()),
        },
        ..ServerSettings::default()
    };
    let mut keys = Vec::new();
    for (key, value) in table_of(&all_given) {
        match value {
            toml::Value::Table(inner) => {
                keys.extend(inner.keys().map(|inner| format!("{key}.{inner}")))
            }
            _ => keys.push(key),
        }
    }
    keys.sort();
    let mut sorted_ids = flag_ids.clone();
    sorted_ids.sort();
    assert_eq!(sorted_ids, keys);
}

#[test]
fn server_table_and_engine_settings_are_split() {
    let text = r#"
        activity_timeout_secs = 60
        [server]
        port = 7000
        max_output_frames = 10
        [[apps]]
        id = "1"
        key = "k"
        secret = "s"
        max_message_bytes = 50000
    "#;
    let settings = Settings::load(text, &Overrides::default()).unwrap();
    assert_eq!(settings.server.port, 7000);
    assert_eq!(settings.server.max_output_frames, 10);
    assert_eq!(settings.server.host, "0.0.0.0");
    assert_eq!(settings.engine.activity_timeout_secs, 60);
    assert_eq!(settings.conn_limits().max_message_bytes, 50000);
    assert!(!settings.engine.uses_default_credentials());
}

#[test]
fn unknown_keys_are_refused_in_both_parts() {
    let err = Settings::load("[server]\nprot = 1\n", &Overrides::default()).unwrap_err();
    assert!(err.contains("prot"), "{err}");
    let err = Settings::load("colour = 1\n", &Overrides::default()).unwrap_err();
    assert!(err.contains("colour"), "{err}");
    assert!(Settings::load("server = 3\n", &Overrides::default()).is_err());
    assert!(Settings::load("[server]\nport = \"x\"\n", &Overrides::default()).is_err());
    assert!(Settings::load("not toml at all", &Overrides::default()).is_err());
}

#[test]
fn a_flag_does_not_hide_a_bad_file_value() {
    let err = Settings::load("[server]\nport = \"x\"\n", &flags(&["--port", "1"])).unwrap_err();
    assert!(err.contains("in [server]"), "{err}");
}

#[test]
fn overrides_win_over_the_file_and_are_validated() {
    let overrides = flags(&[
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        "--app-key",
        "real-key",
        "--app-secret",
        "real-secret",
        "--max-request-headers",
        "9",
    ]);
    let file = "[server]\nport = 7000\nmax_request_headers = 5\nclose_linger_ms = 5\n";
    let settings = Settings::load(file, &overrides).unwrap();
    assert_eq!(settings.server.port, 0);
    assert_eq!(settings.server.host, "127.0.0.1");
    assert_eq!(settings.server.max_request_headers, 9);
    assert_eq!(settings.conn_limits().head.max_headers, 9);
    assert_eq!(
        settings.conn_limits().close_linger,
        Duration::from_millis(5)
    );
    assert_eq!(settings.engine.apps[0].key, "real-key");
    assert!(!settings.engine.uses_default_credentials());

    assert!(Settings::load("", &flags(&["--app-key", ""])).is_err());
    let err = Settings::load("", &flags(&["--max-output-bytes", "0"])).unwrap_err();
    assert_eq!(err, "server.max_output_bytes must be at least 1");
}

#[test]
fn tls_files_come_from_the_file_flags_or_environment_and_merge_key_by_key() {
    let file = "[server.tls]\ncert_file = \"/file/cert.pem\"\nkey_file = \"/file/key.pem\"\n";
    let settings = Settings::load(file, &Overrides::default()).unwrap();
    let files = settings.server.tls.files().unwrap();
    assert_eq!(files.cert_file, PathBuf::from("/file/cert.pem"));

    let settings = Settings::load(file, &flags(&["--tls-cert", "/flag/cert.pem"])).unwrap();
    let files = settings.server.tls.files().unwrap();
    assert_eq!(files.cert_file, PathBuf::from("/flag/cert.pem"));
    assert_eq!(files.key_file, PathBuf::from("/file/key.pem"));

    let dump = settings.to_redacted_toml().unwrap();
    assert!(dump.contains("[server.tls]"), "{dump}");
    assert!(dump.contains("/flag/cert.pem"), "{dump}");
    assert_eq!(
        Settings::load(&dump, &Overrides::default()).unwrap().server,
        settings.server
    );

    let plain = Settings::load("", &Overrides::default()).unwrap();
    assert_eq!(plain.server.tls.files(), None);
    assert!(!plain.to_redacted_toml().unwrap().contains("[server.tls]"));
}

#[test]
fn tls_needs_both_files() {
    let err = Settings::load("", &flags(&["--tls-cert", "c.pem"])).unwrap_err();
    assert!(err.contains("server.tls.key_file"), "{err}");
    let err = Settings::load(
        "[server.tls]\nkey_file = \"k.pem\"\n",
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(err.contains("server.tls.cert_file"), "{err}");
    let err =
        Settings::load("[server.tls]\ncert = \"c.pem\"\n", &Overrides::default()).unwrap_err();
    assert!(err.contains("cert"), "{err}");
}

#[test]
fn app_overrides_replace_the_first_app_only() {
    let file = "[[apps]]\nid = \"1\"\nkey = \"k1\"\nsecret = \"s1\"\n\
                [[apps]]\nid = \"2\"\nkey = \"k2\"\nsecret = \"s2\"\n";
    let settings =
        Settings::load(file, &flags(&["--app-id", "one", "--path-prefix", "/ws"])).unwrap();
    assert_eq!(settings.engine.apps[0].id, "one");
    assert_eq!(settings.engine.apps[0].key, "k1");
    assert_eq!(settings.engine.apps[1].id, "2");
    assert_eq!(settings.engine.path_prefix, "/ws");
    let err = Settings::load("", &flags(&["--path-prefix", "ws/"])).unwrap_err();
    assert!(err.contains("path_prefix"), "{err}");
    let err = Settings::load("apps = []\n", &flags(&["--app-id", "x"])).unwrap_err();
    assert_eq!(err, "no apps configured");
}

#[test]
fn workers_default_to_the_cores_and_must_be_in_range() {
    let settings = Settings::load("", &Overrides::default()).unwrap();
    assert!(settings.server.workers >= 1);
    let file = Settings::load("[server]\nworkers = 3\n", &Overrides::default()).unwrap();
    assert_eq!(file.server.workers, 3);
    let flag = flags(&["--workers", "1"]);
    assert_eq!(
        Settings::load("[server]\nworkers = 3\n", &flag)
            .unwrap()
            .server
            .workers,
        1
    );
    for bad in ["0", "257"] {
        let err = Settings::load(
            &format!("[server]\nworkers = {bad}\n"),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(err.contains("server.workers"), "{err}");
    }
}

#[test]
fn the_redacted_dump_loads_back_to_the_same_settings_but_the_secrets() {
    let text = "activity_timeout_secs = 60\n[server]\nport = 7000\n\
                [[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nmax_connections = 5\n\
                [[apps.webhooks]]\nurl = \"http://127.0.0.1:1/hook\"\n";
    let settings = Settings::load(text, &Overrides::default()).unwrap();
    let dump = settings.to_redacted_toml().unwrap();
    assert!(!dump.contains("\"s\""), "{dump}");
    let mut again = Settings::load(&dump, &Overrides::default()).unwrap();
    assert_eq!(again.engine.apps[0].secret, REDACTED);
    again.engine.apps[0].secret = "s".into();
    assert_eq!(again, settings);
}

#[test]
fn the_app_store_is_off_by_default_and_the_example_app_served() {
    let settings = Settings::load("", &Overrides::default()).unwrap();
    assert_eq!(settings.app_store.driver, AppStoreDriver::Config);
    assert_eq!(settings.app_store.table, "apps");
    assert_eq!(settings.app_store.notify_channel, "ferrocast_apps");
    assert!(!settings.engine.app_store.lookups);
    assert_eq!(settings.engine.apps.len(), 1);
    // Only a database driver validates its own settings; `config` needs none of them.
    let unused = "[app_store]\ntable = \"apps\"\ncache_ttl_secs = 60\n";
    assert!(Settings::load(unused, &Overrides::default()).is_ok());
}

#[test]
fn a_database_driver_turns_lookups_on_and_the_example_app_off() {
    let text = "[app_store]\ndriver = \"postgres\"\nurl = \"postgres://u:pw@127.0.0.1/db\"\n\
                cache_ttl_secs = 30\nmissing_ttl_secs = 2\nlookup_timeout_ms = 900\n";
    let settings = Settings::load(text, &Overrides::default()).unwrap();
    assert!(settings.app_store.uses_database());
    let store = &settings.engine.app_store;
    assert!(store.lookups);
    assert_eq!(
        (
            store.cache_ttl_secs,
            store.missing_ttl_secs,
            store.lookup_timeout_ms
        ),
        (30, 2, 900)
    );
    assert!(settings.engine.apps.is_empty(), "no example app");
    assert!(!settings.engine.uses_default_credentials());
    assert_eq!(
        settings.conn_limits().max_message_bytes,
        ferrocast_engine::AppConfig::default().max_message_bytes,
        "database apps keep the default message size, which the framing allows"
    );
    // Apps the file names are served beside the database's.
    let with_apps = format!("{text}[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n");
    let settings = Settings::load(&with_apps, &Overrides::default()).unwrap();
    assert_eq!(settings.engine.apps.len(), 1);
    assert_eq!(settings.engine.apps[0].key, "k");
    // So is the app the flags name.
    let flagged = Settings::load(text, &flags(&["--app-key", "flag-key"])).unwrap();
    assert_eq!(flagged.engine.apps[0].key, "flag-key");
}

#[test]
fn app_store_flags_win_over_the_file() {
    let text = "[app_store]\ndriver = \"mysql\"\nurl = \"mysql://u@h/db\"\ntable = \"apps\"\n";
    let overrides = flags(&[
        "--app-store-url",
        "mysql://other@h/db2",
        "--app-store-table",
        "tenant.apps",
        "--app-store-cache-ttl-secs",
        "9",
        "--app-store-missing-ttl-secs",
        "0",
        "--app-store-lookup-timeout-ms",
        "100",
        "--app-store-notify-channel",
        "changes",
    ]);
    let settings = Settings::load(text, &overrides).unwrap();
    let store = &settings.app_store;
    assert_eq!(store.driver, AppStoreDriver::Mysql);
    assert_eq!(store.url.as_deref(), Some("mysql://other@h/db2"));
    assert_eq!(store.table, "tenant.apps");
    assert_eq!(
        (
            store.cache_ttl_secs,
            store.missing_ttl_secs,
            store.lookup_timeout_ms
        ),
        (9, 0, 100)
    );
    assert_eq!(store.notify_channel, "changes");
    let driver = Settings::load("", &flags(&["--app-store-driver", "postgres"])).unwrap_err();
    assert!(driver.contains("app_store.url is required"), "{driver}");
}

#[test]
fn bad_app_store_settings_are_refused_with_the_key() {
    let base = "[app_store]\ndriver = \"postgres\"\nurl = \"postgres://u:pw@h/db\"\n";
    for (extra, expected) in [
        ("table = \"apps; DROP TABLE apps\"\n", "app_store.table"),
        ("table = \"a.b.c\"\n", "app_store.table"),
        ("notify_channel = \"a-b\"\n", "app_store.notify_channel"),
        ("cache_ttl_secs = 0\n", "app_store.cache_ttl_secs"),
        ("lookup_timeout_ms = 0\n", "app_store.lookup_timeout_ms"),
        ("driver = \"dynamodb\"\n", "driver"),
        ("colour = 1\n", "colour"),
    ] {
        let text = base.replace("driver = \"postgres\"\n", "")
            + if extra.starts_with("driver") {
                ""
            } else {
                "driver = \"postgres\"\n"
            }
            + extra;
        let error = Settings::load(&text, &Overrides::default()).unwrap_err();
        assert!(error.contains(expected), "{extra}: {error}");
        assert!(!error.contains("pw@"), "{error}");
    }
    let wrong_scheme = "[app_store]\ndriver = \"postgres\"\nurl = \"mysql://u:pw@h/db\"\n";
    let error = Settings::load(wrong_scheme, &Overrides::default()).unwrap_err();
    assert!(
        error.contains("postgres://") && !error.contains(":pw@"),
        "{error}"
    );
    let stray_url = "[app_store]\nurl = \"postgres://u:pw@h/db\"\n";
    let error = Settings::load(stray_url, &Overrides::default()).unwrap_err();
    assert!(error.contains("app_store.driver"), "{error}");
}

#[test]
fn the_redacted_dump_of_an_app_store_hides_the_password_and_loads_back() {
    let text = "[app_store]\ndriver = \"postgres\"\nurl = \"postgres://u:hunter2@h/db\"\n";
    let settings = Settings::load(text, &Overrides::default()).unwrap();
    let dump = settings.to_redacted_toml().unwrap();
    assert!(!dump.contains("hunter2"), "{dump}");
    assert!(dump.contains("postgres://u:***@h/db"), "{dump}");
    assert!(!format!("{settings:?}").contains("hunter2"));
    let mut again = Settings::load(&dump, &Overrides::default()).unwrap();
    assert!(again.engine.apps.is_empty(), "{dump}");
    again.app_store.url = settings.app_store.url.clone();
    assert_eq!(again, settings);
}
