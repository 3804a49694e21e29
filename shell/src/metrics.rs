//! What the metrics listener reports, gathered from the threads that count it.
//!
//! Nothing here is a global registry. Each I/O worker bumps its own [`WorkerStats`] (relaxed
//! atomics on a cache line of their own), the webhook threads and the bus link keep their
//! existing counters, and the engine, which owns its state, is asked for a snapshot through
//! the [`EngineBoard`]: the scraper raises a flag and pushes a `Tick` into the door; the
//! engine thread sees the flag after its batch, copies [`Engine::metrics`] onto the board and
//! signals. So a scrape sees the engine exactly as it was after the last input before it,
//! costs the engine nothing between scrapes, and never blocks a worker. The text is encoded
//! per scrape from those sums by `prometheus-client` (OpenMetrics text format).
//!
//! [`Engine::metrics`]: ferrocast_engine::Engine::metrics

use crate::app_store::{AppStoreStats, AppStoreStatsSnapshot};
use crate::bus::BusStats;
use crate::queue::Sender;
use crate::webhook_delivery::DeliveryStats;
use ferrocast_engine::{ChannelKind, EngineMetrics, Input, WebhookDelivery};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// The prefix of every metric name.
const PREFIX: &str = "ferrocast";
/// Statuses the shell answers by itself before the engine sees a request; others count as 0.
const REFUSAL_STATUSES: [u16; 8] = [400, 404, 405, 408, 413, 426, 429, 431];
/// Upper bounds of the engine batch latency buckets, in seconds (10 µs to 250 ms).
const BATCH_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25,
];
/// How long a scrape waits for the engine's snapshot before it reports the last one.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

/// One I/O worker's counters; only that worker writes them, a scrape sums every worker's.
// A cache line (two, for adjacent-line prefetching) per worker, so workers never share one.
#[repr(align(128))]
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    /// Sockets accepted by this worker or handed to it.
    pub(crate) accepted: AtomicU64,
    /// Bytes read from sockets (plaintext, after TLS).
    pub(crate) bytes_received: AtomicU64,
    /// Bytes written to sockets (plaintext, before TLS).
    pub(crate) bytes_sent: AtomicU64,
    /// HTTP requests handed to the engine.
    pub(crate) http_requests: AtomicU64,
    /// Connections closed because their output queue overflowed.
    pub(crate) slow_consumers: AtomicU64,
    /// Socket writes (`writev`) that carried WebSocket frames.
    pub(crate) ws_writes: AtomicU64,
    /// WebSocket frames written: divided by `ws_writes`, how many frames one write carries.
    pub(crate) ws_frames_written: AtomicU64,
    /// WebSocket handshakes refused by the per-address connect limit.
    pub(crate) ws_connects_limited: AtomicU64,
    /// HTTP requests refused by the per-address API limit.
    pub(crate) api_requests_limited: AtomicU64,
    /// Requests the shell refused itself, by status ([`REFUSAL_STATUSES`], then any other).
    refusals: [AtomicU64; REFUSAL_STATUSES.len() + 1],
}

impl WorkerStats {
    /// Adds `n` to `counter` (one of this worker's own).
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a request the shell refused with `status`.
    pub(crate) fn refused(&self, status: u16) {
        let slot = REFUSAL_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(REFUSAL_STATUSES.len());
        Self::add(&self.refusals[slot], 1);
    }
}

/// Every worker's counters, indexed by worker.
pub(crate) type ShellStats = Arc<[WorkerStats]>;

/// Counters for `workers` workers.
pub(crate) fn shell_stats(workers: usize) -> ShellStats {
    (0..workers).map(|_| WorkerStats::default()).collect()
}

/// What the engine thread last published.
#[derive(Debug, Default)]
struct Published {
    /// Bumped at each publication, so a scraper knows its request was answered.
    generation: u64,
    engine: EngineMetrics,
    bus: ferrocast_engine::BusStats,
    peers: usize,
}

/// Where the engine thread publishes its snapshot when asked, and its batch latency.
#[derive(Debug)]
pub(crate) struct EngineBoard {
    asked: AtomicBool,
    published: Mutex<Published>,
    ready: Condvar,
    /// Seconds from taking a batch of inputs to having routed every output.
    batch_seconds: Histogram,
}

impl Default for EngineBoard {
    fn default() -> Self {
        EngineBoard {
            asked: AtomicBool::new(false),
            published: Mutex::new(Published::default()),
            ready: Condvar::new(),
            batch_seconds: Histogram::new(BATCH_BUCKETS),
        }
    }
}

