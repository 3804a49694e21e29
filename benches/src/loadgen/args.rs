//! Command-line options of the load generator, and the plan of a run they resolve to.

use clap::Parser;
use std::path::PathBuf;

/// End-to-end load generator for Pusher-compatible servers, with physical floors.
#[derive(Parser, Debug, Clone)]
#[command(name = "loadgen", version)]
pub(crate) struct Args {
    /// WebSocket URL: `ws://HOST:PORT` (the generator adds `/app/{key}?protocol=7`) or a full
    /// `ws://HOST:PORT/app/KEY?protocol=7` URL.
    #[arg(long)]
    pub ws_url: Option<String>,
    /// HTTP API base URL, `http://HOST:PORT` (default: the WebSocket host and port).
    #[arg(long)]
    pub http_url: Option<String>,
    /// App id of the HTTP API paths.
    #[arg(long, default_value = "app-id")]
    pub app_id: String,
    /// App key.
    #[arg(long, default_value = "app-key")]
    pub app_key: String,
    /// App secret (signs HTTP requests and private/presence subscriptions).
    #[arg(long, default_value = "app-secret")]
    pub app_secret: String,
    /// Process id of the server, to read its CPU time and memory from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Start this server binary on a free port (a fresh one per scenario) instead of `--ws-url`.
    #[arg(long, value_name = "PATH")]
    pub spawn_server: Option<PathBuf>,
    /// Do not pin the server and the generator to separate CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// CPU for the spawned server and the floor servers (default 0); with `--cluster`, a
    /// comma-separated list the nodes are pinned to in turn (default: every CPU in turn).
    #[arg(long = "server-cpu", value_delimiter = ',')]
    pub server_cpus: Option<Vec<usize>>,
    /// CPU for the generator and its workers.
    #[arg(long, default_value_t = 1)]
    pub generator_cpu: usize,
    /// Small sizes, one repeat: a few seconds in all.
    #[arg(long)]
    pub quick: bool,
    /// Repeats of each measurement (medians are reported).
    #[arg(long)]
    pub repeats: Option<u32>,
    /// Scenarios to run, comma-separated: fanout, channels, storm, idle, presence, sustained,
    /// sequential; with `--cluster`, cluster-fanout and cluster-connections; with
    /// `--app-store`, app-store [default: all of the mode].
    #[arg(long)]
    pub scenarios: Option<String>,
    /// Cluster mode (with `--spawn-server`): a `redis-server` from PATH and this many nodes
    /// joined through it; subscribers spread evenly over the nodes, publishes through the first.
    #[arg(long, value_name = "N")]
    pub cluster: Option<u32>,
    /// Subscribed connections of the cluster-connections scenario, spread over the nodes.
    #[arg(long, value_name = "COUNT")]
    pub cluster_connections: Option<u32>,
    /// Heartbeat of the cluster nodes, in milliseconds (short, so nodes know each other soon).
    #[arg(long, default_value_t = 200)]
    pub cluster_heartbeat_ms: u64,
    /// Fan-out subscriber counts, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub fanout_sizes: Option<Vec<u32>>,
    /// Publishes sent one at a time (each waits for every delivery) per repeat.
    #[arg(long)]
    pub single_publishes: Option<u32>,
    /// Publishes sent back to back in a burst per repeat.
    #[arg(long)]
    pub burst: Option<u32>,
    /// Connections (one channel each) of the many-channels scenario.
    #[arg(long)]
    pub channels: Option<u32>,
    /// HTTP requests (single triggers and batches) per repeat of the many-channels scenario.
    #[arg(long)]
    pub channel_requests: Option<u32>,
    /// Clients of the connection storm.
    #[arg(long)]
    pub storm: Option<u32>,
    /// Connection counts at which idle memory is measured, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub idle_steps: Option<Vec<u32>>,
    /// Members of the presence churn channel.
    #[arg(long, default_value_t = 100)]
    pub presence_members: u32,
    /// Leave/join rounds of the presence churn per repeat.
    #[arg(long)]
    pub presence_rounds: Option<u32>,
    /// Subscribers of the sustained-publishing scenario (one channel).
    #[arg(long)]
    pub sustained_subscribers: Option<u32>,
    /// Requests per repeat and mode of the sustained-publishing scenario.
    #[arg(long)]
    pub sustained_requests: Option<u32>,
    /// Keep-alive HTTP connections of the sustained publisher.
    #[arg(long, default_value_t = 4)]
    pub pipeline_connections: u32,
    /// Requests in flight on each of those connections (HTTP/1.1 pipelining).
    #[arg(long, default_value_t = 8)]
    pub pipeline_depth: u32,
    /// Events per `batch_events` request of the sustained scenario's batch mode (at most 10).
    #[arg(long, default_value_t = 10)]
    pub batch_size: u32,
    /// Clients of the sequential scenario, connected one handshake at a time.
    #[arg(long)]
    pub sequential: Option<u32>,
    /// Handshakes in flight at once while connecting.
    #[arg(long, default_value_t = 256)]
    pub inflight: u32,
    /// Clients per worker process (each process may hold at most its descriptor limit).
    #[arg(long, default_value_t = 8000)]
    pub per_worker: u32,
    /// Padding bytes in each event's data.
    #[arg(long, default_value_t = 80)]
    pub payload_bytes: usize,
    /// Write SVG charts of what the run measured (and the numbers, as `figures.json`) into DIR.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Soak instead of the scenarios (with `--spawn-server`): SECS of churn against the
    /// server, sampled every 10 s; fails unless its state returns to the baseline and its RSS
    /// did not grow.
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "600")]
    pub soak: Option<u64>,
    /// Client threads of the soak, each running one connection at a time.
    #[arg(long, default_value_t = 100)]
    pub soak_clients: u32,
    /// HTTP publishes per second during the soak.
    #[arg(long, default_value_t = 20)]
    pub soak_publish_rate: u32,
    /// Skip the floor measurements.
    #[arg(long)]
    pub no_floors: bool,
    /// Clients offer permessage-deflate (as browsers do) and inflate what arrives compressed.
    #[arg(long)]
    pub deflate: bool,
    /// With `--spawn-server`: after the plain run, run the fan-out, storm and idle scenarios
    /// again over TLS (`wss://` and `https://`, a self-signed certificate made for the run),
    /// against a TLS floor, and compare them with the plain figures.
    #[arg(long)]
    pub tls: bool,
    /// PEM certificate the clients trust for `wss://` (with `--tls`, the one made for the run).
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Internal: the floor serves TLS with this certificate (and `--floor-key`).
    #[arg(long, hide = true)]
    pub floor_cert: Option<PathBuf>,
    /// Internal: the private key of `--floor-cert`.
    #[arg(long, hide = true)]
    pub floor_key: Option<PathBuf>,
    /// The app-store scenario (with `--spawn-server`): a real database of this kind on
    /// loopback, connect+subscribe with the file store, a warm and a cold database store.
    #[arg(long, value_enum, value_name = "DRIVER")]
    pub app_store: Option<super::app_store::Driver>,
    /// Internal: run as a client worker.
    #[arg(long, hide = true)]
    pub worker: bool,
    /// Internal: run as a floor server.
    #[arg(long, hide = true)]
    pub floor_server: bool,
    /// Internal: run as the HTTP publish floor (signing with `--app-secret`).
    #[arg(long, hide = true)]
    pub floor_http: bool,
    /// Internal: the monotonic instant event timestamps count from.
    #[arg(long, hide = true, default_value_t = 0)]
    pub epoch_ns: u64,
    /// Internal: CPU to pin this process to.
    #[arg(long, hide = true)]
    pub cpu: Option<usize>,
}

