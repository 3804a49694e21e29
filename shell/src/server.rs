//! The server: binds the listener, starts the engine thread and the I/O workers, wires the
//! hand-offs between them, and supervises them until a signal has shut everything down.
//! With one worker there is no engine thread: the worker runs the engine inline, and drains
//! the door for the other feeders' inputs.
//!
//! ```text
//!  sockets ⇄ I/O worker 0 (accepts, deals sockets) ┐  batches of inputs     ┌──────────────┐
//!  sockets ⇄ I/O worker 1                          ├──── to_engine ───────▶ │ engine thread │
//!  sockets ⇄ I/O worker W-1                        ┘ ◀── one to_worker ──── └──────────────┘
//!  supervisor (signals → Input::Shutdown) ─────────────▶ to_engine   per worker   │ webhook_queue
//!  cluster bus (Redis → Input::Bus/BusUp/BusDown) ─────▶ to_engine                │ Output::Bus → PUBLISH
//!                                                                   webhook threads ◀┘
//! ```
//!
//! The supervisor watches every thread the server starts: the engine thread, the workers, the
//! webhook delivery threads and the signal thread. With a Redis URL the engine is a cluster
//! node with a random id, and the bus link is one more feeder (see [`crate::cluster`]);
//! without one the server is a single node and needs no Redis. With `[server.tls]` the port
//! speaks TLS only, and SIGHUP re-reads the certificate (see [`crate::tls`]).
//! With `[metrics] enabled` one more thread serves `/metrics` on its own address, from the
//! workers' counters and snapshots the engine publishes when asked (see [`crate::metrics`]);
//! with an `[admin] token` the same thread serves the admin console (see [`crate::admin`]),
//! its event streams on threads of their own.

use crate::admin::Admin;
use crate::app_store::AppStore;
use crate::cluster::{random_node_id, ClusterLink};
use crate::conn::ConnLimits;
use crate::console::ConsoleHub;
use crate::engine_thread::{random_seed, EngineCore, EngineThread, Protocol};
use crate::forwarded::TrustedProxies;
use crate::metrics::{self, EngineBoard, Sources};
use crate::metrics_server::MetricsListener;
use crate::queue::{self, Sender};
use crate::rate_limit::ClientGate;
use crate::route::Router;
use crate::settings::{Overrides, Settings};
use crate::slots::MAX_WORKERS;
use crate::supervisor::{self, Crew, Notice, Role, Stop, StopLevel, Watched};
use crate::tls::TlsIdentity;
use crate::wake::Wake;
use crate::webhook::WebhookSink;
use crate::webhook_delivery::{self, DeliveryStats, WebhookWorkers};
use crate::worker::{Acceptor, EngineLink, Worker, WorkerParts, WAKER};
use ferrocast_engine::{Engine, Input, WebhookDelivery};
use mio::net::TcpListener;
use mio::{Poll, Waker};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Inputs the door to the engine holds before workers must wait (and stop reading).
const TO_ENGINE_CAPACITY: usize = 64 * 1024;
/// Items a worker's queue holds before the engine thread waits for it.
const TO_WORKER_CAPACITY: usize = 64 * 1024;

/// The server: a bound listener and what it will run with.
pub struct Server {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    tls: Option<Arc<TlsIdentity>>,
    settings: Settings,
    webhooks: Option<Box<dyn WebhookSink + Send>>,
    webhook_workers: Option<WebhookWorkers>,
    signals: Option<signal_hook::iterator::Signals>,
    to_engine_capacity: usize,
    to_worker_capacity: usize,
    /// The metrics listener, when `[metrics] enabled` or `[admin] token` is set.
    metrics: Option<MetricsListener>,
    metrics_addr: Option<SocketAddr>,
    /// The file SIGHUP re-reads, with the flags and variables layered over it.
    config_file: Option<(PathBuf, Overrides)>,
    /// Serve the echo protocol instead of Pusher's (the `echo` feature's test binary).
    #[cfg(feature = "echo")]
    echo: bool,
}