impl EngineBoard {
    /// Whether a scraper is waiting for a snapshot (clears the request): checked by the
    /// engine thread after each batch, one relaxed swap when nobody asks.
    pub(crate) fn take_request(&self) -> bool {
        self.asked.load(Ordering::Relaxed) && self.asked.swap(false, Ordering::AcqRel)
    }

    /// Publishes the engine's snapshot and wakes the scrapers waiting for it.
    pub(crate) fn publish(
        &self,
        engine: EngineMetrics,
        bus: ferrocast_engine::BusStats,
        peers: usize,
    ) {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        published.generation += 1;
        published.engine = engine;
        published.bus = bus;
        published.peers = peers;
        self.ready.notify_all();
    }

    /// Records how long one batch took.
    pub(crate) fn observe_batch(&self, took: Duration) {
        self.batch_seconds.observe(took.as_secs_f64());
    }

    /// Asks the engine for a fresh snapshot and waits for it (at most [`SNAPSHOT_WAIT`]:
    /// an engine stopped or stuck leaves the last one, which is still worth reporting).
    fn fresh(&self, door: &Sender<Input>) -> (EngineMetrics, ferrocast_engine::BusStats, usize) {
        let published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        let asked_at = published.generation;
        self.asked.store(true, Ordering::Release);
        // A `Tick` is harmless at any time and wakes an idle engine; a full door means the
        // engine is busy and will look at the flag after its current batch anyway.
        let _ = door.try_send(&mut vec![Input::Tick]);
        let (published, _) = self
            .ready
            .wait_timeout_while(published, SNAPSHOT_WAIT, |p| p.generation == asked_at)
            .unwrap_or_else(|e| e.into_inner());
        (published.engine.clone(), published.bus, published.peers)
    }
}

/// Everything a scrape reads.
#[derive(Clone)]
pub(crate) struct Sources {
    /// The engine's snapshots.
    pub(crate) board: Arc<EngineBoard>,
    /// Where the scraper's `Tick` goes.
    pub(crate) door: Sender<Input>,
    /// The I/O workers' counters.
    pub(crate) workers: ShellStats,
    /// The webhook counters and queue, when webhooks are delivered.
    pub(crate) webhooks: Option<(Arc<DeliveryStats>, Sender<WebhookDelivery>)>,
    /// The bus link's counters and outgoing queue, for a cluster node.
    pub(crate) bus: Option<(Arc<BusStats>, crate::bus::BusSender)>,
    /// The app store's counters, when apps come from a database.
    pub(crate) app_store: Option<Arc<AppStoreStats>>,
}

impl Sources {
    /// The OpenMetrics text of everything, as of now.
    pub(crate) fn render(&self) -> String {
        let (engine, engine_bus, peers) = self.board.fresh(&self.door);
        let sum = |field: fn(&WorkerStats) -> &AtomicU64| -> u64 {
            self.workers
                .iter()
                .map(|w| field(w).load(Ordering::Relaxed))
                .sum()
        };
        let mut refusals = [0u64; REFUSAL_STATUSES.len() + 1];
        for worker in self.workers.iter() {
            for (total, count) in refusals.iter_mut().zip(&worker.refusals) {
                *total += count.load(Ordering::Relaxed);
            }
        }
        let shell = ShellSums {
            accepted: sum(|w| &w.accepted),
            bytes_received: sum(|w| &w.bytes_received),
            bytes_sent: sum(|w| &w.bytes_sent),
            http_requests: sum(|w| &w.http_requests),
            slow_consumers: sum(|w| &w.slow_consumers),
            ws_writes: sum(|w| &w.ws_writes),
            ws_frames_written: sum(|w| &w.ws_frames_written),
            ws_connects_limited: sum(|w| &w.ws_connects_limited),
            api_requests_limited: sum(|w| &w.api_requests_limited),
            refusals,
        };
        let webhooks = self.webhooks.as_ref().map(|(stats, queue)| WebhookSums {
            delivered: stats.delivered.load(Ordering::Relaxed),
            retried: stats.retried.load(Ordering::Relaxed),
            dropped_queue_full: stats.dropped_queue_full.load(Ordering::Relaxed),
            given_up: stats.given_up.load(Ordering::Relaxed),
            queued: queue.queued() as u64,
        });
        let bus = self.bus.as_ref().map(|(stats, sender)| BusSums {
            link: stats.snapshot(),
            engine: engine_bus,
            peers: peers as u64,
            queued: sender.queued() as u64,
        });
        let scrape = Scrape {
            engine,
            shell,
            webhooks,
            bus,
            app_store: self.app_store.as_ref().map(|stats| stats.snapshot()),
            batch_seconds: self.board.batch_seconds.clone(),
        };
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(scrape));
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a metric.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        text
    }
}

