//! Loading the configuration: one TOML file whose `[server]` table belongs to the shell and
//! whose rest is the engine's [`Config`], then command-line and environment overrides.
//!
//! Precedence, lowest first: built-in defaults, the file, environment variables, flags.

use crate::conn::ConnLimits;
use crate::http::HeadLimits;
use crate::slots::MAX_WORKERS;
use ferrocast_engine::Config;
use serde::Deserialize;
use std::time::Duration;

/// The shell's own settings: the `[server]` table.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// I/O worker threads serving sockets (the engine runs on one more thread).
    pub workers: usize,
    /// Most bytes queued for one connection before it is a slow consumer.
    pub max_output_bytes: usize,
    /// Most frames queued for one connection before it is a slow consumer.
    pub max_output_frames: usize,
    /// Most bytes of an HTTP request line plus headers (else 431).
    pub max_request_head_bytes: usize,
    /// Most HTTP request headers (else 431).
    pub max_request_headers: usize,
    /// Most bytes of an HTTP request body (else 413).
    pub max_request_body_bytes: usize,
    /// Seconds a connection has to send a complete request or handshake; also the idle time
    /// allowed between keep-alive requests.
    pub request_timeout_secs: u64,
    /// Milliseconds allowed to flush and close a connection once its close is decided.
    pub close_linger_ms: u64,
    /// Threads delivering webhooks.
    pub webhook_workers: usize,
    /// Webhook deliveries that may wait for a worker; more are dropped and counted.
    pub webhook_queue_capacity: usize,
    /// Seconds one webhook POST may take.
    pub webhook_timeout_secs: u64,
    /// Seconds a refused webhook keeps being retried (with exponential back-off).
    pub webhook_retry_window_secs: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            host: "0.0.0.0".into(),
            port: 6001,
            workers: default_workers(),
            max_output_bytes: 1024 * 1024,
            max_output_frames: 4096,
            max_request_head_bytes: 8 * 1024,
            max_request_headers: 64,
            max_request_body_bytes: 1024 * 1024,
            request_timeout_secs: 10,
            close_linger_ms: 2000,
            webhook_workers: 2,
            webhook_queue_capacity: 10_000,
            webhook_timeout_secs: 10,
            webhook_retry_window_secs: 300,
        }
    }
}

impl ServerSettings {
    /// How webhook deliveries are retried.
    pub fn webhook_retry_policy(&self) -> crate::webhook_delivery::RetryPolicy {
        crate::webhook_delivery::RetryPolicy {
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
        Ok(())
    }
}

/// One I/O worker per core the process may use.
fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_WORKERS)
}

/// Values given on the command line or in the environment; `None` keeps the file's value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `server.host`.
    pub host: Option<String>,
    /// `server.port`.
    pub port: Option<u16>,
    /// `server.workers`.
    pub workers: Option<usize>,
    /// `server.max_output_bytes`.
    pub max_output_bytes: Option<usize>,
    /// `server.max_output_frames`.
    pub max_output_frames: Option<usize>,
    /// `server.max_request_head_bytes`.
    pub max_request_head_bytes: Option<usize>,
    /// `server.max_request_headers`.
    pub max_request_headers: Option<usize>,
    /// `server.max_request_body_bytes`.
    pub max_request_body_bytes: Option<usize>,
    /// `server.request_timeout_secs`.
    pub request_timeout_secs: Option<u64>,
    /// `server.close_linger_ms`.
    pub close_linger_ms: Option<u64>,
    /// The engine's `path_prefix`.
    pub path_prefix: Option<String>,
    /// The first app's `id`.
    pub app_id: Option<String>,
    /// The first app's `key`.
    pub app_key: Option<String>,
    /// The first app's `secret`.
    pub app_secret: Option<String>,
}

/// Everything the server runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The shell's settings.
    pub server: ServerSettings,
    /// The engine's settings.
    pub engine: Config,
}

