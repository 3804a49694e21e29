//! The engine thread: the one place the protocol state lives.
//!
//! It sleeps on its inbox until a worker hands it inputs or the engine's next timer is due,
//! stamps the batch with one [`Moment`], feeds every input (draining the outputs after each, as
//! the engine requires), routes connection outputs into per-worker lanes, gives webhooks to
//! their sink, and finally hands each worker its lane at once. [`EngineCore`] is that feeding
//! and routing without the thread: a single worker runs it inline.

use crate::inbox::{InboxReceiver, Taken};
use crate::route::Router;
use crate::webhook::WebhookSink;
use ferrocast_engine::{Engine, Input, Moment, Output};
use std::hash::{BuildHasher, Hasher};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The engine with its router and its webhook sink, fed by whoever owns it.
pub struct EngineCore {
    engine: Engine,
    /// Where connection outputs go.
    pub router: Router,
    webhooks: Box<dyn WebhookSink + Send>,
    /// When the engine wants a `Tick`.
    wake: Option<Instant>,
}

impl EngineCore {
    /// Puts the pieces together.
    pub fn new(engine: Engine, router: Router, webhooks: Box<dyn WebhookSink + Send>) -> Self {
        EngineCore {
            engine,
            router,
            webhooks,
            wake: None,
        }
    }

    /// When the engine wants [`Input::Tick`].
    pub fn wake(&self) -> Option<Instant> {
        self.wake
    }

    /// Feeds `Tick` if the engine's timer is due at `at`.
    pub fn tick_if_due(&mut self, at: Moment) {
        if self.wake.is_some_and(|wake| wake <= at.now) {
            self.wake = None;
            self.feed(at, Input::Tick);
        }
    }

    /// Feeds one input and routes everything it produced.
    pub fn feed(&mut self, at: Moment, input: Input) {
        if let Err(misuse) = self.engine.handle_input(at, input) {
            // Expected now and then: a worker may report a socket the engine closed meanwhile.
            tracing::debug!(%misuse, "engine refused an input");
        }
        loop {
            match self.engine.poll_output() {
                Output::Send { conn, frame } => self.router.send(conn, frame),
                Output::Broadcast {
                    conns,
                    except,
                    frame,
                } => self.router.broadcast(conns, except, frame),
                Output::Close { conn, code, reason } => self.router.close(conn, code.get(), reason),
                Output::HttpResponse { req, status, body } => {
                    self.router.respond(req, status, body)
                }
                Output::Webhook(delivery) => self.webhooks.deliver(delivery),
                Output::Timeout(at) => {
                    self.wake = at;
                    return;
                }
            }
        }
    }
}

/// The engine on a thread of its own, fed through its inbox.
pub struct EngineThread {
    core: EngineCore,
    inbox: InboxReceiver<Input>,
}

impl EngineThread {
    /// Puts the pieces together; nothing runs until [`EngineThread::run`].
    pub fn new(core: EngineCore, inbox: InboxReceiver<Input>) -> Self {
        EngineThread { core, inbox }
    }

    /// Serves until the inbox is closed and empty.
    pub fn run(mut self) {
        loop {
            let timeout = self
                .core
                .wake
                .map(|at| at.saturating_duration_since(Instant::now()));
            let batches = match self.inbox.recv(timeout) {
                Taken::Batches(batches) => batches,
                Taken::TimedOut => Default::default(),
                Taken::Closed => return,
            };
            let at = now();
            self.core.tick_if_due(at);
            for batch in batches {
                for input in batch {
                    self.core.feed(at, input);
                }
            }
            self.core.router.flush();
        }
    }
}

/// The current moment on both clocks.
pub fn now() -> Moment {
    Moment::new(Instant::now(), unix_ms())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A seed for socket ids that differs between runs (std seeds `RandomState` from the OS).
pub fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}
