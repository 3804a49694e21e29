//! Every documented setting, given as a flag and as an environment variable to the real binary,
//! read back from `--print-config`; the precedence of the layers; and, for the transport limits,
//! the effect on a running server.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::io::{BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{read_response, write_config, Server, WAIT};

/// One documented setting: how it is spelled on each layer, and a value that is not its default.
struct Setting {
    /// Where `--print-config` shows it: `server.port`, `path_prefix`, `apps.0.key`.
    toml_path: &'static str,
    flag: &'static str,
    env: &'static str,
    value: &'static str,
    /// How `--print-config` shows `value` at `toml_path`.
    printed: &'static str,
}

const fn setting(
    toml_path: &'static str,
    flag: &'static str,
    env: &'static str,
    value: &'static str,
) -> Setting {
    shown_as(toml_path, flag, env, value, value)
}

/// A setting whose flag value is printed otherwise (`5/7` as `max = 5`, `window_secs = 7`).
const fn shown_as(
    toml_path: &'static str,
    flag: &'static str,
    env: &'static str,
    value: &'static str,
    printed: &'static str,
) -> Setting {
    Setting {
        toml_path,
        flag,
        env,
        value,
        printed,
    }
}

/// Every setting the README documents with a flag and an environment variable, except
/// `--config`, `--app-secret` and `--admin-token` (which `--print-config` must not show),
/// tested on their own.
const SETTINGS: &[Setting] = &[
    setting("server.host", "--host", "FERROCAST_HOST", "127.0.0.2"),
    setting("server.port", "--port", "FERROCAST_PORT", "7123"),
    setting("server.workers", "--workers", "FERROCAST_WORKERS", "7"),
    setting(
        "server.log_level",
        "--log-level",
        "FERROCAST_LOG_LEVEL",
        "warn",
    ),
    setting(
        "server.log_format",
        "--log-format",
        "FERROCAST_LOG_FORMAT",
        "json",
    ),
    setting(
        "server.max_output_bytes",
        "--max-output-bytes",
        "FERROCAST_MAX_OUTPUT_BYTES",
        "5000",
    ),
    setting(
        "server.max_output_frames",
        "--max-output-frames",
        "FERROCAST_MAX_OUTPUT_FRAMES",
        "77",
    ),
    setting(
        "server.socket_send_buffer_bytes",
        "--socket-send-buffer-bytes",
        "FERROCAST_SOCKET_SEND_BUFFER_BYTES",
        "65536",
    ),
    setting(
        "server.max_request_head_bytes",
        "--max-request-head-bytes",
        "FERROCAST_MAX_REQUEST_HEAD_BYTES",
        "2048",
    ),
    setting(
        "server.max_request_headers",
        "--max-request-headers",
        "FERROCAST_MAX_REQUEST_HEADERS",
        "12",
    ),
    setting(
        "server.max_request_body_bytes",
        "--max-request-body-bytes",
        "FERROCAST_MAX_REQUEST_BODY_BYTES",
        "4096",
    ),
    setting(
        "server.request_timeout_secs",
        "--request-timeout-secs",
        "FERROCAST_REQUEST_TIMEOUT_SECS",
        "3",
    ),
    setting(
        "server.close_linger_ms",
        "--close-linger-ms",
        "FERROCAST_CLOSE_LINGER_MS",
        "250",
    ),
    setting(
        "server.webhook_workers",
        "--webhook-workers",
        "FERROCAST_WEBHOOK_WORKERS",
        "5",
    ),
    setting(
        "server.webhook_queue_capacity",
        "--webhook-queue-capacity",
        "FERROCAST_WEBHOOK_QUEUE_CAPACITY",
        "123",
    ),
    setting(
        "server.webhook_timeout_secs",
        "--webhook-timeout-secs",
        "FERROCAST_WEBHOOK_TIMEOUT_SECS",
        "4",
    ),
    setting(
        "server.webhook_retry_window_secs",
        "--webhook-retry-window-secs",
        "FERROCAST_WEBHOOK_RETRY_WINDOW_SECS",
        "60",
    ),
    setting(
        "path_prefix",
        "--path-prefix",
        "FERROCAST_PATH_PREFIX",
        "/ws",
    ),
    setting(
        "cluster.redis_url",
        "--redis-url",
        "FERROCAST_REDIS_URL",
        "redis://127.0.0.1:6390/2",
    ),
    setting(
        "cluster.prefix",
        "--cluster-prefix",
        "FERROCAST_CLUSTER_PREFIX",
        "blue",
    ),
    setting(
        "cluster.heartbeat_ms",
        "--cluster-heartbeat-ms",
        "FERROCAST_CLUSTER_HEARTBEAT_MS",
        "250",
    ),
    setting(
        "cluster.node_timeout_ms",
        "--cluster-node-timeout-ms",
        "FERROCAST_CLUSTER_NODE_TIMEOUT_MS",
        "1500",
    ),
    shown_as(
        "server.trusted_proxies.1",
        "--trusted-proxies",
        "FERROCAST_TRUSTED_PROXIES",
        "10.0.0.1,10.9.0.0/16",
        "10.9.0.0/16",
    ),
    setting(
        "server.max_connections",
        "--max-connections",
        "FERROCAST_MAX_CONNECTIONS",
        "5000",
    ),
    setting(
        "rate_limit.max_connections_per_ip",
        "--max-connections-per-ip",
        "FERROCAST_MAX_CONNECTIONS_PER_IP",
        "8",
    ),
    setting(
        "server.trust_hops",
        "--trust-hops",
        "FERROCAST_TRUST_HOPS",
        "3",
    ),
    setting(
        "server.compression",
        "--compression",
        "FERROCAST_COMPRESSION",
        "false",
    ),
    setting(
        "rate_limit.enabled",
        "--rate-limit",
        "FERROCAST_RATE_LIMIT",
        "false",
    ),
    shown_as(
        "rate_limit.ws_connects.window_secs",
        "--rate-limit-ws-connects",
        "FERROCAST_RATE_LIMIT_WS_CONNECTS",
        "5/7",
        "7",
    ),
    shown_as(
        "rate_limit.api_requests.max",
        "--rate-limit-api-requests",
        "FERROCAST_RATE_LIMIT_API_REQUESTS",
        "9/60",
        "9",
    ),
    setting("metrics.enabled", "--metrics", "FERROCAST_METRICS", "true"),
    setting(
        "metrics.host",
        "--metrics-host",
        "FERROCAST_METRICS_HOST",
        "127.0.0.9",
    ),
    setting(
        "metrics.port",
        "--metrics-port",
        "FERROCAST_METRICS_PORT",
        "9700",
    ),
    setting(
        "app_store.table",
        "--app-store-table",
        "FERROCAST_APP_STORE_TABLE",
        "tenant_apps",
    ),
    setting(
        "app_store.cache_ttl_secs",
        "--app-store-cache-ttl-secs",
        "FERROCAST_APP_STORE_CACHE_TTL_SECS",
        "300",
    ),
    setting(
        "app_store.missing_ttl_secs",
        "--app-store-missing-ttl-secs",
        "FERROCAST_APP_STORE_MISSING_TTL_SECS",
        "0",
    ),
    setting(
        "app_store.lookup_timeout_ms",
        "--app-store-lookup-timeout-ms",
        "FERROCAST_APP_STORE_LOOKUP_TIMEOUT_MS",
        "750",
    ),
    setting(
        "app_store.notify_channel",
        "--app-store-notify-channel",
        "FERROCAST_APP_STORE_NOTIFY_CHANNEL",
        "apps_changed",
    ),
    setting("apps.0.id", "--app-id", "FERROCAST_APP_ID", "id-9"),
    setting("apps.0.key", "--app-key", "FERROCAST_APP_KEY", "key-9"),
];

