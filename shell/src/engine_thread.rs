//! The engine thread: the one place the protocol state lives.
//!
//! It sleeps on the door (`to_engine`) until a feeder hands it inputs or the engine's next
//! timer is due, stamps what it took with one [`Moment`], feeds every input (draining the
//! outputs after each, as the engine requires), routes addressed outputs into per-feeder
//! lanes, gives webhooks to their sink and bus messages to the cluster link, and finally
//! hands each feeder its lane at once.
//! [`EngineCore`] is that feeding and routing without the thread: a single worker runs it
//! inline.

use crate::app_store::AppLookups;
use crate::bus::BusSender;
use crate::console::ConsoleHub;
use crate::metrics::EngineBoard;
use crate::queue::{Received, Receiver};
use crate::route::Router;
use crate::webhook::WebhookSink;
#[cfg(feature = "echo")]
use ferrocast_engine::echo::EchoEngine;
use ferrocast_engine::{ApiMisuse, Engine, Input, Moment, Output};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The protocol an engine core runs.
// One per server, made once and never moved in a hot path: the size of the Pusher variant
// costs nothing, where boxing it would cost a pointer chase per input.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Protocol {
    /// Pusher Channels: every normal run.
    Pusher(Engine),
    /// Echo every message back, for outside WebSocket test suites (the `echo` feature's
    /// test binary only).
    #[cfg(feature = "echo")]
    Echo(EchoEngine),
}

impl Protocol {
    fn handle_input(&mut self, at: Moment, input: Input) -> Result<(), ApiMisuse> {
        match self {
            Protocol::Pusher(engine) => engine.handle_input(at, input),
            #[cfg(feature = "echo")]
            Protocol::Echo(engine) => engine.handle_input(at, input),
        }
    }

    fn poll_output(&mut self) -> Output {
        match self {
            Protocol::Pusher(engine) => engine.poll_output(),
            #[cfg(feature = "echo")]
            Protocol::Echo(engine) => engine.poll_output(),
        }
    }
}

/// The engine with its router and its webhook sink, fed by whoever owns it.
pub(crate) struct EngineCore {
    engine: Protocol,
    /// Where connection outputs go.
    pub router: Router,
    webhooks: Box<dyn WebhookSink + Send>,
    /// Where bus messages go, for a cluster node.
    bus: Option<BusSender>,
    /// Where app lookups go, when apps come from a database.
    app_store: Option<AppLookups>,
    /// When the engine wants a `Tick`.
    wake: Option<Instant>,
    /// Where snapshots for the metrics listener go, when it runs.
    metrics: Option<Arc<EngineBoard>>,
    /// Where debug events, console snapshots and console publish answers go, when the
    /// admin console is on.
    console: Option<Arc<ConsoleHub>>,
}

impl EngineCore {
    /// Puts the pieces together.
    pub(crate) fn new(
        engine: Protocol,
        router: Router,
        webhooks: Box<dyn WebhookSink + Send>,
    ) -> Self {
        EngineCore {
            engine,
            router,
            webhooks,
            bus: None,
            app_store: None,
            wake: None,
            metrics: None,
            console: None,
        }
    }

    /// Makes this a cluster node's core: the engine's bus messages go to `bus`.
    pub(crate) fn with_bus(mut self, bus: BusSender) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Hands the engine's app lookups to `store` (a channel send: the database is asked on
    /// the store's own thread).
    pub(crate) fn with_app_store(mut self, store: AppLookups) -> Self {
        self.app_store = Some(store);
        self
    }

    /// Measures batches and answers snapshot requests on `board`.
    pub(crate) fn with_metrics(mut self, board: Arc<EngineBoard>) -> Self {
        self.metrics = Some(board);
        self
    }

    /// Serves the admin console through `hub`.
    pub(crate) fn with_console(mut self, hub: Arc<ConsoleHub>) -> Self {
        self.console = Some(hub);
        self
    }

