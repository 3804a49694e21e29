//! What goes into the engine and what comes out of it.

use crate::close_code::CloseCode;
use crate::ids::{AppId, ConnId, ReqId, SocketId};
use crate::wire::websocket::Frame;
use core::net::IpAddr;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

/// The time an input happens: the monotonic instant for timers, and wall time for signatures
/// and webhook timestamps. Both come from the caller; the engine never reads a clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Moment {
    /// Monotonic time, for every deadline.
    pub now: Instant,
    /// Milliseconds since the Unix epoch, for `auth_timestamp` and `time_ms`.
    pub unix_ms: u64,
}

impl Moment {
    /// A moment from its two clocks.
    pub fn new(now: Instant, unix_ms: u64) -> Self {
        Moment { now, unix_ms }
    }
}

/// The WebSocket upgrade request a connection opened with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WsRequest {
    /// Request path without the query, e.g. `/app/app-key`.
    pub path: String,
    /// Raw query string without the `?`.
    pub query: String,
    /// The `Origin` header, when sent.
    pub origin: Option<String>,
    /// The peer address, for logging and per-address limits.
    pub peer: Option<IpAddr>,
    /// Whether the connection came over TLS (`wss://`): apps with `require_tls` refuse the
    /// others with 4000.
    pub secure: bool,
}

/// One HTTP request to the API (the shell has parsed the framing, nothing else).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// Request path without the query.
    pub path: String,
    /// Raw query string without the `?`.
    pub query: String,
    /// The raw body.
    pub body: Vec<u8>,
}

/// Which app the engine asks the shell's app store about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AppLookup {
    /// The app with this key: a connection's `/app/{key}`, or a request's `auth_key`.
    Key(String),
    /// The app with this id: an API path's `/apps/{id}/…`, or a cached app due for refresh.
    Id(String),
}

/// What the app store says of an [`AppLookup`], asked for or not (a change it heard of).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppAnswer {
    /// The app as the store holds it now.
    Found(Box<crate::AppConfig>),
    /// The store has no such app (never had, or it was deleted).
    Missing,
    /// The store could not be asked (its database is down): apps already known stay served.
    Unavailable,
}

/// Something that happened, fed to [`crate::Engine::handle_input`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A WebSocket handshake completed.
    Opened {
        /// The new connection.
        conn: ConnId,
        /// What it asked for.
        request: WsRequest,
    },
    /// One complete text message (the bytes as received; UTF-8 is checked by the engine).
    Text {
        /// The sender.
        conn: ConnId,
        /// The message.
        text: Vec<u8>,
    },
    /// One complete binary message, which the Pusher protocol does not use.
    Binary {
        /// The sender.
        conn: ConnId,
        /// The message, when the shell keeps binary payloads (only the echo server does:
        /// a Pusher shell hands over an empty vector).
        data: Vec<u8>,
    },
    /// The client sent a WebSocket ping or pong control frame. The shell answers pings
    /// itself (a transport matter); the engine counts the frame as a sign of life, which
    /// also answers a `pusher:ping` it sent.
    Activity {
        /// The sender.
        conn: ConnId,
    },
    /// The client sent a message larger than the shell will buffer.
    Oversized {
        /// The sender.
        conn: ConnId,
    },
    /// The connection's output buffer overflowed: it reads too slowly.
    SlowConsumer {
        /// The slow connection.
        conn: ConnId,
    },
    /// The socket closed (by the peer, an I/O error, or the shell).
    Closed {
        /// The closed connection.
        conn: ConnId,
    },
    /// An HTTP API request.
    Http {
        /// Handle to answer it with.
        req: ReqId,
        /// The request.
        request: HttpRequest,
    },
    /// Time passed; timers due at `now` fire.
    Tick,
    /// The server is going away: every open connection is told so (`pusher:error` 4200, then
    /// a Close with 4200, "reconnect elsewhere at once"), and so is every connection opened
    /// from now on. The shell keeps running until the closes have gone out.
    Shutdown,
    /// A new configuration (the file re-read on SIGHUP, say): its apps replace the served ones,
    /// added, changed and removed in place; the other settings stay as the engine started.
    /// An invalid one changes nothing (the engine says why in a [`Output::Notice`]).
    Reload(Box<crate::Config>),
    /// One message from the cluster bus (every node's, our own echoes included).
    Bus(Vec<u8>),
    /// The link to the cluster bus works (again): the node joins the cluster.
    BusUp,
    /// The link to the cluster bus broke: the node serves its own clients alone until it
    /// comes back, and what it publishes meanwhile is lost.
    BusDown,
    /// Someone started (`true`) or stopped (`false`) watching the admin console: the engine
    /// emits [`Output::Debug`] only while on, and builds nothing for it otherwise.
    Watch {
        /// Whether anyone watches now.
        on: bool,
    },
    /// A publish from the admin console: the body of `POST /apps/{app}/events`, trusted
    /// without a signature because the admin listener checked its token. Answered with an
    /// [`Output::HttpResponse`] for `req`, as the HTTP API would answer.
    AdminPublish {
        /// Handle to answer it with.
        req: ReqId,
        /// The app id to publish in.
        app: String,
        /// The JSON event, as for the HTTP API.
        body: Vec<u8>,
    },
    /// The app store's answer to an [`Output::LookupApp`], or a change it heard of (an app
    /// inserted, updated or deleted), which the engine applies to an app it serves from the
    /// store and otherwise ignores.
    App {
        /// What was looked up.
        lookup: AppLookup,
        /// What the store said.
        answer: AppAnswer,
    },
}

