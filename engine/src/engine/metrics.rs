//! Counts for operators: what each app's clients did and what the engine did about it.
//!
//! The counters are plain fields of the engine's own state, bumped where the thing happens;
//! nothing is global and nothing reads a clock, so a simulated run counts the same every
//! time. [`Engine::metrics`] copies them out together with the live state (connections,
//! channels and subscriptions by kind, presence members), computed at that moment.

use super::Engine;
use crate::close_code::CloseCode;
use crate::ids::{AppId, ChannelKind, ConnId};
use crate::interface::Output;
use crate::wire::websocket::Frame;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Monotonic counts of one app since the engine started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppCounters {
    /// Connections accepted (the welcome frame went out).
    pub new_connections: u64,
    /// Accepted connections that ended, whoever closed them.
    pub disconnections: u64,
    /// WebSocket messages received from clients (text and binary).
    pub ws_messages_received: u64,
    /// Payload bytes of those messages.
    pub ws_bytes_received: u64,
    /// WebSocket messages queued for clients, one per recipient of a broadcast.
    pub ws_messages_sent: u64,
    /// Frame bytes of those messages (headers included), one copy per recipient.
    pub ws_bytes_sent: u64,
    /// Client events relayed to the other subscribers of their channel.
    pub client_events_relayed: u64,
    /// Client events refused (disabled, malformed, not joined, too large, rate limited).
    pub client_events_refused: u64,
    /// HTTP API requests addressed to the app.
    pub http_calls: u64,
    /// Body bytes of those requests.
    pub http_bytes_received: u64,
    /// Body bytes of the answers to them.
    pub http_bytes_sent: u64,
    /// Connections the engine closed, by close code.
    pub closes: BTreeMap<u16, u64>,
}

/// Occupied channels of one kind and the subscriptions to them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelCounts {
    /// Channels with at least one subscriber.
    pub channels: u64,
    /// Subscriptions (connection and channel pairs).
    pub subscriptions: u64,
}

/// One app's counts and live state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppMetrics {
    /// Open connections now.
    pub connections: u64,
    /// Occupied channels and subscriptions now, by kind (kinds with none are left out).
    pub channels: BTreeMap<ChannelKind, ChannelCounts>,
    /// Members of presence channels now, summed over the channels (a user in two channels
    /// counts twice).
    pub presence_members: u64,
    /// What happened since the start.
    pub counters: AppCounters,
}

/// Everything [`Engine::metrics`] reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineMetrics {
    /// Per app, by app id.
    pub apps: BTreeMap<String, AppMetrics>,
    /// Handshakes refused before they became a connection, by close code (no app label:
    /// an unknown key names no app).
    pub refused_connections: BTreeMap<u16, u64>,
}

impl Engine {
    /// A copy of every count and of the live state they go with; O(channels) to compute.
    pub fn metrics(&self) -> EngineMetrics {
        let apps = self
            .apps
            .iter()
            .map(|(id, app)| {
                let mut metrics = AppMetrics {
                    connections: app.connections as u64,
                    counters: app.counters.clone(),
                    ..Default::default()
                };
                for (name, channel) in app.channels.iter() {
                    let kind = name.kind();
                    let counts = metrics.channels.entry(kind).or_default();
                    counts.channels += 1;
                    counts.subscriptions += channel.subscriber_count() as u64;
                    if kind == ChannelKind::Presence {
                        metrics.presence_members += channel.roster.len() as u64;
                    }
                }
                (id.as_str().to_owned(), metrics)
            })
            .collect();
        EngineMetrics {
            apps,
            refused_connections: self.refused_connections.clone(),
        }
    }

    /// The counters of the app `conn` belongs to, if it is open.
    pub(super) fn counters_of(&mut self, conn: ConnId) -> Option<&mut AppCounters> {
        let app = &self.conns.get(&conn)?.app;
        self.apps.get_mut(app).map(|a| &mut a.counters)
    }

    /// The counters of `app`, if it exists.
    pub(super) fn counters_of_app(&mut self, app: &AppId) -> Option<&mut AppCounters> {
        self.apps.get_mut(app).map(|a| &mut a.counters)
    }

    /// Counts a handshake refused before it became a connection.
    pub(super) fn count_refused(&mut self, code: CloseCode) {
        *self.refused_connections.entry(code.get()).or_default() += 1;
    }

    /// Queues one frame for many connections of `app`, counted once per recipient (its plain
    /// size: whether a connection gets it compressed is the shell's business), never
    /// compressed if the app turned compression off.
    pub(super) fn broadcast(
        &mut self,
        app: &AppId,
        conns: Arc<[ConnId]>,
        except: Option<ConnId>,
        frame: Frame,
    ) {
        let frame = self.for_app(app, frame);
        // `conns` is sorted (see `Output::Broadcast`).
        let skipped = except.is_some_and(|c| conns.binary_search(&c).is_ok());
        let recipients = (conns.len() - usize::from(skipped)) as u64;
        if let Some(counters) = self.counters_of_app(app) {
            counters.ws_messages_sent += recipients;
            counters.ws_bytes_sent += recipients * frame.wire_bytes().len() as u64;
        }
        self.outputs.push_back(Output::Broadcast {
            conns,
            except,
            frame,
        });
    }
}

