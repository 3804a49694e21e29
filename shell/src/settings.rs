//! The configuration: one TOML file whose `[server]` table belongs to the shell and whose rest is
//! the engine's [`Config`], under environment variables and flags.
//!
//! Each setting is declared once, as a field below: its doc comment is its `--help` text, its
//! name is its TOML key and (in kebab case) its flag, its `env` is its environment variable and
//! its `default_value` its built-in default. The layers are merged key by key, lowest first:
//! built-in defaults, the file, environment variables, flags (clap ranks the last two). A
//! sub-table such as `[server.tls]` is a flattened struct whose flags have the ids
//! `tls.cert_file`, …: its dotted TOML path.

pub use self::app_store::{AppStoreDriver, AppStoreSettings};
use crate::bus::{redact_url, BusConfig, BusConfigError};
use crate::conn::ConnLimits;
use crate::forwarded::TrustedProxies;
use crate::http::HeadLimits;
use crate::rate_limit::{Limiter, RateLimits, Window};
use crate::slots::MAX_WORKERS;
use crate::tls::TlsFiles;
use crate::webhook_delivery::RetryPolicy;
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Command, FromArgMatches};
use ferrocast_engine::Config;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// What `--print-config` shows instead of a secret.
pub(crate) const REDACTED: &str = "<redacted>";

/// The shell's own settings: the `[server]` table, each also a flag and an environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    #[arg(long, env = "FERROCAST_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on; 0 picks a free one.
    #[arg(short, long, env = "FERROCAST_PORT", default_value_t = 6001)]
    pub port: u16,

    /// I/O worker threads serving sockets, 1 to 255 (the engine runs on one more thread when
    /// there are two or more) [default: the number of cores].
    #[arg(long, env = "FERROCAST_WORKERS", default_value_t = default_workers(), hide_default_value = true)]
    pub workers: usize,

    /// Log filter (`info`, `debug`, `ferrocast=trace`, …) [default: `RUST_LOG`, else `info`].
    #[arg(long, env = "FERROCAST_LOG_LEVEL", value_name = "FILTER")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,

    /// Log lines for people (`human`) or machines (`json`: one object per line, with the
    /// timestamp, level, target, message and fields such as `app` and `socket_id`).
    #[arg(long, env = "FERROCAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    #[serde(default)]
    pub log_format: LogFormat,

    /// Most bytes queued for one connection before it is closed as a slow consumer.
    #[arg(long, env = "FERROCAST_MAX_OUTPUT_BYTES", default_value_t = 1024 * 1024)]
    pub max_output_bytes: usize,

    /// Most frames queued for one connection before it is closed as a slow consumer.
    #[arg(long, env = "FERROCAST_MAX_OUTPUT_FRAMES", default_value_t = 4096)]
    pub max_output_frames: usize,

    /// Kernel send buffer of each client socket (`SO_SNDBUF`; Linux doubles it for its own
    /// bookkeeping and caps it at `net.core.wmem_max`): what a slow reader may hold in the
    /// kernel on top of `max_output_bytes`. 0 leaves the kernel's auto-tuning, which grows it
    /// up to `net.ipv4.tcp_wmem`'s maximum (4 MiB by default).
    #[arg(long, env = "FERROCAST_SOCKET_SEND_BUFFER_BYTES", default_value_t = 256 * 1024)]
    pub socket_send_buffer_bytes: usize,

    /// Most bytes of an HTTP request line plus headers (more is answered 431).
    #[arg(long, env = "FERROCAST_MAX_REQUEST_HEAD_BYTES", default_value_t = 8 * 1024)]
    pub max_request_head_bytes: usize,

    /// Most HTTP request headers (more is answered 431).
    #[arg(long, env = "FERROCAST_MAX_REQUEST_HEADERS", default_value_t = 64)]
    pub max_request_headers: usize,

    /// Most bytes of an HTTP request body (more is answered 413).
    #[arg(long, env = "FERROCAST_MAX_REQUEST_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_request_body_bytes: usize,

    /// Seconds a connection has to send a complete request or handshake (one begun but not
    /// finished is answered 408); also the idle time allowed between keep-alive requests.
    #[arg(long, env = "FERROCAST_REQUEST_TIMEOUT_SECS", default_value_t = 10)]
    pub request_timeout_secs: u64,

    /// Milliseconds allowed to flush and close a connection once its close is decided (also
    /// the shutdown grace period).
    #[arg(long, env = "FERROCAST_CLOSE_LINGER_MS", default_value_t = 2000)]
    pub close_linger_ms: u64,

    /// Threads delivering webhooks.
    #[arg(long, env = "FERROCAST_WEBHOOK_WORKERS", default_value_t = 2)]
    pub webhook_workers: usize,

    /// Webhook deliveries that may wait for a worker; more are dropped and counted.
    #[arg(
        long,
        env = "FERROCAST_WEBHOOK_QUEUE_CAPACITY",
        default_value_t = 10_000
    )]
    pub webhook_queue_capacity: usize,

    /// Seconds one webhook POST may take.
    #[arg(long, env = "FERROCAST_WEBHOOK_TIMEOUT_SECS", default_value_t = 10)]
    pub webhook_timeout_secs: u64,

    /// Seconds a refused webhook keeps being retried (with exponential back-off).
    #[arg(
        long,
        env = "FERROCAST_WEBHOOK_RETRY_WINDOW_SECS",
        default_value_t = 300
    )]
    pub webhook_retry_window_secs: u64,

    /// Connections this node holds at most (0: unlimited); more are refused with 4100.
    #[arg(long, env = "FERROCAST_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: u32,

    /// Proxies whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed, as addresses or
    /// networks (`10.0.0.0/8`), comma-separated as a flag [default: none].
    #[arg(
        long,
        env = "FERROCAST_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "NETS"
    )]
    #[serde(default)]
    pub trusted_proxies: Vec<String>,

    /// How many trusted proxies may stand in a row between a client and this server: the
    /// client is found that many `X-Forwarded-For` entries from the right, at most.
    #[arg(long, env = "FERROCAST_TRUST_HOPS", default_value_t = 1)]
    pub trust_hops: usize,

    /// Whether permessage-deflate (RFC 7692) is negotiated with clients that offer it;
    /// `false` never answers the offer, so every frame goes out uncompressed.
    #[arg(
        long,
        env = "FERROCAST_COMPRESSION",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub compression: bool,

    /// TLS on the listening port (`[server.tls]`).
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "TlsSettings::is_off")]
    pub tls: TlsSettings,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text for people, coloured on a terminal.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The `[server.tls]` table: with both files set, the port serves `wss://` and `https://`
