//! Delivering the engine's webhooks off the event loop, with retries.
//!
//! The event loop hands each delivery to a bounded queue and moves on; it never waits for an
//! HTTP request. A small pool of threads POSTs them. A delivery answered with a non-2xx
//! status, or not answered in time, is retried with exponential back-off until the retry
//! window (Pusher's five minutes) has passed. What cannot be queued, or is given up on, is
//! counted and logged — never lost silently.

use crate::queue::{self, Received};
use crate::webhook::WebhookSink;
use ferrocast_engine::WebhookDelivery;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How deliveries are retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Wait before the first retry; doubled after each failure.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// No attempt starts later than this after the first one.
    pub give_up_after: Duration,
    /// How long one POST may take.
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            give_up_after: Duration::from_secs(5 * 60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters of what happened to deliveries, shared with the workers.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Taken into the queue.
    pub accepted: AtomicU64,
    /// Answered with a 2xx status.
    pub delivered: AtomicU64,
    /// Failed attempts that were scheduled again.
    pub retried: AtomicU64,
    /// Refused because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Abandoned after the retry window.
    pub given_up: AtomicU64,
}

impl DeliveryStats {
    /// Deliveries taken into the queue that were neither delivered nor given up: still
    /// queued, being attempted, or waiting for a retry.
    pub fn unsent(&self) -> u64 {
        let accepted = self.accepted.load(Ordering::Relaxed);
        let done = self.delivered.load(Ordering::Relaxed) + self.given_up.load(Ordering::Relaxed);
        accepted.saturating_sub(done)
    }
}

/// The sending side kept by the event loop; cheap to clone.
#[derive(Clone)]
pub struct WebhookSender {
    webhook_queue: queue::Sender<WebhookDelivery>,
    stats: Arc<DeliveryStats>,
}

/// The delivery threads' work, built but not started: the server starts each under its
/// supervisor ([`crate::Server::supervise_webhook_workers`]); [`WebhookWorkers::spawn`] starts
/// them on plain threads.
pub struct WebhookWorkers {
    /// Closed by the supervisor once the engine has stopped: the workers then finish.
    webhook_queue: queue::Sender<WebhookDelivery>,
    workers: Vec<Worker>,
    stats: Arc<DeliveryStats>,
}

/// A queue of `capacity` deliveries and `workers` delivery threads' work behind it.
pub fn pool(
    workers: usize,
    capacity: usize,
    policy: RetryPolicy,
) -> (WebhookSender, WebhookWorkers) {
    let (webhook_queue, inbox) = queue::bounded(capacity, None);
    let stats = Arc::new(DeliveryStats::default());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(policy.request_timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let workers = (0..workers.max(1))
        .map(|_| Worker {
            inbox: inbox.clone(),
            agent: agent.clone(),
            policy: policy.clone(),
            stats: stats.clone(),
        })
        .collect();
    let sender = WebhookSender {
        webhook_queue: webhook_queue.clone(),
        stats: stats.clone(),
    };
    (
        sender,
        WebhookWorkers {
            webhook_queue,
            workers,
            stats,
        },
    )
}

impl WebhookSender {
    /// The counters.
    pub fn stats(&self) -> &DeliveryStats {
        &self.stats
    }

    /// Stops taking deliveries; the workers attempt what is queued once more, then stop.
    pub fn close(&self) {
        self.webhook_queue.close();
    }
}

impl WebhookSink for WebhookSender {
    /// Queues a delivery without blocking; a full queue counts it as dropped and says so.
    fn deliver(&mut self, delivery: WebhookDelivery) {
        let mut batch = vec![delivery];
        if self.webhook_queue.try_send(&mut batch).is_ok() {
            self.stats.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            let dropped = self
                .stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed)
                + 1;
            let url = batch.first().map(|lost| lost.url.as_str()).unwrap_or("");
            tracing::warn!(url, dropped, "webhook queue full: delivery dropped");
        }
    }
}

impl WebhookWorkers {
    /// The delivery counters and the queue they drain, for the metrics listener.
    pub(crate) fn observed(&self) -> (Arc<DeliveryStats>, queue::Sender<WebhookDelivery>) {
        let stats = self
            .workers
            .first()
            .map(|worker| worker.stats.clone())
            .unwrap_or_default();
        (stats, self.webhook_queue.clone())
    }

