//! One client socket, as an I/O worker drives it: HTTP request framing, the WebSocket
//! upgrade, frame decoding (with the engine's [`Decoder`]), answering WebSocket pings, and
//! the bounded output queue.
//!
//! A connection turns bytes into engine [`Input`]s and engine outputs into bytes; it takes no
//! protocol decision and knows nothing of the event loop around it (registration, wakes and
//! routing are the worker's). Its life: reading an HTTP request → (answer → next request)* →
//! or upgraded to a WebSocket → closing (flush, half-close, drain until the peer hangs up or a
//! deadline). Its bytes travel over a [`Transport`]: the socket itself, or TLS over it.

use crate::deflate::{self, InflateError};
use crate::door::Requests;
use crate::extensions;
use crate::forwarded::ClientAddress;
use crate::http::{self, HeadLimits, Parsed, Refusal, RequestHead, ResponseOptions};
use crate::metrics::WorkerStats;
use crate::out_queue::{Offer, OutQueue};
use crate::rate_limit::{ClientGate, Limiter, Verdict};
use crate::transport::Transport;
use ferrocast_engine::wire::websocket::{Decoder, WsEvent};
use ferrocast_engine::{ConnId, Frame, HttpRequest, Input, WsRequest};
use mio::net::TcpStream;
use std::io;
use std::net::{IpAddr, Shutdown};
use std::time::{Duration, Instant};

/// Reads per readiness event before yielding to other connections (fairness under floods).
const READ_BUDGET: usize = 16;
/// Request buffer capacity a keep-alive connection may keep between requests.
const RETAINED_REQUEST_BYTES: usize = 16 * 1024;

/// Transport limits a connection enforces.
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    /// Request head and body caps.
    pub head: HeadLimits,
    /// Largest WebSocket message accepted.
    pub max_message_bytes: usize,
    /// Most bytes waiting in the output queue.
    pub max_output_bytes: usize,
    /// Most frames waiting in the output queue.
    pub max_output_frames: usize,
    /// `SO_SNDBUF` of each accepted socket; 0 leaves the kernel's auto-tuning.
    pub socket_send_buffer_bytes: usize,
    /// Time allowed to deliver a complete request, the TLS handshake included (also the
    /// keep-alive idle time).
    pub request_timeout: Duration,
    /// Time allowed to flush and close after the close decision.
    pub close_linger: Duration,
    /// Whether permessage-deflate is negotiated with clients that offer it.
    pub permessage_deflate: bool,
    /// Whether binary messages' bytes are handed to the engine (only the echo server's
    /// engine uses them; the Pusher engine refuses binary messages unread).
    pub keep_binary: bool,
}

/// Shared state lent to a connection while it works.
pub(crate) struct Cx<'a> {
    /// The time of this loop turn.
    pub now: Instant,
    /// Inputs for the engine, in the order they happened.
    pub inputs: &'a mut Vec<Input>,
    /// Where HTTP requests get their ids.
    pub requests: &'a mut Requests,
    /// The limits in force.
    pub limits: &'a ConnLimits,
    /// Who clients are behind proxies, and the per-address rate limits.
    pub gate: &'a ClientGate,
    /// The worker's counters, for the metrics.
    pub stats: &'a WorkerStats,
}

/// What the event loop must do with a connection after an operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Nothing special.
    #[default]
    Idle,
    /// Its read budget ran out with bytes possibly left: read it again next turn.
    ReadAgain,
    /// The socket is finished: deregister and drop it.
    Drop,
}

/// An HTTP request answered by the engine, remembered until its response.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    keep_alive: bool,
    http10: bool,
    head_only: bool,
}

/// The phase of a connection's life.
enum Phase {
    /// Reading HTTP requests (the same port serves the API and WebSocket upgrades).
    Http {
        buf: Vec<u8>,
        head: Option<Box<RequestHead>>,
        sent_continue: bool,
        in_flight: Option<InFlight>,
    },
    /// An upgraded WebSocket.
    WebSocket(Box<Decoder>),
    /// Flushing what is queued, then half-closed and draining until the peer hangs up.
    Closing { shut_write: bool },
}

