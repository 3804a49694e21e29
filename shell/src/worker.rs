//! One I/O worker: a mio loop over its share of the connections.
//!
//! A worker owns its sockets from acceptance to close: it reads and frames requests and
//! WebSocket messages, hands the resulting inputs to the engine thread in one batch per loop
//! turn through the door (`to_engine`), applies what the engine routed back (frames, closes,
//! HTTP answers) and writes. Worker 0 also accepts, and deals new sockets round-robin to every
//! worker, itself included. When the door is full, the worker keeps its batch and stops reading
//! sockets until the engine has made room (it is woken then): backpressure instead of loss.
//!
//! A server with a single worker runs the engine inline instead: feed each input, apply the
//! outputs, flush, until no input is left. With worker and engine sharing one thread there is
//! nothing to hand off, and no thread switch per request. The door stays open all the same:
//! other feeders push into it, the push wakes the worker, and the worker feeds what it finds
//! there to its engine each turn.

use crate::accept_log::AcceptLog;
use crate::conn::{Conn, ConnLimits, Cx, Flow};
use crate::door::{Feeder, Requests};
use crate::engine_thread::{self, EngineCore};
use crate::metrics::{ShellStats, WorkerStats};
use crate::queue::{Receiver, Sender, Unsent};
use crate::rate_limit::ClientGate;
use crate::route::ToWorker;
use crate::slots::Slots;
use crate::supervisor::{Stop, StopLevel};
use crate::tls::TlsIdentity;
use crate::transport::Transport;
use ferrocast_engine::{ConnId, Frame, Input, Output};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LISTENER: Token = Token(0);
/// The token of the worker's `mio::Waker`.
pub(crate) const WAKER: Token = Token(1);
/// Connection tokens are their slot index plus this offset.
const FIRST_CONN: usize = 2;
/// Size of the read buffer shared by the worker's connections.
const SCRATCH_BYTES: usize = 16 * 1024;
/// How long to wait before accepting again after `accept` failed (e.g. out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A connection and the loop's bookkeeping about it.
struct Entry {
    conn: Conn,
    /// The deadline already pushed onto the timer heap.
    scheduled: Option<Instant>,
    /// Whether WRITABLE interest is registered.
    writable: bool,
    /// Whether it is in the list of connections to flush this turn.
    touched: bool,
    /// Whether it is in the backlog of connections to read without waiting for an event.
    queued_read: bool,
}

/// The listening socket and where new sockets go (worker 0 only).
pub(crate) struct Acceptor {
    listener: TcpListener,
    /// Every worker's `to_worker` queue, this worker's own included (it is never used).
    peers: Vec<Sender<ToWorker>>,
    /// Sockets to hand over at the end of the turn, per worker.
    outgoing: Vec<Vec<ToWorker>>,
    next: usize,
}

impl Acceptor {
    /// Accepts on `listener` and deals sockets to the workers behind `peers`.
    pub(crate) fn new(listener: TcpListener, peers: Vec<Sender<ToWorker>>) -> Self {
        Acceptor {
            listener,
            outgoing: peers.iter().map(|_| Vec::new()).collect(),
            peers,
            next: 0,
        }
    }
}

/// Where a worker's inputs go.
pub(crate) enum EngineLink {
    /// The door to the engine thread (woken for room through this worker's waker).
    Door(Sender<Input>),
    /// An engine the worker runs itself (the one-worker server), with the door's receiving
    /// end, where the other feeders' inputs wait (a push wakes this worker).
    Inline {
        /// The engine with its router.
        core: Box<EngineCore>,
        /// Inputs from the other feeders.
        door: Receiver<Input>,
    },
}

/// What a worker is built from.
pub(crate) struct WorkerParts {
    /// The worker's index (the top byte of its connection ids).
    pub index: usize,
    /// Its poller, with its `mio::Waker` registered under [`WAKER`].
    pub poll: Poll,
    /// The listener, for the accepting worker.
    pub acceptor: Option<Acceptor>,
    /// Engine outputs and sockets for it.
    pub to_worker: Receiver<ToWorker>,
    /// Where its inputs go.
    pub engine: EngineLink,
    /// The transport limits.
    pub limits: ConnLimits,
    /// Client addresses and rate limits, shared by every worker.
    pub gate: Arc<ClientGate>,
    /// Shutdown requests.
    pub stop: Arc<Stop>,
    /// The certificate new connections handshake with, when the port speaks TLS.
    pub tls: Option<Arc<TlsIdentity>>,
    /// Every worker's counters (this one writes its own, at `index`).
    pub stats: ShellStats,
}