impl Server {
    /// Loads the TLS certificate, if one is configured, and binds the listening socket;
    /// nothing is served until [`Server::run`]. The error says which of the two failed.
    pub fn bind(settings: &Settings, webhooks: Box<dyn WebhookSink + Send>) -> io::Result<Server> {
        let tls = match settings.server.tls.files() {
            None => None,
            Some(files) => {
                Some(Arc::new(TlsIdentity::load(files).map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidInput, e)
                })?))
            }
        };
        let host = settings.server.host.as_str();
        let port = settings.server.port;
        let cannot_listen =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {host}:{port}: {e}"));
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(cannot_listen)?
            .next()
            .ok_or_else(|| cannot_listen(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
        let listener = listen(addr).map_err(cannot_listen)?;
        let local_addr = listener.local_addr()?;
        // The admin console lives on the metrics listener: a token starts it too.
        let metrics = match &settings.metrics {
            m if m.enabled || settings.admin_enabled() => {
                Some(MetricsListener::bind(&m.host, m.port)?)
            }
            _ => None,
        };
        Ok(Server {
            listener: Some(listener),
            local_addr,
            tls,
            settings: settings.clone(),
            webhooks: Some(webhooks),
            webhook_workers: None,
            signals: None,
            to_engine_capacity: TO_ENGINE_CAPACITY,
            to_worker_capacity: TO_WORKER_CAPACITY,
            metrics_addr: metrics.as_ref().map(MetricsListener::local_addr),
            metrics,
            config_file: None,
            #[cfg(feature = "echo")]
            echo: false,
        })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the metrics listener bound, when metrics or the admin console are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The number of I/O workers [`Server::run`] starts.
    pub fn workers(&self) -> usize {
        self.settings.server.workers.clamp(1, MAX_WORKERS)
    }

    /// Replaces the hand-off capacities: inputs the door to the engine holds, and items each
    /// worker's queue holds (at least 1 each). Tests make them tiny to force backpressure.
    pub fn set_queue_capacities(&mut self, to_engine: usize, to_worker: usize) {
        self.to_engine_capacity = to_engine.max(1);
        self.to_worker_capacity = to_worker.max(1);
    }

    /// Serves the echo protocol instead of Pusher's: every message goes back to its sender,
    /// through the same sockets, handshake, codec and output queues. Outside WebSocket test
    /// suites need it; it is compiled only with the `echo` feature.
    #[cfg(feature = "echo")]
    pub fn serve_echo(&mut self) {
        self.echo = true;
    }

    /// The protocol to run, and the connection limits that go with it.
    fn protocol(&self, engine: Engine) -> (Protocol, ConnLimits) {
        let limits = self.settings.conn_limits();
        #[cfg(feature = "echo")]
        if self.echo {
            let limits = ConnLimits {
                keep_binary: true,
                ..limits
            };
            return (Protocol::Echo(Default::default()), limits);
        }
        (Protocol::Pusher(engine), limits)
    }

    /// Whether the port speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Shuts down gracefully on SIGINT or SIGTERM (a second signal stops at once); SIGHUP
    /// re-reads the TLS certificate and key (and, without TLS, is logged and ignored rather
    /// than left to its default action, which would end the process).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        self.signals = Some(signal_hook::iterator::Signals::new([
            SIGINT, SIGTERM, SIGHUP,
        ])?);
        Ok(())
    }

    /// Makes SIGHUP re-read `path` (with `overrides` over it, as at startup) and hand its apps
    /// to the engine: added, changed and removed apps take effect at once, an invalid file is
    /// refused whole. `[server]`, `[rate_limit]` and `[metrics]` changes wait for a restart.
    pub fn reload_config_from(&mut self, path: PathBuf, overrides: Overrides) {
        self.config_file = Some((path, overrides));
    }

    /// Runs the webhook delivery threads under the supervisor: a failing one stops the
    /// server, and at shutdown their queue is closed once the engine has stopped and they are
    /// given the close linger to finish it.
    pub fn supervise_webhook_workers(&mut self, workers: WebhookWorkers) {
        self.webhook_workers = Some(workers);
    }

    /// Who clients are behind the trusted proxies, and the rate limits they are held to.
    fn client_gate(&self) -> io::Result<ClientGate> {
        let server = &self.settings.server;
        let proxies = TrustedProxies::new(&server.trusted_proxies, server.trust_hops)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(ClientGate {
            proxies,
            limits: self.settings.rate_limit.limits(),
        })
    }

    /// Serves until shut down by a signal; an error when a thread failed or panicked.
    pub fn run(&mut self) -> io::Result<()> {
        let (Some(listener), Some(webhooks)) = (self.listener.take(), self.webhooks.take()) else {
            return Err(io::Error::other("the server has already run"));
        };
        let count = self.workers();
        let mut polls = Vec::with_capacity(count);
        let mut wakers = Vec::with_capacity(count);
        for _ in 0..count {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            polls.push(poll);
        }
        let boxed = |w: &Arc<Waker>| Box::new(w.clone()) as Box<dyn Wake>;
        let engine_thread = count > 1;
        // The door's consumer: the engine thread (asleep on the queue's condition variable),
        // or the one worker running the engine inline (asleep in `poll`, woken by its waker).
        let door_consumer = (!engine_thread).then(|| boxed(&wakers[0]));
        let (to_engine, door) = queue::bounded::<Input>(self.to_engine_capacity, door_consumer);
        let (to_workers, from_engine): (Vec<_>, Vec<_>) = wakers
            .iter()
            .map(|w| queue::bounded(self.to_worker_capacity, Some(boxed(w))))
            .unzip();
        let stop = Arc::new(Stop::default());
        let (notices_tx, notices) = mpsc::channel();
        let mut threads = Vec::with_capacity(count + 1);

        let config = self.settings.engine.clone();
        let cluster = match self.settings.bus_config() {
            None => None,
            Some(bus) => {
                let bus = bus.map_err(io::Error::other)?;
                let node = random_node_id();
                Some(ClusterLink::start(node, bus, to_engine.clone()).map_err(io::Error::other)?)
            }
        };
        let engine = match &cluster {
            Some(link) => Engine::new_node(config, random_seed(), link.node()),
            None => Engine::new(config, random_seed()),
        };
        let (protocol, limits) = self.protocol(engine);
        let mut core = EngineCore::new(protocol, Router::new(to_workers.clone()), webhooks);
        if let Some(link) = &cluster {
            core = core.with_bus(link.sender());
        }
        let app_store = match self.settings.app_store.uses_database() {
            true => Some(AppStore::start(
                &self.settings.app_store,
                to_engine.clone(),
            )?),
            false => None,
        };
        if let Some(store) = &app_store {
            core = core.with_app_store(store.lookups());
        }
        let board = Arc::new(EngineBoard::default());
        if self.settings.metrics.enabled {
            core = core.with_metrics(board.clone());
        }
        let hub = self
            .settings
            .admin_enabled()
            .then(|| Arc::new(ConsoleHub::new(to_engine.clone())));
        if let Some(hub) = &hub {
            core = core.with_console(hub.clone());
        }
        let stats = metrics::shell_stats(count);
        let mut inline = None;
        if engine_thread {
            threads.push(supervisor::spawn(
                "engine".into(),
                Role::Engine,
                notices_tx.clone(),
                move || {
                    EngineThread::new(core, door).run();
                    Ok(())
                },
            )?);
        } else {
            inline = Some((Box::new(core), door));
        }
        let gate = Arc::new(self.client_gate()?);
        let mut listener = Some(listener);
        let parts = polls.into_iter().zip(from_engine).zip(&wakers);
        for (index, ((poll, to_worker), waker)) in parts.enumerate() {
            let engine = match inline.take() {
                Some((core, door)) => EngineLink::Inline { core, door },
                None => EngineLink::Door(to_engine.waking(waker.clone())),
            };
            let parts = WorkerParts {
                index,
                poll,
                acceptor: listener
                    .take()
                    .map(|l| Acceptor::new(l, to_workers.clone())),
                to_worker,
                engine,
                limits,
                gate: gate.clone(),
                stop: stop.clone(),
                tls: self.tls.clone(),
                stats: stats.clone(),
            };
            threads.push(supervisor::spawn(
                format!("io-{index}"),
                Role::Worker(index),
                notices_tx.clone(),
                move || Worker::new(parts).run(),
            )?);
        }
        if let Some(listener) = self.metrics.take() {
            let sources = self.settings.metrics.enabled.then(|| Sources {
                board,
                door: to_engine.clone(),
                workers: stats,
                webhooks: self.webhook_workers.as_ref().map(WebhookWorkers::observed),
                bus: cluster.as_ref().map(|link| (link.stats(), link.sender())),
                app_store: app_store.as_ref().map(AppStore::stats),
            });
            let admin = match (&self.settings.admin.token, hub) {
                (Some(token), Some(hub)) => Some(Admin {
                    token: token.clone(),
                    hub,
                    notices: notices_tx.clone(),
                }),
                _ => None,
            };
            // Supervised like every thread (a panic stops the server), but never joined: it
            // serves until the process exits.
            supervisor::spawn(
                "metrics".into(),
                Role::Metrics,
                notices_tx.clone(),
                move || listener.serve(sources, admin),
            )?;
        }
        let mut webhook_queue = None;
        let mut webhook_stats = None;
        let mut webhook_threads = Vec::new();
        if let Some(workers) = self.webhook_workers.take() {
            let (queue, workers, stats) = workers.into_parts();
            webhook_queue = Some(queue);
            webhook_stats = Some(stats);
            for (index, worker) in workers.into_iter().enumerate() {
                webhook_threads.push(supervisor::spawn(
                    webhook_delivery::thread_name(index),
                    Role::Webhooks(index),
                    notices_tx.clone(),
                    move || {
                        worker.run();
                        Ok(())
                    },
                )?);
            }
        }
        let signals = self.forward_signals(notices_tx.clone())?;
        drop(notices_tx);

        let mut crew = Threads {
            tls: self.tls.clone(),
            stop,
            wakers,
            to_engine,
            webhook_queue,
            webhook_stats,
            config_file: self.config_file.take(),
            started_with: self.settings.clone(),
        };
        let watched = Watched {
            workers: count,
            engine_thread,
            webhook_threads: webhook_threads.len(),
            webhook_linger: Duration::from_millis(self.settings.server.close_linger_ms),
        };
        let outcome = supervisor::watch(&notices, &watched, &mut crew);
        if let Some(link) = cluster {
            // Closed first (again, harmlessly, after a clean stop): a subscriber waiting for
            // room in the door is released, so the link's threads can be joined.
            crew.to_engine.close();
            link.stop();
        }
        if let Some(store) = app_store {
            // Likewise: an answer waiting for room in the door is released.
            crew.to_engine.close();
            store.stop();
        }
        if let Some((handle, thread)) = signals {
            handle.close();
            let _ = thread.join();
        }
        if outcome.is_ok() {
            for thread in threads {
                let _ = thread.join();
            }
            // One still busy after the linger is left to the process exit.
            for thread in webhook_threads.into_iter().filter(|t| t.is_finished()) {
                let _ = thread.join();
            }
        }
        outcome
    }

    /// Turns each signal into a notice for the supervisor, from a thread of its own that
    /// reports to the supervisor like every other (a panic there stops the server).
    fn forward_signals(
        &mut self,
        notices: mpsc::Sender<Notice>,
    ) -> io::Result<Option<(signal_hook::iterator::Handle, std::thread::JoinHandle<()>)>> {
        let Some(mut signals) = self.signals.take() else {
            return Ok(None);
        };
        let handle = signals.handle();
        let reports = notices.clone();
        let thread = supervisor::spawn("signals".into(), Role::Signals, reports, move || {
            for signal in signals.forever() {
                let notice = match signal {
                    signal_hook::consts::SIGHUP => Notice::Reload,
                    _ => Notice::Signal,
                };
                if notices.send(notice).is_err() {
                    break;
                }
            }
            Ok(())
        })?;
        Ok(Some((handle, thread)))
    }
}

