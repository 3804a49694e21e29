//! Replaying vectors over real sockets against a running Pusher-compatible server, or against
//! `ferrocast` binaries this runner starts with each vector's configuration.

pub mod http;
pub mod redis;
pub mod server;
pub mod ws;

use crate::config;
use crate::runner::{self, HttpAnswer, HttpCall, Outgoing, Received, Transport, Wait, WebhookPost};
use crate::template::{App, Context};
use crate::vector::{Step, Vector};
use crate::Outcome;
use server::ServerProcess;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use ws::WsClient;

/// Where and how to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// `host:port` of a running server (ignored with `server_bin`).
    pub target: Option<String>,
    /// A `ferrocast` binary to start per vector with the vector's configuration.
    pub server_bin: Option<PathBuf>,
    /// The app under test.
    pub app: App,
    /// Longest wait for an expected frame, response or webhook.
    pub timeout: Duration,
    /// How long `expect_nothing` listens.
    pub quiet: Duration,
    /// Vectors advancing more seconds than this in total are skipped.
    pub max_sleep_secs: f64,
    /// Scratch directory for configs and logs.
    pub work_dir: PathBuf,
    /// Skip vectors that expect webhooks (for servers that do not deliver them).
    pub skip_webhooks: bool,
    /// With `server_bin`: the nodes of a cluster to start per vector over `redis_url` (0 or
    /// 1: a single server). Clients are spread over the nodes in the order they first
    /// connect, and HTTP requests go to each node in turn.
    pub cluster_nodes: usize,
    /// The Redis the cluster's nodes share (each vector's nodes under a prefix of their own).
    pub redis_url: Option<String>,
}

impl Options {
    fn clustered(&self) -> bool {
        self.cluster_nodes > 1
    }
}

/// Longer than one bus delay on loopback, even on a loaded machine: the freshness a cluster
/// promises for channel queries and counts.
const CLUSTER_QUERY_SETTLE: Duration = Duration::from_millis(50);

/// The log line of a node whose cluster bus is connected, so that it sees the others.
const BUS_CONNECTED: &str = "cluster bus: connected";

/// Why a vector cannot run with these options, if it cannot.
pub fn skip_reason(vector: &Vector, options: &Options) -> Option<String> {
    if vector.has_tag("engine_only") {
        return Some("drives an engine input no socket can produce".into());
    }
    let over_tls = vector
        .steps
        .iter()
        .any(|s| matches!(s, Step::Connect { secure: true, .. }));
    if over_tls {
        return Some("connects over TLS (wss://), which this runner does not".into());
    }
    if vector.has_tag("needs_fake_clock") {
        return Some("needs the fake clock".into());
    }
    if vector.advanced_seconds() > options.max_sleep_secs {
        return Some(format!(
            "waits {}s of real time (limit {}s)",
            vector.advanced_seconds(),
            options.max_sleep_secs
        ));
    }
    let checks_webhooks = vector
        .steps
        .iter()
        .any(|s| matches!(s, Step::ExpectWebhook { .. } | Step::ExpectNoWebhook));
    if checks_webhooks && options.skip_webhooks {
        return Some("checks webhooks (--skip-webhooks)".into());
    }
    if checks_webhooks && options.server_bin.is_none() {
        return Some("checks webhooks, which needs the runner's receiver (--server-bin)".into());
    }
    if options.server_bin.is_none() && !config::is_default(vector.config.as_ref()) {
        return Some("needs its own server configuration (run with --server-bin)".into());
    }
    if options.clustered() && vector.has_tag("single_node") {
        return Some("pins what one node alone does".into());
    }
    None
}

/// Runs one vector live and classifies the result. A server that went away during the
/// vector makes it [`Outcome::ServerCrashed`]: with `server_bin`, a started process exited;
/// against `target`, the port refused a TCP connection after the vector failed (the caller
/// checked with [`accepts_connections`] that it accepted them before the run).
pub fn run_vector(
    vector: &Vector,
    options: &Options,
    webhooks: Option<&http::WebhookReceiver>,
) -> Outcome {
    if let Some(why) = skip_reason(vector, options) {
        return Outcome::Skip(why);
    }
    let (result, crash) = replay(vector, options, webhooks);
    let crash = crash.or_else(|| match (&result, &options.server_bin, &options.target) {
        (Err(_), None, Some(target)) => accepts_connections(target, options.timeout)
            .err()
            .map(|e| format!("the server stopped accepting connections ({e})")),
        _ => None,
    });
    match (crash, result) {
        (Some(why), Err(e)) => Outcome::ServerCrashed(format!("{why}; the vector failed at {e}")),
        (Some(why), Ok(())) => Outcome::ServerCrashed(why),
        (None, result) => Outcome::classify(vector, result),
    }
}