/// One client socket.
pub(crate) struct Conn {
    id: ConnId,
    stream: TcpStream,
    transport: Transport,
    peer: Option<IpAddr>,
    phase: Phase,
    out: OutQueue,
    /// Whether the engine has this connection open (it got `Opened` and has not closed it).
    engine_knows: bool,
    /// Set once `SlowConsumer` was reported, so it is reported once and nothing more is queued.
    slow: bool,
    /// Once slow, the latest frame addressed to this connection alone, held beyond the output
    /// budget: the engine answers `SlowConsumer` with `pusher:error` 4100 right before its
    /// Close, so this is the reason for the close, and goes out just before the close frame.
    last_words: Option<Frame>,
    /// Whether permessage-deflate was negotiated at the upgrade.
    deflate: bool,
    deadline: Option<Instant>,
    /// Whether it has answered an HTTP request (an idle one since is a keep-alive).
    served: bool,
    /// Set at shutdown: the request being read or answered is its last one.
    draining: bool,
    /// The last read emptied the socket and no readiness event came since: reading now
    /// could only return EAGAIN.
    drained: bool,
    /// A readiness event said the peer hung up: read until the end of the stream.
    hung_up: bool,
}

impl Conn {
    /// A freshly accepted socket from `peer`, given until `now + request_timeout` to complete
    /// its TLS handshake, if any, and send a request.
    pub(crate) fn new(
        id: ConnId,
        stream: TcpStream,
        peer: IpAddr,
        transport: Transport,
        now: Instant,
        limits: &ConnLimits,
    ) -> Self {
        Conn {
            id,
            stream,
            transport,
            peer: Some(peer),
            phase: Phase::Http {
                buf: Vec::new(),
                head: None,
                sent_continue: false,
                in_flight: None,
            },
            out: OutQueue::default(),
            engine_knows: false,
            slow: false,
            last_words: None,
            deflate: false,
            deadline: Some(now + limits.request_timeout),
            served: false,
            draining: false,
            drained: false,
            hung_up: false,
        }
    }

    /// The id the engine knows this connection by.
    pub(crate) fn id(&self) -> ConnId {
        self.id
    }

    /// The socket, for (re)registration with the poller.
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// When the connection must be dropped unless something happens first.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether bytes are waiting for the socket to become writable.
    pub(crate) fn wants_write(&self) -> bool {
        !self.out.is_empty() || self.transport.wants_write()
    }

    /// Bytes waiting in the output queue.
    pub(crate) fn queued_bytes(&self) -> usize {
        self.out.bytes()
    }

    /// A readiness event came for the socket (`hung_up`: the peer closed its end, or the
    /// socket failed): bytes may have arrived since the last read, so it must be read again.
    pub(crate) fn on_event(&mut self, hung_up: bool) {
        self.drained = false;
        self.hung_up |= hung_up;
    }

    /// Processes buffered requests, then reads until the socket would block, through
    /// `scratch`, a read buffer shared by every connection.
    pub(crate) fn on_readable(&mut self, scratch: &mut [u8], cx: &mut Cx<'_>) -> Flow {
        self.process_http(cx);
        for _ in 0..READ_BUDGET {
            if self.read_paused(cx.limits) {
                return Flow::Idle;
            }
            if self.drained {
                return Flow::Idle;
            }
            match self.transport.read(&mut self.stream, scratch) {
                Ok(0) => {
                    // A half-closing HTTP client still deserves the answer already queued.
                    let _ = self.transport.write(&mut self.out, &mut self.stream);
                    return self.lost(cx);
                }
                Ok(n) => {
                    WorkerStats::add(&cx.stats.bytes_received, n as u64);
                    // A short read from the bare socket emptied its receive queue; what comes
                    // later raises a new (edge-triggered) event, so the next read could only
                    // say EAGAIN. Not when the peer had already hung up: its end of stream
                    // raises no new edge. Over TLS a short read says nothing of the socket.
                    self.drained = n < scratch.len()
                        && !self.hung_up
                        && matches!(self.transport, Transport::Plain);
                    self.on_bytes(&scratch[..n], cx);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Flow::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(conn = self.id.0, error = %e, "read failed");
                    return self.lost(cx);
                }
            }
        }
        Flow::ReadAgain
    }