/// The supervisor's levers on the running threads; it is a feeder too (of `Shutdown`).
struct Threads {
    /// The certificate SIGHUP reloads, when the port speaks TLS.
    tls: Option<Arc<TlsIdentity>>,
    stop: Arc<Stop>,
    wakers: Vec<Arc<Waker>>,
    to_engine: Sender<Input>,
    webhook_queue: Option<Sender<WebhookDelivery>>,
    webhook_stats: Option<Arc<DeliveryStats>>,
    config_file: Option<(PathBuf, Overrides)>,
    /// The settings the server started with, to say which changes a reload cannot apply.
    started_with: Settings,
}

impl Crew for Threads {
    fn stop(&mut self, level: StopLevel) {
        if level == StopLevel::Graceful {
            // The engine closes the WebSockets, saying why; the workers then linger while the
            // closes go out. Waiting for room is fine here: the engine always drains the door.
            if self.to_engine.send(&mut vec![Input::Shutdown]).is_err() {
                tracing::debug!("the engine was gone before shutdown");
            }
        }
        self.stop.raise(level);
        for waker in &self.wakers {
            Wake::wake(waker);
        }
    }

    fn close_engine(&mut self) {
        self.to_engine.close();
    }

    fn close_webhooks(&mut self) {
        if let Some(queue) = &self.webhook_queue {
            queue.close();
        }
    }