#[derive(Debug)]
struct ShellSums {
    accepted: u64,
    bytes_received: u64,
    bytes_sent: u64,
    http_requests: u64,
    slow_consumers: u64,
    ws_writes: u64,
    ws_frames_written: u64,
    ws_connects_limited: u64,
    api_requests_limited: u64,
    refusals: [u64; REFUSAL_STATUSES.len() + 1],
}

#[derive(Debug)]
struct WebhookSums {
    delivered: u64,
    retried: u64,
    dropped_queue_full: u64,
    given_up: u64,
    queued: u64,
}

#[derive(Debug)]
struct BusSums {
    link: crate::bus::BusStatsSnapshot,
    engine: ferrocast_engine::BusStats,
    peers: u64,
    queued: u64,
}

/// A per-app counter's name, help, and field.
type AppCounter = (
    &'static str,
    &'static str,
    fn(&ferrocast_engine::AppCounters) -> u64,
);

/// One scrape's numbers, encoded once.
#[derive(Debug)]
struct Scrape {
    engine: EngineMetrics,
    shell: ShellSums,
    webhooks: Option<WebhookSums>,
    bus: Option<BusSums>,
    app_store: Option<AppStoreStatsSnapshot>,
    batch_seconds: Histogram,
}

/// A metric's name, help and unit, and its samples, each with its labels.
struct Family<'a, const N: usize> {
    name: &'a str,
    help: &'a str,
    unit: Option<Unit>,
    samples: Vec<([(&'a str, String); N], u64)>,
}

impl<'a, const N: usize> Family<'a, N> {
    fn new(name: &'a str, help: &'a str) -> Self {
        Family {
            name,
            help,
            unit: None,
            samples: Vec::new(),
        }
    }

    fn bytes(mut self) -> Self {
        self.unit = Some(Unit::Bytes);
        self
    }

    fn sample(mut self, labels: [(&'a str, String); N], value: u64) -> Self {
        self.samples.push((labels, value));
        self
    }

    fn encode(&self, encoder: &mut DescriptorEncoder, kind: MetricType) -> fmt::Result {
        let mut family =
            encoder.encode_descriptor(self.name, self.help, self.unit.as_ref(), kind)?;
        for (labels, value) in &self.samples {
            let sample = family.encode_family(labels)?;
            match kind {
                MetricType::Gauge => ConstGauge::new(*value).encode(sample)?,
                _ => ConstCounter::new(*value).encode(sample)?,
            }
        }
        Ok(())
    }

    fn counter(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        self.encode(encoder, MetricType::Counter)
    }

    fn gauge(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        self.encode(encoder, MetricType::Gauge)
    }
}

/// One unlabelled sample.
fn single<'a>(name: &'a str, help: &'a str, value: u64) -> Family<'a, 0> {
    Family::new(name, help).sample([], value)
}

/// Every channel kind, in label order.
const KINDS: [ChannelKind; 5] = [
    ChannelKind::Public,
    ChannelKind::Private,
    ChannelKind::PrivateEncrypted,
    ChannelKind::Presence,
    ChannelKind::ServerToUser,
];

/// The label value of a channel kind.
fn kind_label(kind: ChannelKind) -> &'static str {
    match kind {
        ChannelKind::Public => "public",
        ChannelKind::Private => "private",
        ChannelKind::PrivateEncrypted => "private-encrypted",
        ChannelKind::Presence => "presence",
        ChannelKind::ServerToUser => "server-to-user",
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        self.encode_engine(&mut encoder)?;
        self.encode_shell(&mut encoder)?;
        if let Some(webhooks) = &self.webhooks {
            encode_webhooks(webhooks, &mut encoder)?;
        }
        if let Some(bus) = &self.bus {
            encode_bus(bus, &mut encoder)?;
        }
        if let Some(store) = &self.app_store {
            encode_app_store(store, &mut encoder)?;
        }
        let histogram = encoder.encode_descriptor(
            "engine_batch_duration",
            "Time the engine took over one batch of inputs, outputs routed",
            Some(&Unit::Seconds),
            self.batch_seconds.metric_type(),
        )?;
        self.batch_seconds.encode(histogram)
    }
}

impl Scrape {
    fn encode_engine(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let apps = &self.engine.apps;
        let per_app = |name, help, value: fn(&ferrocast_engine::AppMetrics) -> u64| {
            apps.iter()
                .fold(Family::new(name, help), |family, (id, app)| {
                    family.sample([("app_id", id.clone())], value(app))
                })
        };
        per_app("connected", "Open WebSocket connections", |a| a.connections).gauge(encoder)?;
        let counters: [AppCounter; 7] = [
            ("new_connections", "WebSocket connections accepted", |c| {
                c.new_connections
            }),
            (
                "disconnections",
                "Accepted WebSocket connections that ended",
                |c| c.disconnections,
            ),
            (
                "ws_messages_received",
                "WebSocket messages received from clients",
                |c| c.ws_messages_received,
            ),
            (
                "ws_messages_sent",
                "WebSocket messages queued for clients, one per recipient",
                |c| c.ws_messages_sent,
            ),
            (
                "client_events_relayed",
                "Client events relayed to their channel",
                |c| c.client_events_relayed,
            ),
            ("client_events_refused", "Client events refused", |c| {
                c.client_events_refused
            }),
            (
                "http_calls_received",
                "HTTP API requests addressed to the app",
                |c| c.http_calls,
            ),
        ];
        for (name, help, value) in counters {
            apps.iter()
                .fold(Family::new(name, help), |family, (id, app)| {
                    family.sample([("app_id", id.clone())], value(&app.counters))
                })
                .counter(encoder)?;
        }
        let bytes: [AppCounter; 4] = [
            (
                "ws_received",
                "Payload bytes of the WebSocket messages received",
                |c| c.ws_bytes_received,
            ),
            (
                "ws_transmitted",
                "Frame bytes of the WebSocket messages queued, per recipient",
                |c| c.ws_bytes_sent,
            ),
            (
                "http_received",
                "Body bytes of the HTTP API requests",
                |c| c.http_bytes_received,
            ),
            (
                "http_transmitted",
                "Body bytes of the HTTP API answers",
                |c| c.http_bytes_sent,
            ),
        ];
        for (name, help, value) in bytes {
            apps.iter()
                .fold(Family::new(name, help).bytes(), |family, (id, app)| {
                    family.sample([("app_id", id.clone())], value(&app.counters))
                })
                .counter(encoder)?;
        }
        let mut channels = Family::new("channels", "Occupied channels, by kind");
        let mut subscriptions = Family::new("subscriptions", "Channel subscriptions, by kind");
        let mut closes = Family::new(
            "connections_closed",
            "WebSocket connections the server closed, by close code",
        );
        for (id, app) in apps {
            // Every kind, zero included: a series that vanished would read as "no data".
            for kind in KINDS {
                let counts = app.channels.get(&kind).copied().unwrap_or_default();
                let labels = [
                    ("app_id", id.clone()),
                    ("kind", kind_label(kind).to_owned()),
                ];
                channels = channels.sample(labels.clone(), counts.channels);
                subscriptions = subscriptions.sample(labels, counts.subscriptions);
            }
            for (code, count) in &app.counters.closes {
                closes =
                    closes.sample([("app_id", id.clone()), ("code", code.to_string())], *count);
            }
        }
        channels.gauge(encoder)?;
        subscriptions.gauge(encoder)?;
        per_app(
            "presence_members",
            "Members of presence channels, summed over channels",
            |a| a.presence_members,
        )
        .gauge(encoder)?;
        closes.counter(encoder)?;
        self.engine
            .refused_connections
            .iter()
            .fold(
                Family::new(
                    "connections_refused",
                    "WebSocket handshakes refused by the protocol, by close code",
                ),
                |family, (code, count)| family.sample([("code", code.to_string())], *count),
            )
            .counter(encoder)
    }

    fn encode_shell(&self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let shell = &self.shell;
        single(
            "accepted_sockets",
            "TCP connections accepted",
            shell.accepted,
        )
        .counter(encoder)?;
        single(
            "socket_received",
            "Bytes read from client sockets",
            shell.bytes_received,
        )
        .bytes()
        .counter(encoder)?;
        single(
            "socket_transmitted",
            "Bytes written to client sockets",
            shell.bytes_sent,
        )
        .bytes()
        .counter(encoder)?;
        single(
            "http_requests",
            "HTTP requests handed to the engine",
            shell.http_requests,
        )
        .counter(encoder)?;
        single(
            "slow_consumer_closes",
            "Connections closed for reading too slowly",
            shell.slow_consumers,
        )
        .counter(encoder)?;
        single(
            "ws_writes",
            "Socket writes that carried WebSocket frames (one writev each)",
            shell.ws_writes,
        )
        .counter(encoder)?;
        single(
            "ws_frames_written",
            "WebSocket frames written to sockets",
            shell.ws_frames_written,
        )
        .counter(encoder)?;
        Family::new(
            "rate_limited",
            "Requests refused by a per-address rate limit",
        )
        .sample(
            [("limit", "ws_connect".to_owned())],
            shell.ws_connects_limited,
        )
        .sample(
            [("limit", "api_request".to_owned())],
            shell.api_requests_limited,
        )
        .counter(encoder)?;
        let statuses = REFUSAL_STATUSES
            .iter()
            .map(u16::to_string)
            .chain(["other".to_owned()]);
        statuses
            .zip(shell.refusals)
            .fold(
                Family::new(
                    "http_refused",
                    "Requests the server refused before the engine, by status",
                ),
                |family, (status, count)| family.sample([("status", status)], count),
            )
            .counter(encoder)
    }
}

fn encode_webhooks(webhooks: &WebhookSums, encoder: &mut DescriptorEncoder) -> fmt::Result {
    single(
        "webhook_queue_depth",
        "Webhook deliveries waiting for a thread",
        webhooks.queued,
    )
    .gauge(encoder)?;
    single(
        "webhook_delivered",
        "Webhook deliveries answered with a 2xx",
        webhooks.delivered,
    )
    .counter(encoder)?;
    single(
        "webhook_retries",
        "Failed webhook attempts scheduled again",
        webhooks.retried,
    )
    .counter(encoder)?;
    Family::new("webhook_dropped", "Webhook deliveries given up, by reason")
        .sample(
            [("reason", "queue_full".to_owned())],
            webhooks.dropped_queue_full,
        )
        .sample([("reason", "retry_window".to_owned())], webhooks.given_up)
        .counter(encoder)
}

fn encode_app_store(store: &AppStoreStatsSnapshot, encoder: &mut DescriptorEncoder) -> fmt::Result {
    single(
        "app_store_queries",
        "Queries sent to the app store's database (one per distinct app looked up or re-read)",
        store.queries,
    )
    .counter(encoder)?;
    single(
        "app_store_errors",
        "App store connection attempts and queries that failed, and rows refused as malformed",
        store.errors,
    )
    .counter(encoder)?;
    single(
        "app_store_up",
        "Whether the app store's database connection is open (1) or not (0)",
        u64::from(store.up),
    )
    .gauge(encoder)?;
    single(
        "app_store_notifications",
        "App changes heard from the database (PostgreSQL LISTEN/NOTIFY)",
        store.notifications,
    )
    .counter(encoder)
}

fn encode_bus(bus: &BusSums, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let (link, engine) = (&bus.link, &bus.engine);
    single(
        "bus_published",
        "Messages published on the cluster bus",
        link.published,
    )
    .counter(encoder)?;
    single(
        "bus_received",
        "Messages received from the cluster bus",
        link.received,
    )
    .counter(encoder)?;
    single(
        "bus_outgoing_queue_messages",
        "Messages waiting to be published: how far the bus lags behind this node",
        bus.queued,
    )
    .gauge(encoder)?;
    Family::new("bus_dropped", "Bus messages lost or ignored, by reason")
        .sample(
            [("reason", "publish_failed".to_owned())],
            link.publish_failures,
        )
        .sample([("reason", "queue_full".to_owned())], link.dropped_outgoing)
        .sample([("reason", "malformed".to_owned())], engine.malformed)
        .sample(
            [("reason", "foreign_version".to_owned())],
            engine.foreign_version,
        )
        .sample(
            [("reason", "other_cluster".to_owned())],
            engine.other_cluster,
        )
        .sample([("reason", "unknown_app".to_owned())], engine.unknown_app)
        .counter(encoder)?;
    single(
        "bus_outages",
        "Times the link to the bus was lost",
        link.outages,
    )
    .counter(encoder)?;
    single(
        "bus_sequence_gaps",
        "Gaps seen in other nodes' message sequences",
        engine.gaps,
    )
    .counter(encoder)?;
    single(
        "cluster_peers",
        "Other nodes this one counts as alive",
        bus.peers,
    )
    .gauge(encoder)?;
    // Seconds, so a float: the one sample that is not a count.
    let lag = engine.echo_lag_micros as f64 / 1e6;
    let empty: [(&str, String); 0] = [];
    let mut family = encoder.encode_descriptor(
        "bus_echo_lag_seconds",
        "How long this node's latest bus message took to come back to it: the bus's lag",
        None,
        MetricType::Gauge,
    )?;
    ConstGauge::new(lag).encode(family.encode_family(&empty)?)
}