    /// Writes what is queued; half-closes a closing connection once everything is out (over
    /// TLS, after a close_notify).
    pub(crate) fn flush(&mut self, cx: &mut Cx<'_>) -> Flow {
        let queued = self.out.bytes();
        let written = self
            .transport
            .write(&mut self.out, &mut self.stream)
            .and_then(|all| match &self.phase {
                Phase::Closing { shut_write: false } if all => {
                    self.transport.finish(&mut self.stream)
                }
                _ => Ok(all),
            });
        let sent = queued.saturating_sub(self.out.bytes());
        WorkerStats::add(&cx.stats.bytes_sent, sent as u64);
        let counts = self.out.take_write_counts();
        if counts.writes > 0 {
            WorkerStats::add(&cx.stats.ws_writes, counts.writes);
        }
        if counts.frames > 0 {
            WorkerStats::add(&cx.stats.ws_frames_written, counts.frames);
        }
        match written {
            Ok(true) => {
                if let Phase::Closing { shut_write } = &mut self.phase {
                    if !*shut_write {
                        *shut_write = true;
                        // The peer sees our FIN after the close frame; we keep reading so that
                        // unread input does not turn our close into a reset.
                        let _ = self.stream.shutdown(Shutdown::Write);
                    }
                }
                Flow::Idle
            }
            Ok(false) => Flow::Idle,
            Err(e) => {
                tracing::debug!(conn = self.id.0, error = %e, "write failed");
                self.lost(cx)
            }
        }
    }

    /// Drops the connection when its deadline has passed; a client that began a request
    /// (sent at least its request line) is told so with 408 first.
    pub(crate) fn on_deadline(&mut self, cx: &mut Cx<'_>) -> Flow {
        match self.deadline {
            Some(at) if at <= cx.now => {
                if self.request_begun() {
                    tracing::debug!(conn = self.id.0, "request incomplete at its deadline: 408");
                    self.refuse(
                        Refusal {
                            status: 408,
                            reason: "request not completed in time".into(),
                            headers: Vec::new(),
                        },
                        cx,
                    );
                    return Flow::Idle;
                }
                tracing::debug!(conn = self.id.0, "deadline passed, dropping");
                self.lost(cx)
            }
            _ => Flow::Idle,
        }
    }

    /// Whether an HTTP request is partly read: its request line at least, not yet answered.
    fn request_begun(&self) -> bool {
        match &self.phase {
            Phase::Http {
                buf,
                head,
                in_flight: None,
                ..
            } => head.is_some() || buf.contains(&b'\n'),
            _ => false,
        }
    }

    /// Queues a frame addressed to this connection alone; returns `true` the first time the
    /// queue overflows. Once it has, the latest such frame is kept for [`Conn::close`].
    pub(crate) fn send_own(&mut self, frame: &Frame, limits: &ConnLimits) -> bool {
        if self.slow && matches!(self.phase, Phase::WebSocket(_)) {
            self.last_words = Some(frame.clone());
            return false;
        }
        self.send(frame, limits)
    }

    /// Queues a broadcast frame; returns `true` the first time the queue overflows.
    pub(crate) fn send(&mut self, frame: &Frame, limits: &ConnLimits) -> bool {
        if self.slow || !matches!(self.phase, Phase::WebSocket(_)) {
            return false;
        }
        if self.deflate {
            // Compressed once per frame, by whichever worker gets here first.
            frame.deflated(deflate::compress);
        }
        match self.out.offer(
            frame,
            self.deflate,
            limits.max_output_bytes,
            limits.max_output_frames,
        ) {
            Offer::Queued => false,
            Offer::Full => {
                self.slow = true;
                true
            }
        }
    }

    /// The engine closed the connection: queue the close frame (after the last words of a
    /// slow connection, beyond its budget) and start closing.
    pub(crate) fn close(&mut self, code: u16, reason: &str, now: Instant, limits: &ConnLimits) {
        self.engine_knows = false;
        if matches!(self.phase, Phase::WebSocket(_)) {
            if let Some(last_words) = self.last_words.take() {
                if self.deflate {
                    last_words.deflated(deflate::compress);
                }
                self.out.push_data(last_words, self.deflate);
            }
            self.out.push_frame(Frame::close(code, reason));
        }
        self.start_closing(now, limits);
    }