/// Whether `target` (`host:port`) accepts a TCP connection within `timeout`; `Err` says why not.
pub fn accepts_connections(target: &str, timeout: Duration) -> Result<(), String> {
    let addr = target
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {target}: {e}"))?
        .next()
        .ok_or_else(|| format!("{target} resolves to nothing"))?;
    std::net::TcpStream::connect_timeout(&addr, timeout)
        .map(drop)
        .map_err(|e| format!("connecting to {addr}: {e}"))
}

/// How long a failed vector waits for a started server to be seen exited: a dying process
/// closes its sockets (failing the vector) just before it can be reaped.
const EXIT_GRACE: Duration = Duration::from_millis(200);

/// Replays the vector; the second value says why the server is gone, when a started
/// process exited during the vector.
fn replay(
    vector: &Vector,
    options: &Options,
    webhooks: Option<&http::WebhookReceiver>,
) -> (Result<(), String>, Option<String>) {
    let mut servers = Vec::new();
    let result = replay_on(vector, options, webhooks, &mut servers);
    let grace = if result.is_err() {
        EXIT_GRACE
    } else {
        Duration::ZERO
    };
    let crash = servers.iter_mut().enumerate().find_map(|(node, server)| {
        let status = server.exited(grace)?;
        let which = if options.clustered() {
            format!("node {node} ")
        } else {
            String::new()
        };
        let log = server.log_tail();
        let log = if log.trim().is_empty() {
            "its log is empty".to_owned()
        } else {
            format!("its log: {log}")
        };
        Some(format!(
            "the server process {which}exited ({status}) during this vector; {log}"
        ))
    });
    (result, crash)
}

fn replay_on(
    vector: &Vector,
    options: &Options,
    webhooks: Option<&http::WebhookReceiver>,
    servers: &mut Vec<ServerProcess>,
) -> Result<(), String> {
    let (addrs, host) = match &options.server_bin {
        Some(bin) => {
            *servers = start_servers(bin, vector, options, webhooks)?;
            let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
            let host = addrs[0].to_string();
            (addrs, host)
        }
        None => {
            let target = options
                .target
                .clone()
                .ok_or("no --url or --server-bin given")?;
            let addr = target
                .to_socket_addrs()
                .map_err(|e| format!("cannot resolve {target}: {e}"))?
                .next()
                .ok_or_else(|| format!("{target} resolves to nothing"))?;
            (vec![addr], target)
        }
    };
    if let Some(w) = webhooks {
        w.take();
    }
    let mut transport = LiveTransport {
        addrs,
        host,
        clients: BTreeMap::new(),
        placement: BTreeMap::new(),
        http_calls: 0,
        last_sender_node: None,
        options,
        webhooks,
    };
    let mut ctx = Context::new(options.app.clone());
    let result = runner::run(vector, &mut transport, &mut ctx);
    for client in transport.clients.values_mut() {
        client.close(Duration::from_millis(500));
    }
    result
}

/// Starts the vector's server, or the nodes of its cluster, with its configuration.
fn start_servers(
    bin: &std::path::Path,
    vector: &Vector,
    options: &Options,
    webhooks: Option<&http::WebhookReceiver>,
) -> Result<Vec<ServerProcess>, String> {
    let url = webhooks.map(|w| w.url()).unwrap_or_default();
    let json = config::build(&options.app, vector.config.as_ref(), &url)?;
    let toml = config::to_toml(&json)?;
    let stem = vector.id.replace('/', "__");
    let config_path = options.work_dir.join(format!("{stem}.toml"));
    std::fs::write(&config_path, toml).map_err(|e| e.to_string())?;
    let wait = Duration::from_secs(10);
    if !options.clustered() {
        let log_path = options.work_dir.join(format!("{stem}.log"));
        return Ok(vec![ServerProcess::start(
            bin,
            &config_path,
            &[],
            &log_path,
            wait,
        )?]);
    }
    let redis = options
        .redis_url
        .as_deref()
        .ok_or("cluster mode needs a Redis URL")?;
    // A prefix per vector and run: nodes of an earlier vector still shutting down never mix in.
    let prefix = format!("conformance-{}-{stem}", std::process::id());
    let extra: Vec<String> = [
        "--redis-url",
        redis,
        "--cluster-prefix",
        &prefix,
        "--cluster-heartbeat-ms",
        "200",
        "--cluster-node-timeout-ms",
        "3000",
    ]
    .map(String::from)
    .to_vec();
    let mut nodes = Vec::with_capacity(options.cluster_nodes);
    for node in 0..options.cluster_nodes {
        let log_path = options.work_dir.join(format!("{stem}.node{node}.log"));
        nodes.push(ServerProcess::start(
            bin,
            &config_path,
            &extra,
            &log_path,
            wait,
        )?);
    }
    for node in &nodes {
        node.wait_for_log(BUS_CONNECTED, wait)?;
    }
    // Every node announces itself once connected and the others answer with snapshots; give
    // that exchange a moment so the first client sees a whole cluster.
    std::thread::sleep(Duration::from_millis(300));
    Ok(nodes)
}

