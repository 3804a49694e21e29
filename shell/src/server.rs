//! The single-threaded mio event loop: accepts sockets, lets connections turn bytes into
//! engine inputs, feeds the engine, routes its outputs, flushes, and sleeps until the next
//! socket event, engine timer or connection deadline.

use crate::conn::{Conn, ConnLimits, Cx, Flow};
use crate::settings::Settings;
use crate::slots::Slots;
use crate::webhook::WebhookSink;
use ferrocast_engine::{ConnId, Engine, Frame, Input, Moment, Output};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const LISTENER: Token = Token(0);
const SIGNALS: Token = Token(1);
/// Connection tokens are their slot index plus this offset.
const FIRST_CONN: usize = 2;
/// Size of the read buffer shared by every connection.
const SCRATCH_BYTES: usize = 16 * 1024;
/// How long to wait before accepting again after `accept` failed (e.g. out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// Close code sent to every WebSocket on shutdown (reconnect at once, elsewhere).
const SHUTDOWN_CLOSE_CODE: u16 = 4200;

/// A connection and the loop's bookkeeping about it.
struct Entry {
    conn: Conn,
    /// The deadline already pushed onto the timer heap.
    scheduled: Option<Instant>,
    /// Whether WRITABLE interest is registered.
    writable: bool,
    /// Whether it is in the list of connections to flush this turn.
    touched: bool,
}

/// The server: a listener, its connections and the engine.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    signals: Option<signal_hook_mio::v1_0::Signals>,
    engine: Engine,
    conns: Slots<Entry>,
    limits: ConnLimits,
    scratch: Vec<u8>,
    /// Inputs waiting for the engine, in the order they happened.
    inputs: Vec<Input>,
    touched: Vec<usize>,
    /// Connections whose read budget ran out, to read again without waiting for an event.
    backlog: Vec<usize>,
    deadlines: BinaryHeap<Reverse<(Instant, u64)>>,
    engine_wake: Option<Instant>,
    accept_retry: Option<Instant>,
    shutdown_deadline: Option<Instant>,
    webhooks: Box<dyn WebhookSink>,
}