/// The sizes of a run, after `--quick` and the explicit options.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Repeats of each measurement.
    pub repeats: u32,
    /// Scenarios to run.
    pub scenarios: Vec<String>,
    /// Fan-out subscriber counts.
    pub fanout_sizes: Vec<u32>,
    /// One-at-a-time publishes per repeat.
    pub single_publishes: u32,
    /// Burst publishes per repeat.
    pub burst: u32,
    /// Many-channels connections.
    pub channels: u32,
    /// Many-channels requests per repeat.
    pub channel_requests: u32,
    /// Storm clients.
    pub storm: u32,
    /// Idle memory steps.
    pub idle_steps: Vec<u32>,
    /// Presence members.
    pub presence_members: u32,
    /// Presence rounds per repeat.
    pub presence_rounds: u32,
    /// Nodes of the cluster mode (0: a single node, no Redis).
    pub cluster_nodes: u32,
    /// Connections of the cluster-connections scenario.
    pub cluster_connections: u32,
    /// Subscribers of the sustained scenario.
    pub sustained_subscribers: u32,
    /// Requests per repeat and mode of the sustained scenario.
    pub sustained_requests: u32,
    /// Clients of the sequential scenario.
    pub sequential: u32,
}

impl Args {
    /// The CPU of a single spawned server and of the floor servers.
    pub(crate) fn server_cpu(&self) -> usize {
        self.server_cpus
            .as_ref()
            .and_then(|cpus| cpus.first().copied())
            .unwrap_or(0)
    }

