//! Server and per-app settings, parsed from TOML with every unknown key refused.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Everything the engine needs to know about its deployment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Optional prefix before `/app/{key}` (e.g. `/ws` → `/ws/app/{key}`).
    pub path_prefix: String,
    /// Seconds of silence after which the server pings a client; sent as `activity_timeout`.
    pub activity_timeout_secs: u64,
    /// Seconds a pinged client has to answer before it is closed with 4201.
    pub pong_timeout_secs: u64,
    /// Milliseconds webhook events are gathered before one batched POST.
    pub webhook_batch_ms: u64,
    /// Seconds `channel_vacated` and `member_removed` webhooks wait, cancelled by a return.
    pub webhook_leave_delay_secs: u64,
    /// The apps this server serves.
    pub apps: Vec<AppConfig>,
    /// How this node takes part in a cluster (used only by [`crate::Engine::new_node`]).
    pub cluster: crate::cluster::ClusterConfig,
    /// Connections this node holds at most, whatever their app (0: unlimited); more get 4100.
    /// The shell sets it from its `[server] max_connections`.
    #[serde(skip)]
    pub max_node_connections: u32,
    /// Connections one client address may hold on this node at once (0: unlimited); more get
    /// 4100. The shell sets it from its `[rate_limit] max_connections_per_ip`.
    #[serde(skip)]
    pub max_connections_per_address: u32,
    /// Whether and how apps missing from `apps` are asked of the shell's app store.
    /// The shell sets it from its `[app_store]` settings.
    #[serde(skip)]
    pub app_store: AppStoreConfig,
}

/// How the engine uses an app store outside it (a database the shell reads): unknown keys and
/// ids are looked up ([`crate::Output::LookupApp`]), their answers cached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppStoreConfig {
    /// Whether an unknown key or id is looked up; `false` refuses it at once (apps from the
    /// configuration only).
    pub lookups: bool,
    /// Seconds an app found in the store is served before it is asked for again.
    pub cache_ttl_secs: u64,
    /// Seconds a key or id the store does not have is refused without asking again.
    pub missing_ttl_secs: u64,
    /// Milliseconds a connection or request waits for the store's answer before it is refused
    /// as if the store were unavailable.
    pub lookup_timeout_ms: u64,
    /// Connections and requests that may wait for one lookup; more are refused at once.
    pub max_waiting_per_lookup: usize,
    /// Lookups that may be outstanding at once; a new unknown key beyond them is refused.
    pub max_lookups_in_flight: usize,
}

impl Default for AppStoreConfig {
    fn default() -> Self {
        AppStoreConfig {
            lookups: false,
            cache_ttl_secs: 60,
            missing_ttl_secs: 5,
            lookup_timeout_ms: 5_000,
            max_waiting_per_lookup: 10_000,
            max_lookups_in_flight: 1_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path_prefix: String::new(),
            activity_timeout_secs: 120,
            pong_timeout_secs: 30,
            webhook_batch_ms: 250,
            webhook_leave_delay_secs: 3,
            apps: vec![AppConfig::default()],
            cluster: crate::cluster::ClusterConfig::default(),
            max_node_connections: 0,
            max_connections_per_address: 0,
            app_store: AppStoreConfig::default(),
        }
    }
}