/// The flags and variables tested outside [`SETTINGS`] (the TLS files come in pairs, and so
/// do an app store's driver and URL).
const OTHER_FLAGS: [&str; 10] = [
    "--config",
    "--app-secret",
    "--admin-token",
    "--print-config",
    "--check-config",
    "--version",
    "--tls-cert",
    "--tls-key",
    "--app-store-driver",
    "--app-store-url",
];
const OTHER_ENVS: [&str; 7] = [
    "FERROCAST_CONFIG",
    "FERROCAST_APP_SECRET",
    "FERROCAST_ADMIN_TOKEN",
    "FERROCAST_TLS_CERT",
    "FERROCAST_TLS_KEY",
    "FERROCAST_APP_STORE_DRIVER",
    "FERROCAST_APP_STORE_URL",
];

/// What a `--print-config` run produced.
struct Printed {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Printed {
    /// The printed configuration, parsed.
    fn config(&self) -> toml::Table {
        assert!(
            self.status.success(),
            "exit {}: {}",
            self.status,
            self.stderr
        );
        self.stdout
            .parse()
            .unwrap_or_else(|e| panic!("not TOML ({e}):\n{}", self.stdout))
    }
}

/// Runs `ferrocast --print-config` with `args` and `env` and nothing inherited from this
/// process's own `FERROCAST_*` or `RUST_LOG` variables.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> Printed {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrocast"));
    command.arg("--print-config").args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("FERROCAST_") || name == "RUST_LOG" {
            command.env_remove(name);
        }
    }
    let mut child = command
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrocast");
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("--print-config kept running with {args:?} {env:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Printed {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The value at a dotted path (`apps.0.key`), as plain text (strings without quotes).
fn lookup(config: &toml::Table, path: &str) -> Option<String> {
    let mut parts = path.split('.');
    let mut value = config.get(parts.next()?)?;
    for part in parts {
        value = match part.parse::<usize>() {
            Ok(index) => value.as_array()?.get(index)?,
            Err(_) => value.as_table()?.get(part)?,
        };
    }
    Some(match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// The rows of the README table under `heading`: the cells of each `| … |` line after the
/// header and its rule, up to the first line that is not a row.
fn readme_rows(readme: &str, heading: &str) -> Vec<Vec<String>> {
    let start = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in the README"));
    readme[start..]
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2)
        .map(|line| {
            line.trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The first `code` span of a cell, when the cell starts with one.
fn leading_code(cell: &str) -> Option<&str> {
    cell.strip_prefix('`')?.split('`').next()
}

/// Every default the README's tables state as a plain value (`9601`, `"ferrocast"`, `[]`) is
/// the one `--print-config` shows, so that the documentation cannot drift from the code.
#[test]
fn the_readme_states_the_printed_defaults() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let defaults = print_config(&[], &[]).config();
    let mut checked = Vec::new();
    let tables = [
        ("### Settings with a flag", 0, 3, ""),
        ("### Top level: the protocol", 0, 1, ""),
        ("### `[[apps]]`: one table per app", 0, 1, "apps.0."),
    ];
    for (heading, key_column, default_column, prefix) in tables {
        for row in readme_rows(&readme, heading) {
            let (Some(key), Some(default)) = (
                leading_code(&row[key_column]),
                row.get(default_column).and_then(|cell| leading_code(cell)),
            ) else {
                continue;
            };
            // Inline tables (`{ max = 600, … }`) and lists of keys are checked elsewhere.
            if default.starts_with('{') || key.contains(',') || key.contains(' ') {
                continue;
            }
            let path = format!("{prefix}{key}");
            // Its default is `RUST_LOG`'s value, which `--print-config` does not show.
            if path == "server.log_level" {
                continue;
            }
            let printed = lookup(&defaults, &path)
                .unwrap_or_else(|| panic!("README row {path} is not in --print-config"));
            let stated = default.trim_matches('"');
            assert_eq!(printed, stated, "README default of {path}");
            checked.push(path);
        }
    }
    // The tables were found and read: the settings issue 11 names among them.
    for path in [
        "metrics.port",
        "server.trust_hops",
        "apps.0.max_event_payload_bytes",
    ] {
        assert!(
            checked.iter().any(|c| c == path),
            "{path} not checked: {checked:?}"
        );
    }
    let window = |path: &str| lookup(&defaults, path).unwrap();
    let connects = format!(
        "`{{ max = {}, window_secs = {} }}`",
        window("rate_limit.ws_connects.max"),
        window("rate_limit.ws_connects.window_secs")
    );
    assert!(readme.contains(&connects), "README lacks {connects}");
}

#[test]
fn every_flag_changes_its_setting() {
    let defaults = print_config(&[], &[]).config();
    for s in SETTINGS {
        assert_ne!(
            lookup(&defaults, s.toml_path).as_deref(),
            Some(s.printed),
            "pick a value for {} that is not its default",
            s.flag
        );
        let printed = print_config(&[s.flag, s.value], &[]).config();
        assert_eq!(
            lookup(&printed, s.toml_path).as_deref(),
            Some(s.printed),
            "{} {} should set {}",
            s.flag,
            s.value,
            s.toml_path
        );
    }
}

#[test]
fn the_tls_files_are_set_in_pairs_by_flags_environment_or_both() {
    let (cert, key) = ("/etc/ferrocast/cert.pem", "/etc/ferrocast/key.pem");
    let runs = [
        print_config(&["--tls-cert", cert, "--tls-key", key], &[]),
        print_config(
            &[],
            &[("FERROCAST_TLS_CERT", cert), ("FERROCAST_TLS_KEY", key)],
        ),
        print_config(&["--tls-key", key], &[("FERROCAST_TLS_CERT", cert)]),
    ];
    for printed in runs {
        let config = printed.config();
        assert_eq!(
            lookup(&config, "server.tls.cert_file").as_deref(),
            Some(cert)
        );
        assert_eq!(lookup(&config, "server.tls.key_file").as_deref(), Some(key));
    }
    let alone = print_config(&["--tls-cert", cert], &[]);
    assert!(!alone.status.success());
    assert!(alone.stderr.contains("TLS needs both"), "{}", alone.stderr);
}

#[test]
fn an_app_store_driver_and_its_url_come_together_and_the_password_is_hidden() {
    let url = "postgres://ferro:pg-hunter2@127.0.0.1:5432/apps";
    let runs = [
        print_config(
            &["--app-store-driver", "postgres", "--app-store-url", url],
            &[],
        ),
        print_config(
            &[],
            &[
                ("FERROCAST_APP_STORE_DRIVER", "postgres"),
                ("FERROCAST_APP_STORE_URL", url),
            ],
        ),
        print_config(
            &["--app-store-driver", "postgres"],
            &[("FERROCAST_APP_STORE_URL", url)],
        ),
    ];
    for printed in runs {
        assert!(!printed.stdout.contains("pg-hunter2"), "{}", printed.stdout);
        assert!(!printed.stderr.contains("pg-hunter2"), "{}", printed.stderr);
        let config = printed.config();
        assert_eq!(
            lookup(&config, "app_store.driver").as_deref(),
            Some("postgres")
        );
        assert_eq!(
            lookup(&config, "app_store.url").as_deref(),
            Some("postgres://ferro:***@127.0.0.1:5432/apps")
        );
        // No example app beside the database's.
        assert_eq!(lookup(&config, "apps.0.key"), None, "{}", printed.stdout);
    }
    let mysql = print_config(
        &[
            "--app-store-driver",
            "mysql",
            "--app-store-url",
            "mysql://root:my-hunter2@127.0.0.1/ferro",
        ],
        &[],
    );
    assert!(!mysql.stdout.contains("my-hunter2"), "{}", mysql.stdout);
    assert_eq!(
        lookup(&mysql.config(), "app_store.url").as_deref(),
        Some("mysql://root:***@127.0.0.1/ferro")
    );
    let alone = print_config(&["--app-store-driver", "postgres"], &[]);
    assert_eq!(alone.status.code(), Some(2));
    assert!(
        alone.stderr.contains("app_store.url is required"),
        "{}",
        alone.stderr
    );
    let alone = print_config(&[], &[("FERROCAST_APP_STORE_URL", url)]);
    assert_eq!(alone.status.code(), Some(2));
    assert!(
        alone.stderr.contains("app_store.driver") && !alone.stderr.contains("pg-hunter2"),
        "{}",
        alone.stderr
    );
    let wrong = print_config(
        &["--app-store-driver", "mysql", "--app-store-url", url],
        &[],
    );
    assert_eq!(wrong.status.code(), Some(2));
    assert!(
        wrong.stderr.contains("mysql://") && !wrong.stderr.contains("pg-hunter2"),
        "{}",
        wrong.stderr
    );
}

#[test]
fn every_environment_variable_changes_its_setting() {
    for s in SETTINGS {
        let printed = print_config(&[], &[(s.env, s.value)]).config();
        assert_eq!(
            lookup(&printed, s.toml_path).as_deref(),
            Some(s.printed),
            "{}={} should set {}",
            s.env,
            s.value,
            s.toml_path
        );
    }
}

#[test]
fn every_server_setting_is_tested_and_has_a_flag() {
    let defaults = print_config(&[], &[]).config();
    let printed: BTreeSet<String> = defaults["server"]
        .as_table()
        .expect("[server] table")
        .keys()
        .map(|k| format!("server.{k}"))
        .collect();
    // A list's path names one of its items: the setting is the first two parts.
    let mut tested: BTreeSet<String> = SETTINGS
        .iter()
        .map(|s| s.toml_path.split('.').take(2).collect::<Vec<_>>().join("."))
        .filter(|p| p.starts_with("server."))
        .collect();
    // No log level is configured by default, so the dump leaves the key out.
    tested.remove("server.log_level");
    assert_eq!(printed, tested);
}

#[test]
fn the_help_lists_exactly_the_tested_flags() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocast"))
        .arg("--help")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let help = drain(child.stdout.take().unwrap()).join().unwrap();
    assert!(child.wait().unwrap().success());
    let mut listed = long_flags(&help);
    listed.remove("--help");
    assert_eq!(listed, tested_flags());
    let envs: BTreeSet<String> = words_with_prefix(&help, "FERROCAST_");
    assert_eq!(envs, tested_envs());
}

#[test]
fn the_readme_documents_exactly_the_tested_flags() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let start = readme
        .find("\n## Configuration")
        .expect("configuration section");
    let end = start + 1 + readme[start + 1..].find("\n## ").expect("next section");
    let section = &readme[start..end];
    assert_eq!(long_flags(section), tested_flags());
    assert_eq!(words_with_prefix(section, "FERROCAST_"), tested_envs());
}

fn tested_flags() -> BTreeSet<String> {
    SETTINGS
        .iter()
        .map(|s| s.flag)
        .chain(OTHER_FLAGS)
        .map(str::to_owned)
        .collect()
}

fn tested_envs() -> BTreeSet<String> {
    SETTINGS
        .iter()
        .map(|s| s.env)
        .chain(OTHER_ENVS)
        .map(str::to_owned)
        .collect()
}

/// Every `--word-word` in `text`.
fn long_flags(text: &str) -> BTreeSet<String> {
    words_with_prefix(text, "--")
        .into_iter()
        .filter(|w| w.len() > 2 && w.as_bytes()[2].is_ascii_lowercase())
        .collect()
}

/// Every maximal run of `[A-Za-z0-9_-]` that starts with `prefix`.
fn words_with_prefix(text: &str, prefix: &str) -> BTreeSet<String> {
    let is_word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        let word: String = rest[at..].chars().take_while(|&c| is_word(c)).collect();
        if !before.is_some_and(is_word) {
            found.insert(word.trim_end_matches('-').to_owned());
        }
        rest = &rest[at + prefix.len()..];
    }
    found
}

#[test]
fn the_config_file_comes_from_the_flag_or_the_environment() {
    let path = write_config("[server]\nport = 7001\n");
    let path_text = path.to_str().unwrap();
    let by_flag = print_config(&["--config", path_text], &[]).config();
    let by_env = print_config(&[], &[("FERROCAST_CONFIG", path_text)]).config();
    let _ = std::fs::remove_file(&path);
    assert_eq!(lookup(&by_flag, "server.port").as_deref(), Some("7001"));
    assert_eq!(lookup(&by_env, "server.port").as_deref(), Some("7001"));
}

#[test]
fn a_flag_beats_its_variable_which_beats_the_file_which_beats_the_default() {
    let path = write_config(
        "path_prefix = \"/file\"\n[server]\nport = 7001\nclose_linger_ms = 11\n\
         [[apps]]\nid = \"file-id\"\nkey = \"file-key\"\nsecret = \"file-secret\"\n",
    );
    let file = path.to_str().unwrap();
    let layers: [(&str, &str, &str, [&str; 3]); 3] = [
        (
            "server.port",
            "--port",
            "FERROCAST_PORT",
            ["7001", "7002", "7003"],
        ),
        (
            "server.close_linger_ms",
            "--close-linger-ms",
            "FERROCAST_CLOSE_LINGER_MS",
            ["11", "22", "33"],
        ),
        (
            "apps.0.key",
            "--app-key",
            "FERROCAST_APP_KEY",
            ["file-key", "env-key", "flag-key"],
        ),
    ];
    for (toml_path, flag, env, [in_file, in_env, in_flag]) in layers {
        let default = lookup(&print_config(&[], &[]).config(), toml_path);
        let expect = |args: &[&str], vars: &[(&str, &str)], expected: &str| {
            let printed = print_config(args, vars).config();
            assert_eq!(
                lookup(&printed, toml_path).as_deref(),
                Some(expected),
                "{toml_path} with {args:?} {vars:?}"
            );
        };
        expect(&[], &[], default.as_deref().expect("a default"));
        expect(&["--config", file], &[], in_file);
        expect(&["--config", file], &[(env, in_env)], in_env);
        expect(
            &["--config", file, flag, in_flag],
            &[(env, in_env)],
            in_flag,
        );
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn print_config_hides_the_admin_token_from_a_flag_the_environment_or_the_file() {
    let printed = print_config(&["--admin-token", "very-secret-token"], &[]);
    assert!(
        !printed.stdout.contains("very-secret-token"),
        "{}",
        printed.stdout
    );
    assert_eq!(
        lookup(&printed.config(), "admin.token").as_deref(),
        Some("<redacted>")
    );
    let printed = print_config(&[], &[("FERROCAST_ADMIN_TOKEN", "env-secret-token")]);
    assert!(
        !printed.stdout.contains("env-secret-token"),
        "{}",
        printed.stdout
    );
    assert_eq!(
        lookup(&printed.config(), "admin.token").as_deref(),
        Some("<redacted>")
    );
    let path = write_config("[admin]\ntoken = \"file-secret-token\"\n");
    let printed = print_config(&["--config", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    assert!(
        !printed.stdout.contains("file-secret-token"),
        "{}",
        printed.stdout
    );
    assert_eq!(
        lookup(&printed.config(), "admin.token").as_deref(),
        Some("<redacted>")
    );
    // Unset: no token line at all.
    assert_eq!(
        lookup(&print_config(&[], &[]).config(), "admin.token"),
        None
    );
}

#[test]
fn print_config_hides_secrets_and_still_validates() {
    let printed = print_config(&["--app-secret", "very-secret-value"], &[]);
    let config = printed.config();
    assert!(
        !printed.stdout.contains("very-secret-value"),
        "{}",
        printed.stdout
    );
    assert_eq!(
        lookup(&config, "apps.0.secret").as_deref(),
        Some("<redacted>")
    );

    let path = write_config("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"file-secret\"\n");
    let printed = print_config(&["--config", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    assert!(
        !printed.stdout.contains("file-secret"),
        "{}",
        printed.stdout
    );

    let printed = print_config(&["--redis-url", "redis://app:hunter2@10.1.2.3:6379/1"], &[]);
    let config = printed.config();
    assert!(!printed.stdout.contains("hunter2"), "{}", printed.stdout);
    assert_eq!(
        lookup(&config, "cluster.redis_url").as_deref(),
        Some("redis://app:***@10.1.2.3:6379/1")
    );

    let bad = print_config(&["--workers", "0"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        bad.stderr.contains("server.workers must be between 1 and"),
        "{}",
        bad.stderr
    );
    let bad = print_config(&["--redis-url", "http://10.1.2.3"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stderr.contains("invalid Redis URL"), "{}", bad.stderr);
    let bad = print_config(&["--cluster-node-timeout-ms", "1000"], &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        bad.stderr
            .contains("cluster.node_timeout_ms (1000) must be greater"),
        "{}",
        bad.stderr
    );
    let bad = print_config(&[], &[("FERROCAST_WEBHOOK_TIMEOUT_SECS", "0")]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        bad.stderr
            .contains("server.webhook_timeout_secs must be at least 1"),
        "{}",
        bad.stderr
    );
}

/// The status a running server answers to a GET whose head is `extra_headers` long.
fn status_of_get(server: &Server, extra_headers: &str) -> u16 {
    let mut stream = server.tcp();
    let request = format!("GET /nothing-here HTTP/1.1\r\nHost: t\r\n{extra_headers}\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    read_response(&mut BufReader::new(stream)).status()
}

fn start_with_setting(flag: &str, env: &str, value: &str, by_env: bool) -> Server {
    if by_env {
        Server::start_with(1, None, &[], &[(env, value)])
    } else {
        Server::start_with(1, None, &[flag, value], &[])
    }
}

#[test]
fn max_request_head_bytes_refuses_a_longer_head_with_431() {
    let long_header = format!("X-Padding: {}\r\n", "a".repeat(1500));
    let server = Server::start(1);
    assert_ne!(
        status_of_get(&server, &long_header),
        431,
        "the default allows 8 KiB"
    );
    for by_env in [false, true] {
        let server = start_with_setting(
            "--max-request-head-bytes",
            "FERROCAST_MAX_REQUEST_HEAD_BYTES",
            "1024",
            by_env,
        );
        assert_eq!(status_of_get(&server, &long_header), 431, "by_env={by_env}");
        assert_ne!(status_of_get(&server, "X-Short: 1\r\n"), 431);
    }
}

#[test]
fn max_request_headers_refuses_more_headers_with_431() {
    let many: String = (0..10).map(|i| format!("X-H{i}: v\r\n")).collect();
    let server = Server::start(1);
    assert_ne!(
        status_of_get(&server, &many),
        431,
        "the default allows 64 headers"
    );
    for by_env in [false, true] {
        let server = start_with_setting(
            "--max-request-headers",
            "FERROCAST_MAX_REQUEST_HEADERS",
            "6",
            by_env,
        );
        assert_eq!(status_of_get(&server, &many), 431, "by_env={by_env}");
        assert_ne!(status_of_get(&server, "X-One: 1\r\n"), 431);
    }
}

/// How long after the server's FIN the server keeps a closing connection it answered, measured
/// by writing to it until the write fails (the closed socket answers with a reset).
fn lingered_after_answer(server: &Server) -> Duration {
    let mut stream = server.tcp();
    stream
        .write_all(b"GET /nothing-here HTTP/1.0\r\nHost: t\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("answer, then FIN");
    let fin = Instant::now();
    for _ in 0..500 {
        std::thread::sleep(Duration::from_millis(10));
        if stream.write(b"x").is_err() {
            return fin.elapsed();
        }
    }
    panic!("the server kept the connection for more than 5 s");
}

#[test]
fn close_linger_ms_bounds_how_long_a_closing_connection_is_kept() {
    for by_env in [false, true] {
        let server = start_with_setting(
            "--close-linger-ms",
            "FERROCAST_CLOSE_LINGER_MS",
            "300",
            by_env,
        );
        let lingered = lingered_after_answer(&server);
        // The default is 2000 ms; the lower bound shows the server does wait for the peer.
        assert!(
            lingered >= Duration::from_millis(150) && lingered < Duration::from_millis(1500),
            "lingered {lingered:?} with by_env={by_env}"
        );
    }
}

#[test]
fn app_credentials_from_flags_or_environment_sign_requests() {
    let credentials = ["id-9", "key-9", "secret-9"];
    let by_flag = Server::start_with(
        1,
        None,
        &[
            "--app-id",
            "id-9",
            "--app-key",
            "key-9",
            "--app-secret",
            "secret-9",
        ],
        &[],
    );
    let by_env = Server::start_with(
        1,
        None,
        &[],
        &[
            ("FERROCAST_APP_ID", "id-9"),
            ("FERROCAST_APP_KEY", "key-9"),
            ("FERROCAST_APP_SECRET", "secret-9"),
        ],
    );
    for server in [&by_flag, &by_env] {
        assert_eq!(signed_publish(server, credentials), 200);
        assert_eq!(signed_publish(server, ["id-9", "key-9", "app-secret"]), 401);
    }
}

/// The status of an HTTP API publish signed with `[id, key, secret]`.
fn signed_publish(server: &Server, [id, key, secret]: [&str; 3]) -> u16 {
    let body = r#"{"name":"e","channel":"c","data":"{}"}"#;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let path = format!("/apps/{id}/events");
    let query = ferrocast_engine::http_auth::signed_query(
        key,
        secret,
        "POST",
        &path,
        &[],
        body.as_bytes(),
        now,
    );
    let mut stream = server.tcp();
    let request = format!(
        "POST {path}?{query} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).expect("write");
    read_response(&mut BufReader::new(stream)).status()
}
