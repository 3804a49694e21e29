//! The engine: owns every app, connection and channel, turns inputs into outputs.

mod app_lookup;
mod client_events;
mod cluster;
mod cluster_presence;
mod cluster_webhooks;
mod connect;
mod debug;
mod http_api;
mod http_handlers;
mod liveness;
mod metrics;
mod publish;
mod reload;
mod signin;
mod subscribe;
mod webhooks;

use crate::channels::ChannelRegistry;
use crate::close_code::CloseCode;
use crate::config::{AppConfig, Config};
use crate::ids::{AppId, AppKey, ChannelName, ConnId, SocketId, UserId};
use crate::interface::{ApiMisuse, Input, Moment, Notice, Output};
use crate::origin::OriginPolicy;
use crate::rng::SplitMix64;
use crate::signature::Signer;
use crate::timers::{TimerKey, Timers};
use crate::token_bucket::TokenBucket;
use crate::wire::pusher::{self, Malformed, RawJson};
use crate::wire::websocket::Frame;
use core::net::IpAddr;
pub use debug::{DebugEvent, DebugKind};
pub use metrics::{AppCounters, AppMetrics, ChannelCounts, EngineMetrics};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// The sans-IO Pusher protocol engine.
///
/// Feed every event with [`Engine::handle_input`], then drain [`Engine::poll_output`] until it
/// returns [`Output::Timeout`]; call again with [`Input::Tick`] at that instant.
pub struct Engine {
    config: Config,
    /// Live apps by their stable id; nothing outside refers to an app by position.
    apps: BTreeMap<AppId, App>,
    app_by_key: BTreeMap<AppKey, AppId>,
    conns: BTreeMap<ConnId, Connection>,
    socket_ids: BTreeMap<SocketId, ConnId>,
    /// Open connections per client address (only while some are open).
    per_address: BTreeMap<IpAddr, u32>,
    timers: Timers<Due>,
    outputs: VecDeque<Output>,
    rng: SplitMix64,
    now: Option<Moment>,
    /// Set by [`Input::Shutdown`]: no connection is accepted any more.
    shutting_down: bool,
    /// Present when the engine is one node of a cluster.
    cluster: Option<Box<cluster::ClusterState>>,
    /// Handshakes refused before they became a connection, by close code.
    refused_connections: BTreeMap<u16, u64>,
    /// Whether the admin console watches: [`Output::Debug`] is emitted only then.
    watching: bool,
    /// Lookups of apps in the app store, who waits for them, and which apps came from it.
    store: app_lookup::AppStore,
}

/// Per-app live state beside its configuration.
struct App {
    config: AppConfig,
    key: AppKey,
    /// The secret as an HMAC key made ready once, for the HTTP API's signatures.
    signer: Signer,
    /// `allowed_origins` and `require_origin`, parsed once.
    origins: OriginPolicy,
    channels: ChannelRegistry,
    connections: usize,
    /// Signed-in users and their connections.
    users: BTreeMap<UserId, BTreeSet<ConnId>>,
    /// For each watched user, the connections whose watchlist names them.
    watchers: BTreeMap<UserId, BTreeSet<ConnId>>,
    /// The last event of each cache channel.
    cache: publish::Cache,
    /// Webhook batching and delayed leave events.
    webhooks: webhooks::Webhooks,
    /// HTTP publish allowance, created on first use when the app has a limit.
    http_event_bucket: Option<TokenBucket>,
    /// HTTP read allowance, created on first use when the app has a limit.
    http_read_bucket: Option<TokenBucket>,
    /// What the app's clients and backend did, for [`Engine::metrics`].
    counters: AppCounters,
}

impl App {
    fn new(config: AppConfig, server: &Config) -> Self {
        let webhooks = webhooks::Webhooks::new(
            &config,
            Duration::from_millis(server.webhook_batch_ms),
            Duration::from_secs(server.webhook_leave_delay_secs),
        );
        App {
            key: AppKey::new(&config.key),
            signer: Signer::new(&config.secret),
            origins: OriginPolicy::new(&config.allowed_origins, config.require_origin),
            config,
            channels: ChannelRegistry::default(),
            connections: 0,
            users: BTreeMap::new(),
            watchers: BTreeMap::new(),
            cache: publish::Cache::new(),
            webhooks,
            http_event_bucket: None,
            http_read_bucket: None,
            counters: AppCounters::default(),
        }
    }
}