/// One app: its credentials, switches and limits.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// The app id used in HTTP API paths.
    pub id: String,
    /// The public key clients connect with.
    pub key: String,
    /// The secret every signature is keyed with.
    pub secret: String,
    /// A disabled app refuses connections with 4003.
    pub enabled: bool,
    /// Whether only TLS (`wss://`) connections are accepted; others are refused with 4000.
    pub require_tls: bool,
    /// Most simultaneous connections; more are refused with 4004. `None` means unlimited.
    pub max_connections: Option<u32>,
    /// Whether clients may send `client-` events.
    pub client_events: bool,
    /// Client events a connection may send per second before 4301.
    pub client_event_rate_per_sec: u32,
    /// Burst allowance of the client event token bucket.
    pub client_event_burst: u32,
    /// Whether connections must be authorized within `user_auth_timeout_secs`, else 4009: by a
    /// `pusher:signin` or, as in Pusher, a successful private or presence subscription.
    pub user_auth_required: bool,
    /// Seconds a connection has to sign in when sign-in is required.
    pub user_auth_timeout_secs: u64,
    /// Most members of one presence channel.
    pub max_presence_members: usize,
    /// Most bytes of one member's `user_info` JSON.
    pub max_presence_user_info_bytes: usize,
    /// Most bytes of one incoming WebSocket message; larger ones close with 1009.
    pub max_message_bytes: usize,
    /// Most characters of a channel name.
    pub max_channel_name_len: usize,
    /// Most characters of an event name.
    pub max_event_name_len: usize,
    /// Most user ids in a sign-in watchlist.
    pub max_watchlist_len: usize,
    /// Most bytes of an event's `data`: an HTTP publish over it is answered 413, a client event
    /// over it gets `pusher:error` and is not relayed.
    pub max_event_payload_bytes: usize,
    /// Most channels one HTTP publish may name.
    pub max_event_channels: usize,
    /// Most events in one `batch_events` request.
    pub max_batch_size: usize,
    /// Events per second the HTTP API accepts for this app (each channel counts); `None`: no limit.
    pub max_events_per_sec: Option<u32>,
    /// HTTP read requests (channel queries) per second; `None`: no limit.
    pub max_reads_per_sec: Option<u32>,
    /// Seconds a cache channel keeps its last event.
    pub cache_ttl_secs: u64,
    /// Whether subscribers of non-presence channels get `pusher_internal:subscription_count`.
    pub subscription_count_events: bool,
    /// Where to POST webhooks, and which events each endpoint wants.
    pub webhooks: Vec<WebhookConfig>,
    /// Origins whose pages may connect (`*`, `scheme://host[:port]`, `scheme://*.domain`);
    /// empty allows any. A handshake from another origin is refused with 4009.
    pub allowed_origins: Vec<String>,
    /// Whether a handshake without an `Origin` header (a server-side client) is refused too.
    pub require_origin: bool,
    /// Whether this app's messages may be sent compressed to connections that negotiated
    /// permessage-deflate; `false` sends them plain (negotiation itself is server-wide).
    pub compression: bool,
}

/// One webhook endpoint of an app.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The `http://` URL to POST to.
    pub url: String,
    /// The event names it wants (`channel_occupied`, …); empty means all of them except
    /// the chatty `subscription_count`, which must be asked for by name.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Extra headers sent with each POST (an `Authorization` the backend expects, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Which channels' events it wants; none: every channel's.
    #[serde(default)]
    pub filter: Option<WebhookFilter>,
}

/// A webhook endpoint's choice of channels by name; a channel must match every part given.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WebhookFilter {
    /// Only channels whose name starts with this.
    #[serde(default)]
    pub channel_name_starts_with: Option<String>,
    /// Only channels whose name ends with this.
    #[serde(default)]
    pub channel_name_ends_with: Option<String>,
}

impl WebhookFilter {
    /// Whether events of `channel` pass.
    pub fn admits(&self, channel: &str) -> bool {
        self.channel_name_starts_with
            .as_deref()
            .is_none_or(|prefix| channel.starts_with(prefix))
            && self
                .channel_name_ends_with
                .as_deref()
                .is_none_or(|suffix| channel.ends_with(suffix))
    }
}

/// Headers the server sets on every webhook POST itself, which an endpoint may not replace.
const RESERVED_WEBHOOK_HEADERS: [&str; 6] = [
    "content-type",
    "content-length",
    "host",
    "x-pusher-key",
    "x-pusher-signature",
    "transfer-encoding",
];

/// Why `name: value` cannot be sent as an endpoint's extra header, if it cannot.
fn webhook_header_problem(name: &str, value: &str) -> Option<&'static str> {
    // RFC 9110 token characters for names; values without control characters (CR and LF
    // above all, which would let a header smuggle another).
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Some("is not a valid header name");
    }
    if RESERVED_WEBHOOK_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Some("is set by the server itself");
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Some("has a control character in its value");
    }
    None
}

/// Every webhook event name the server can send.
pub const WEBHOOK_EVENT_TYPES: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

