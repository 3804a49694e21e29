//! One simulated Pusher client: connects, subscribes to its channel (signing private and
//! presence subscriptions), answers pings, checks the sequence numbers of the events it gets
//! and keeps its view of a presence channel's members.

use super::histogram::Histogram;
use super::ws_client::{Incoming, WsConn};
use ferrocast_engine::signature::client_auth;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeSet;

/// The event name the generator publishes.
pub(crate) const EVENT_NAME: &str = "loadgen";

/// What every client of a worker shares: credentials and the time origin.
pub(crate) struct Shared {
    /// App key (signs subscriptions).
    pub app_key: String,
    /// App secret (signs subscriptions).
    pub app_secret: String,
    /// Monotonic ns the publisher's timestamps count from (`now_ns` is relative to it).
    pub epoch_ns: u64,
    /// Whether clients offer permessage-deflate.
    pub deflate: bool,
    /// The clients' TLS configuration, for `wss://` targets.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Counters every client of a worker adds to.
#[derive(Default)]
pub(crate) struct Tally {
    /// Application events received.
    pub deliveries: u64,
    /// Bytes read off the clients' sockets (handshakes and frames, compressed or not).
    pub wire_bytes: u64,
    /// Messages that arrived compressed.
    pub compressed: u64,
    /// Events out of sequence.
    pub order_errors: u64,
    /// `pusher:error` and subscription errors.
    pub pusher_errors: u64,
    /// Publish-to-receive latencies.
    pub latency: Histogram,
    /// One received application event, verbatim.
    pub sample_payload: Option<String>,
    /// Clients that reached their target since the worker last looked.
    pub newly_satisfied: usize,
    /// `member_added` events received.
    pub added: u64,
    /// `member_removed` events received.
    pub removed: u64,
    /// `member_added` / `member_removed` that contradicted the client's member list.
    pub member_errors: u64,
    /// The first few problems.
    pub notes: Vec<String>,
}

impl Tally {
    /// Keeps a problem description, up to a handful.
    pub(crate) fn note(&mut self, text: String) {
        if self.notes.len() < 8 {
            self.notes.push(text);
        }
    }
}

/// Where a client is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Connecting, upgrading or waiting for `connection_established`.
    Connecting,
    /// Subscribe sent, no answer yet.
    Subscribing,
    /// Subscribed.
    Subscribed,
}

/// A change the worker must account for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The subscription succeeded.
    Subscribed,
    /// The subscription was refused.
    Refused(String),
    /// The server closed the connection with a close frame.
    Closed(Option<u16>),
}

/// One client connection.
pub(crate) struct Client {
    /// The WebSocket.
    pub ws: WsConn,
    /// Global index (names the channel and user).
    pub index: u64,
    /// The one channel it subscribes to.
    pub channel: String,
    /// Whether it joins as a presence member.
    pub presence: bool,
    /// Whether events carry sequence numbers to check.
    pub verify: bool,
    /// Its phase.
    pub phase: Phase,
    /// The progress `Await` waits for.
    pub target: u64,
    /// Last sequence number seen (verified) or events counted (unverified).
    pub progress: u64,
    /// The socket id the server assigned.
    pub socket_id: String,
    /// Presence members as this client sees them.
    pub members: BTreeSet<String>,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

impl Client {
    /// A client on `channel` over a connection being opened.
    pub(crate) fn new(
        ws: WsConn,
        index: u64,
        channel: String,
        presence: bool,
        verify: bool,
    ) -> Self {
        Client {
            ws,
            index,
            channel,
            presence,
            verify,
            phase: Phase::Connecting,
            target: u64::MAX,
            progress: 0,
            socket_id: String::new(),
            members: BTreeSet::new(),
        }
    }

    /// The presence user id of this client.
    pub(crate) fn user_id(&self) -> String {
        format!("u{}", self.index)
    }

    /// Sets what `Await` waits for; true when it is already reached.
    pub(crate) fn set_target(&mut self, target: u64) -> bool {
        self.target = target;
        self.progress >= target
    }