/// One open client connection.
struct Connection {
    app: AppId,
    socket_id: SocketId,
    /// The client's address, as counted against `max_connections_per_address`.
    peer: Option<IpAddr>,
    /// Joined channels; for presence channels, the member's user id.
    channels: BTreeMap<ChannelName, Option<UserId>>,
    user: Option<SignedInUser>,
    last_activity: Instant,
    awaiting_pong_since: Option<Instant>,
    liveness_timer: TimerKey,
    signin_timer: Option<TimerKey>,
    client_events: TokenBucket,
}

struct SignedInUser {
    id: UserId,
    watchlist: Vec<UserId>,
}

/// What a timer is for. Timers name apps by id: one for an app that is gone is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Due {
    /// Check whether the connection has gone quiet (ping it) or missed its pong (close it).
    Liveness(ConnId),
    /// The connection had to sign in by now.
    SigninDeadline(ConnId),
    /// Send the app's gathered webhook events.
    WebhookFlush(AppId),
    /// The channel stayed empty for the leave delay: tell the backend.
    ChannelVacated(AppId, ChannelName),
    /// The member stayed away for the leave delay: tell the backend.
    MemberRemoved(AppId, ChannelName, UserId),
    /// A cache channel's last event is too old to replay.
    CacheExpiry(AppId, ChannelName),
    /// Time for a cluster node's heartbeat and its check of the other nodes.
    ClusterHeartbeat,
    /// The leave delay of a pending cluster leave this node owns has passed.
    ClusterLeave(
        AppId,
        crate::cluster::message::LeaveKey,
        crate::cluster::message::LeaveToken,
    ),
    /// An app store lookup's deadline, a remembered answer's expiry, a cached app's refresh.
    AppStore(app_lookup::StoreDue),
}

/// Counts of live state, for leak checks in tests and simulators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StateCounts {
    /// Open connections.
    pub connections: usize,
    /// Socket ids in use.
    pub socket_ids: usize,
    /// Occupied channels across apps.
    pub channels: usize,
    /// Pending timers.
    pub timers: usize,
    /// Signed-in users across apps.
    pub users: usize,
    /// Watched users across apps.
    pub watched_users: usize,
    /// Cached last events of cache channels across apps.
    pub cached_events: usize,
    /// Webhook bookkeeping entries (pending events, occupied channels, delayed leaves).
    pub webhook_entries: usize,
    /// Client addresses with connections open.
    pub peer_addresses: usize,
    /// App store lookups in flight, connections waiting for them, and remembered "missing"
    /// answers.
    pub app_store_entries: usize,
}

impl Engine {
    /// An engine for `config`; `seed` drives socket id generation.
    pub fn new(config: Config, seed: u64) -> Self {
        let apps: BTreeMap<AppId, App> = config
            .apps
            .iter()
            .map(|app| (AppId::new(&app.id), App::new(app.clone(), &config)))
            .collect();
        let app_by_key = apps
            .iter()
            .map(|(id, app)| (app.key.clone(), id.clone()))
            .collect();
        Engine {
            config,
            apps,
            app_by_key,
            conns: BTreeMap::new(),
            socket_ids: BTreeMap::new(),
            per_address: BTreeMap::new(),
            timers: Timers::default(),
            outputs: VecDeque::new(),
            rng: SplitMix64::new(seed),
            now: None,
            shutting_down: false,
            cluster: None,
            refused_connections: BTreeMap::new(),
            watching: false,
            store: app_lookup::AppStore::default(),
        }
    }

    /// The configuration the engine serves.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Feeds one input. Afterwards drain [`Engine::poll_output`] until it returns a timeout.
    pub fn handle_input(&mut self, at: Moment, input: Input) -> Result<(), ApiMisuse> {
        // Time never runs backwards inside the engine, whatever the caller's clock does.
        let at = match self.now {
            Some(prev) if prev.now > at.now => Moment {
                now: prev.now,
                ..at
            },
            _ => at,
        };
        self.now = Some(at);
        self.cluster_before_input();
        let result = self.dispatch(input);
        self.cluster_after_input();
        result
    }

