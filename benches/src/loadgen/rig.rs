//! The coordinator's equipment: the server under test (spawned or external), the client
//! workers, the publisher, and the operations scenarios compose (connect, await, collect).

use super::args::{Args, Plan};
use super::histogram::Histogram;
use super::http_pub::{Credentials, Publisher};
use super::ipc::{ChannelSpec, ChildLink, Command, ConnectSpec, Reply, Stats, Targets, WsTarget};
use super::spawn::{self, HttpTarget, ServerProc};
use super::sys;
use super::tls::{self, TlsFiles};
use rustls::ClientConfig;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Extra time to wait for a worker's answer beyond the command's own deadline.
const ANSWER_SLACK: Duration = Duration::from_secs(15);

/// A publisher for `http`, over TLS when it is `https://`.
fn publisher_for(
    http: &HttpTarget,
    creds: &Credentials,
    tls: Option<&Arc<ClientConfig>>,
) -> Publisher {
    let publisher = Publisher::new(
        http.addr,
        http.host.clone(),
        http.prefix.clone(),
        creds.clone(),
    );
    match (http.tls, tls) {
        (true, Some(config)) => publisher.with_tls(config.clone()),
        _ => publisher,
    }
}

/// Result of opening clients on every worker involved.
#[derive(Debug, Default)]
pub(crate) struct Connected {
    /// Subscribed clients.
    pub subscribed: u32,
    /// Clients that failed.
    pub failed: u32,
    /// Earliest start (monotonic ns).
    pub start_ns: u64,
    /// Latest subscription (monotonic ns).
    pub end_ns: u64,
    /// The first failures.
    pub errors: Vec<String>,
}

/// Result of waiting for targets on every worker.
#[derive(Debug, Default)]
pub(crate) struct Awaited {
    /// Every client reached its target.
    pub complete: bool,
    /// When the last one did.
    pub done_ns: u64,
    /// Clients short of their target.
    pub short_clients: u32,
    /// Events missing.
    pub missing: u64,
}

/// Counters merged over the workers.
#[derive(Default)]
pub(crate) struct Merged {
    /// Sum of the counters.
    pub stats: Stats,
    /// Merged latencies.
    pub latency: Histogram,
}

/// Everything a scenario needs.
pub(crate) struct Rig {
    /// Options.
    pub args: Args,
    /// Sizes.
    pub plan: Plan,
    /// Credentials of the app under test.
    pub creds: Credentials,
    /// Origin of event timestamps (monotonic ns).
    pub epoch_ns: u64,
    /// Where clients connect.
    pub ws: WsTarget,
    /// Process id to read CPU and memory from.
    pub server_pid: Option<u32>,
    /// HTTP publisher.
    pub publisher: Publisher,
    /// Whether the server and the generator run on separate pinned CPUs.
    pub pinned: bool,
    /// CPUs the generator could use before pinning itself.
    pub cpus: usize,
    /// With `--tls`: the certificate made for the run (the server's and the TLS floor's).
    pub tls_files: Option<TlsFiles>,
    /// The clients' TLS configuration (with `--tls` or `--tls-ca`).
    pub client_tls: Option<Arc<ClientConfig>>,
    /// Whether the scenarios now run over TLS (the spawned server serves TLS only).
    pub secure: bool,
    server: Option<ServerProc>,
    /// Whether clients or publishes have touched the current server.
    used: bool,
    workers: Vec<ChildLink>,
}