/// only. SIGHUP re-reads both files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file with the TLS certificate chain, leaf first; with `--tls-key`, the port speaks
    /// TLS only [default: none, plain TCP].
    #[arg(
        id = "tls.cert_file",
        long = "tls-cert",
        env = "FERROCAST_TLS_CERT",
        value_name = "PEM"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,

    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        id = "tls.key_file",
        long = "tls-key",
        env = "FERROCAST_TLS_KEY",
        value_name = "PEM"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl TlsSettings {
    /// Whether TLS is off (no file set).
    fn is_off(&self) -> bool {
        self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The files to serve TLS with; `None` for plain TCP.
    pub fn files(&self) -> Option<TlsFiles> {
        match (&self.cert_file, &self.key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            }),
            _ => None,
        }
    }

    fn validate(&self) -> Result<(), String> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err("server.tls.cert_file is set but not server.tls.key_file: \
                                    TLS needs both"
                .into()),
            (None, Some(_)) => Err("server.tls.key_file is set but not server.tls.cert_file: \
                                    TLS needs both"
                .into()),
            _ => Ok(()),
        }
    }
}

/// The `[rate_limit]` table: per-client-address limits, each also a flag and an environment
/// variable. A limit is `{ max = N, window_secs = S }` in the file and `N/S` as a flag.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Whether the rate limits apply at all.
    #[arg(
        long = "rate-limit",
        env = "FERROCAST_RATE_LIMIT",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub enabled: bool,

    /// WebSocket connection attempts per client address and window, refused with HTTP 429
    /// before the upgrade (0/S: unlimited).
    #[arg(
        long = "rate-limit-ws-connects",
        env = "FERROCAST_RATE_LIMIT_WS_CONNECTS",
        default_value = "600/60",
        value_name = "MAX/SECS"
    )]
    pub ws_connects: Window,

    /// HTTP API requests per client address and window, refused with HTTP 429 (0/S, the
    /// default: unlimited, since a backend publishes from few addresses).
    #[arg(
        long = "rate-limit-api-requests",
        env = "FERROCAST_RATE_LIMIT_API_REQUESTS",
        default_value = "0/60",
        value_name = "MAX/SECS"
    )]
    pub api_requests: Window,

    /// Connections one client address may hold open on this node (0, the default: unlimited);
    /// more are refused with 4100.
    #[arg(
        long = "max-connections-per-ip",
        env = "FERROCAST_MAX_CONNECTIONS_PER_IP",
        default_value_t = 0
    )]
    pub max_connections_per_ip: u32,
}

