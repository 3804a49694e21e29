//! The link to Redis: one subscriber thread blocked on the pub/sub connection, one publisher
//! thread blocked on the outgoing queue, both reconnecting with capped exponential back-off.
//!
//! The subscriber is the only caller of the [`BusSink`], which makes the order of `up`,
//! `received` and `down` simple to keep; the publisher only reports failures into the shared
//! epoch (see `shared`), which the subscriber notices within `poll_interval`.

use super::shared::{OutgoingQueue, Ready, Shared, Work};
use super::{BusConfig, BusConfigError, BusSink, BusStats, Counter};
use redis::{Connection, RedisResult};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A running link to the cluster's Redis channel. Dropping it stops it.
pub struct RedisLink {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    channel: String,
}

/// Why a link could not start.
#[derive(Debug)]
pub enum BusStartError {
    /// The configuration is invalid.
    Config(BusConfigError),
    /// The OS refused a thread.
    Thread(std::io::Error),
}

impl From<BusConfigError> for BusStartError {
    fn from(error: BusConfigError) -> Self {
        BusStartError::Config(error)
    }
}

impl std::fmt::Display for BusStartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusStartError::Config(error) => error.fmt(f),
            BusStartError::Thread(error) => write!(f, "cannot start a cluster bus thread: {error}"),
        }
    }
}

impl std::error::Error for BusStartError {}

/// The engine side's handle for outgoing messages; cheap to clone.
#[derive(Clone)]
pub struct BusSender {
    shared: Arc<Shared>,
}

impl BusSender {
    /// Queues `bytes` for one `PUBLISH` on the cluster's channel. Never blocks: when the queue
    /// is full its oldest message is dropped and counted (see [`BusConfig::outgoing_max_messages`]).
    pub fn send(&self, bytes: Vec<u8>) {
        self.shared.push(bytes);
    }

    /// Messages queued and not yet published.
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }
}

/// Everything one of the two threads needs.
struct Side {
    client: redis::Client,
    channel: String,
    config: BusConfig,
    shared: Arc<Shared>,
}

impl RedisLink {
    /// Checks `config` and starts the link's two threads; `sink` hears from it from then on.
    /// Redis need not be reachable yet: the link keeps trying and reports `up` when it is.
    pub fn start(config: BusConfig, sink: impl BusSink) -> Result<RedisLink, BusStartError> {
        config.validate()?;
        let client = config.client()?;
        let channel = config.channel();
        let shared = Arc::new(Shared::new(
            OutgoingQueue::new(config.outgoing_max_messages, config.outgoing_max_bytes),
            Arc::new(BusStats::default()),
        ));
        let side = |config: &BusConfig| Side {
            client: client.clone(),
            channel: channel.clone(),
            config: config.clone(),
            shared: Arc::clone(&shared),
        };
        let subscriber = side(&config);
        let publisher = side(&config);
        let spawn = |name: &str, body: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(body)
                .map_err(BusStartError::Thread)
        };
        let mut threads = Vec::with_capacity(2);
        threads.push(spawn(
            "bus-subscriber",
            Box::new(move || run_subscriber(subscriber, sink)),
        )?);
        match spawn("bus-publisher", Box::new(move || run_publisher(publisher))) {
            Ok(handle) => threads.push(handle),
            Err(error) => {
                shared.stop();
                for thread in threads {
                    let _ = thread.join();
                }
                return Err(error);
            }
        }
        tracing::info!(
            url = %config.redacted_url(),
            channel = %channel,
            "cluster bus: starting"
        );
        Ok(RedisLink {
            shared,
            threads,
            channel,
        })
    }

    /// A handle for queueing outgoing messages.
    pub fn sender(&self) -> BusSender {
        BusSender {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The link's counters.
    pub fn stats(&self) -> Arc<BusStats> {
        Arc::clone(&self.shared.stats)
    }

    /// The Redis channel this link publishes on and listens to.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Stops both threads and waits for them: about `poll_interval` at most, unless a thread is
    /// inside a command (up to `command_timeout`) or a connect to a Redis that accepts but does
    /// not answer (the crate bounds each handshake step by `connect_timeout`: about twice it in
    /// all). No `down` is reported.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop();
        for thread in self.threads.drain(..) {
            // A panic in a link thread is a bug; it has already been printed, and stopping must
            // not turn it into a second one.
            let _ = thread.join();
        }
    }
}