    fn unsent_webhooks(&self) -> u64 {
        self.webhook_stats
            .as_ref()
            .map_or(0, |stats| stats.unsent())
    }

    fn reload(&mut self) {
        if let Some(identity) = &self.tls {
            identity.reload();
        }
        let Some((path, overrides)) = &self.config_file else {
            if self.tls.is_none() {
                tracing::info!(
                    "reload (SIGHUP or POST /admin/reload): no configuration file and no TLS certificate; nothing to reload"
                );
            }
            return;
        };
        let loaded = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|text| Settings::load(&text, overrides));
        let next = match loaded {
            Ok(next) => next,
            Err(message) => {
                tracing::error!(%message, "reload: the configuration is refused; the old one stays");
                return;
            }
        };
        if next.server != self.started_with.server
            || next.rate_limit != self.started_with.rate_limit
            || next.metrics != self.started_with.metrics
            || next.admin != self.started_with.admin
            || next.app_store != self.started_with.app_store
        {
            tracing::warn!(
                "reload: [server], [rate_limit], [metrics], [admin] and [app_store] changes take effect at the next restart"
            );
        }
        tracing::info!(path = %path.display(), "reload: configuration re-read; the engine applies its apps");
        if self
            .to_engine
            .send(&mut vec![Input::Reload(Box::new(next.engine))])
            .is_err()
        {
            tracing::debug!("the engine was gone before the reload");
        }
    }
}

/// Most handshakes the kernel queues before the server accepts them. mio's `bind` uses 128,
/// which a storm of clients overflows: the kernel drops SYNs and clients retry a second later.
const LISTEN_BACKLOG: i32 = 4096;

/// A non-blocking listener with address reuse and a deep accept queue.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Connections complete their handshake in the kernel's queue before any accept; a queue
    /// of 128 would leave the rest waiting for a SYN retry a second later.
    #[test]
    fn the_listener_queues_more_handshakes_than_the_default_backlog() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connected = (0..400)
            .filter(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            })
            .count();
        assert_eq!(connected, 400);
    }
}