impl WebhookConfig {
    /// Whether this endpoint wants events named `name`.
    pub fn wants(&self, name: &str) -> bool {
        if self.event_types.is_empty() {
            name != "subscription_count"
        } else {
            self.event_types.iter().any(|t| t == name)
        }
    }
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            id: "app-id".into(),
            key: "app-key".into(),
            secret: "app-secret".into(),
            enabled: true,
            require_tls: false,
            max_connections: None,
            client_events: true,
            client_event_rate_per_sec: 10,
            client_event_burst: 10,
            user_auth_required: false,
            user_auth_timeout_secs: 30,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            max_message_bytes: 10 * 1024,
            max_channel_name_len: 200,
            max_event_name_len: 200,
            max_watchlist_len: 100,
            max_event_payload_bytes: 10 * 1024,
            max_event_channels: 100,
            max_batch_size: 10,
            max_events_per_sec: None,
            max_reads_per_sec: None,
            cache_ttl_secs: 30 * 60,
            subscription_count_events: false,
            webhooks: Vec::new(),
            allowed_origins: Vec::new(),
            require_origin: false,
            compression: true,
        }
    }
}

/// A configuration that cannot be served, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates a TOML document.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Whether any app still uses the built-in example credentials.
    pub fn uses_default_credentials(&self) -> bool {
        let default = AppConfig::default();
        self.apps
            .iter()
            .any(|a| a.key == default.key || a.secret == default.secret)
    }

    /// The largest message any app accepts (the shell's framing cap).
    pub fn max_message_bytes(&self) -> usize {
        self.apps
            .iter()
            .map(|a| a.max_message_bytes)
            .max()
            .unwrap_or(0)
    }

    /// Checks the settings that serde cannot: uniqueness, non-empty credentials, sane limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        // With an app store, every app may come from it.
        if self.apps.is_empty() && !self.app_store.lookups {
            return fail("no apps configured".into());
        }
        if self.activity_timeout_secs == 0 || self.pong_timeout_secs == 0 {
            return fail("activity_timeout_secs and pong_timeout_secs must be at least 1".into());
        }
        if !self.path_prefix.is_empty()
            && (!self.path_prefix.starts_with('/') || self.path_prefix.ends_with('/'))
        {
            return fail(format!(
                "path_prefix {:?} must start with '/' and not end with one",
                self.path_prefix
            ));
        }
        for (i, app) in self.apps.iter().enumerate() {
            app.validate()
                .map_err(|ConfigError(why)| ConfigError(format!("apps[{i}]{why}")))?;
            for (j, other) in self.apps.iter().enumerate().skip(i + 1) {
                if other.id == app.id || other.key == app.key {
                    return fail(format!("apps[{i}] and apps[{j}] share an id or a key"));
                }
            }
        }
        Ok(())
    }
}