/// The `[metrics]` table: the Prometheus listener, on an address of its own so that the
/// public port never serves metrics. Each key is also a flag and an environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Whether to serve Prometheus metrics at `/metrics` on `--metrics-host:--metrics-port`.
    #[arg(
        id = "metrics.enabled",
        long = "metrics",
        env = "FERROCAST_METRICS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        value_name = "BOOL"
    )]
    pub enabled: bool,

    /// Address the metrics listener binds (keep it private: metrics name the apps).
    #[arg(
        id = "metrics.host",
        long = "metrics-host",
        env = "FERROCAST_METRICS_HOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,

    /// Port of the metrics listener; 0 picks a free one.
    #[arg(
        id = "metrics.port",
        long = "metrics-port",
        env = "FERROCAST_METRICS_PORT",
        default_value_t = 9601
    )]
    pub port: u16,
}

/// The `[admin]` table: the debug console and `POST /admin/reload`, served on the metrics
/// listener's address and guarded by a token. No token: no console, no admin routes.
#[derive(Clone, Default, PartialEq, Eq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    /// Token the admin console and `/admin/*` require (as `?token=`, `Authorization: Bearer`
    /// or the console's cookie); setting it starts the metrics listener even without
    /// `--metrics`. Unset: the console is off.
    #[arg(
        id = "admin.token",
        long = "admin-token",
        env = "FERROCAST_ADMIN_TOKEN",
        value_name = "TOKEN"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminSettings {
    // The token is a secret: it never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .finish()
    }
}

impl Default for MetricsSettings {
    /// The built-in defaults: the declared `default_value`s, with no environment read.
    fn default() -> Self {
        declared_defaults()
    }
}

/// The engine's top-level settings that also have a flag and an environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args, Serialize)]
pub struct EngineOverrides {
    /// Prefix before `/app/{key}` in WebSocket URLs (e.g. `/ws`); replaces `path_prefix`.
    #[arg(long, env = "FERROCAST_PATH_PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

/// The `[cluster]` settings, each also a flag and an environment variable (their defaults are
/// the engine's, see [`ferrocast_engine::ClusterConfig`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Args, Serialize)]
pub struct ClusterOverrides {
    /// Redis joining this node to a cluster: `redis://[[user]:password@]host[:port][/db]`,
    /// `rediss://…` for TLS [default: none, a single node that needs no Redis].
    #[arg(
        long,
        env = "FERROCAST_REDIS_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,

    /// Names the cluster on its Redis (channel `{prefix}:bus`): clusters with different
    /// prefixes share a Redis without mixing [default: ferrocast].
    #[arg(long = "cluster-prefix", env = "FERROCAST_CLUSTER_PREFIX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,

    /// Milliseconds between a node's heartbeats on the bus [default: 1000].
    #[arg(long = "cluster-heartbeat-ms", env = "FERROCAST_CLUSTER_HEARTBEAT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_ms: Option<u64>,

    /// Milliseconds of silence after which a node is dropped with its members and counts
    /// [default: 5000].
    #[arg(
        long = "cluster-node-timeout-ms",
        env = "FERROCAST_CLUSTER_NODE_TIMEOUT_MS"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_timeout_ms: Option<u64>,
}

/// The first app's settings that also have a flag and an environment variable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args, Serialize)]
pub struct FirstAppOverrides {
    /// Replaces the first app's id.
    #[arg(long = "app-id", env = "FERROCAST_APP_ID")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,