/// A signed webhook POST the shell must deliver (and retry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// Where to POST.
    pub url: String,
    /// The JSON body.
    pub body: Arc<[u8]>,
    /// `(name, value)` headers, `X-Pusher-Key` and `X-Pusher-Signature` among them.
    pub headers: Vec<(String, String)>,
}

/// A line for the server's log, about a refusal or a close the engine decided: the engine has
/// no logger, so the shell logs it (at `debug`: these are clients' mistakes, not the server's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The app concerned, when known.
    pub app: Option<AppId>,
    /// The connection's socket id, when it has one.
    pub socket_id: Option<SocketId>,
    /// The client's address, when known.
    pub peer: Option<IpAddr>,
    /// What happened, for people.
    pub message: String,
}

/// Something the shell must do, drained from [`crate::Engine::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Queue a frame for one connection.
    Send {
        /// The recipient.
        conn: ConnId,
        /// The pre-encoded frame.
        frame: Frame,
    },
    /// Queue the same frame for many connections (one encoding shared by all).
    Broadcast {
        /// The recipients, in strictly ascending order (the engine keeps subscribers in
        /// ordered sets): a shell whose connection ids name their owner, as the top bits of
        /// the id, finds each owner's recipients in one contiguous range.
        conns: Arc<[ConnId]>,
        /// A connection in `conns` to skip (the sender, or a publish's `socket_id`).
        except: Option<ConnId>,
        /// The pre-encoded frame.
        frame: Frame,
    },
    /// Flush what is queued, send a Close frame with `code`, then close the socket.
    /// The engine has already forgotten the connection: send no more input for it.
    Close {
        /// The connection to close.
        conn: ConnId,
        /// The WebSocket close code (the same as the `pusher:error` sent before it, if any).
        code: CloseCode,
        /// A short human-readable reason.
        reason: String,
    },
    /// Answer an HTTP request.
    HttpResponse {
        /// The request being answered.
        req: ReqId,
        /// Status code.
        status: u16,
        /// JSON body.
        body: Vec<u8>,
    },
    /// Deliver a webhook.
    Webhook(WebhookDelivery),
    /// Publish this message once on the cluster bus (cluster nodes only).
    Bus(Vec<u8>),
    /// Log this (refused connections, subscriptions and requests, and why connections closed).
    Notice(Notice),
    /// Ask the app store for this app and answer with [`Input::App`] (only when
    /// [`crate::config::AppStoreConfig::lookups`] is on). Connections and requests for it wait.
    LookupApp(AppLookup),
    /// Show this in the admin console's live log (only while [`Input::Watch`] is on).
    Debug(crate::DebugEvent),
    /// Nothing more to do now: feed [`Input::Tick`] at this instant (earlier is harmless).
    /// `None`: no timer is pending, so wait for the next input.
    Timeout(Option<Instant>),
}

/// The shell used the engine wrongly (a client's mistakes are outputs, never errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiMisuse {
    /// An input named a connection the engine does not know (never opened, or already closed).
    UnknownConnection(ConnId),
    /// `Opened` reused the id of a connection that is still open.
    DuplicateConnection(ConnId),
}

impl fmt::Display for ApiMisuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiMisuse::UnknownConnection(c) => write!(f, "unknown connection {}", c.0),
            ApiMisuse::DuplicateConnection(c) => write!(f, "connection {} is already open", c.0),
        }
    }
}

impl std::error::Error for ApiMisuse {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misuse_names_the_connection() {
        assert_eq!(
            ApiMisuse::UnknownConnection(ConnId(7)).to_string(),
            "unknown connection 7"
        );
        assert_eq!(
            ApiMisuse::DuplicateConnection(ConnId(8)).to_string(),
            "connection 8 is already open"
        );
    }
}