/// One I/O worker.
pub(crate) struct Worker {
    index: usize,
    /// The worker as a feeder of the engine (the top byte of its connection and request ids).
    feeder: Feeder,
    poll: Poll,
    acceptor: Option<Acceptor>,
    to_worker: Receiver<ToWorker>,
    /// Items taken from `to_worker` (kept for its allocation).
    mail: Vec<ToWorker>,
    engine: EngineLink,
    /// HTTP requests handed to the engine, by request id.
    requests: Requests,
    stop: Arc<Stop>,
    tls: Option<Arc<TlsIdentity>>,
    stats: ShellStats,
    conns: Slots<Entry>,
    limits: ConnLimits,
    gate: Arc<ClientGate>,
    scratch: Vec<u8>,
    /// Inputs for the engine, in the order they happened.
    inputs: Vec<Input>,
    /// The door refused `inputs`: read no socket until the engine takes them.
    stalled: bool,
    touched: Vec<usize>,
    /// Connections to read again without waiting for an event.
    backlog: Vec<usize>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    accept_retry: Option<Instant>,
    /// Keeps a run of failed accepts to one line when it starts and one when it ends.
    accept_log: AcceptLog,
    shutdown_deadline: Option<Instant>,
}

impl Worker {
    /// A worker ready to [`Worker::run`].
    pub(crate) fn new(parts: WorkerParts) -> Self {
        let feeder = Feeder(u8::try_from(parts.index).unwrap_or(u8::MAX));
        Worker {
            index: parts.index,
            poll: parts.poll,
            acceptor: parts.acceptor,
            to_worker: parts.to_worker,
            mail: Vec::new(),
            engine: parts.engine,
            feeder,
            requests: Requests::new(feeder),
            stop: parts.stop,
            tls: parts.tls,
            stats: parts.stats,
            conns: Slots::for_worker(parts.index),
            limits: parts.limits,
            gate: parts.gate,
            scratch: vec![0; SCRATCH_BYTES],
            inputs: Vec::new(),
            stalled: false,
            touched: Vec::new(),
            backlog: Vec::new(),
            deadlines: BinaryHeap::new(),
            accept_retry: None,
            accept_log: AcceptLog::default(),
            shutdown_deadline: None,
        }
    }