    /// Replaces the first app's key.
    #[arg(long = "app-key", env = "FERROCAST_APP_KEY")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,

    /// Replaces the first app's secret.
    #[arg(
        long = "app-secret",
        env = "FERROCAST_APP_SECRET",
        hide_env_values = true
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl Default for ServerSettings {
    /// The built-in defaults: the declared `default_value`s, with no environment read.
    fn default() -> Self {
        declared_defaults()
    }
}

impl Default for RateLimitSettings {
    /// The built-in defaults: the declared `default_value`s, with no environment read.
    fn default() -> Self {
        declared_defaults()
    }
}

/// A settings struct filled from its declared `default_value`s alone.
fn declared_defaults<T: Args + FromArgMatches>() -> T {
    let command = T::augment_args(Command::new("defaults")).mut_args(|arg| {
        let no_env: Option<&str> = None;
        arg.env(no_env)
    });
    let matches = command
        .try_get_matches_from(["defaults"])
        .expect("every setting has a valid built-in default");
    T::from_arg_matches(&matches).expect("the defaults fill every field")
}

impl RateLimitSettings {
    /// The limiters these settings ask for (none when disabled).
    pub(crate) fn limits(&self) -> RateLimits {
        if !self.enabled {
            return RateLimits::default();
        }
        RateLimits {
            ws_connects: Limiter::new(self.ws_connects),
            api_requests: Limiter::new(self.api_requests),
        }
    }
}

impl ServerSettings {
    /// How webhook deliveries are retried.
    pub fn webhook_retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            request_timeout: Duration::from_secs(self.webhook_timeout_secs),
            give_up_after: Duration::from_secs(self.webhook_retry_window_secs),
            ..Default::default()
        }
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(format!(
                "server.workers must be between 1 and {MAX_WORKERS}, not {}",
                self.workers
            ));
        }
        let positive = [
            ("max_output_bytes", self.max_output_bytes as u64),
            ("max_output_frames", self.max_output_frames as u64),
            ("max_request_head_bytes", self.max_request_head_bytes as u64),
            ("max_request_headers", self.max_request_headers as u64),
            ("request_timeout_secs", self.request_timeout_secs),
            ("webhook_workers", self.webhook_workers as u64),
            ("webhook_queue_capacity", self.webhook_queue_capacity as u64),
            ("webhook_timeout_secs", self.webhook_timeout_secs),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("server.{name} must be at least 1"));
            }
        }
        if self.host.is_empty() {
            return Err("server.host is empty".into());
        }
        TrustedProxies::new(&self.trusted_proxies, self.trust_hops)?;
        if let Some(filter) = &self.log_level {
            EnvFilter::try_new(filter)
                .map_err(|e| format!("server.log_level {filter:?} is not a log filter: {e}"))?;
        }
        self.tls.validate()
    }
}

/// One I/O worker per core the process may use.
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_WORKERS)
}

/// The layers above the file: the settings given as flags or environment variables, as partial
/// TOML tables keyed like the file, so that merging needs no per-setting code.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    /// Keys of `[server]`.
    server: toml::Table,
    /// Top-level keys of the engine's part.
    engine: toml::Table,
    /// Keys of the first `[[apps]]` table.
    first_app: toml::Table,
    /// Keys of `[cluster]`.
    cluster: toml::Table,
    /// Keys of `[rate_limit]`.
    rate_limit: toml::Table,
    /// Keys of `[metrics]`.
    metrics: toml::Table,
    /// Keys of `[admin]`.
    admin: toml::Table,
    /// Keys of `[app_store]`.
    app_store: toml::Table,
}