impl Rig {
    /// Pins the generator, starts the server (when asked) and the workers.
    pub(crate) fn new(args: Args) -> Result<Self, String> {
        let plan = args.plan();
        let creds = Credentials {
            app_id: args.app_id.clone(),
            key: args.app_key.clone(),
            secret: args.app_secret.clone(),
        };
        let cpus = sys::cpus_allowed();
        let pinned = !args.no_pin
            && cpus > args.server_cpu().max(args.generator_cpu)
            && args.server_cpu() != args.generator_cpu
            && sys::pin_to_cpu(args.generator_cpu);
        let epoch_ns = sys::mono_ns();
        let tls_files = if args.tls {
            if args.spawn_server.is_none() {
                return Err(
                    "--tls needs --spawn-server (against another server, give a \
                            wss:// --ws-url and --tls-ca)"
                        .into(),
                );
            }
            Some(TlsFiles::generate()?)
        } else {
            None
        };
        let ca = tls_files
            .as_ref()
            .map(|f| f.cert.clone())
            .or_else(|| args.tls_ca.clone());
        let client_tls = ca.as_deref().map(tls::client_config).transpose()?;
        let (ws, http, server_pid, server) = match &args.spawn_server {
            Some(bin) => {
                let server = ServerProc::spawn(
                    bin,
                    &creds,
                    plan.presence_members,
                    pinned.then_some(args.server_cpu()),
                    &[],
                )?;
                let ws = spawn::ws_target(&format!("ws://{}", server.addr), &creds.key)?;
                let http = spawn::http_target(&format!("http://{}", server.addr))?;
                (ws, http, Some(server.pid), Some(server))
            }
            None => {
                let url = args.ws_url.clone().ok_or(
                    "give --ws-url (and --server-pid to measure CPU and memory) or --spawn-server",
                )?;
                let ws = spawn::ws_target(&url, &creds.key)?;
                let http_url = args.http_url.clone().unwrap_or_else(|| {
                    format!("{}://{}", if ws.tls { "https" } else { "http" }, ws.host)
                });
                (ws, spawn::http_target(&http_url)?, args.server_pid, None)
            }
        };
        if (ws.tls || http.tls) && client_tls.is_none() {
            return Err(
                "a wss:// or https:// URL needs --tls-ca PEM (the certificate to trust)".into(),
            );
        }
        let secure = ws.tls;
        let publisher = publisher_for(&http, &creds, client_tls.as_ref());
        let needed = plan.max_clients().div_ceil(args.per_worker.max(1)).max(1) as usize;
        let mut workers = Vec::with_capacity(needed);
        for i in 0..needed {
            workers.push(spawn::spawn_worker(
                i,
                epoch_ns,
                &creds,
                args.deflate,
                ca.as_deref(),
            )?);
        }
        Ok(Rig {
            args,
            plan,
            creds,
            epoch_ns,
            ws,
            server_pid,
            publisher,
            pinned,
            cpus,
            tls_files,
            client_tls,
            secure,
            server,
            used: false,
            workers,
        })
    }

    /// With `--spawn-server`, replaces the server by a fresh one (clean memory and state).
    pub(crate) fn fresh_server(&mut self) -> Result<(), String> {
        let Some(bin) = self.args.spawn_server.clone() else {
            return Ok(());
        };
        if !self.used && self.server.is_some() {
            return Ok(());
        }
        self.used = false;
        if let Some(old) = self.server.take() {
            old.stop();
        }
        let cpu = self.pinned.then_some(self.args.server_cpu());
        let mut extra = Vec::new();
        if let (true, Some(files)) = (self.secure, &self.tls_files) {
            for (flag, path) in [("--tls-cert", &files.cert), ("--tls-key", &files.key)] {
                extra.push(flag.to_string());
                extra.push(path.to_string_lossy().into_owned());
            }
        }
        let server = ServerProc::spawn(&bin, &self.creds, self.plan.presence_members, cpu, &extra)?;
        let scheme = if self.secure { "s" } else { "" };
        self.ws = spawn::ws_target(&format!("ws{scheme}://{}", server.addr), &self.creds.key)?;
        let http = spawn::http_target(&format!("http{scheme}://{}", server.addr))?;
        self.publisher = publisher_for(&http, &self.creds, self.client_tls.as_ref());
        self.server_pid = Some(server.pid);
        self.server = Some(server);
        Ok(())
    }

    /// Switches the scenarios to TLS (`on`) or plain TCP; the next
    /// [`Rig::fresh_server`] starts a server speaking it.
    pub(crate) fn set_secure(&mut self, on: bool) {
        if self.secure != on {
            self.secure = on;
            self.used = true;
        }
    }