    /// Resolves the sizes of the run.
    pub(crate) fn plan(&self) -> Plan {
        let q = self.quick;
        let pick =
            |v: Option<u32>, quick: u32, full: u32| v.unwrap_or(if q { quick } else { full });
        let cluster_nodes = self.cluster.unwrap_or(0);
        let default_scenarios = if cluster_nodes > 0 {
            "cluster-fanout,cluster-connections"
        } else if self.app_store.is_some() {
            "app-store"
        } else {
            "fanout,channels,storm,idle,presence,sustained,sequential"
        };
        let scenarios = self
            .scenarios
            .as_deref()
            .unwrap_or(default_scenarios)
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let mut idle_steps = self.idle_steps.clone().unwrap_or_else(|| {
            if q {
                vec![200, 500]
            } else {
                vec![1000, 5000, 10_000, 19_000]
            }
        });
        idle_steps.sort_unstable();
        Plan {
            repeats: pick(self.repeats, 1, 3).max(1),
            scenarios,
            fanout_sizes: self.fanout_sizes.clone().unwrap_or_else(|| {
                match (q, cluster_nodes > 0) {
                    (true, _) => vec![200],
                    (false, true) => vec![1000, 5000],
                    (false, false) => vec![1000, 5000, 10_000],
                }
            }),
            single_publishes: pick(self.single_publishes, 5, 20).max(1),
            burst: pick(self.burst, 10, 100).max(1),
            channels: pick(self.channels, 300, 10_000).max(1),
            channel_requests: pick(self.channel_requests, 40, 1000).max(1),
            storm: pick(self.storm, 300, 10_000).max(1),
            idle_steps,
            presence_members: self.presence_members.max(2),
            presence_rounds: pick(self.presence_rounds, 20, 200).max(1),
            cluster_nodes,
            cluster_connections: pick(self.cluster_connections, 400, 50_000).max(1),
            sustained_subscribers: pick(self.sustained_subscribers, 200, 1000).max(1),
            sustained_requests: pick(self.sustained_requests, 40, 200).max(1),
            sequential: pick(self.sequential, 100, 2000).max(1),
        }
    }
}

impl Plan {
    /// Whether `name` is among the scenarios to run.
    pub(crate) fn runs(&self, name: &str) -> bool {
        self.scenarios.iter().any(|s| s == name)
    }

    /// The most clients any selected scenario holds at once.
    pub(crate) fn max_clients(&self) -> u32 {
        let mut most = 0;
        if self.runs("fanout") {
            most = most.max(self.fanout_sizes.iter().copied().max().unwrap_or(0));
        }
        if self.runs("channels") {
            most = most.max(self.channels);
        }
        if self.runs("storm") || self.runs("app-store") {
            most = most.max(self.storm);
        }
        if self.runs("idle") {
            most = most.max(self.idle_steps.last().copied().unwrap_or(0));
        }
        if self.runs("presence") {
            most = most.max(self.presence_members);
        }
        if self.runs("cluster-fanout") {
            most = most.max(self.fanout_sizes.iter().copied().max().unwrap_or(0));
        }
        if self.runs("sustained") {
            most = most.max(self.sustained_subscribers);
        }
        if self.runs("sequential") {
            most = most.max(self.sequential);
        }
        if self.runs("cluster-connections") {
            most = most.max(self.cluster_connections);
        }
        most
    }
}