impl Overrides {
    /// The settings parsed from `matches` that came from a flag or the environment rather
    /// than a built-in default.
    // One argument per settings table the command line flattens.
    #[allow(clippy::too_many_arguments)]
    pub fn given(
        server: &ServerSettings,
        engine: &EngineOverrides,
        first_app: &FirstAppOverrides,
        cluster: &ClusterOverrides,
        rate_limit: &RateLimitSettings,
        metrics: &MetricsSettings,
        admin: &AdminSettings,
        app_store: &AppStoreSettings,
        matches: &ArgMatches,
    ) -> Overrides {
        let mut server = table_of(server);
        retain_given(&mut server, "", matches);
        // Flat: a limit's `{ max, window_secs }` is one flag, not a sub-table of flags.
        let mut rate_limit = table_of(rate_limit);
        rate_limit.retain(|key, _| {
            matches!(
                matches.value_source(key),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            )
        });
        // Its flags' ids are dotted (`metrics.host`), apart from `[server]`'s `host`.
        let mut metrics = table_of(metrics);
        retain_given(&mut metrics, "metrics.", matches);
        let mut admin = table_of(admin);
        retain_given(&mut admin, "admin.", matches);
        let mut app_store = table_of(app_store);
        retain_given(&mut app_store, "app_store.", matches);
        Overrides {
            server,
            metrics,
            admin,
            app_store,
            engine: table_of(engine),
            first_app: table_of(first_app),
            cluster: table_of(cluster),
            rate_limit,
        }
    }

    /// Puts the engine and first-app overrides into the engine's part of the file.
    fn apply_to_engine(&self, engine: &mut toml::Table) {
        engine.extend(self.engine.clone());
        if !self.cluster.is_empty() {
            let cluster = engine
                .entry("cluster")
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            // A `cluster` that is not a table is malformed; the engine says so when it parses.
            if let Some(cluster) = cluster.as_table_mut() {
                cluster.extend(self.cluster.clone());
            }
        }
        if self.first_app.is_empty() {
            return;
        }
        // No `[[apps]]` means the engine's one default app, which an `[[apps]]` table holding
        // only the overrides reproduces (every app key has a default).
        let apps = engine
            .entry("apps")
            .or_insert_with(|| toml::Value::Array(vec![toml::Value::Table(toml::Table::new())]));
        if let Some(toml::Value::Table(first)) = apps.as_array_mut().and_then(|a| a.first_mut()) {
            first.extend(self.first_app.clone());
        }
        // Anything else is malformed, and the engine says so when it parses the file.
    }
}

/// Keeps the keys of `table` (at `path`) whose flag was given or whose environment variable
/// was set. A flag's id is its TOML path: the field's name, dotted under its sub-table.
fn retain_given(table: &mut toml::Table, path: &str, matches: &ArgMatches) {
    table.retain(|key, value| {
        let id = format!("{path}{key}");
        if let toml::Value::Table(inner) = value {
            retain_given(inner, &format!("{id}."), matches);
            return !inner.is_empty();
        }
        matches!(
            matches.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    });
}

/// Puts `layer`'s keys over `base`'s, merging sub-tables key by key.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// A value as the TOML table it serializes to (`None` fields left out).
fn table_of<T: Serialize>(value: &T) -> toml::Table {
    toml::Table::try_from(value).expect("settings structs serialize to a TOML table")
}

/// Everything the server runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The shell's settings.
    pub server: ServerSettings,
    /// The engine's settings.
    pub engine: Config,
    /// The per-client-address limits.
    pub rate_limit: RateLimitSettings,
    /// The Prometheus listener.
    pub metrics: MetricsSettings,
    /// The admin console's token.
    pub admin: AdminSettings,
    /// Where apps come from besides the file.
    pub app_store: AppStoreSettings,
}