    /// The server is shutting down: an idle keep-alive HTTP connection closes now; one still
    /// sending or waiting for its first request, or waiting for the engine's answer, gets that
    /// answer and closes after it (a load balancer's readiness probe must hear its 503). A
    /// WebSocket is the engine's to close (it says why first), so it is left alone.
    pub(crate) fn shut_down(&mut self, cx: &mut Cx<'_>) {
        let Phase::Http {
            buf,
            head,
            in_flight,
            ..
        } = &self.phase
        else {
            return;
        };
        self.draining = true;
        let idle = buf.is_empty() && head.is_none() && in_flight.is_none();
        if idle && self.served {
            self.start_closing(cx.now, cx.limits);
        }
    }

    /// Writes the engine's answer to the request in flight; returns whether the connection
    /// may carry another request (the caller then reads it again for pipelined bytes).
    pub(crate) fn respond(
        &mut self,
        status: u16,
        body: &[u8],
        now: Instant,
        limits: &ConnLimits,
    ) -> bool {
        let Phase::Http { in_flight, .. } = &mut self.phase else {
            return false;
        };
        let Some(flight) = in_flight.take() else {
            tracing::debug!(conn = self.id.0, "response without a request in flight");
            return false;
        };
        // A 426 must name the protocol to upgrade to (RFC 9110 §15.5.22).
        let upgrade = [("Upgrade", "websocket".to_owned())];
        self.served = true;
        let keep_alive = flight.keep_alive && !self.draining;
        let options = ResponseOptions {
            keep_alive,
            http10: flight.http10,
            omit_body: flight.head_only,
            headers: if status == 426 { &upgrade } else { &[] },
        };
        self.out.push_bytes(http::response(status, body, &options));
        if keep_alive {
            self.deadline = Some(now + limits.request_timeout);
        } else {
            self.start_closing(now, limits);
        }
        keep_alive
    }

    fn start_closing(&mut self, now: Instant, limits: &ConnLimits) {
        if !matches!(self.phase, Phase::Closing { .. }) {
            self.phase = Phase::Closing { shut_write: false };
            self.deadline = Some(now + limits.close_linger);
        }
    }

    /// The socket hung up or failed: tell the engine if it knew the connection, and drop it.
    fn lost(&mut self, cx: &mut Cx<'_>) -> Flow {
        if self.engine_knows {
            self.engine_knows = false;
            cx.inputs.push(Input::Closed { conn: self.id });
        }
        self.out.clear();
        Flow::Drop
    }

    fn read_paused(&self, limits: &ConnLimits) -> bool {
        match &self.phase {
            // Hold back while the engine answers, and never buffer past one full request.
            Phase::Http { buf, in_flight, .. } => {
                in_flight.is_some()
                    || buf.len() >= limits.head.max_head_bytes + limits.head.max_body_bytes
            }
            _ => false,
        }
    }

    fn on_bytes(&mut self, bytes: &[u8], cx: &mut Cx<'_>) {
        match &mut self.phase {
            Phase::Http { buf, .. } => {
                buf.extend_from_slice(bytes);
                self.process_http(cx);
            }
            Phase::WebSocket(_) => self.decode(bytes, cx),
            Phase::Closing { .. } => {}
        }
    }

    fn decode(&mut self, bytes: &[u8], cx: &mut Cx<'_>) {
        let Phase::WebSocket(decoder) = &mut self.phase else {
            return;
        };
        let mut events = Vec::new();
        decoder.decode(bytes, &mut events);
        for event in events {
            self.on_ws_event(event, cx);
        }
    }