/// A [`Transport`] over real sockets.
struct LiveTransport<'a> {
    /// The server, or each node of the cluster.
    addrs: Vec<SocketAddr>,
    host: String,
    clients: BTreeMap<String, WsClient>,
    /// The node each client connects to (fixed at its first connection).
    placement: BTreeMap<String, usize>,
    /// HTTP requests sent so far (they go to the nodes in turn).
    http_calls: usize,
    /// The node of the client that sent last: a message from another node's client may
    /// depend on what that one did (a count, a member list), which crosses the bus first.
    last_sender_node: Option<usize>,
    options: &'a Options,
    webhooks: Option<&'a http::WebhookReceiver>,
}

impl LiveTransport<'_> {
    fn client(&mut self, name: &str) -> Result<&mut WsClient, String> {
        self.clients
            .get_mut(name)
            .ok_or_else(|| format!("client {name:?} never connected"))
    }
}

impl Transport for LiveTransport<'_> {
    fn connect(
        &mut self,
        client: &str,
        path: &str,
        query: &str,
        origin: Option<&str>,
        secure: bool,
    ) -> Result<(), String> {
        if secure {
            // `skip_reason` keeps such vectors away; reaching here is a runner bug.
            return Err("the live runner connects over ws:// only".into());
        }
        if self.clients.get(client).is_some_and(|c| !c.is_closed()) {
            return Err(format!("client {client:?} is already connected"));
        }
        let next = self.placement.len() % self.addrs.len();
        let node = *self.placement.entry(client.to_owned()).or_insert(next);
        let ws = WsClient::connect(
            self.addrs[node],
            &self.host,
            path,
            query,
            origin,
            self.options.timeout,
        )?;
        self.clients.insert(client.to_owned(), ws);
        Ok(())
    }

    fn send(&mut self, client: &str, frame: Outgoing) -> Result<(), String> {
        let node = self.placement.get(client).copied();
        if self.addrs.len() > 1 && node.is_some() {
            if self.last_sender_node.is_some_and(|last| Some(last) != node) {
                // As for queries: the cluster promises freshness one bus delay after a change.
                std::thread::sleep(CLUSTER_QUERY_SETTLE);
            }
            self.last_sender_node = node;
        }
        self.client(client)?.send(frame)
    }

    fn disconnect(&mut self, client: &str) -> Result<(), String> {
        let timeout = self.options.timeout;
        self.client(client)?.close(timeout);
        Ok(())
    }

    fn receive(&mut self, client: &str, wait: Wait) -> Result<Received, String> {
        let wait = match wait {
            Wait::ForSomething => self.options.timeout,
            Wait::Quiet => self.options.quiet,
        };
        self.client(client)?.receive(wait)
    }

    fn advance(&mut self, seconds: f64) -> Result<(), String> {
        std::thread::sleep(Duration::from_secs_f64(seconds));
        Ok(())
    }

    fn unix_secs(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn http(&mut self, call: &HttpCall) -> Result<HttpAnswer, String> {
        let node = self.http_calls % self.addrs.len();
        self.http_calls += 1;
        if self.addrs.len() > 1 {
            // A cluster answers queries from each node's view of the others, which lags their
            // changes by one bus delay (well under a millisecond here): ask once it has passed.
            std::thread::sleep(CLUSTER_QUERY_SETTLE);
        }
        http::request(self.addrs[node], &self.host, call, self.options.timeout)
    }

    fn webhooks(&mut self, wait: Wait) -> Result<Vec<WebhookPost>, String> {
        let receiver = self
            .webhooks
            .ok_or("no webhook receiver (webhook vectors need --server-bin)")?;
        let (limit, step) = match wait {
            Wait::ForSomething => (self.options.timeout, Duration::from_millis(20)),
            Wait::Quiet => (self.options.quiet, self.options.quiet),
        };
        let deadline = std::time::Instant::now() + limit;
        loop {
            let posts = receiver.take();
            if !posts.is_empty() || std::time::Instant::now() >= deadline {
                return Ok(posts);
            }
            std::thread::sleep(step);
        }
    }

    fn slow_consumer(&mut self, client: &str) -> Result<(), String> {
        let quiet = self.options.quiet;
        self.client(client)?.provoke_slow_consumer(quiet)
    }
}

/// `host:port` from `ws://host:port[/...]`, `http://…` or a bare `host:port`.
pub fn target_from_url(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    if url.starts_with("wss://") || url.starts_with("https://") {
        return Err("TLS URLs are not supported; use ws:// or http://".into());
    }
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("no host:port in {url:?}"));
    }
    Ok(if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}