#[cfg(test)]
// Tests need some instant to start from; its value does not matter.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::ids::ReqId;
    use crate::interface::{HttpRequest, Input, Moment, WsRequest};
    use std::time::Instant;

    fn opened(conn: u64, path: &str) -> Input {
        Input::Opened {
            conn: ConnId(conn),
            request: WsRequest {
                path: path.into(),
                ..Default::default()
            },
        }
    }

    fn text(conn: u64, json: &str) -> Input {
        Input::Text {
            conn: ConnId(conn),
            text: json.as_bytes().to_vec(),
        }
    }

    #[test]
    fn counts_follow_the_traffic() {
        let mut engine = Engine::new(Config::default(), 1);
        let at = Moment::new(Instant::now(), 1_000);
        let subscribe = r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#;
        let inputs = [
            opened(1, "/app/app-key"),
            opened(2, "/app/app-key"),
            opened(3, "/app/no-such-key"),
            text(1, subscribe),
            text(2, subscribe),
            // Refused: client events are for private and presence channels.
            text(1, r#"{"event":"client-x","channel":"news","data":{}}"#),
            Input::Closed { conn: ConnId(2) },
            Input::Http {
                req: ReqId(1),
                request: HttpRequest {
                    method: "GET".into(),
                    path: "/apps/app-id/channels".into(),
                    ..Default::default()
                },
            },
        ];
        let mut frames = 0;
        for input in inputs {
            engine.handle_input(at, input).unwrap();
            loop {
                match engine.poll_output() {
                    Output::Timeout(_) => break,
                    Output::Send { conn, .. } if conn != ConnId(3) => frames += 1,
                    _ => {}
                }
            }
        }
        let metrics = engine.metrics();
        assert_eq!(
            metrics.refused_connections,
            BTreeMap::from([(CloseCode::APP_NOT_FOUND.get(), 1)])
        );
        let app = &metrics.apps["app-id"];
        assert_eq!(app.connections, 1);
        assert_eq!(
            app.channels,
            BTreeMap::from([(
                ChannelKind::Public,
                ChannelCounts {
                    channels: 1,
                    subscriptions: 1
                }
            )])
        );
        let counters = &app.counters;
        assert_eq!(counters.new_connections, 2);
        assert_eq!(counters.disconnections, 1);
        assert_eq!(counters.ws_messages_received, 3);
        assert_eq!(counters.client_events_refused, 1);
        assert_eq!(counters.client_events_relayed, 0);
        // Two welcomes, two subscription confirmations, one error.
        assert_eq!(counters.ws_messages_sent, 5);
        assert_eq!(frames, 5);
        assert_eq!(counters.http_calls, 1);
        assert!(counters.http_bytes_sent > 0);
        assert!(
            counters.closes.is_empty(),
            "the client closed, not the engine"
        );
    }

    fn drain(engine: &mut Engine) {
        while !matches!(engine.poll_output(), Output::Timeout(_)) {}
    }

    #[test]
    fn presence_members_relayed_client_events_and_closes_by_code() {
        let mut engine = Engine::new(Config::default(), 1);
        let at = Moment::new(Instant::now(), 1_000);
        for (conn, user) in [(1, "ann"), (2, "ben"), (3, "ann")] {
            engine
                .handle_input(at, opened(conn, "/app/app-key"))
                .unwrap();
            let socket_id = engine.socket_id(ConnId(conn)).unwrap();
            let channel_data = format!(r#"{{"user_id":"{user}"}}"#);
            let message = format!("{socket_id}:presence-room:{channel_data}");
            let auth = crate::signature::client_auth("app-key", "app-secret", message.as_bytes());
            let subscribe = serde_json::json!({
                "event": "pusher:subscribe",
                "data": {"channel": "presence-room", "auth": auth, "channel_data": channel_data},
            });
            engine
                .handle_input(at, text(conn, &subscribe.to_string()))
                .unwrap();
            drain(&mut engine);
        }
        let event = r#"{"event":"client-wave","channel":"presence-room","data":{}}"#;
        engine.handle_input(at, text(1, event)).unwrap();
        engine
            .handle_input(at, Input::SlowConsumer { conn: ConnId(2) })
            .unwrap();
        drain(&mut engine);

        let app = &engine.metrics().apps["app-id"];
        // Ann twice (two sockets, one member); Ben was closed.
        assert_eq!(app.presence_members, 1);
        assert_eq!(
            app.channels[&ChannelKind::Presence],
            ChannelCounts {
                channels: 1,
                subscriptions: 2
            }
        );
        assert_eq!(app.counters.client_events_relayed, 1);
        assert_eq!(app.counters.client_events_refused, 0);
        assert_eq!(
            app.counters.closes,
            BTreeMap::from([(CloseCode::OVER_CAPACITY.get(), 1)])
        );
        assert_eq!(app.connections, 2);
        assert_eq!(app.counters.disconnections, 1);
    }
}
