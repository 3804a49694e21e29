//! Client events: `client-*` messages relayed by one subscriber to the others.

use super::Engine;
use crate::close_code::CloseCode;
use crate::ids::{ChannelName, ConnId, EventName};
use crate::wire::pusher::{self, RawJson};
use serde_json::value::RawValue;

impl Engine {
    pub(super) fn on_client_event(
        &mut self,
        conn: ConnId,
        event: &str,
        channel: Option<&str>,
        data: Option<&RawValue>,
    ) {
        let now = self.moment().now;
        let connection = &self.conns[&conn];
        let app = &self.apps[&connection.app];
        let refuse = |engine: &mut Self, why: String| {
            if let Some(counters) = engine.counters_of(conn) {
                counters.client_events_refused += 1;
            }
            engine.send_error(conn, None, &why);
        };
        if !app.config.client_events {
            return refuse(self, "client events are not enabled for this app".into());
        }
        // Never empty: the caller routed it here for its `client-` prefix.
        let Ok(event) = EventName::parse(event, app.config.max_event_name_len) else {
            return refuse(
                self,
                format!(
                    "event name is longer than {} characters",
                    app.config.max_event_name_len
                ),
            );
        };
        let Some(channel_name) = channel else {
            return refuse(self, format!("client event {event:?} needs a channel"));
        };
        let Ok(channel) = ChannelName::parse(channel_name, app.config.max_channel_name_len) else {
            return refuse(self, format!("invalid channel {channel_name:?}"));
        };
        if !channel.kind().allows_client_events() {
            return refuse(self, format!("client events are only allowed on private and presence channels, not {channel}"));
        }
        let Some(member) = connection.channels.get(&channel) else {
            return refuse(
                self,
                format!("client event on {channel}, which this connection has not joined"),
            );
        };
        let user_id = member.clone();
        let Some(data) = relay_data(data) else {
            return refuse(
                self,
                format!("client event {event:?} data is a string no JSON parser accepts"),
            );
        };
        // The same bound as an HTTP publish: the whole-message limit alone let a raised
        // `max_message_bytes` carry client events bigger than any server event may be.
        let data_len = data_len(&data);
        let max_data = app.config.max_event_payload_bytes;
        if data_len > max_data {
            return refuse(
                self,
                format!("client event {event:?} data is {data_len} bytes; the limit is {max_data}"),
            );
        }
        let connection = self.conns.get_mut(&conn).expect("checked above");
        if !connection.client_events.try_take(now) {
            let message =
                format!("client event rate limit exceeded: {event} on {channel} was not delivered");
            if let Some(counters) = self.counters_of(conn) {
                counters.client_events_refused += 1;
            }
            return self.send_error(conn, Some(CloseCode::CLIENT_EVENT_RATE_LIMITED), &message);
        }
        let app_id = connection.app.clone();
        let app = self
            .apps
            .get_mut(&app_id)
            .expect("an app outlives its connections");
        app.counters.client_events_relayed += 1;
        let frame = pusher::message(
            event.as_str(),
            Some(channel.as_str()),
            &data,
            user_id.as_ref().map(|u| u.as_str()),
        );
        let entry = app
            .channels
            .get_mut(&channel)
            .expect("a joined channel exists");
        if entry.subscriber_count() > 1 {
            let conns = entry.recipients();
            self.broadcast(&app_id, conns, Some(conn), frame);
        }
        let connection = &self.conns[&conn];
        let (app, socket_id) = (connection.app.clone(), connection.socket_id);
        self.cluster_client_event(&app, &channel, &event, &data, user_id.as_ref(), socket_id);
        if self.watching() {
            let detail = super::debug::Detail {
                channel: Some(channel.as_str().to_owned()),
                event: Some(event.as_str().to_owned()),
                socket_id: Some(socket_id),
                data: Some(super::debug::preview(&data.0)),
            };
            self.debug(&app, super::DebugKind::ClientEvent, detail);
        }
        self.with_webhooks(&app, |hooks, cx| {
            let sender = (socket_id, user_id.as_ref());
            hooks.handle_client_event(&channel, &event, &data, sender, cx);
        });
    }
}

/// The size of `data` as receivers see it, measured as the HTTP API measures `data`: the
/// text of a string, the JSON of anything else.
fn data_len(data: &RawJson) -> usize {
    serde_json::from_str::<String>(&data.0).map_or(data.0.len(), |text| text.len())
}

/// Client event data is relayed as a JSON string, like every server → client payload.
///
/// A string is relayed verbatim, so it must be one every receiver can parse: the envelope
/// parser lets through escapes of lone surrogates (`"\ud800"`), which strict parsers refuse,
/// and one such frame would break the receivers' connections. `None` for those.
fn relay_data(data: Option<&RawValue>) -> Option<RawJson> {
    match data {
        None => Some(RawJson::string("null")),
        Some(raw) if raw.get().starts_with('"') => serde_json::from_str::<String>(raw.get())
            .is_ok()
            .then(|| RawJson(raw.get().to_owned())),
        Some(raw) => Some(RawJson::string(raw.get())),
    }
}