    /// Ends a batch that began at `started`: records its duration (unless nothing was fed:
    /// an idle turn of the one-worker loop) and, if a scrape asked for one, publishes a
    /// snapshot of the engine's counts.
    pub(crate) fn end_batch(&self, started: Instant, fed: bool) {
        if let Some(hub) = &self.console {
            if hub.take_snapshot_request() {
                match &self.engine {
                    Protocol::Pusher(engine) => hub.publish_snapshot(engine.console_snapshot()),
                    #[cfg(feature = "echo")]
                    Protocol::Echo(_) => hub.publish_snapshot(br#"{"apps":[]}"#.to_vec()),
                }
            }
        }
        let Some(board) = &self.metrics else {
            return;
        };
        if fed {
            board.observe_batch(started.elapsed());
        }
        if !board.take_request() {
            return;
        }
        match &self.engine {
            Protocol::Pusher(engine) => board.publish(
                engine.metrics(),
                engine.bus_stats(),
                engine.live_peers().len(),
            ),
            #[cfg(feature = "echo")]
            Protocol::Echo(_) => board.publish(Default::default(), Default::default(), 0),
        }
    }

    /// When the engine wants [`Input::Tick`].
    pub(crate) fn wake(&self) -> Option<Instant> {
        self.wake
    }

    /// Feeds `Tick` if the engine's timer is due at `at`.
    pub(crate) fn tick_if_due(&mut self, at: Moment) {
        if self.wake.is_some_and(|wake| wake <= at.now) {
            self.wake = None;
            self.feed(at, Input::Tick);
        }
    }

    /// Feeds one input and routes everything it produced.
    pub(crate) fn feed(&mut self, at: Moment, input: Input) {
        if let Err(misuse) = self.engine.handle_input(at, input) {
            // Expected now and then: a worker may report a socket the engine closed meanwhile.
            tracing::debug!(%misuse, "engine refused an input");
        }
        loop {
            match self.engine.poll_output() {
                Output::Broadcast {
                    conns,
                    except,
                    frame,
                } => self.router.broadcast(conns, except, frame),
                Output::Webhook(delivery) => self.webhooks.deliver(delivery),
                Output::Notice(notice) => tracing::debug!(
                    app = notice.app.as_ref().map(tracing::field::display),
                    socket_id = notice.socket_id.map(tracing::field::display),
                    peer = notice.peer.map(tracing::field::display),
                    "{}",
                    notice.message
                ),
                // Taken here, before routing: a bus message has no connection to go to.
                Output::Bus(message) => match &self.bus {
                    Some(bus) => bus.send(message),
                    None => tracing::warn!("a bus message from an engine with no cluster link"),
                },
                // Asked only when `[app_store]` names a database; answered through the door.
                Output::LookupApp(lookup) => match &self.app_store {
                    Some(store) => store.ask(lookup),
                    None => tracing::warn!(?lookup, "an app lookup with no app store to ask"),
                },
                Output::Debug(event) => {
                    if let Some(hub) = &self.console {
                        hub.event(event.to_json());
                    }
                }
                Output::HttpResponse { req, status, body } if ConsoleHub::owns(req) => {
                    if let Some(hub) = &self.console {
                        hub.answer(req, status, body);
                    }
                }
                Output::Timeout(at) => {
                    self.wake = at;
                    return;
                }
                addressed => self.router.route(addressed),
            }
        }
    }
}

/// The engine on a thread of its own, fed through the door.
pub(crate) struct EngineThread {
    core: EngineCore,
    to_engine: Receiver<Input>,
}

impl EngineThread {
    /// Puts the pieces together; nothing runs until [`EngineThread::run`].
    pub(crate) fn new(core: EngineCore, to_engine: Receiver<Input>) -> Self {
        EngineThread { core, to_engine }
    }

    /// Serves until the door is closed and empty.
    pub(crate) fn run(mut self) {
        let mut inputs = Vec::new();
        loop {
            let timeout = self
                .core
                .wake
                .map(|at| at.saturating_duration_since(Instant::now()));
            if self.to_engine.recv(&mut inputs, usize::MAX, timeout) == Received::Closed {
                return;
            }
            let at = now();
            self.core.tick_if_due(at);
            for input in inputs.drain(..) {
                self.core.feed(at, input);
            }
            self.core.router.flush();
            self.core.end_batch(at.now, true);
        }
    }
}

/// The current moment on both clocks.
pub(crate) fn now() -> Moment {
    Moment::new(Instant::now(), unix_ms())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A seed for socket ids that differs between runs (std seeds `RandomState` from the OS).
pub(crate) fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}
