//! The debug feed for the admin console: what happens in each app, as it happens.
//!
//! The feed is off until the shell says someone watches ([`Input::Watch`]): every emission
//! point first tests one boolean, and builds nothing when it is false, so a server nobody
//! watches pays one predictable branch per event. While on, each event becomes one
//! [`Output::Debug`], and [`Engine::console_snapshot`] lists the occupied channels.
//!
//! [`Input::Watch`]: crate::Input::Watch

use super::Engine;
use crate::ids::{AppId, ChannelKind, SocketId};
use crate::interface::Output;
use serde_json::{json, Value};

/// How many characters of a payload a debug event carries.
pub(super) const PREVIEW_CHARS: usize = 200;

/// What a [`DebugEvent`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugKind {
    /// A connection was accepted.
    Connected,
    /// A connection ended, whoever closed it.
    Disconnected,
    /// A connection joined a channel.
    Subscribed,
    /// A connection left a channel it had joined (by unsubscribing or closing).
    Unsubscribed,
    /// A client event was relayed.
    ClientEvent,
    /// The HTTP API (or the console) published an event to a channel.
    ApiPublish,
    /// A webhook POST was handed to the shell for delivery.
    WebhookQueued,
    /// Something was refused or went wrong (a `pusher:error`, a close, an API error).
    Error,
}

impl DebugKind {
    /// The name the console shows and filters on.
    pub fn as_str(self) -> &'static str {
        match self {
            DebugKind::Connected => "connected",
            DebugKind::Disconnected => "disconnected",
            DebugKind::Subscribed => "subscribed",
            DebugKind::Unsubscribed => "unsubscribed",
            DebugKind::ClientEvent => "client_event",
            DebugKind::ApiPublish => "api_publish",
            DebugKind::WebhookQueued => "webhook",
            DebugKind::Error => "error",
        }
    }
}

/// One thing that happened in an app, for the console's live log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugEvent {
    /// The app it happened in.
    pub app: AppId,
    /// What happened.
    pub kind: DebugKind,
    /// The channel concerned, if any.
    pub channel: Option<String>,
    /// The event name concerned, if any.
    pub event: Option<String>,
    /// The connection concerned, if it has a socket id.
    pub socket_id: Option<SocketId>,
    /// The start of the payload (at most [`PREVIEW_CHARS`] characters), or a message.
    pub data: Option<String>,
    /// When, in milliseconds since the Unix epoch (the input's wall time).
    pub unix_ms: u64,
}

impl DebugEvent {
    /// The event as one JSON object, as the console's event stream carries it.
    pub fn to_json(&self) -> Vec<u8> {
        json!({
            "app": self.app.as_str(),
            "kind": self.kind.as_str(),
            "channel": self.channel,
            "event": self.event,
            "socket_id": self.socket_id.map(|s| s.to_string()),
            "data": self.data,
            "time_ms": self.unix_ms,
        })
        .to_string()
        .into_bytes()
    }
}

/// The first [`PREVIEW_CHARS`] characters of `text`, marked when cut.
pub(super) fn preview(text: &str) -> String {
    match text.char_indices().nth(PREVIEW_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

/// The fields of a debug event besides its app, kind and time.
#[derive(Default)]
pub(super) struct Detail {
    pub channel: Option<String>,
    pub event: Option<String>,
    pub socket_id: Option<SocketId>,
    pub data: Option<String>,
}

impl Engine {
    /// Turns the debug feed on or off.
    pub(super) fn set_watching(&mut self, on: bool) {
        self.watching = on;
    }

    /// Whether someone watches: the guard of every emission point, tested before anything
    /// about the event is built.
    #[inline]
    pub(super) fn watching(&self) -> bool {
        self.watching
    }

    /// Emits one debug event (callers test [`Engine::watching`] first).
    pub(super) fn debug(&mut self, app: &AppId, kind: DebugKind, detail: Detail) {
        let unix_ms = self.moment().unix_ms;
        self.outputs.push_back(Output::Debug(DebugEvent {
            app: app.clone(),
            kind,
            channel: detail.channel,
            event: detail.event,
            socket_id: detail.socket_id,
            data: detail.data,
            unix_ms,
        }));
    }

    /// Emits [`DebugKind::Unsubscribed`] (callers test [`Engine::watching`] first).
    pub(super) fn debug_unsubscribed(
        &mut self,
        app: &AppId,
        channel: &crate::ids::ChannelName,
        socket_id: SocketId,
    ) {
        let detail = Detail {
            channel: Some(channel.as_str().to_owned()),
            socket_id: Some(socket_id),
            ..Default::default()
        };
        self.debug(app, DebugKind::Unsubscribed, detail);
    }

    /// The console's view of every app as JSON: its key, open connections, and each
    /// occupied channel with its subscriber count (and member count for presence channels).
    /// O(channels), computed only when the console asks.
    pub fn console_snapshot(&self) -> Vec<u8> {
        let apps: Vec<Value> = self
            .apps
            .iter()
            .map(|(id, app)| {
                let channels: Vec<Value> = app
                    .channels
                    .iter()
                    .map(|(name, channel)| {
                        let members =
                            (name.kind() == ChannelKind::Presence).then(|| channel.roster.len());
                        json!({
                            "name": name.as_str(),
                            "subscribers": channel.subscriber_count(),
                            "members": members,
                        })
                    })
                    .collect();
                json!({
                    "id": id.as_str(),
                    "key": app.config.key,
                    "connections": app.connections,
                    "channels": channels,
                })
            })
            .collect();
        json!({ "apps": apps }).to_string().into_bytes()
    }
}