    /// Serves until shut down: every connection closed, or the shutdown grace period over.
    pub(crate) fn run(mut self) -> io::Result<()> {
        if let Some(acceptor) = &mut self.acceptor {
            self.poll
                .registry()
                .register(&mut acceptor.listener, LISTENER, Interest::READABLE)?;
        }
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => {}
                    Token(token) => {
                        let index = token - FIRST_CONN;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            let hung_up = event.is_read_closed() || event.is_error();
                            if let Some(entry) = self.conns.get_mut(index) {
                                entry.conn.on_event(hung_up);
                            }
                            if self.stalled {
                                self.read_later(index);
                            } else {
                                self.read(index, now);
                            }
                        }
                        if event.is_writable() || event.is_write_closed() {
                            self.touch(index);
                        }
                    }
                }
            }
            self.turn(now);
            if let Some(deadline) = self.shutdown_deadline {
                let done = self.conns.is_empty() && self.inputs.is_empty();
                if done || Instant::now() >= deadline {
                    tracing::info!(
                        worker = self.index,
                        remaining = self.conns.len(),
                        "worker shut down"
                    );
                    return Ok(());
                }
            }
        }
    }

    /// Everything after socket events: engine outputs, shutdown, backlog reads, timers,
    /// flushing, and handing the turn's inputs to the engine.
    fn turn(&mut self, now: Instant) {
        self.take_mail(now);
        self.check_stop(now);
        // A batch refused earlier goes first, so the engine sees inputs in order.
        self.offer_inputs();
        if !self.stalled {
            for index in std::mem::take(&mut self.backlog) {
                if let Some(entry) = self.conns.get_mut(index) {
                    entry.queued_read = false;
                }
                self.read(index, now);
            }
        }
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            self.accept(now);
        }
        while let Some(&Reverse((at, id))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            if let Some(index) = self.conns.index_of(ConnId(id)) {
                let flow = self.with_conn(index, now, |conn, cx| conn.on_deadline(cx));
                self.after(index, flow);
            }
        }
        self.hand_over_sockets(now);
        if matches!(self.engine, EngineLink::Inline { .. }) {
            // Closing a connection can produce a `Closed` input, whose outputs need flushing.
            loop {
                self.pump_inline(now);
                self.flush_touched(now);
                if self.inputs.is_empty() {
                    break;
                }
            }
        } else {
            self.flush_touched(now);
            self.offer_inputs();
        }
    }

    /// Feeds the inline engine every pending input, this worker's and the other feeders',
    /// and applies what it answered.
    fn pump_inline(&mut self, now: Instant) {
        let EngineLink::Inline { core, door } = &mut self.engine else {
            return;
        };
        let started = Instant::now();
        let mut fed = !self.inputs.is_empty();
        core.tick_if_due(engine_thread::now());
        for input in self.inputs.drain(..) {
            core.feed(engine_thread::now(), input);
        }
        if door.drain(&mut self.inputs) {
            fed = true;
            for input in self.inputs.drain(..) {
                core.feed(engine_thread::now(), input);
            }
        }
        core.router.take_lane(self.feeder, &mut self.mail);
        // Outputs for other feeders (none answer yet, but a bus or admin thread would).
        core.router.flush();
        core.end_batch(started, fed);
        self.apply_mail(now);
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.backlog.is_empty() && !self.stalled {
            return Some(Duration::ZERO);
        }
        let engine_wake = match &self.engine {
            EngineLink::Inline { core, .. } => core.wake(),
            EngineLink::Door(_) => None,
        };
        [
            engine_wake,
            self.deadlines.peek().map(|Reverse((at, _))| *at),
            self.accept_retry,
            self.shutdown_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
    }

    /// Hands the batch of inputs to the engine, or keeps it (and stops reading) if refused.
    fn offer_inputs(&mut self) {
        let EngineLink::Door(to_engine) = &self.engine else {
            return;
        };
        match to_engine.try_send(&mut self.inputs) {
            Ok(()) => self.stalled = false,
            Err(Unsent::Full) => {
                if !self.stalled {
                    tracing::debug!(
                        worker = self.index,
                        inputs = self.inputs.len(),
                        "the door to the engine is full: reading paused"
                    );
                }
                self.stalled = true;
            }
            Err(Unsent::Closed) => {
                // Only once every worker has stopped, or after the engine thread failed.
                tracing::debug!(inputs = self.inputs.len(), "engine gone: inputs dropped");
                self.inputs.clear();
                self.stalled = false;
            }
        }
    }

    fn take_mail(&mut self, now: Instant) {
        self.to_worker.drain(&mut self.mail);
        self.apply_mail(now);
    }

    /// Applies engine outputs and adopts handed-over sockets.
    fn apply_mail(&mut self, now: Instant) {
        let mut mail = std::mem::take(&mut self.mail);
        for item in mail.drain(..) {
            match item {
                // Served during a shutdown's drain too: its one request gets an answer.
                ToWorker::Socket(stream, peer) => self.adopt(stream, peer, now),
                ToWorker::Output(Output::Send { conn, frame }) => {
                    self.deliver(conn, &frame, Conn::send_own)
                }
                ToWorker::Slice {
                    conns,
                    range,
                    except,
                    frame,
                } => {
                    let recipients = conns.get(range).unwrap_or_default();
                    for &conn in recipients.iter().filter(|&&c| Some(c) != except) {
                        self.deliver(conn, &frame, Conn::send);
                    }
                }
                ToWorker::Output(Output::Close { conn, code, reason }) => {
                    if let Some(index) = self.conns.index_of(conn) {
                        if let Some(entry) = self.conns.get_mut(index) {
                            entry.conn.close(code.get(), &reason, now, &self.limits);
                        }
                        self.touch(index);
                    }
                }
                ToWorker::Output(Output::HttpResponse { req, status, body }) => {
                    let conn = self.requests.answered(req);
                    let Some(index) = conn.and_then(|conn| self.conns.index_of(conn)) else {
                        tracing::debug!(req = req.0, "response for a connection that left");
                        continue;
                    };
                    let Some(entry) = self.conns.get_mut(index) else {
                        continue;
                    };
                    if entry.conn.respond(status, &body, now, &self.limits) {
                        // Pipelined requests may already be buffered; reading resumes too.
                        self.read_later(index);
                    }
                    self.touch(index);
                }
                ToWorker::Output(other) => {
                    tracing::warn!(?other, "a worker was routed an output it cannot apply");
                }
            }
        }
        self.mail = mail;
    }

    fn check_stop(&mut self, now: Instant) {
        let level = self.stop.level();
        if level == StopLevel::Run {
            return;
        }
        if self.shutdown_deadline.is_none() {
            self.begin_shutdown(now);
        }
        if level == StopLevel::Now {
            self.shutdown_deadline = Some(now);
        }
    }

    /// Closes the connections the engine does not know (HTTP ones) once they are answered;
    /// the engine closes the WebSockets itself, having been fed `Shutdown` through the door.
    /// The acceptor keeps accepting until the worker ends, so that a load balancer's
    /// `GET /ready` during the drain is answered 503 (and an upgrade is told 4200) instead of
    /// waiting unanswered in the listen backlog; each such connection gets one answer.
    fn begin_shutdown(&mut self, now: Instant) {
        tracing::debug!(
            worker = self.index,
            connections = self.conns.len(),
            "shutting down"
        );
        self.shutdown_deadline = Some(now + self.limits.close_linger);
        for index in self.conns.indices() {
            self.with_conn(index, now, |conn, cx| conn.shut_down(cx));
            self.touch(index);
        }
    }

    fn accept(&mut self, now: Instant) {
        loop {
            let Some(acceptor) = &mut self.acceptor else {
                return;
            };
            match acceptor.listener.accept() {
                Ok((stream, peer)) => {
                    let peer = peer.ip();
                    // Small frames must not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    let send_buffer = self.limits.socket_send_buffer_bytes;
                    if send_buffer > 0 {
                        // Without it the kernel grows the buffer to megabytes for a slow
                        // reader, past what `max_output_bytes` says a connection may hold.
                        if let Err(e) =
                            socket2::SockRef::from(&stream).set_send_buffer_size(send_buffer)
                        {
                            tracing::debug!(error = %e, "cannot set SO_SNDBUF");
                        }
                    }
                    let target = acceptor.next;
                    acceptor.next = (target + 1) % acceptor.peers.len();
                    // While draining, the other workers may already have ended.
                    if target == self.index || self.shutdown_deadline.is_some() {
                        self.adopt(stream, peer, now);
                    } else {
                        acceptor.outgoing[target].push(ToWorker::Socket(stream, peer));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Caught up with the backlog: only now has accepting recovered (a socket
                    // accepted in between while others still fail does not end the episode).
                    self.accepting_again(now);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    if self.accept_log.failed(now) {
                        tracing::warn!(error = %e, "accept failed; retrying every {ACCEPT_RETRY:?} (logged again when it works)");
                    }
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// Ends an episode of failed accepts, if one was going on, with one line saying how long.
    fn accepting_again(&mut self, now: Instant) {
        if let Some(episode) = self.accept_log.working(now) {
            tracing::info!(
                "accept failed {} times over {:?}; accepting again",
                episode.failures,
                episode.lasted
            );
        }
    }

    /// Deals the sockets accepted this turn; a worker whose queue is full gets none (this
    /// worker serves them instead).
    fn hand_over_sockets(&mut self, now: Instant) {
        let Some(acceptor) = &mut self.acceptor else {
            return;
        };
        let mut kept = Vec::new();
        for (lane, peer) in acceptor.outgoing.iter_mut().zip(&acceptor.peers) {
            match peer.try_send(lane) {
                Ok(()) => {}
                Err(Unsent::Full) => kept.append(lane),
                Err(Unsent::Closed) => lane.clear(),
            }
        }
        for item in kept {
            if let ToWorker::Socket(stream, peer) = item {
                self.adopt(stream, peer, now);
            }
        }
    }

    /// Starts serving a socket from `peer`.
    fn adopt(&mut self, stream: TcpStream, peer: IpAddr, now: Instant) {
        let transport = match &self.tls {
            None => Transport::Plain,
            // Read per socket: a certificate reloaded since serves from the next handshake on.
            Some(identity) => match Transport::tls(identity.current()) {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start a TLS session");
                    return;
                }
            },
        };
        let id = self.conns.next_id();
        let conn = Conn::new(id, stream, peer, transport, now, &self.limits);
        let index = self.conns.insert(Entry {
            conn,
            scheduled: None,
            writable: false,
            touched: false,
            queued_read: false,
        });
        let Some(entry) = self.conns.get_mut(index) else {
            return;
        };
        let registered = self.poll.registry().register(
            entry.conn.stream_mut(),
            Token(index + FIRST_CONN),
            Interest::READABLE,
        );
        if let Err(e) = registered {
            tracing::warn!(error = %e, "cannot register a new connection");
            self.conns.remove(index);
            return;
        }
        if self.shutdown_deadline.is_some() {
            self.with_conn(index, now, |conn, cx| conn.shut_down(cx));
        }
        tracing::debug!(worker = self.index, conn = id.0, "accepted");
        WorkerStats::add(&self.stats[self.index].accepted, 1);
        self.touch(index);
    }

    /// Runs `f` on a connection with a context borrowed from the worker.
    fn with_conn<R: Default>(
        &mut self,
        index: usize,
        now: Instant,
        f: impl FnOnce(&mut Conn, &mut Cx<'_>) -> R,
    ) -> R {
        let Some(entry) = self.conns.get_mut(index) else {
            return R::default();
        };
        let mut cx = Cx {
            now,
            inputs: &mut self.inputs,
            requests: &mut self.requests,
            limits: &self.limits,
            gate: &self.gate,
            stats: &self.stats[self.index],
        };
        f(&mut entry.conn, &mut cx)
    }

    fn read(&mut self, index: usize, now: Instant) {
        let Some(entry) = self.conns.get_mut(index) else {
            return;
        };
        let mut cx = Cx {
            now,
            inputs: &mut self.inputs,
            requests: &mut self.requests,
            limits: &self.limits,
            gate: &self.gate,
            stats: &self.stats[self.index],
        };
        let flow = entry.conn.on_readable(&mut self.scratch, &mut cx);
        self.after(index, flow);
    }

    /// Reads the connection in a later turn, without waiting for a readiness event.
    fn read_later(&mut self, index: usize) {
        if let Some(entry) = self.conns.get_mut(index) {
            if !entry.queued_read {
                entry.queued_read = true;
                self.backlog.push(index);
            }
        }
    }

    fn after(&mut self, index: usize, flow: Flow) {
        match flow {
            Flow::Drop => self.drop_conn(index),
            Flow::ReadAgain => {
                self.read_later(index);
                self.touch(index);
            }
            Flow::Idle => self.touch(index),
        }
    }

    fn touch(&mut self, index: usize) {
        if let Some(entry) = self.conns.get_mut(index) {
            if !entry.touched {
                entry.touched = true;
                self.touched.push(index);
            }
        }
    }

    /// Forgets a connection and closes its socket. No `epoll_ctl(DEL)` first: the socket's
    /// descriptor is never duplicated, so closing it takes it out of the epoll set.
    fn drop_conn(&mut self, index: usize) {
        if let Some(entry) = self.conns.remove(index) {
            tracing::trace!(conn = entry.conn.id().0, "dropped");
        }
    }

    /// Queues `frame` for `conn` with `queue` (a broadcast's or a frame of its own).
    fn deliver(
        &mut self,
        conn: ConnId,
        frame: &Frame,
        queue: fn(&mut Conn, &Frame, &ConnLimits) -> bool,
    ) {
        let Some(index) = self.conns.index_of(conn) else {
            return;
        };
        let Some(entry) = self.conns.get_mut(index) else {
            return;
        };
        if queue(&mut entry.conn, frame, &self.limits) {
            tracing::debug!(
                conn = conn.0,
                queued = entry.conn.queued_bytes(),
                "output queue full: slow consumer"
            );
            WorkerStats::add(&self.stats[self.index].slow_consumers, 1);
            self.inputs.push(Input::SlowConsumer { conn });
        }
        self.touch(index);
    }

    /// Writes each touched connection once, then updates its interest and deadline.
    fn flush_touched(&mut self, now: Instant) {
        for index in std::mem::take(&mut self.touched) {
            let flow = self.with_conn(index, now, |conn, cx| conn.flush(cx));
            if flow == Flow::Drop {
                self.drop_conn(index);
                continue;
            }
            let Some(entry) = self.conns.get_mut(index) else {
                continue;
            };
            entry.touched = false;
            let want = entry.conn.wants_write();
            if want != entry.writable {
                let interest = if want {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                let token = Token(index + FIRST_CONN);
                match self
                    .poll
                    .registry()
                    .reregister(entry.conn.stream_mut(), token, interest)
                {
                    Ok(()) => entry.writable = want,
                    Err(e) => tracing::warn!(error = %e, "cannot update interest"),
                }
            }
            let deadline = entry.conn.deadline();
            if deadline != entry.scheduled {
                entry.scheduled = deadline;
                if let Some(at) = deadline {
                    self.deadlines.push(Reverse((at, entry.conn.id().0)));
                }
            }
        }
    }
}

impl Drop for Worker {
    /// Whether it returns or panics, a worker leaves no producer waiting on its queue.
    fn drop(&mut self) {
        self.to_worker.close();
    }
}