    /// Starts each worker on a thread of its own, outside any supervisor (stop them with
    /// [`WebhookSender::close`]).
    pub fn spawn(self) -> std::io::Result<Vec<JoinHandle<()>>> {
        self.into_parts()
            .1
            .into_iter()
            .enumerate()
            .map(|(i, worker)| {
                std::thread::Builder::new()
                    .name(thread_name(i))
                    .spawn(move || worker.run())
            })
            .collect()
    }

    /// The queue's sender (to close it), each thread's work and the shared counters, for
    /// the supervisor.
    pub(crate) fn into_parts(
        self,
    ) -> (
        queue::Sender<WebhookDelivery>,
        Vec<Worker>,
        Arc<DeliveryStats>,
    ) {
        (self.webhook_queue, self.workers, self.stats)
    }
}

/// The name of delivery thread `i`.
pub(crate) fn thread_name(i: usize) -> String {
    format!("webhooks-{i}")
}

/// A delivery waiting for its next attempt.
struct Pending {
    delivery: WebhookDelivery,
    first_attempt: Instant,
    failures: u32,
}

/// Retries due later, earliest first; the sequence number keeps equal instants FIFO.
#[derive(Default)]
struct RetryQueue {
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    waiting: BTreeMap<u64, Pending>,
    next_seq: u64,
}

impl RetryQueue {
    fn push(&mut self, at: Instant, pending: Pending) {
        self.next_seq += 1;
        self.due.push(Reverse((at, self.next_seq)));
        self.waiting.insert(self.next_seq, pending);
    }

    fn pop_due(&mut self, now: Instant) -> Option<Pending> {
        let Reverse((at, seq)) = *self.due.peek()?;
        if at > now {
            return None;
        }
        self.due.pop();
        self.waiting.remove(&seq)
    }

    fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }
}

/// One delivery thread's work: attempts and retries until the queue is closed.
pub(crate) struct Worker {
    inbox: queue::Receiver<WebhookDelivery>,
    agent: ureq::Agent,
    policy: RetryPolicy,
    stats: Arc<DeliveryStats>,
}

impl Worker {
    /// Delivers until the queue is closed and drained; pending retries are then abandoned.
    pub(crate) fn run(self) {
        let mut retries = RetryQueue::default();
        let mut taken = Vec::with_capacity(1);
        loop {
            while let Some(pending) = retries.pop_due(Instant::now()) {
                if let Some((at, pending)) = self.attempt(pending) {
                    retries.push(at, pending);
                }
            }
            let wait = retries
                .next_due()
                .map(|at| at.saturating_duration_since(Instant::now()));
            // One at a time: the other delivery threads take the rest meanwhile.
            match self.inbox.recv(&mut taken, 1, wait) {
                Received::Items => {
                    for delivery in taken.drain(..) {
                        let pending = Pending {
                            delivery,
                            first_attempt: Instant::now(),
                            failures: 0,
                        };
                        if let Some((at, pending)) = self.attempt(pending) {
                            retries.push(at, pending);
                        }
                    }
                }
                Received::TimedOut => {}
                Received::Closed => {
                    let abandoned = retries.waiting.len() as u64;
                    if abandoned > 0 {
                        self.stats.given_up.fetch_add(abandoned, Ordering::Relaxed);
                        tracing::warn!(abandoned, "shutting down with webhook retries pending");
                    }
                    return;
                }
            }
        }
    }

    /// POSTs once; after a failure returns when to try again, unless the window has passed.
    fn attempt(&self, mut pending: Pending) -> Option<(Instant, Pending)> {
        match post(&self.agent, &pending.delivery) {
            Ok(status) if (200..300).contains(&status) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Ok(status) => tracing::info!(url = %pending.delivery.url, status, "webhook refused"),
            Err(error) => tracing::info!(url = %pending.delivery.url, %error, "webhook failed"),
        }
        let delay = self
            .policy
            .first_delay
            .saturating_mul(1 << pending.failures.min(20))
            .min(self.policy.max_delay);
        pending.failures += 1;
        let at = Instant::now() + delay;
        if at.duration_since(pending.first_attempt) > self.policy.give_up_after {
            self.stats.given_up.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(url = %pending.delivery.url, attempts = pending.failures, "webhook given up after the retry window");
            return None;
        }
        self.stats.retried.fetch_add(1, Ordering::Relaxed);
        Some((at, pending))
    }
}

fn post(agent: &ureq::Agent, delivery: &WebhookDelivery) -> Result<u16, ureq::Error> {
    let mut request = agent.post(&delivery.url);
    for (name, value) in &delivery.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send(&delivery.body[..])?;
    Ok(response.status().as_u16())
}