    fn dispatch(&mut self, input: Input) -> Result<(), ApiMisuse> {
        // A connection waiting for its app's lookup is not open yet: its inputs wait too.
        let Some(input) = self.input_while_waiting(input) else {
            return Ok(());
        };
        match input {
            Input::Opened { conn, request } => self.open(conn, &request),
            Input::Text { conn, text } => self.on_text(conn, &text),
            Input::Binary { conn, data } => self.with_activity(conn, |engine| {
                engine.count_received(conn, data.len());
                engine.send_error(
                    conn,
                    None,
                    "binary messages are not supported; send JSON text",
                );
            }),
            Input::Activity { conn } => self.with_activity(conn, |_| {}),
            Input::Oversized { conn } => {
                self.known(conn)?;
                self.close(conn, CloseCode::MESSAGE_TOO_BIG, "message too large");
                Ok(())
            }
            Input::SlowConsumer { conn } => {
                self.known(conn)?;
                self.close_with_error(
                    conn,
                    CloseCode::OVER_CAPACITY,
                    "connection closed: it reads too slowly",
                );
                Ok(())
            }
            Input::Closed { conn } => {
                self.known(conn)?;
                self.forget(conn);
                Ok(())
            }
            Input::Http { req, request } => {
                self.on_http(req, &request);
                Ok(())
            }
            Input::Tick => {
                self.fire_timers();
                Ok(())
            }
            Input::Shutdown => {
                self.shutting_down = true;
                let open: Vec<ConnId> = self.conns.keys().copied().collect();
                for conn in open {
                    self.close_with_error(conn, SHUTDOWN_CODE, SHUTDOWN_MESSAGE);
                }
                self.refuse_all_waiters();
                let apps: Vec<AppId> = self.apps.keys().cloned().collect();
                for app in &apps {
                    self.with_webhooks(app, |hooks, cx| hooks.release_held_back(cx));
                }
                Ok(())
            }
            Input::Reload(config) => {
                self.reload(*config);
                Ok(())
            }
            Input::Bus(bytes) => {
                self.on_bus(&bytes);
                Ok(())
            }
            Input::BusUp => {
                self.on_bus_up();
                Ok(())
            }
            Input::BusDown => {
                self.on_bus_down();
                Ok(())
            }
            Input::Watch { on } => {
                self.set_watching(on);
                Ok(())
            }
            Input::AdminPublish { req, app, body } => {
                self.admin_publish(req, &app, &body);
                Ok(())
            }
            Input::App { lookup, answer } => {
                self.on_app_answer(lookup, answer);
                Ok(())
            }
        }
    }

    /// The next thing to do; [`Output::Timeout`] means nothing more until that instant.
    #[must_use]
    pub fn poll_output(&mut self) -> Output {
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        Output::Timeout(self.timers.next_deadline())
    }

    /// Counts of live state, for leak checks.
    pub fn state_counts(&self) -> StateCounts {
        StateCounts {
            connections: self.conns.len(),
            socket_ids: self.socket_ids.len(),
            peer_addresses: self.per_address.len(),
            channels: self.apps.values().map(|a| a.channels.len()).sum(),
            timers: self.timers.len(),
            users: self.apps.values().map(|a| a.users.len()).sum(),
            watched_users: self.apps.values().map(|a| a.watchers.len()).sum(),
            cached_events: self.apps.values().map(|a| a.cache.len()).sum(),
            webhook_entries: self.apps.values().map(|a| a.webhooks.len()).sum::<usize>()
                + self.cluster_hooks_len(),
            app_store_entries: self.store.len(),
        }
    }

    /// The settings of the app served under `key`, from the configuration or the app store.
    pub fn served_app(&self, key: &str) -> Option<&AppConfig> {
        let id = self.app_by_key.get(key)?;
        self.apps.get(id).map(|app| &app.config)
    }

    /// The socket id assigned to an open connection.
    pub fn socket_id(&self, conn: ConnId) -> Option<SocketId> {
        self.conns.get(&conn).map(|c| c.socket_id)
    }

    fn known(&self, conn: ConnId) -> Result<(), ApiMisuse> {
        if self.conns.contains_key(&conn) {
            Ok(())
        } else {
            Err(ApiMisuse::UnknownConnection(conn))
        }
    }

    fn moment(&self) -> Moment {
        self.now
            .expect("handle_input sets the time before any handler runs")
    }

    /// Records activity on `conn`, then runs `f`.
    fn with_activity(&mut self, conn: ConnId, f: impl FnOnce(&mut Self)) -> Result<(), ApiMisuse> {
        let now = self.moment().now;
        let connection = self
            .conns
            .get_mut(&conn)
            .ok_or(ApiMisuse::UnknownConnection(conn))?;
        connection.last_activity = now;
        f(self);
        Ok(())
    }