    fn on_ws_event(&mut self, event: WsEvent, cx: &mut Cx<'_>) {
        let conn = self.id;
        let input = match event {
            WsEvent::Text(text) => Input::Text { conn, text },
            WsEvent::Compressed(data) => match deflate::inflate(&data, cx.limits.max_message_bytes)
            {
                Ok(text) if std::str::from_utf8(&text).is_ok() => Input::Text { conn, text },
                Ok(_) => {
                    tracing::debug!(conn = conn.0, "inflated text is not UTF-8");
                    return self.transport_close(1007, "text message is not UTF-8", cx);
                }
                // Treated exactly as an uncompressed message over the cap.
                Err(InflateError::TooLarge) => Input::Oversized { conn },
                Err(InflateError::Corrupt) => {
                    tracing::debug!(conn = conn.0, "corrupt permessage-deflate data");
                    return self.transport_close(1002, "invalid compressed message", cx);
                }
            },
            WsEvent::Binary(data) => Input::Binary { conn, data },
            WsEvent::CompressedBinary(data) => {
                match deflate::inflate(&data, cx.limits.max_message_bytes) {
                    Ok(data) => Input::Binary { conn, data },
                    Err(InflateError::TooLarge) => Input::Oversized { conn },
                    Err(InflateError::Corrupt) => {
                        tracing::debug!(conn = conn.0, "corrupt permessage-deflate data");
                        return self.transport_close(1002, "invalid compressed message", cx);
                    }
                }
            }
            WsEvent::Ping(payload) => {
                // Answering a ping is the transport's job; the engine only hears of the activity.
                // Only the latest few pings are answered, so a flood of pings from a client
                // that reads never fills its queue nor gets it closed as slow.
                self.out.add_pong(Frame::pong(&payload));
                if self.engine_knows {
                    cx.inputs.push(Input::Activity { conn });
                }
                return;
            }
            WsEvent::Pong => Input::Activity { conn },
            WsEvent::Oversized => Input::Oversized { conn },
            WsEvent::Close(code) => {
                // Echo the peer's code when it is one that may be sent (RFC 6455 §7.4).
                let echo = match code {
                    None => 1000,
                    Some(c @ (1000..=1003 | 1007..=1011 | 3000..=4999)) => c,
                    Some(_) => 1002,
                };
                return self.transport_close(echo, "", cx);
            }
            WsEvent::ProtocolError(reason) => {
                tracing::debug!(conn = conn.0, reason, "WebSocket protocol error");
                return self.transport_close(1002, reason, cx);
            }
            WsEvent::InvalidUtf8(reason) => {
                tracing::debug!(conn = conn.0, reason, "WebSocket text is not UTF-8");
                return self.transport_close(1007, reason, cx);
            }
        };
        if self.engine_knows {
            cx.inputs.push(input);
        }
    }

    /// A close decided by the transport (a peer close or a framing violation).
    fn transport_close(&mut self, code: u16, reason: &str, cx: &mut Cx<'_>) {
        if self.engine_knows {
            self.engine_knows = false;
            cx.inputs.push(Input::Closed { conn: self.id });
        }
        self.out.push_frame(Frame::close(code, reason));
        self.start_closing(cx.now, cx.limits);
    }

    /// Frames and dispatches the requests buffered so far, one at a time.
    fn process_http(&mut self, cx: &mut Cx<'_>) {
        loop {
            let Phase::Http {
                buf,
                head,
                sent_continue,
                in_flight,
            } = &mut self.phase
            else {
                return;
            };
            if in_flight.is_some() {
                return;
            }
            if head.is_none() {
                if buf.is_empty() {
                    return;
                }
                match http::parse_head(buf, &cx.limits.head) {
                    Parsed::Partial => return,
                    Parsed::Refused(refusal) => return self.refuse(refusal, cx),
                    Parsed::Head(parsed) => {
                        let client = self.peer.map(|peer| {
                            cx.gate.proxies.resolve(
                                peer,
                                parsed.forwarded_for.as_deref(),
                                parsed.forwarded_proto.as_deref(),
                            )
                        });
                        let limits = &cx.gate.limits;
                        if let Some(upgrade) = &parsed.upgrade {
                            if let Some(refusal) = over_limit(&limits.ws_connects, client, cx.now) {
                                WorkerStats::add(&cx.stats.ws_connects_limited, 1);
                                return self.refuse(refusal, cx);
                            }
                            let accept = upgrade.accept.clone();
                            let offered = upgrade.extensions.clone();
                            return self.upgrade(parsed, &accept, offered.as_deref(), client, cx);
                        }
                        if parsed.method != "OPTIONS" {
                            if let Some(refusal) = over_limit(&limits.api_requests, client, cx.now)
                            {
                                WorkerStats::add(&cx.stats.api_requests_limited, 1);
                                return self.refuse(refusal, cx);
                            }
                        }
                        *head = Some(Box::new(parsed));
                    }
                }
            }
            let Some(current) = head.as_ref() else {
                return;
            };
            let total = current.head_len + current.content_length;
            if buf.len() < total {
                if current.expect_continue && !*sent_continue {
                    *sent_continue = true;
                    self.out.push_bytes(http::CONTINUE.to_vec());
                }
                return;
            }
            let Some(current) = head.take() else {
                return;
            };
            let body = buf[current.head_len..total].to_vec();
            buf.drain(..total);
            if buf.is_empty() && buf.capacity() > RETAINED_REQUEST_BYTES {
                // Release what a large body needed; keep-alive connections idle for long.
                *buf = Vec::new();
            }
            *sent_continue = false;
            if current.method == "OPTIONS" {
                // CORS preflight is a transport matter: answer it without the engine.
                let headers = http::preflight_headers(current.cors_request_headers.as_deref());
                let options = ResponseOptions {
                    keep_alive: current.keep_alive,
                    http10: !current.http11,
                    omit_body: false,
                    headers: &headers,
                };
                self.out.push_bytes(http::response(204, b"", &options));
                if !current.keep_alive {
                    return self.start_closing(cx.now, cx.limits);
                }
                self.deadline = Some(cx.now + cx.limits.request_timeout);
                continue;
            }
            *in_flight = Some(InFlight {
                keep_alive: current.keep_alive,
                http10: !current.http11,
                head_only: current.method == "HEAD",
            });
            self.deadline = None;
            WorkerStats::add(&cx.stats.http_requests, 1);
            cx.inputs.push(Input::Http {
                req: cx.requests.open(self.id),
                request: HttpRequest {
                    method: current.method,
                    path: current.path,
                    query: current.query,
                    body,
                },
            });
            return;
        }
    }