impl Server {
    /// Binds the listening socket and builds the engine.
    pub fn bind(settings: &Settings, webhooks: Box<dyn WebhookSink>) -> io::Result<Server> {
        let host = settings.server.host.as_str();
        let addr = (host, settings.server.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"))
            })?;
        let mut listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            signals: None,
            engine: Engine::new(settings.engine.clone(), random_seed()),
            conns: Slots::default(),
            limits: settings.conn_limits(),
            scratch: vec![0; SCRATCH_BYTES],
            inputs: Vec::new(),
            touched: Vec::new(),
            backlog: Vec::new(),
            deadlines: BinaryHeap::new(),
            engine_wake: None,
            accept_retry: None,
            shutdown_deadline: None,
            webhooks,
        })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shuts down gracefully on SIGINT or SIGTERM (a second signal stops at once).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook_mio::v1_0::Signals::new([SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Serves until shut down by a signal.
    pub fn run(&mut self) -> io::Result<()> {
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
                    SIGNALS => self.on_signal(now),
                    Token(token) => {
                        let index = token - FIRST_CONN;
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.read(index, now);
                        }
                        if event.is_writable() || event.is_write_closed() {
                            self.touch(index);
                        }
                    }
                }
            }
            self.turn(now);
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || Instant::now() >= deadline {
                    tracing::info!(remaining = self.conns.len(), "shut down");
                    return Ok(());
                }
            }
        }
    }

    /// Everything after socket events: backlog reads, timers, the engine, then flushing.
    fn turn(&mut self, now: Instant) {
        for index in std::mem::take(&mut self.backlog) {
            self.read(index, now);
        }
        if self.accept_retry.is_some_and(|at| at <= now) {
            self.accept_retry = None;
            self.accept(now);
        }
        if self.engine_wake.is_some_and(|at| at <= now) {
            self.engine_wake = None;
            self.inputs.push(Input::Tick);
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
        // Dropping a connection can produce a `Closed` input, whose outputs need flushing.
        loop {
            self.pump_engine();
            self.flush_touched(now);
            if self.inputs.is_empty() {
                break;
            }
        }
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if !self.backlog.is_empty() {
            return Some(Duration::ZERO);
        }
        [
            self.engine_wake,
            self.deadlines.peek().map(|Reverse((at, _))| *at),
            self.accept_retry,
            self.shutdown_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|at| at.saturating_duration_since(now))
    }

    fn accept(&mut self, now: Instant) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, _)) => {
                    // Small frames must not wait for Nagle's algorithm.
                    let _ = stream.set_nodelay(true);
                    let id = self.conns.next_id();
                    let conn = Conn::new(id, stream, now, &self.limits);
                    let index = self.conns.insert(Entry {
                        conn,
                        scheduled: None,
                        writable: false,
                        touched: false,
                    });
                    let Some(entry) = self.conns.get_mut(index) else {
                        continue;
                    };
                    let registered = self.poll.registry().register(
                        entry.conn.stream_mut(),
                        Token(index + FIRST_CONN),
                        Interest::READABLE,
                    );
                    if let Err(e) = registered {
                        tracing::warn!(error = %e, "cannot register a new connection");
                        self.conns.remove(index);
                        continue;
                    }
                    tracing::trace!(conn = id.0, "accepted");
                    self.touch(index);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying shortly");
                    self.accept_retry = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn on_signal(&mut self, now: Instant) {
        let Some(signals) = &mut self.signals else {
            return;
        };
        if signals.pending().next().is_none() {
            return;
        }
        if self.shutdown_deadline.is_some() {
            tracing::info!("second signal: stopping now");
            self.shutdown_deadline = Some(now);
            return;
        }
        tracing::info!(
            connections = self.conns.len(),
            "shutting down: closing every connection"
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.shutdown_deadline = Some(now + self.limits.close_linger);
        for index in self.conns.indices() {
            self.with_conn(index, now, |conn, cx| {
                conn.shut_down(SHUTDOWN_CLOSE_CODE, cx)
            });
            self.touch(index);
        }
    }

    /// Runs `f` on a connection with a context borrowed from the server.
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
            limits: &self.limits,
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
            limits: &self.limits,
        };
        let flow = entry.conn.on_readable(&mut self.scratch, &mut cx);
        self.after(index, flow);
    }

    fn after(&mut self, index: usize, flow: Flow) {
        match flow {
            Flow::Drop => self.drop_conn(index),
            Flow::ReadAgain => {
                self.backlog.push(index);
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

    fn drop_conn(&mut self, index: usize) {
        if let Some(mut entry) = self.conns.remove(index) {
            let _ = self.poll.registry().deregister(entry.conn.stream_mut());
            tracing::trace!(conn = entry.conn.id().0, "dropped");
        }
    }

    /// Feeds every pending input, routing the outputs of each before the next.
    fn pump_engine(&mut self) {
        while !self.inputs.is_empty() {
            for input in std::mem::take(&mut self.inputs) {
                let at = Moment::new(Instant::now(), unix_ms());
                if let Err(misuse) = self.engine.handle_input(at, input) {
                    tracing::debug!(%misuse, "engine refused an input");
                }
                self.route_outputs(at.now);
            }
        }
    }

    fn route_outputs(&mut self, now: Instant) {
        loop {
            match self.engine.poll_output() {
                Output::Send { conn, frame } => self.deliver(conn, &frame),
                Output::Broadcast {
                    conns,
                    except,
                    frame,
                } => {
                    for &conn in conns.iter().filter(|&&c| Some(c) != except) {
                        self.deliver(conn, &frame);
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some(index) = self.conns.index_of(conn) {
                        if let Some(entry) = self.conns.get_mut(index) {
                            entry.conn.close(code, &reason, now, &self.limits);
                        }
                        self.touch(index);
                    }
                }
                Output::HttpResponse { req, status, body } => {
                    let Some(index) = self.conns.index_of(ConnId(req.0)) else {
                        tracing::debug!(req = req.0, "response for a connection that left");
                        continue;
                    };
                    let Some(entry) = self.conns.get_mut(index) else {
                        continue;
                    };
                    if entry.conn.respond(status, &body, now, &self.limits) {
                        // Pipelined requests may already be buffered; reading resumes too.
                        self.backlog.push(index);
                    }
                    self.touch(index);
                }
                Output::Webhook(delivery) => self.webhooks.deliver(delivery),
                Output::Timeout(at) => {
                    self.engine_wake = at;
                    return;
                }
            }
        }
    }

    fn deliver(&mut self, conn: ConnId, frame: &Frame) {
        let Some(index) = self.conns.index_of(conn) else {
            return;
        };
        let Some(entry) = self.conns.get_mut(index) else {
            return;
        };
        if entry.conn.send(frame, &self.limits) {
            tracing::debug!(
                conn = conn.0,
                queued = entry.conn.queued_bytes(),
                "output queue full: slow consumer"
            );
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

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A seed for socket ids that differs between runs (std seeds `RandomState` from the OS).
fn random_seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.finish()
}