    fn on_text(&mut self, conn: ConnId, text: &[u8]) -> Result<(), ApiMisuse> {
        self.with_activity(conn, |engine| {
            engine.count_received(conn, text.len());
            let app = engine.app_of(conn);
            if text.len() > app.config.max_message_bytes {
                engine.close(conn, CloseCode::MESSAGE_TOO_BIG, "message too large");
                return;
            }
            let envelope = match pusher::parse_envelope(text) {
                Ok(envelope) => envelope,
                Err(Malformed(why)) => return engine.send_error(conn, None, &why),
            };
            match envelope.event.as_ref() {
                "pusher:ping" => engine.send(
                    conn,
                    pusher::message("pusher:pong", None, &RawJson("{}".into()), None),
                ),
                "pusher:pong" => {}
                "pusher:subscribe" => engine.on_subscribe(conn, envelope.data),
                "pusher:unsubscribe" => engine.on_unsubscribe(conn, envelope.data),
                "pusher:signin" => engine.on_signin(conn, envelope.data),
                event if event.starts_with("client-") => {
                    engine.on_client_event(conn, event, envelope.channel.as_deref(), envelope.data)
                }
                event => engine.send_error(conn, None, &format!("unsupported event {event:?}")),
            }
        })
    }

    fn app_of(&self, conn: ConnId) -> &App {
        &self.apps[&self.conns[&conn].app]
    }

    /// The state of an app a live connection or request belongs to: it exists while they do.
    fn app_mut(&mut self, app: &AppId) -> &mut App {
        self.apps
            .get_mut(app)
            .expect("an app outlives its connections and requests")
    }

    fn send(&mut self, conn: ConnId, frame: Frame) {
        let frame = match self.conns.get(&conn) {
            Some(c) => self.for_app(&c.app, frame),
            None => frame,
        };
        // A refused handshake is no connection: its error frame counts for no app.
        if let Some(counters) = self.counters_of(conn) {
            counters.ws_messages_sent += 1;
            counters.ws_bytes_sent += frame.wire_bytes().len() as u64;
        }
        self.outputs.push_back(Output::Send { conn, frame });
    }

    /// `frame` as `app`'s clients get it: never compressed when the app turned compression
    /// off, so the shell needs no knowledge of apps to honour that.
    fn for_app(&self, app: &AppId, frame: Frame) -> Frame {
        match self.apps.get(app) {
            Some(a) if !a.config.compression => frame.uncompressed(),
            _ => frame,
        }
    }

    /// Counts one message received on an open connection.
    fn count_received(&mut self, conn: ConnId, bytes: usize) {
        if let Some(counters) = self.counters_of(conn) {
            counters.ws_messages_received += 1;
            counters.ws_bytes_received += bytes as u64;
        }
    }

    /// `pusher:error` without closing (`code` null: the message says what was wrong).
    fn send_error(&mut self, conn: ConnId, code: Option<CloseCode>, message: &str) {
        let code_text = code.map_or("null".to_owned(), |c| c.get().to_string());
        self.notice(Some(conn), format!("pusher:error {code_text}: {message}"));
        self.send(conn, error_frame(code, message));
    }

    /// Has the shell log `message`, with what is known of `conn`.
    pub(super) fn notice(&mut self, conn: Option<ConnId>, message: String) {
        let known = conn.and_then(|conn| self.conns.get(&conn));
        if self.watching() {
            if let Some(known) = known {
                let (app, socket_id) = (known.app.clone(), Some(known.socket_id));
                let detail = debug::Detail {
                    socket_id,
                    data: Some(message.clone()),
                    ..Default::default()
                };
                self.debug(&app, DebugKind::Error, detail);
            }
        }
        let known = conn.and_then(|conn| self.conns.get(&conn));
        self.outputs.push_back(Output::Notice(Notice {
            app: known.map(|c| c.app.clone()),
            socket_id: known.map(|c| c.socket_id),
            peer: known.and_then(|c| c.peer),
            message,
        }));
    }

    /// `pusher:error` with `code`, then a Close with the same code.
    fn close_with_error(&mut self, conn: ConnId, code: CloseCode, message: &str) {
        self.send_error(conn, Some(code), message);
        self.close(conn, code, message);
    }

    /// Closes a known connection: forget its state, then tell the shell.
    fn close(&mut self, conn: ConnId, code: CloseCode, reason: &str) {
        if let Some(counters) = self.counters_of(conn) {
            *counters.closes.entry(code.get()).or_default() += 1;
        }
        self.notice(Some(conn), format!("closing with {}: {reason}", code.get()));
        self.forget(conn);
        self.outputs.push_back(Output::Close {
            conn,
            code,
            reason: reason.into(),
        });
    }