    /// `"TLS "` while the scenarios run over TLS, to start the names of their rows with.
    pub(crate) fn mode(&self) -> &'static str {
        if self.secure {
            "TLS "
        } else {
            ""
        }
    }

    /// The certificate and key the TLS floor serves, while the scenarios run over TLS.
    pub(crate) fn floor_tls(&self) -> Option<(&Path, &Path)> {
        self.tls_files
            .as_ref()
            .filter(|_| self.secure)
            .map(|f| (f.cert.as_path(), f.key.as_path()))
    }

    /// Stops the spawned single server (a later [`Rig::fresh_server`] starts a new one).
    pub(crate) fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
            self.server_pid = None;
        }
    }

    /// An error if the spawned server has died.
    pub(crate) fn check_server(&mut self) -> Result<(), String> {
        match self.server.as_mut() {
            Some(server) => {
                if server.alive() {
                    Ok(())
                } else {
                    Err(format!(
                        "the server exited unexpectedly; its last stderr lines: {}",
                        server.stderr_tail()
                    ))
                }
            }
            None => Ok(()),
        }
    }

    /// Where the spawned server serves its metrics.
    pub(crate) fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.server.as_ref().and_then(ServerProc::metrics_addr)
    }

    /// CPU time of the server so far, in nanoseconds.
    pub(crate) fn server_cpu_ns(&self) -> Option<u64> {
        self.server_pid
            .and_then(sys::process_cpu_ns)
            .map(|(ns, _)| ns)
    }

    /// CPU time of every client worker so far, in nanoseconds.
    pub(crate) fn workers_cpu_ns(&self) -> u64 {
        self.workers
            .iter()
            .filter_map(|w| sys::process_cpu_ns(w.pid()))
            .map(|(ns, _)| ns)
            .sum()
    }

    /// Resident memory of the server in bytes.
    pub(crate) fn server_rss(&self) -> Option<u64> {
        self.server_pid.and_then(sys::rss_bytes)
    }

    /// Nanoseconds since the epoch the event timestamps use.
    pub(crate) fn now_rel(&self) -> u64 {
        sys::mono_ns() - self.epoch_ns
    }

    /// How `n` clients with indices from `first` split over the workers: `(worker, first, count)`.
    pub(crate) fn shares(&self, first: u64, n: u32) -> Vec<(usize, u64, u32)> {
        let k = (n.div_ceil(self.args.per_worker.max(1)) as usize).clamp(1, self.workers.len());
        let mut out = Vec::with_capacity(k);
        let mut next = first;
        for w in 0..k {
            let count = n / k as u32 + u32::from((w as u32) < n % k as u32);
            out.push((w, next, count));
            next += u64::from(count);
        }
        out
    }

    /// Opens `n` clients (indices from `first`) against `target`, spread over the workers,
    /// with `inflight` handshakes in flight in total.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect(
        &mut self,
        target: &WsTarget,
        first: u64,
        n: u32,
        channel: ChannelSpec,
        presence: bool,
        verify: bool,
        timeout: Duration,
    ) -> Result<Connected, String> {
        self.connect_spread(
            std::slice::from_ref(target),
            first,
            n,
            channel,
            presence,
            verify,
            timeout,
        )
    }

    /// Like [`Rig::connect`], client `i` going to `targets[i % targets.len()]`: clients
    /// spread evenly over the nodes of a cluster.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn connect_spread(
        &mut self,
        targets: &[WsTarget],
        first: u64,
        n: u32,
        channel: ChannelSpec,
        presence: bool,
        verify: bool,
        timeout: Duration,
    ) -> Result<Connected, String> {
        if targets.is_empty() {
            return Err("no server to connect to".into());
        }
        self.used = true;
        let shares = self.shares(first, n);
        let per_worker_inflight = (self.args.inflight / shares.len() as u32).max(1);
        for &(w, first_index, count) in &shares {
            let spec = ConnectSpec {
                targets: targets.to_vec(),
                first_index,
                count,
                channel: channel.clone(),
                presence,
                verify,
                inflight: per_worker_inflight,
                timeout_ms: timeout.as_millis() as u64,
            };
            self.workers[w].send(&Command::Connect(spec))?;
        }
        let mut total = Connected {
            start_ns: u64::MAX,
            ..Connected::default()
        };
        for &(w, _, _) in &shares {
            match self.workers[w].recv::<Reply>(timeout + ANSWER_SLACK)? {
                Reply::Connected {
                    subscribed,
                    failed,
                    start_ns,
                    end_ns,
                    errors,
                } => {
                    total.subscribed += subscribed;
                    total.failed += failed;
                    total.start_ns = total.start_ns.min(start_ns);
                    total.end_ns = total.end_ns.max(end_ns);
                    total.errors.extend(errors);
                }
                other => return Err(format!("worker {w}: unexpected answer {other:?}")),
            }
        }
        Ok(total)
    }

    /// Waits until every client of every worker reaches `targets(worker's share)`.
    pub(crate) fn await_targets(
        &mut self,
        targets: impl Fn(usize) -> Targets,
        timeout: Duration,
    ) -> Result<Awaited, String> {
        let timeout_ms = timeout.as_millis() as u64;
        for w in 0..self.workers.len() {
            self.workers[w].send(&Command::Await {
                targets: targets(w),
                timeout_ms,
            })?;
        }
        let mut total = Awaited {
            complete: true,
            ..Awaited::default()
        };
        for w in 0..self.workers.len() {
            match self.workers[w].recv::<Reply>(timeout + ANSWER_SLACK)? {
                Reply::Awaited {
                    complete,
                    done_ns,
                    short_clients,
                    missing,
                } => {
                    total.complete &= complete;
                    total.done_ns = total.done_ns.max(done_ns);
                    total.short_clients += short_clients;
                    total.missing += missing;
                }
                other => return Err(format!("worker {w}: unexpected answer {other:?}")),
            }
        }
        Ok(total)
    }

    /// Waits until every client has seen sequence number (or event count) `target`.
    pub(crate) fn await_all(&mut self, target: u64, timeout: Duration) -> Result<Awaited, String> {
        self.await_targets(|_| Targets::All(target), timeout)
    }

    /// Collects (and optionally resets) every worker's counters.
    pub(crate) fn stats(&mut self, reset: bool) -> Result<Merged, String> {
        let mut merged = Merged::default();
        for w in 0..self.workers.len() {
            self.workers[w].send(&Command::Stats { reset })?;
        }
        for w in 0..self.workers.len() {
            match self.workers[w].recv::<Reply>(ANSWER_SLACK)? {
                Reply::Stats(s) => {
                    let m = &mut merged.stats;
                    m.clients += s.clients;
                    m.deliveries += s.deliveries;
                    m.wire_bytes += s.wire_bytes;
                    m.compressed += s.compressed;
                    m.order_errors += s.order_errors;
                    m.unexpected_closes += s.unexpected_closes;
                    m.pusher_errors += s.pusher_errors;
                    if m.sample_payload.is_none() {
                        m.sample_payload = s.sample_payload;
                    }
                    if m.tls_suite.is_none() {
                        m.tls_suite = s.tls_suite;
                    }
                    m.notes.extend(s.notes);
                    merged.latency.merge(&s.latency);
                }
                other => return Err(format!("worker {w}: unexpected answer {other:?}")),
            }
        }
        Ok(merged)
    }

    /// Drops every client of every worker (with resets, so no TIME_WAIT piles up).
    pub(crate) fn close_all(&mut self) -> Result<(), String> {
        for w in 0..self.workers.len() {
            self.workers[w].send(&Command::CloseAll)?;
        }
        for w in 0..self.workers.len() {
            match self.workers[w].recv::<Reply>(ANSWER_SLACK)? {
                Reply::Closed => {}
                other => return Err(format!("worker {w}: unexpected answer {other:?}")),
            }
        }
        Ok(())
    }

    /// Sends a command to worker `w` and waits for its answer.
    pub(crate) fn ask(
        &mut self,
        w: usize,
        command: &Command,
        timeout: Duration,
    ) -> Result<Reply, String> {
        self.workers[w].send(command)?;
        self.workers[w].recv(timeout + ANSWER_SLACK)
    }

    /// Stops the workers and the server.
    pub(crate) fn shutdown(mut self) {
        for worker in self.workers.drain(..) {
            worker.shutdown(&Command::Exit);
        }
        if let Some(server) = self.server.take() {
            server.stop();
        }
    }
}