impl AppConfig {
    /// Checks one app's settings that serde cannot (an app from a file or from an app store);
    /// the error starts where the caller's label for the app ends (`.key …`, `: …`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        for (field, value) in [
            ("id", &self.id),
            ("key", &self.key),
            ("secret", &self.secret),
        ] {
            if value.is_empty() {
                return fail(format!(".{field} is empty"));
            }
        }
        if !self
            .key
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'?')
        {
            return fail(format!(
                ".key {:?} has characters a URL path cannot carry",
                self.key
            ));
        }
        if self.max_message_bytes == 0
            || self.max_channel_name_len == 0
            || self.max_event_name_len == 0
        {
            return fail(": size limits must be at least 1".into());
        }
        if self.client_event_rate_per_sec == 0 || self.client_event_burst == 0 {
            return fail(": client event rate and burst must be at least 1".into());
        }
        if self.max_batch_size == 0
            || self.max_event_channels == 0
            || self.max_events_per_sec == Some(0)
            || self.max_reads_per_sec == Some(0)
        {
            return fail(": batch, channel and rate limits must be at least 1".into());
        }
        for hook in &self.webhooks {
            if !hook.url.starts_with("http://") && !hook.url.starts_with("https://") {
                return fail(format!(
                    ": webhook url {:?} must start with http:// or https://",
                    hook.url
                ));
            }
            if let Some(bad) = hook
                .event_types
                .iter()
                .find(|t| !WEBHOOK_EVENT_TYPES.contains(&t.as_str()))
            {
                return fail(format!(
                    ": unknown webhook event type {bad:?}; known: {WEBHOOK_EVENT_TYPES:?}"
                ));
            }
            for (name, value) in &hook.headers {
                if let Some(problem) = webhook_header_problem(name, value) {
                    return fail(format!(": webhook header {name:?} {problem}"));
                }
            }
        }
        for pattern in &self.allowed_origins {
            if let Err(why) = crate::origin::OriginPattern::parse(pattern) {
                return fail(format!(
                    " (id {:?}): allowed_origins entry {pattern:?}: {why}",
                    self.id
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook_with_header(name: &str, value: &str) -> WebhookConfig {
        WebhookConfig {
            url: "http://127.0.0.1:9/".into(),
            headers: BTreeMap::from([(name.to_owned(), value.to_owned())]),
            ..WebhookConfig::default()
        }
    }

    /// Each single bad setting, applied to an otherwise valid config, must be refused alone.
    #[test]
    fn every_validation_rule_refuses_its_own_bad_value() {
        type Edit = fn(&mut Config);
        let edits: [(&str, Edit); 28] = [
            ("no apps", |c| c.apps.clear()),
            ("activity 0", |c| c.activity_timeout_secs = 0),
            ("pong 0", |c| c.pong_timeout_secs = 0),
            ("prefix without /", |c| c.path_prefix = "ws".into()),
            ("prefix ending in /", |c| c.path_prefix = "/ws/".into()),
            ("empty id", |c| c.apps[0].id.clear()),
            ("empty key", |c| c.apps[0].key.clear()),
            ("empty secret", |c| c.apps[0].secret.clear()),
            ("key with /", |c| c.apps[0].key = "a/b".into()),
            ("key with ?", |c| c.apps[0].key = "a?b".into()),
            ("key with space", |c| c.apps[0].key = "a b".into()),
            ("message 0", |c| c.apps[0].max_message_bytes = 0),
            ("channel name 0", |c| c.apps[0].max_channel_name_len = 0),
            ("event name 0", |c| c.apps[0].max_event_name_len = 0),
            ("client rate 0", |c| c.apps[0].client_event_rate_per_sec = 0),
            ("client burst 0", |c| c.apps[0].client_event_burst = 0),
            ("batch 0", |c| c.apps[0].max_batch_size = 0),
            ("channels 0", |c| c.apps[0].max_event_channels = 0),
            ("events/s 0", |c| c.apps[0].max_events_per_sec = Some(0)),
            ("reads/s 0", |c| c.apps[0].max_reads_per_sec = Some(0)),
            ("webhook scheme", |c| {
                c.apps[0].webhooks = vec![WebhookConfig {
                    url: "ftp://x".into(),
                    ..WebhookConfig::default()
                }]
            }),
            ("webhook header name", |c| {
                c.apps[0].webhooks = vec![hook_with_header("a b", "1")]
            }),
            ("webhook header value", |c| {
                c.apps[0].webhooks = vec![hook_with_header("X-Token", "a\r\nX-Evil: 1")]
            }),
            ("webhook header reserved", |c| {
                c.apps[0].webhooks = vec![hook_with_header("x-pusher-signature", "forged")]
            }),
            ("origin without scheme", |c| {
                c.apps[0].allowed_origins = vec!["https://ok.test".into(), "ok.test".into()]
            }),
            ("origin with a path", |c| {
                c.apps[0].allowed_origins = vec!["https://ok.test/".into()]
            }),
            ("duplicate id", |c| {
                let mut other = c.apps[0].clone();
                other.key = "other-key".into();
                c.apps.push(other);
            }),
            ("duplicate key", |c| {
                let mut other = c.apps[0].clone();
                other.id = "other-id".into();
                c.apps.push(other);
            }),
        ];
        let valid = Config {
            path_prefix: "/ws".into(),
            ..Config::default()
        };
        assert_eq!(valid.validate(), Ok(()));
        let mut two_apps = valid.clone();
        let mut second = valid.apps[0].clone();
        (second.id, second.key) = ("2".into(), "k2".into());
        second.webhooks = vec![WebhookConfig {
            url: "https://hooks.test/".into(),
            event_types: vec![],
            ..Default::default()
        }];
        second.allowed_origins = vec![
            "*".into(),
            "https://a.test".into(),
            "http://*.a.test:8080".into(),
        ];
        two_apps.apps.push(second);
        assert_eq!(two_apps.validate(), Ok(()));
        for (what, edit) in edits {
            let mut config = valid.clone();
            edit(&mut config);
            let error = config.validate().expect_err(what);
            assert!(!error.to_string().is_empty(), "{what}: the error says why");
        }
    }

    #[test]
    fn default_credentials_and_the_framing_cap_are_read_across_apps() {
        let mut config = Config::default();
        assert!(config.uses_default_credentials());
        config.apps[0].key = "real-key".into();
        assert!(
            config.uses_default_credentials(),
            "the secret is still the example one"
        );
        config.apps[0].secret = "real-secret".into();
        assert!(!config.uses_default_credentials());
        config.apps[0].key = "app-key".into();
        assert!(
            config.uses_default_credentials(),
            "the key is the example one"
        );
        config.apps[0].key = "real-key".into();
        let mut second = config.apps[0].clone();
        (second.id, second.key, second.max_message_bytes) = ("2".into(), "k2".into(), 70_000);
        config.apps.push(second);
        assert_eq!(config.max_message_bytes(), 70_000);
        assert_eq!(
            Config {
                apps: vec![],
                ..config
            }
            .max_message_bytes(),
            0
        );
    }

    #[test]
    fn empty_document_gives_the_default_app() {
        let config = Config::from_toml("").unwrap();
        assert_eq!(config, Config::default());
        assert!(config.uses_default_credentials());
    }

    #[test]
    fn apps_and_limits_parse() {
        let config = Config::from_toml(
            "activity_timeout_secs = 60\n[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nmax_connections = 5\nclient_events = false\n",
        )
        .unwrap();
        assert_eq!(config.activity_timeout_secs, 60);
        assert_eq!(config.apps[0].max_connections, Some(5));
        assert!(!config.apps[0].client_events);
        assert_eq!(config.apps[0].max_presence_members, 100);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        assert!(Config::from_toml("activity_timeout = 3").is_err());
        assert!(
            Config::from_toml("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\ncolour = 1")
                .is_err()
        );
        assert!(Config::from_toml("[[apps]]\nid = \"1\"\nkey = \"\"\nsecret = \"s\"").is_err());
        assert!(Config::from_toml("activity_timeout_secs = 0").is_err());
        assert!(Config::from_toml("path_prefix = \"ws\"").is_err());
        let hook = |t: &str| {
            format!("[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n[[apps.webhooks]]\nurl = \"http://x/\"\nevent_types = [\"{t}\"]")
        };
        assert!(Config::from_toml(&hook("member_added")).is_ok());
        assert!(Config::from_toml(&hook("member_joined"))
            .unwrap_err()
            .0
            .contains("unknown webhook event"));
        let origins = Config::from_toml(
            "[[apps]]\nid = \"shop\"\nkey = \"k\"\nsecret = \"s\"\nallowed_origins = [\"https://*.shop.test\"]\nrequire_origin = true",
        )
        .unwrap();
        assert_eq!(origins.apps[0].allowed_origins, ["https://*.shop.test"]);
        assert!(origins.apps[0].require_origin);
        let bad_origin = Config::from_toml(
            "[[apps]]\nid = \"shop\"\nkey = \"k\"\nsecret = \"s\"\nallowed_origins = [\"https://shop.test/\"]",
        )
        .unwrap_err()
        .0;
        assert!(
            bad_origin.contains("\"shop\"") && bad_origin.contains("https://shop.test/"),
            "the error names the app and the pattern: {bad_origin}"
        );
        let dup = "[[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\n[[apps]]\nid = \"2\"\nkey = \"k\"\nsecret = \"t\"";
        assert!(Config::from_toml(dup).unwrap_err().0.contains("share"));
    }
}
