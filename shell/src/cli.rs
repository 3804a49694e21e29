//! The command line: every flag also reads an environment variable (flags win).

use crate::settings::Overrides;
use clap::Parser;
use std::path::PathBuf;

/// Ferrocast: a Pusher Channels compatible real-time server.
#[derive(Clone, Debug, Parser)]
#[command(name = "ferrocast", version, about)]
pub struct Cli {
    /// TOML configuration file: a `[server]` table plus the engine's settings and `[[apps]]`.
    #[arg(short, long, env = "FERROCAST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on [default: 0.0.0.0].
    #[arg(long, env = "FERROCAST_HOST")]
    pub host: Option<String>,

    /// Port to listen on; 0 picks a free port [default: 6001].
    #[arg(short, long, env = "FERROCAST_PORT")]
    pub port: Option<u16>,

    /// I/O worker threads [default: the number of cores].
    #[arg(long, env = "FERROCAST_WORKERS")]
    pub workers: Option<usize>,

    /// Log filter (`info`, `debug`, `ferrocast=trace`, …); falls back to `RUST_LOG`, then `info`.
    #[arg(long, env = "FERROCAST_LOG_LEVEL", value_name = "FILTER")]
    pub log_level: Option<String>,

    /// Overrides the first app's id.
    #[arg(long, env = "FERROCAST_APP_ID")]
    pub app_id: Option<String>,

    /// Overrides the first app's key.
    #[arg(long, env = "FERROCAST_APP_KEY")]
    pub app_key: Option<String>,

    /// Overrides the first app's secret.
    #[arg(long, env = "FERROCAST_APP_SECRET", hide_env_values = true)]
    pub app_secret: Option<String>,

    /// Prefix before `/app/{key}` in WebSocket URLs (e.g. `/ws`).
    #[arg(long, env = "FERROCAST_PATH_PREFIX")]
    pub path_prefix: Option<String>,

    /// Most bytes queued for one connection before it is closed as a slow consumer.
    #[arg(long, env = "FERROCAST_MAX_OUTPUT_BYTES")]
    pub max_output_bytes: Option<usize>,

    /// Most frames queued for one connection before it is closed as a slow consumer.
    #[arg(long, env = "FERROCAST_MAX_OUTPUT_FRAMES")]
    pub max_output_frames: Option<usize>,

    /// Most bytes of an HTTP request line plus headers.
    #[arg(long, env = "FERROCAST_MAX_REQUEST_HEAD_BYTES")]
    pub max_request_head_bytes: Option<usize>,

    /// Most HTTP request headers.
    #[arg(long, env = "FERROCAST_MAX_REQUEST_HEADERS")]
    pub max_request_headers: Option<usize>,

    /// Most bytes of an HTTP request body.
    #[arg(long, env = "FERROCAST_MAX_REQUEST_BODY_BYTES")]
    pub max_request_body_bytes: Option<usize>,

    /// Seconds a connection has to complete a request or handshake.
    #[arg(long, env = "FERROCAST_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,

    /// Milliseconds allowed to flush and close a connection once its close is decided.
    #[arg(long, env = "FERROCAST_CLOSE_LINGER_MS")]
    pub close_linger_ms: Option<u64>,
}

impl Cli {
    /// The settings the flags and environment override.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            host: self.host.clone(),
            port: self.port,
            workers: self.workers,
            max_output_bytes: self.max_output_bytes,
            max_output_frames: self.max_output_frames,
            max_request_head_bytes: self.max_request_head_bytes,
            max_request_headers: self.max_request_headers,
            max_request_body_bytes: self.max_request_body_bytes,
            request_timeout_secs: self.request_timeout_secs,
            close_linger_ms: self.close_linger_ms,
            path_prefix: self.path_prefix.clone(),
            app_id: self.app_id.clone(),
            app_key: self.app_key.clone(),
            app_secret: self.app_secret.clone(),
        }
    }
}
