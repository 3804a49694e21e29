//! Replaying vectors over real sockets against a running Pusher-compatible server, or against
//! `ferrocast` binaries this runner starts with each vector's configuration.

pub mod http;
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
}

/// Why a vector cannot run with these options, if it cannot.
pub fn skip_reason(vector: &Vector, options: &Options) -> Option<String> {
    if vector.has_tag("engine_only") {
        return Some("drives an engine input no socket can produce".into());
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
    None
}

/// Runs one vector live and classifies the result.
pub fn run_vector(
    vector: &Vector,
    options: &Options,
    webhooks: Option<&http::WebhookReceiver>,
) -> Outcome {
    if let Some(why) = skip_reason(vector, options) {
        return Outcome::Skip(why);
    }
    Outcome::classify(vector, replay(vector, options, webhooks))
}

fn replay(
    vector: &Vector,
    options: &Options,
    webhooks: Option<&http::WebhookReceiver>,
) -> Result<(), String> {
    let _server;
    let (addr, host) = match &options.server_bin {
        Some(bin) => {
            let url = webhooks.map(|w| w.url()).unwrap_or_default();
            let json = config::build(&options.app, vector.config.as_ref(), &url)?;
            let toml = config::to_toml(&json)?;
            let stem = vector.id.replace('/', "__");
            let config_path = options.work_dir.join(format!("{stem}.toml"));
            let log_path = options.work_dir.join(format!("{stem}.log"));
            std::fs::write(&config_path, toml).map_err(|e| e.to_string())?;
            let server =
                ServerProcess::start(bin, &config_path, &log_path, Duration::from_secs(10))?;
            let addr = server.addr;
            _server = server;
            (addr, addr.to_string())
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
            (addr, target)
        }
    };
    if let Some(w) = webhooks {
        w.take();
    }
    let mut transport = LiveTransport {
        addr,
        host,
        clients: BTreeMap::new(),
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

/// A [`Transport`] over real sockets.
struct LiveTransport<'a> {
    addr: SocketAddr,
    host: String,
    clients: BTreeMap<String, WsClient>,
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
    fn connect(&mut self, client: &str, path: &str, query: &str) -> Result<(), String> {
        if self.clients.get(client).is_some_and(|c| !c.is_closed()) {
            return Err(format!("client {client:?} is already connected"));
        }
        let ws = WsClient::connect(self.addr, &self.host, path, query, self.options.timeout)?;
        self.clients.insert(client.to_owned(), ws);
        Ok(())
    }

    fn send(&mut self, client: &str, frame: Outgoing) -> Result<(), String> {
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
        http::request(self.addr, &self.host, call, self.options.timeout)
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