impl Drop for RedisLink {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Waits between reconnection attempts: `initial`, doubling up to `max`.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(config: &BusConfig) -> Self {
        Backoff {
            initial: config.backoff_initial,
            max: config.backoff_max,
            next: config.backoff_initial,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.initial;
    }
}

fn connect(side: &Side) -> RedisResult<Connection> {
    let connection = side
        .client
        .get_connection_with_timeout(side.config.connect_timeout)?;
    // Every read and write is bounded, so neither thread can hang on a Redis that stopped
    // answering (the subscriber shortens its reads to `poll_interval` once subscribed).
    connection.set_write_timeout(Some(side.config.command_timeout))?;
    connection.set_read_timeout(Some(side.config.command_timeout))?;
    Ok(connection)
}

/// How one subscribed session ended.
enum SessionEnd {
    /// The link is stopping.
    Stopped,
    /// The connection failed, or the publisher declared a failure (the epoch moved on).
    Lost,
}

fn run_subscriber(side: Side, mut sink: impl BusSink) {
    let shared = &side.shared;
    let mut backoff = Backoff::new(&side.config);
    let mut ever_up = false;
    // One warning per outage (and one if Redis is unreachable from the start); retries are debug.
    let mut warned = false;
    loop {
        if shared.stopping() {
            return;
        }
        let epoch = shared.epoch();
        let attempt = connect(&side).and_then(|mut connection| {
            // Subscribe first: from `up` on, every message published (our own included) is heard.
            let session = {
                let mut pubsub = connection.as_pubsub();
                pubsub.subscribe(&side.channel)?;
                pubsub.set_read_timeout(Some(side.config.poll_interval))?;
                match wait_until_ready(&side, epoch) {
                    Ready::Up => {
                        backoff.reset();
                        report_up(&side, &mut sink, &mut ever_up, &mut warned);
                        let started = Instant::now();
                        let end = receive(&side, epoch, &mut pubsub, &mut sink);
                        Some((end, started.elapsed()))
                    }
                    Ready::Stop => Some((SessionEnd::Stopped, Duration::ZERO)),
                    Ready::Stale | Ready::NotYet => None,
                }
            };
            Ok(session)
        });
        match attempt {
            Ok(Some((SessionEnd::Stopped, _))) => return,
            Ok(Some((SessionEnd::Lost, lasted))) => {
                shared.stats.add(Counter::Outages, 1);
                sink.down();
                tracing::warn!(
                    url = %side.config.redacted_url(),
                    reason = %shared.last_failure(),
                    "cluster bus: lost Redis; serving local clients only and reconnecting"
                );
                warned = true;
                // A session that ended at once (Redis accepting then dropping us) must not
                // turn into a reconnect storm: only a session that held resets the back-off.
                if lasted >= side.config.backoff_max {
                    backoff.reset();
                }
            }
            Ok(None) => {}
            Err(error) => {
                // No epoch to end: nothing was established (the publisher's connection, if any,
                // stays valid and the next subscription joins it).
                shared.stats.add(Counter::ConnectFailures, 1);
                if warned {
                    tracing::debug!(%error, "cluster bus: Redis still unreachable");
                } else {
                    tracing::warn!(
                        url = %side.config.redacted_url(),
                        %error,
                        "cluster bus: cannot reach Redis; retrying with back-off"
                    );
                    warned = true;
                }
            }
        }
        if !shared.sleep(backoff.next_delay()) {
            return;
        }
    }
}

/// Waits for the publisher's connection in `epoch`; the subscribed socket meanwhile buffers
/// what arrives, to be read once `up` is reported.
fn wait_until_ready(side: &Side, epoch: u64) -> Ready {
    loop {
        match side.shared.wait_ready(epoch, side.config.poll_interval) {
            Ready::NotYet => continue,
            other => return other,
        }
    }
}

fn report_up(side: &Side, sink: &mut impl BusSink, ever_up: &mut bool, warned: &mut bool) {
    sink.up();
    if *ever_up {
        side.shared.stats.add(Counter::Reconnects, 1);
        tracing::warn!(channel = %side.channel, "cluster bus: Redis is back; resyncing");
    } else {
        tracing::info!(channel = %side.channel, "cluster bus: connected");
    }
    *ever_up = true;
    *warned = false;
}

/// Hands every message of the subscribed session to the sink until it ends.
fn receive(
    side: &Side,
    epoch: u64,
    pubsub: &mut redis::PubSub<'_>,
    sink: &mut impl BusSink,
) -> SessionEnd {
    let shared = &side.shared;
    let mut last_traffic = Instant::now();
    loop {
        if shared.stopping() {
            return SessionEnd::Stopped;
        }
        if shared.epoch() != epoch {
            return SessionEnd::Lost;
        }
        match pubsub.get_message() {
            Ok(message) => {
                last_traffic = Instant::now();
                // Only one channel is subscribed, so any message is the cluster's.
                shared.stats.add(Counter::Received, 1);
                sink.received(message.get_payload_bytes().to_vec());
            }
            Err(error) if error.is_timeout() => {
                if last_traffic.elapsed() >= side.config.idle_ping {
                    if let Err(error) = ping_subscribed(side, pubsub) {
                        shared.fail(epoch, format!("the subscriber's PING failed: {error}"));
                        return SessionEnd::Lost;
                    }
                    last_traffic = Instant::now();
                }
            }
            Err(error) => {
                shared.fail(epoch, format!("the subscribed connection failed: {error}"));
                return SessionEnd::Lost;
            }
        }
    }
}

/// A `PING` on the subscribed connection, waiting up to `command_timeout` for the reply (not
/// just `poll_interval`: a busy Redis is not a lost one). Messages arriving first are kept by
/// the crate for the following reads.
fn ping_subscribed(side: &Side, pubsub: &mut redis::PubSub<'_>) -> RedisResult<()> {
    pubsub.set_read_timeout(Some(side.config.command_timeout))?;
    pubsub.ping::<redis::Value>()?;
    pubsub.set_read_timeout(Some(side.config.poll_interval))
}

fn run_publisher(side: Side) {
    let shared = &side.shared;
    let mut backoff = Backoff::new(&side.config);
    let mut connection: Option<(Connection, u64)> = None;
    loop {
        let epoch = shared.epoch();
        let Some((live, live_epoch)) = connection.as_mut().filter(|(_, e)| *e == epoch) else {
            connection = None;
            if shared.stopping() {
                return;
            }
            match connect(&side) {
                Ok(live) => {
                    backoff.reset();
                    shared.publisher_connected(epoch);
                    connection = Some((live, epoch));
                }
                Err(error) => {
                    shared.stats.add(Counter::ConnectFailures, 1);
                    tracing::debug!(%error, "cluster bus: publisher cannot connect");
                    if !shared.sleep(backoff.next_delay()) {
                        return;
                    }
                }
            }
            continue;
        };
        let live_epoch = *live_epoch;
        let failure = match shared.next_work(live_epoch, side.config.idle_ping) {
            Work::Stop => return,
            Work::Stale => None,
            Work::Publish(message) => {
                // Exactly one PUBLISH per message; every subscribed node fans out locally.
                match redis::cmd("PUBLISH")
                    .arg(&side.channel)
                    .arg(message)
                    .query::<i64>(live)
                {
                    Ok(_) => {
                        shared.stats.add(Counter::Published, 1);
                        None
                    }
                    Err(error) => {
                        // Not retried: Redis may have published it already, and a duplicate is
                        // worse than a gap the engine's resync after `up` repairs.
                        shared.stats.add(Counter::PublishFailures, 1);
                        Some(format!("PUBLISH failed: {error}"))
                    }
                }
            }
            Work::Idle => redis::cmd("PING")
                .query::<redis::Value>(live)
                .err()
                .map(|error| format!("the publisher's PING failed: {error}")),
        };
        if let Some(reason) = failure {
            tracing::debug!(%reason, "cluster bus: publisher connection failed");
            shared.fail(live_epoch, reason);
            connection = None;
        }
    }
}