impl Settings {
    /// Parses a configuration file's text (empty for none) under `overrides`, and validates it.
    pub fn load(text: &str, overrides: &Overrides) -> Result<Settings, String> {
        let mut table: toml::Table = text.parse().map_err(|e| format!("invalid TOML: {e}"))?;
        let server: ServerSettings = layered(text, &mut table, "server", &overrides.server)?;
        server.validate()?;
        let rate_limit: RateLimitSettings =
            layered(text, &mut table, "rate_limit", &overrides.rate_limit)?;
        let metrics: MetricsSettings = layered(text, &mut table, "metrics", &overrides.metrics)?;
        if metrics.host.is_empty() {
            return Err("metrics.host is empty".into());
        }
        let admin: AdminSettings = layered(text, &mut table, "admin", &overrides.admin)?;
        if admin.token.as_deref() == Some("") {
            return Err("admin.token is empty (leave it out to turn the console off)".into());
        }
        let app_store: AppStoreSettings =
            layered(text, &mut table, "app_store", &overrides.app_store)?;
        app_store.validate()?;
        overrides.apply_to_engine(&mut table);
        // With a database, the built-in example app is not served: only apps the file (or
        // the app flags) name explicitly are, beside the database's.
        if app_store.uses_database() && !table.contains_key("apps") {
            table.insert("apps".into(), toml::Value::Array(Vec::new()));
        }
        // The engine parses and validates its part itself, unknown keys included, once it
        // knows whether apps may come from a store.
        let rest = toml::to_string(&table).map_err(|e| format!("invalid TOML: {e}"))?;
        let mut engine: Config = toml::from_str(&rest).map_err(|e| e.to_string())?;
        engine.app_store = app_store.engine_config();
        engine.validate().map_err(|e| e.to_string())?;
        // Refusing a connection for capacity is a protocol answer (4100): the engine's.
        engine.max_node_connections = server.max_connections;
        engine.max_connections_per_address = if rate_limit.enabled {
            rate_limit.max_connections_per_ip
        } else {
            0
        };
        let settings = Settings {
            server,
            engine,
            rate_limit,
            metrics,
            admin,
            app_store,
        };
        settings.validate_cluster()?;
        Ok(settings)
    }

    /// The bus link's configuration when this server is a cluster node (a Redis URL is set).
    pub fn bus_config(&self) -> Option<Result<BusConfig, BusConfigError>> {
        let cluster = &self.engine.cluster;
        let url = cluster.redis_url.as_ref()?;
        Some(BusConfig::new(url.as_str(), cluster.prefix.as_str()))
    }

    fn validate_cluster(&self) -> Result<(), String> {
        let cluster = &self.engine.cluster;
        if cluster.heartbeat_ms == 0 {
            return Err("cluster.heartbeat_ms must be at least 1".into());
        }
        // A node must get several chances to be heard before it is declared dead.
        if cluster.node_timeout_ms <= cluster.heartbeat_ms {
            return Err(format!(
                "cluster.node_timeout_ms ({}) must be greater than cluster.heartbeat_ms ({})",
                cluster.node_timeout_ms, cluster.heartbeat_ms
            ));
        }
        match self.bus_config() {
            Some(Err(error)) => Err(error.to_string()),
            _ => Ok(()),
        }
    }

    /// The effective configuration as a TOML file would hold it, app secrets replaced by
    /// [`REDACTED`] and the Redis URL's password by `***`.
    pub fn to_redacted_toml(&self) -> Result<String, String> {
        let mut redacted = self.engine.clone();
        if let Some(url) = redacted.cluster.redis_url.as_mut() {
            *url = redact_url(url);
        }
        let mut engine = toml::Table::try_from(&redacted).map_err(|e| e.to_string())?;
        let mut apps = engine
            .remove("apps")
            .unwrap_or_else(|| toml::Value::Array(Vec::new()));
        for app in apps.as_array_mut().into_iter().flatten() {
            if let Some(app) = app.as_table_mut() {
                app.insert("secret".into(), REDACTED.into());
            }
        }
        // An empty list of apps (a database serves them) is a top-level key, which TOML
        // needs before any table.
        if apps.as_array().is_some_and(Vec::is_empty) {
            engine.insert(
                "apps".into(),
                std::mem::replace(&mut apps, toml::Value::Array(Vec::new())),
            );
        }
        // Top-level keys first (TOML needs them before any table), then `[server]`, then the
        // apps: the order of the README's example.
        let parts = [
            engine,
            toml::Table::from_iter([
                ("server".to_owned(), table_of(&self.server).into()),
                ("rate_limit".to_owned(), table_of(&self.rate_limit).into()),
                ("metrics".to_owned(), table_of(&self.metrics).into()),
                ("admin".to_owned(), self.redacted_admin().into()),
                ("app_store".to_owned(), self.app_store.redacted().into()),
            ]),
            toml::Table::from_iter(
                apps.as_array()
                    .is_some_and(|a| !a.is_empty())
                    .then(|| ("apps".to_owned(), apps)),
            ),
        ];
        let texts: Result<Vec<String>, _> = parts.iter().map(toml::to_string).collect();
        Ok(texts.map_err(|e| e.to_string())?.join("\n"))
    }