impl Settings {
    /// Parses a configuration file's text (empty for none) and applies `overrides`.
    pub fn load(text: &str, overrides: &Overrides) -> Result<Settings, String> {
        let mut table: toml::Table = text.parse().map_err(|e| format!("invalid TOML: {e}"))?;
        let server = match table.remove("server") {
            None => ServerSettings::default(),
            Some(value @ toml::Value::Table(_)) => value
                .try_into::<ServerSettings>()
                .map_err(|e| format!("in [server]: {}", e.message()))?,
            Some(_) => return Err("`server` must be a table".into()),
        };
        // The engine parses and validates its part itself, unknown keys included.
        let rest = toml::to_string(&table).map_err(|e| format!("invalid TOML: {e}"))?;
        let engine = Config::from_toml(&rest).map_err(|e| e.to_string())?;
        let mut settings = Settings { server, engine };
        settings.apply(overrides)?;
        Ok(settings)
    }

    fn apply(&mut self, o: &Overrides) -> Result<(), String> {
        let server = &mut self.server;
        set(&mut server.host, &o.host);
        set(&mut server.port, &o.port);
        set(&mut server.workers, &o.workers);
        set(&mut server.max_output_bytes, &o.max_output_bytes);
        set(&mut server.max_output_frames, &o.max_output_frames);
        set(
            &mut server.max_request_body_bytes,
            &o.max_request_body_bytes,
        );
        set(&mut server.request_timeout_secs, &o.request_timeout_secs);
        server.validate()?;
        set(&mut self.engine.path_prefix, &o.path_prefix);
        if let Some(app) = self.engine.apps.first_mut() {
            set(&mut app.id, &o.app_id);
            set(&mut app.key, &o.app_key);
            set(&mut app.secret, &o.app_secret);
        }
        self.engine.validate().map_err(|e| e.to_string())
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
            max_message_bytes: self.engine.max_message_bytes(),
            max_output_bytes: s.max_output_bytes,
            max_output_frames: s.max_output_frames,
            request_timeout: Duration::from_secs(s.request_timeout_secs),
            close_linger: Duration::from_millis(s.close_linger_ms),
        }
    }
}

fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_given_serves_the_default_app_on_6001() {
        let settings = Settings::load("", &Overrides::default()).unwrap();
        assert_eq!(settings.server, ServerSettings::default());
        assert_eq!(settings.server.port, 6001);
        assert_eq!(settings.engine.apps[0].key, "app-key");
        assert!(settings.engine.uses_default_credentials());
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
    fn overrides_win_over_the_file_and_are_validated() {
        let overrides = Overrides {
            port: Some(0),
            host: Some("127.0.0.1".into()),
            app_key: Some("real-key".into()),
            app_secret: Some("real-secret".into()),
            ..Overrides::default()
        };
        let settings = Settings::load("[server]\nport = 7000\n", &overrides).unwrap();
        assert_eq!(settings.server.port, 0);
        assert_eq!(settings.server.host, "127.0.0.1");
        assert_eq!(settings.engine.apps[0].key, "real-key");
        assert!(!settings.engine.uses_default_credentials());

        let bad = Overrides {
            app_key: Some(String::new()),
            ..Overrides::default()
        };
        assert!(Settings::load("", &bad).is_err());
        let bad = Overrides {
            max_output_bytes: Some(0),
            ..Overrides::default()
        };
        assert!(Settings::load("", &bad).is_err());
    }

    #[test]
    fn workers_default_to_the_cores_and_must_be_in_range() {
        let settings = Settings::load("", &Overrides::default()).unwrap();
        assert!(settings.server.workers >= 1);
        let file = Settings::load("[server]\nworkers = 3\n", &Overrides::default()).unwrap();
        assert_eq!(file.server.workers, 3);
        let flag = Overrides {
            workers: Some(1),
            ..Overrides::default()
        };
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
}