    /// Removes every trace of `conn`, telling others what its leaving changes.
    fn forget(&mut self, conn: ConnId) {
        let Some(connection) = self.conns.remove(&conn) else {
            return;
        };

        self.socket_ids.remove(&connection.socket_id);
        if let Some(peer) = connection.peer {
            if let Some(count) = self.per_address.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    self.per_address.remove(&peer);
                }
            }
        }
        self.timers.cancel(connection.liveness_timer);
        if let Some(timer) = connection.signin_timer {
            self.timers.cancel(timer);
        }
        for (channel, member) in &connection.channels {
            self.leave_channel(&connection.app, conn, channel, member.as_ref());
            if self.watching() {
                self.debug_unsubscribed(&connection.app, channel, connection.socket_id);
            }
        }
        if let Some(user) = &connection.user {
            self.sign_out(&connection.app, conn, user);
        }
        let app = self.app_mut(&connection.app);
        app.connections -= 1;
        app.counters.disconnections += 1;
        let connections = app.connections as u64;
        self.cluster_record(
            &connection.app,
            crate::cluster::view::Change::Connections(connections),
        );
        // After its unsubscriptions, so the console's log reads in the order things ended.
        if self.watching() {
            let detail = debug::Detail {
                socket_id: Some(connection.socket_id),
                ..Default::default()
            };
            self.debug(&connection.app, DebugKind::Disconnected, detail);
        }
    }

    fn fire_timers(&mut self) {
        let now = self.moment().now;
        while let Some(due) = self.timers.pop_due(now) {
            match due {
                Due::Liveness(conn) => self.check_liveness(conn),
                Due::SigninDeadline(conn) => {
                    if let Some(connection) = self.conns.get_mut(&conn) {
                        connection.signin_timer = None;
                        self.close_with_error(
                            conn,
                            CloseCode::UNAUTHORIZED,
                            "connection not signed in within the required time",
                        );
                    }
                }
                Due::WebhookFlush(app) => self.with_webhooks(&app, |w, cx| w.handle_flush_due(cx)),
                Due::ChannelVacated(app, channel) => {
                    self.with_webhooks(&app, |w, cx| w.handle_vacate_due(channel, cx))
                }
                Due::MemberRemoved(app, channel, user) => {
                    self.with_webhooks(&app, |w, cx| w.handle_member_removed_due(channel, user, cx))
                }
                Due::CacheExpiry(app, channel) => self.cache_expired(&app, &channel),
                Due::ClusterHeartbeat => self.cluster_heartbeat(),
                Due::ClusterLeave(app, key, token) => self.cluster_leave_due(&app, key, token),
                Due::AppStore(due) => self.store_due(due),
            }
        }
    }
}

/// Pusher's "server is going away, reconnect at once" close code.
const SHUTDOWN_CODE: CloseCode = CloseCode::GENERIC_RECONNECT;
const SHUTDOWN_MESSAGE: &str = "server shutting down; reconnect";

/// A `pusher:error` frame; its data is an object, as the client libraries expect.
fn error_frame(code: Option<CloseCode>, message: &str) -> Frame {
    let code = code.map(CloseCode::get);
    let data = RawJson::of(&serde_json::json!({ "code": code, "message": message }));
    pusher::message("pusher:error", None, &data, None)
}

#[cfg(test)]
// Tests need some instant to start from; its value does not matter.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::config::WebhookConfig;
    use crate::interface::WsRequest;
    use std::time::Duration;

    /// Apps will come and go at runtime: timers still naming a removed app must do nothing.
    #[test]
    fn timers_of_an_app_that_is_gone_are_ignored() {
        let mut config = Config::default();
        config.apps[0].webhooks = vec![WebhookConfig {
            url: "http://hooks.test/".into(),
            event_types: vec![],
            ..Default::default()
        }];
        let mut engine = Engine::new(config, 1);
        let start = Instant::now();
        let at = |secs: u64| Moment::new(start + Duration::from_secs(secs), 1_000 * secs);
        let request = WsRequest {
            path: "/app/app-key".into(),
            query: String::new(),
            origin: None,
            peer: None,
            secure: false,
        };
        let conn = ConnId(1);
        engine
            .handle_input(at(0), Input::Opened { conn, request })
            .unwrap();
        let subscribe = br#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#.to_vec();
        let text = Input::Text {
            conn,
            text: subscribe,
        };
        engine.handle_input(at(0), text).unwrap();
        engine.handle_input(at(0), Input::Closed { conn }).unwrap();
        while !matches!(engine.poll_output(), Output::Timeout(_)) {}
        assert!(
            engine.timers.len() >= 2,
            "a webhook flush and a vacate wait"
        );

        engine.apps.clear();
        engine.app_by_key.clear();
        engine.handle_input(at(3600), Input::Tick).unwrap();

        assert_eq!(engine.poll_output(), Output::Timeout(None));
        assert_eq!(engine.state_counts(), StateCounts::default());
    }
}