    /// `[admin]` with its token, if any, replaced by [`REDACTED`].
    fn redacted_admin(&self) -> toml::Table {
        let mut admin = table_of(&self.admin);
        if let Some(token) = admin.get_mut("token") {
            *token = REDACTED.into();
        }
        admin
    }

    /// The framing cap: the largest message any app accepts. Apps from a database keep the
    /// default size, which an app store therefore always allows.
    fn max_message_bytes(&self) -> usize {
        let file = self.engine.max_message_bytes();
        if self.app_store.uses_database() {
            file.max(ferrocast_engine::AppConfig::default().max_message_bytes)
        } else {
            file
        }
    }

    /// Whether the admin console and routes are on (a token is set).
    pub fn admin_enabled(&self) -> bool {
        self.admin.token.is_some()
    }

    /// The transport limits connections enforce.
    pub fn conn_limits(&self) -> ConnLimits {
        let s = &self.server;
        ConnLimits {
            head: HeadLimits {
                max_head_bytes: s.max_request_head_bytes,
                max_headers: s.max_request_headers,
                max_body_bytes: s.max_request_body_bytes,
            },
            max_message_bytes: self.max_message_bytes(),
            max_output_bytes: s.max_output_bytes,
            max_output_frames: s.max_output_frames,
            socket_send_buffer_bytes: s.socket_send_buffer_bytes,
            request_timeout: Duration::from_secs(s.request_timeout_secs),
            close_linger: Duration::from_millis(s.close_linger_ms),
            permessage_deflate: s.compression,
            keep_binary: false,
        }
    }
}

/// The shell's table `name` (taken out of the file's `table`): the defaults, then the file's
/// keys, then the overrides' keys.
fn layered<T: Default + Serialize + DeserializeOwned>(
    text: &str,
    table: &mut toml::Table,
    name: &str,
    overrides: &toml::Table,
) -> Result<T, String> {
    let in_file = match table.remove(name) {
        None => toml::Table::new(),
        Some(toml::Value::Table(in_file)) => in_file,
        Some(_) => return Err(format!("`{name}` must be a table")),
    };
    let parse = |table: toml::Table| {
        toml::Value::Table(table)
            .try_into::<T>()
            .map_err(|e| format!("in [{name}]: {}", e.message()))
    };
    let defaults = table_of(&T::default());
    let mut merged = defaults.clone();
    merge(&mut merged, in_file.clone());
    // The file is checked on its own, so that a flag cannot hide a mistake in it.
    if let Err(message) = parse(merged.clone()) {
        return Err(culprit::<T>(text, name, &defaults, in_file).unwrap_or(message));
    }
    merge(&mut merged, overrides.clone());
    parse(merged)
}

/// The first key of the file's table `[name]` that is wrong on its own, said with its line
/// and column in `text` (the table was taken out of the parsed file, which lost them).
fn culprit<T: DeserializeOwned>(
    text: &str,
    name: &str,
    defaults: &toml::Table,
    in_file: toml::Table,
) -> Option<String> {
    in_file.into_iter().find_map(|(key, value)| {
        let mut alone = defaults.clone();
        merge(&mut alone, toml::Table::from_iter([(key.clone(), value)]));
        let error = toml::Value::Table(alone).try_into::<T>().err()?;
        let place = match locate(text, name, &key) {
            Some((line, column)) => format!(" at line {line}, column {column}"),
            None => String::new(),
        };
        Some(format!("in [{name}]{place}: {key}: {}", error.message()))
    })
}

/// Where `key = …` is written under the header `[name]` of `text`, as a 1-based line and
/// column; `None` when it is written some other way (a dotted key, an inline table).
fn locate(text: &str, name: &str, key: &str) -> Option<(usize, usize)> {
    let mut inside = false;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(header) = trimmed.strip_prefix('[') {
            inside = header.split(']').next().map(str::trim) == Some(name);
        } else if inside {
            let rest = trimmed
                .strip_prefix(key)
                .or_else(|| trimmed.strip_prefix(&format!("\"{key}\"")));
            if rest.is_some_and(|rest| rest.trim_start().starts_with('=')) {
                return Some((index + 1, line.len() - trimmed.len() + 1));
            }
        }
    }
    None
}

mod app_store;
#[cfg(test)]
mod tests;