    /// Handles every complete message buffered on the connection.
    pub(crate) fn drain(
        &mut self,
        shared: &Shared,
        now_ns: u64,
        tally: &mut Tally,
    ) -> Result<Vec<Change>, String> {
        let mut changes = Vec::new();
        while let Some(message) = self.ws.next_message()? {
            match message {
                Incoming::Close(code) => {
                    changes.push(Change::Closed(code));
                    return Ok(changes);
                }
                Incoming::Text(text) => {
                    if let Some(change) = self.on_text(&text, shared, now_ns, tally)? {
                        changes.push(change);
                    }
                }
            }
        }
        Ok(changes)
    }

    /// Leaves the channel and joins again (one presence churn round).
    pub(crate) fn rejoin(&mut self, shared: &Shared) -> Result<(), String> {
        let leave =
            serde_json::json!({"event": "pusher:unsubscribe", "data": {"channel": self.channel}});
        self.send(leave.to_string().as_bytes())?;
        self.phase = Phase::Subscribing;
        self.subscribe(shared)
    }

    fn on_text(
        &mut self,
        text: &[u8],
        shared: &Shared,
        now_ns: u64,
        tally: &mut Tally,
    ) -> Result<Option<Change>, String> {
        let envelope: Envelope =
            serde_json::from_slice(text).map_err(|e| format!("unparsable message: {e}"))?;
        let data = envelope.data.map(RawValue::get).unwrap_or("null");
        match envelope.event.as_ref() {
            EVENT_NAME => {
                self.on_event(text, data, now_ns, tally);
                Ok(None)
            }
            "pusher:connection_established" => {
                let inner: serde_json::Value = decode_data(data)?;
                self.socket_id = inner["socket_id"]
                    .as_str()
                    .ok_or("connection_established without socket_id")?
                    .to_string();
                self.phase = Phase::Subscribing;
                self.subscribe(shared)?;
                Ok(None)
            }
            "pusher_internal:subscription_succeeded" => {
                if self.presence {
                    let inner: serde_json::Value = decode_data(data)?;
                    self.members = inner["presence"]["ids"]
                        .as_array()
                        .map(|ids| {
                            ids.iter()
                                .filter_map(|v| v.as_str())
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default();
                }
                self.phase = Phase::Subscribed;
                Ok(Some(Change::Subscribed))
            }
            "pusher_internal:member_added" => {
                let user = member_id(data)?;
                tally.added += 1;
                if !self.members.insert(user.clone()) {
                    tally.member_errors += 1;
                    tally.note(format!(
                        "client {}: member_added for present {user}",
                        self.index
                    ));
                }
                Ok(None)
            }
            "pusher_internal:member_removed" => {
                let user = member_id(data)?;
                tally.removed += 1;
                if !self.members.remove(&user) {
                    tally.member_errors += 1;
                    tally.note(format!(
                        "client {}: member_removed for absent {user}",
                        self.index
                    ));
                }
                Ok(None)
            }
            "pusher:ping" => {
                self.send(br#"{"event":"pusher:pong","data":{}}"#)?;
                Ok(None)
            }
            "pusher:subscription_error" => {
                tally.pusher_errors += 1;
                Ok(Some(Change::Refused(format!("subscription_error {data}"))))
            }
            "pusher:error" => {
                tally.pusher_errors += 1;
                tally.note(format!("client {}: pusher:error {data}", self.index));
                if self.phase == Phase::Subscribed {
                    Ok(None)
                } else {
                    Ok(Some(Change::Refused(format!("pusher:error {data}"))))
                }
            }
            _ => Ok(None),
        }
    }

    fn on_event(&mut self, text: &[u8], data: &str, now_ns: u64, tally: &mut Tally) {
        tally.deliveries += 1;
        if tally.sample_payload.is_none() {
            tally.sample_payload = Some(String::from_utf8_lossy(text).into_owned());
        }
        let before = self.progress;
        if !self.verify {
            self.progress += 1;
        } else {
            match parse_stamp(data) {
                Some((seq, sent_ns)) => {
                    if seq != self.progress + 1 {
                        tally.order_errors += 1;
                        tally.note(format!(
                            "client {} on {}: sequence {seq} after {}",
                            self.index, self.channel, self.progress
                        ));
                    }
                    self.progress = self.progress.max(seq);
                    tally.latency.record(now_ns.saturating_sub(sent_ns));
                }
                None => {
                    tally.order_errors += 1;
                    tally.note(format!(
                        "client {}: event data without a stamp: {data}",
                        self.index
                    ));
                }
            }
        }
        if before < self.target && self.progress >= self.target {
            tally.newly_satisfied += 1;
        }
    }

    fn subscribe(&mut self, shared: &Shared) -> Result<(), String> {
        let mut data = serde_json::json!({"channel": self.channel});
        let needs_auth =
            self.channel.starts_with("private-") || self.channel.starts_with("presence-");
        if self.presence {
            let channel_data =
                serde_json::json!({"user_id": self.user_id(), "user_info": {"n": self.index}})
                    .to_string();
            let signed = format!("{}:{}:{}", self.socket_id, self.channel, channel_data);
            data["auth"] =
                client_auth(&shared.app_key, &shared.app_secret, signed.as_bytes()).into();
            data["channel_data"] = channel_data.into();
        } else if needs_auth {
            let signed = format!("{}:{}", self.socket_id, self.channel);
            data["auth"] =
                client_auth(&shared.app_key, &shared.app_secret, signed.as_bytes()).into();
        }
        let message = serde_json::json!({"event": "pusher:subscribe", "data": data});
        self.send(message.to_string().as_bytes())
    }

    fn send(&mut self, text: &[u8]) -> Result<(), String> {
        self.ws
            .send_text(text)
            .map_err(|e| format!("send failed: {e}"))
    }
}

/// Server-to-client `data` is usually a JSON-encoded string; accept an object too.
fn decode_data(data: &str) -> Result<serde_json::Value, String> {
    let value: serde_json::Value =
        serde_json::from_str(data).map_err(|e| format!("bad data: {e}"))?;
    match value {
        serde_json::Value::String(inner) => {
            serde_json::from_str(&inner).map_err(|e| format!("bad data string: {e}"))
        }
        other => Ok(other),
    }
}

fn member_id(data: &str) -> Result<String, String> {
    let inner = decode_data(data)?;
    match &inner["user_id"] {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(format!("member event without user_id: {data}")),
    }
}

/// The event data the publisher sends: sequence number, send time, padding.
pub(crate) fn stamp(seq: u64, sent_ns: u64, pad: usize) -> String {
    let mut data = format!("{seq} {sent_ns} ");
    // Padding shaped like application records, varying per event, so that permessage-deflate
    // compresses it about as well as real JSON and not a thousand to one like repeated bytes.
    let mut state = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let start = data.len();
    while data.len() - start < pad {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let (id, user, price) = (
            state % 100_000,
            (state >> 20) % 5000,
            (state >> 40) % 100_000,
        );
        let status = ["open", "filled", "cancelled"][(state >> 60) as usize % 3];
        data.push_str(&format!(
            "{{id:{id},user:user-{user},price:{}.{:02},status:{status}}},",
            price / 100,
            price % 100
        ));
    }
    data.truncate(start + pad);
    data
}

/// `(sequence, send time)` from event data made by [`stamp`] (as a JSON string).
fn parse_stamp(data: &str) -> Option<(u64, u64)> {
    let text: Cow<str> = serde_json::from_str(data).ok()?;
    let mut parts = text.split(' ');
    let seq = parts.next()?.parse().ok()?;
    let sent = parts.next()?.parse().ok()?;
    Some((seq, sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_json() {
        let padded = stamp(42, 123_456, 300);
        assert_eq!(padded.len(), "42 123456 ".len() + 300);
        let data = serde_json::to_string(&stamp(42, 123_456, 10)).unwrap();
        assert_eq!(parse_stamp(&data), Some((42, 123_456)));
        assert_eq!(parse_stamp("\"nope\""), None);
    }

    #[test]
    fn data_is_decoded_from_a_string_or_an_object() {
        assert_eq!(decode_data(r#""{\"a\":1}""#).unwrap()["a"], 1);
        assert_eq!(decode_data(r#"{"a":2}"#).unwrap()["a"], 2);
        assert_eq!(member_id(r#""{\"user_id\":7}""#).unwrap(), "7");
    }
}