    fn refuse(&mut self, refusal: Refusal, cx: &mut Cx<'_>) {
        cx.stats.refused(refusal.status);
        tracing::debug!(conn = self.id.0, status = refusal.status, reason = %refusal.reason, "request refused");
        let options = ResponseOptions {
            keep_alive: false,
            http10: false,
            omit_body: false,
            headers: &refusal.headers,
        };
        self.out.push_bytes(http::response(
            refusal.status,
            &http::error_body(&refusal.reason),
            &options,
        ));
        self.start_closing(cx.now, cx.limits);
    }

    fn upgrade(
        &mut self,
        head: RequestHead,
        accept: &str,
        extensions_offered: Option<&str>,
        client: Option<ClientAddress>,
        cx: &mut Cx<'_>,
    ) {
        let Phase::Http { buf, .. } = &mut self.phase else {
            return;
        };
        // Frames the client sent right behind its handshake are decoded after `Opened`.
        let early = buf.split_off(head.head_len);
        let extensions = if cx.limits.permessage_deflate {
            extensions::negotiate(extensions_offered)
        } else {
            None
        };
        self.deflate = extensions.is_some();
        self.out
            .push_bytes(http::switching_protocols(accept, extensions.as_deref()));
        let mut decoder = Decoder::new(cx.limits.max_message_bytes);
        if self.deflate {
            decoder = decoder.with_permessage_deflate();
        }
        if cx.limits.keep_binary {
            decoder = decoder.keeping_binary();
        }
        self.phase = Phase::WebSocket(Box::new(decoder));
        self.deadline = None;
        self.engine_knows = true;
        cx.inputs.push(Input::Opened {
            conn: self.id,
            request: WsRequest {
                path: head.path,
                query: head.query,
                origin: head.origin,
                peer: client.map(|c| c.ip),
                // Secure when this server terminated TLS, or a trusted proxy did.
                secure: self.transport.is_secure() || client.is_some_and(|c| c.forwarded_https),
            },
        });
        if !early.is_empty() {
            self.decode(&early, cx);
        }
    }
}

/// The 429 answer when `client` is over `limit` (an unknown address is never limited).
fn over_limit(
    limit: &Option<Limiter>,
    client: Option<ClientAddress>,
    now: Instant,
) -> Option<Refusal> {
    let (limit, client) = (limit.as_ref()?, client?.ip);
    match limit.check(client, now) {
        Verdict::Allowed => None,
        Verdict::Limited { retry_after_secs } => {
            tracing::debug!(%client, retry_after_secs, "rate limited");
            Some(Refusal {
                status: 429,
                reason: format!(
                    "too many requests from this address: retry after {retry_after_secs} s"
                ),
                headers: vec![("Retry-After", retry_after_secs.to_string())],
            })
        }
    }
}
