//! The sans-IO protocol engine of Ferrocast, a Pusher Channels compatible server.
//!
//! The engine owns every protocol decision and nothing else: it reads no clock, opens no
//! socket, spawns no thread and draws no randomness but from its seed. Its caller feeds
//! [`Input`]s stamped with a [`Moment`] and drains [`Output`]s: frames to queue, connections
//! to close, HTTP responses, webhooks, and the instant of the next timer.
//!
//! # Names and codes
//!
//! Values are parsed once at the boundary into newtypes ([`ConnId`], [`SocketId`],
//! [`ChannelName`], [`EventName`], [`UserId`]). Apps are keyed by their stable [`AppId`] (and
//! found by [`AppKey`]), never by position, so a timer outliving its app is simply ignored.
//! Every close and `pusher:error` code is a named [`CloseCode`].
//!
//! # The run loop
//!
//! After every [`Engine::handle_input`], drain [`Engine::poll_output`] until it returns
//! [`Output::Timeout`], then wait for I/O or that instant, whichever comes first, and feed
//! [`Input::Tick`] when the instant is reached. Waking early is harmless.
//!
//! ```
//! use ferrocast_engine::{Config, ConnId, Engine, Input, Moment, Output, WsRequest};
//! use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
//!
//! let mut engine = Engine::new(Config::default(), 42);
//! // A shell reads both clocks; here later moments are made up from them.
//! let start = Instant::now();
//! let wall_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
//! let at = |secs: u64| Moment::new(start + Duration::from_secs(secs), wall_ms + secs * 1000);
//!
//! let request = WsRequest { path: "/app/app-key".into(), query: "protocol=7".into(), origin: None, peer: None, secure: false };
//! engine.handle_input(at(0), Input::Opened { conn: ConnId(1), request }).unwrap();
//! let next_wakeup = loop {
//!     match engine.poll_output() {
//!         Output::Send { conn, frame } => {
//!             // A real shell copies `frame.wire_bytes()` into the connection's write buffer.
//!             assert_eq!(conn, ConnId(1));
//!             assert!(frame.payload_text().contains("pusher:connection_established"));
//!         }
//!         Output::Timeout(at) => break at,
//!         other => panic!("unexpected {other:?}"),
//!     }
//! };
//! // The server pings a connection that stays quiet for `activity_timeout` (120 s).
//! assert_eq!(next_wakeup, Some(at(120).now));
//! engine.handle_input(at(120), Input::Tick).unwrap();
//! match engine.poll_output() {
//!     Output::Send { frame, .. } => assert!(frame.payload_text().contains("pusher:ping")),
//!     other => panic!("expected a ping, got {other:?}"),
//! }
//! ```
//!
//! # Several feeders, one owner
//!
//! The engine has one owner, which alone calls `handle_input` and `poll_output`. Every other
//! source of inputs (socket workers, the signal handler feeding [`Input::Shutdown`], the
//! cluster bus, and next an admin endpoint) hands its inputs to that owner through one queue. The
//! engine needs to know nothing about who fed what: each output names its addressee by an id
//! the feeder chose ([`ConnId`] for frames and closes, [`ReqId`] for HTTP answers), so a
//! feeder that makes its ids distinguishable from the others' (the server puts the feeder's
//! index in their top byte) gets back exactly the outputs addressed to it. Recipient lists of
//! [`Output::Broadcast`] are in ascending order, so those of one feeder are one range.
//!
//! # A cluster
//!
//! [`Engine::new_node`] makes the engine one node of a cluster. What crosses the bus is the
//! engine's decision: it emits `Output::Bus` (bytes to publish once to every node) and takes
//! `Input::Bus` for every message heard, its own echoes included, plus `Input::BusUp` and
//! `Input::BusDown` as the link comes and goes. The [`cluster`] module says what is exact,
//! what lags by one bus delay, and what happens on a node's death or an outage; with the `sim`
//! feature, `cluster::sim::ClusterSim` runs several engines over a simulated bus.
//!
//! # The wire
//!
//! [`wire::websocket`] is the WebSocket format both ways, without I/O: the shell decodes what
//! clients send with its `Decoder` (complete text messages become [`Input::Text`]) and writes
//! each [`Frame`]'s pre-encoded bytes. Answering a WebSocket ping is the shell's job; it
//! reports the ping or pong as [`Input::Activity`], which keeps the connection alive.
//!
//! # Driving it without a shell
//!
//! With the `sim` feature, `driver::Driver` runs the loop above on a fake clock (every test,
//! fuzz target and benchmark goes through it), and `sim::Simulator` adds fake clients.

mod channels;
pub mod close_code;
pub mod cluster;
pub mod config;
pub mod echo;
mod engine;
pub mod http_auth;
pub mod http_response;
pub mod ids;
mod interface;
pub mod origin;
pub mod rng;
pub mod signature;
pub mod soketi;
mod timers;
mod token_bucket;
mod webhook_event;
pub mod wire;

#[cfg(feature = "sim")]
pub mod driver;
#[cfg(feature = "sim")]
pub mod sim;

pub use close_code::CloseCode;
pub use cluster::{BusStats, ClusterConfig, NodeId};
pub use config::{AppConfig, AppStoreConfig, Config, ConfigError, WebhookConfig};
pub use engine::{
    AppCounters, AppMetrics, ChannelCounts, DebugEvent, DebugKind, Engine, EngineMetrics,
    StateCounts,
};
pub use ids::{
    AppId, AppKey, ChannelKind, ChannelName, ConnId, EventName, ReqId, SocketId, UserId,
};
pub use interface::{
    ApiMisuse, AppAnswer, AppLookup, HttpRequest, Input, Moment, Notice, Output, WebhookDelivery,
    WsRequest,
};
pub use wire::websocket::Frame;
