//! The Ferrocast server shell: sockets, time, signals and configuration around the sans-IO
//! [`ferrocast_engine`]. The shell holds no protocol rules; it frames bytes and moves them.
//!
//! Every module is private: what is exported below is what the binary, the integration tests,
//! the fuzz targets and the loom models use, so anything else unused shows as dead code.

mod accept_log;
mod admin;
mod app_store;
mod bus;
mod cli;
mod cluster;
mod conn;
mod console;
mod deflate;
mod door;
mod engine_thread;
mod extensions;
mod forwarded;
mod http;
mod metrics;
mod metrics_server;
mod out_queue;
mod queue;
mod rate_limit;
mod route;
mod server;
mod settings;
mod slots;
mod supervisor;
mod tls;
mod transport;
mod wake;
mod webhook;
mod webhook_delivery;
mod worker;

/// Apps read from PostgreSQL or MySQL, for the store's integration tests.
pub use app_store::{AppLookups, AppStore, AppStoreStats, AppStoreStatsSnapshot};
/// The bus link's hand-off state, for its loom model.
#[cfg(loom)]
pub use bus::shared as bus_shared;
/// The Redis bus link of a cluster node.
pub use bus::{
    BusConfig, BusConfigError, BusEvent, BusSender, BusSink, BusStartError, BusStats,
    BusStatsSnapshot, RedisLink,
};
pub use cli::Cli;
pub use forwarded::{ClientAddress, TrustedProxies};
/// The HTTP request parser, for the `http_request` fuzz target and its corpus replay.
pub use http::{parse_head, parse_request, HeadLimits, Parsed, Refusal, RequestHead, Upgrade};
/// The bounded hand-off queue, for the loom models.
pub use queue::{bounded as bounded_queue, ProducerWake, Received, Receiver, Sender, Unsent};
pub use rate_limit::Window;
pub use server::Server;
pub use settings::{
    AppStoreDriver, AppStoreSettings, LogFormat, MetricsSettings, Overrides, RateLimitSettings,
    ServerSettings, Settings,
};
/// The shutdown request, for the loom models.
pub use supervisor::{Stop, StopLevel};
pub use tls::TlsFiles;
pub use wake::Wake;
pub use webhook::WebhookSink;
pub use webhook_delivery::{
    pool as webhook_pool, DeliveryStats, RetryPolicy, WebhookSender, WebhookWorkers,
};
