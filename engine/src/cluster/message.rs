//! The bus message format: versioned, named by cluster prefix and app, compact, validated.
//!
//! On the wire a message is one JSON object with short keys:
//! `{"v":1,"p":"ferrocast","n":3,"s":17,"a":"app-id","b":{"t":"pub",...}}` — format version,
//! cluster prefix, sender node, the sender's sequence number (1, 2, … per incarnation), the
//! app (absent for node-wide bodies) and the body. Decoding checks every field and parses
//! every name, so a message that decodes can be applied without further checks.

use super::view::{Change, Contribution};
use super::NodeId;
use crate::ids::{AppId, ChannelName, EventName, SocketId, UserId};
use crate::wire::pusher::RawJson;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The format version this engine speaks; other versions are dropped and counted.
pub(crate) const VERSION: u32 = 1;

/// Generous bounds for names from peers (they were checked against the app's own limits on
/// the node that accepted them; these only keep a broken peer from bloating state).
const MAX_NAME_LEN: usize = 1_000;

/// One bus message, decoded and validated.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BusMessage {
    /// The sending node.
    pub node: NodeId,
    /// The sender's sequence number.
    pub seq: u64,
    /// The app the body concerns (`None` for node-wide bodies).
    pub app: Option<AppId>,
    /// What it says.
    pub body: Body,
}

/// One event of an HTTP publish, as carried to the other nodes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BusEvent {
    pub name: EventName,
    pub data: String,
    pub channels: Vec<ChannelName>,
    /// The publish's `socket_id`: the connection (on whichever node) that must not get it.
    pub except: Option<SocketId>,
}

/// What a bus message says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Body {
    /// One HTTP publish request (a batch is one message).
    Publish(Vec<BusEvent>),
    /// A client event relayed by a subscriber of the sender node.
    ClientEvent {
        channel: ChannelName,
        event: EventName,
        /// The relayed data, a JSON string literal (checked).
        data: RawJson,
        user: Option<UserId>,
        socket: SocketId,
    },
    /// Changes of the sender's contributions to one app.
    Delta(Vec<Change>),
    /// The sender's whole contribution to every app, replacing what it said before.
    Snapshot {
        /// The sender wants every other node's snapshot in return (it joined or reconnected).
        reply_wanted: bool,
        apps: BTreeMap<AppId, Contribution>,
    },
    /// The sender is alive.
    Heartbeat,
    /// Asks `of` to publish a snapshot (the asker missed some of its messages).
    SnapshotRequest { of: NodeId },
    /// The app's backend terminated this user's connections.
    TerminateUser(UserId),
    /// The leave delay of a pending `channel_vacated`/`member_removed` passed at its owner:
    /// every node resolves the pending leave named by `token` here, in bus order.
    LeaveDue { key: LeaveKey, token: LeaveToken },
}

/// A webhook held back by the leave delay: a channel's `channel_vacated` or a member's
/// `member_removed`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum LeaveKey {
    Vacated(ChannelName),
    MemberRemoved(ChannelName, UserId),
}

/// Names one pending leave the same way on every node: the bus message that caused it (its
/// sender and sequence number), or a dead node (sequence [`LeaveToken::DEATH`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct LeaveToken {
    pub node: NodeId,
    pub seq: u64,
}

impl LeaveToken {
    /// The sequence number of a token for a leave caused by `node`'s death.
    pub(crate) const DEATH: u64 = u64::MAX;
}

/// Why a message was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    Malformed,
    ForeignVersion,
    OtherCluster,
}

#[derive(Serialize, Deserialize)]
struct WireEnvelope {
    v: u32,
    p: String,
    n: u64,
    s: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<String>,
    b: WireBody,
}

/// Only the version and prefix, read first so a future format is "foreign", not "malformed".
#[derive(Deserialize)]
struct WireHeader {
    v: u32,
    p: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "t")]
enum WireBody {
    #[serde(rename = "pub")]
    Publish { e: Vec<WireEvent> },
    #[serde(rename = "ce")]
    ClientEvent {
        c: String,
        e: String,
        d: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        u: Option<String>,
        x: String,
    },
    #[serde(rename = "d")]
    Delta { c: Vec<WireChange> },
    #[serde(rename = "snap")]
    Snapshot {
        r: bool,
        apps: BTreeMap<String, WireContribution>,
    },
    #[serde(rename = "hb")]
    Heartbeat,
    #[serde(rename = "req")]
    SnapshotRequest { of: u64 },
    #[serde(rename = "term")]
    TerminateUser { u: String },
    #[serde(rename = "ld")]
    LeaveDue {
        c: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        u: Option<String>,
        tn: u64,
        ts: u64,
    },
}

#[derive(Serialize, Deserialize)]
struct WireEvent {
    e: String,
    d: String,
    c: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "k")]
enum WireChange {
    #[serde(rename = "n")]
    Connections { n: u64 },
    #[serde(rename = "s")]
    Subscribers { c: String, n: u64 },
    #[serde(rename = "m")]
    Member {
        c: String,
        u: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        i: Option<String>,
        p: bool,
    },
    #[serde(rename = "u")]
    User { u: String, p: bool },
}

#[derive(Serialize, Deserialize, Default)]
struct WireContribution {
    #[serde(default)]
    n: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    s: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    m: BTreeMap<String, BTreeMap<String, Option<String>>>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    u: BTreeSet<String>,
}

/// Encodes a message for the bus.
pub(crate) fn encode(prefix: &str, message: &BusMessage) -> Vec<u8> {
    let envelope = WireEnvelope {
        v: VERSION,
        p: prefix.to_owned(),
        n: message.node.0,
        s: message.seq,
        a: message.app.as_ref().map(|a| a.as_str().to_owned()),
        b: wire_body(&message.body),
    };
    serde_json::to_vec(&envelope).expect("bus messages always serialize")
}

/// Decodes and validates a message from the bus.
pub(crate) fn decode(prefix: &str, bytes: &[u8]) -> Result<BusMessage, Rejection> {
    let header: WireHeader = serde_json::from_slice(bytes).map_err(|_| Rejection::Malformed)?;
    if header.v != VERSION {
        return Err(Rejection::ForeignVersion);
    }
    if header.p != prefix {
        return Err(Rejection::OtherCluster);
    }
    let envelope: WireEnvelope = serde_json::from_slice(bytes).map_err(|_| Rejection::Malformed)?;
    let app = envelope.a.map(|a| AppId::new(&a));
    let body = typed_body(envelope.b).ok_or(Rejection::Malformed)?;
    let app_scoped = !matches!(
        body,
        Body::Snapshot { .. } | Body::Heartbeat | Body::SnapshotRequest { .. }
    );
    if app_scoped != app.is_some() {
        return Err(Rejection::Malformed);
    }
    Ok(BusMessage {
        node: NodeId(envelope.n),
        seq: envelope.s,
        app,
        body,
    })
}

fn wire_body(body: &Body) -> WireBody {
    match body {
        Body::Publish(events) => WireBody::Publish {
            e: events
                .iter()
                .map(|e| WireEvent {
                    e: e.name.as_str().to_owned(),
                    d: e.data.clone(),
                    c: e.channels.iter().map(|c| c.as_str().to_owned()).collect(),
                    x: e.except.map(|s| s.to_string()),
                })
                .collect(),
        },
        Body::ClientEvent {
            channel,
            event,
            data,
            user,
            socket,
        } => WireBody::ClientEvent {
            c: channel.as_str().to_owned(),
            e: event.as_str().to_owned(),
            d: data.0.clone(),
            u: user.as_ref().map(|u| u.as_str().to_owned()),
            x: socket.to_string(),
        },
        Body::Delta(changes) => WireBody::Delta {
            c: changes.iter().map(wire_change).collect(),
        },
        Body::Snapshot { reply_wanted, apps } => WireBody::Snapshot {
            r: *reply_wanted,
            apps: apps
                .iter()
                .map(|(app, c)| (app.as_str().to_owned(), wire_contribution(c)))
                .collect(),
        },
        Body::Heartbeat => WireBody::Heartbeat,
        Body::SnapshotRequest { of } => WireBody::SnapshotRequest { of: of.0 },
        Body::TerminateUser(user) => WireBody::TerminateUser {
            u: user.as_str().to_owned(),
        },
        Body::LeaveDue { key, token } => {
            let (c, u) = match key {
                LeaveKey::Vacated(channel) => (channel, None),
                LeaveKey::MemberRemoved(channel, user) => (channel, Some(user)),
            };
            WireBody::LeaveDue {
                c: c.as_str().to_owned(),
                u: u.map(|u| u.as_str().to_owned()),
                tn: token.node.0,
                ts: token.seq,
            }
        }
    }
}

fn wire_change(change: &Change) -> WireChange {
    match change {
        Change::Connections(n) => WireChange::Connections { n: *n },
        Change::Subscribers(channel, n) => WireChange::Subscribers {
            c: channel.as_str().to_owned(),
            n: *n,
        },
        Change::Member {
            channel,
            user,
            info,
            present,
        } => WireChange::Member {
            c: channel.as_str().to_owned(),
            u: user.as_str().to_owned(),
            i: info.clone(),
            p: *present,
        },
        Change::User(user, present) => WireChange::User {
            u: user.as_str().to_owned(),
            p: *present,
        },
    }
}

fn wire_contribution(c: &Contribution) -> WireContribution {
    WireContribution {
        n: c.connections,
        s: c.subscribers
            .iter()
            .map(|(ch, n)| (ch.as_str().to_owned(), *n))
            .collect(),
        m: c.members
            .iter()
            .map(|(ch, members)| {
                let members = members
                    .iter()
                    .map(|(u, i)| (u.as_str().to_owned(), i.clone()))
                    .collect();
                (ch.as_str().to_owned(), members)
            })
            .collect(),
        u: c.users.iter().map(|u| u.as_str().to_owned()).collect(),
    }
}

fn channel(name: &str) -> Option<ChannelName> {
    ChannelName::parse(name, MAX_NAME_LEN).ok()
}

fn event_name(name: &str) -> Option<EventName> {
    EventName::parse(name, MAX_NAME_LEN).ok()
}

/// `user_info` is spliced into rosters as JSON text, so it must be JSON.
fn json_text(info: Option<String>) -> Option<Option<String>> {
    match info {
        None => Some(None),
        Some(text) => serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .is_ok()
            .then_some(Some(text)),
    }
}

fn typed_body(body: WireBody) -> Option<Body> {
    Some(match body {
        WireBody::Publish { e } => Body::Publish(
            e.into_iter()
                .map(|e| {
                    let except = match e.x {
                        None => None,
                        Some(x) => Some(SocketId::parse(&x)?),
                    };
                    Some(BusEvent {
                        name: event_name(&e.e)?,
                        data: e.d,
                        channels: e.c.iter().map(|c| channel(c)).collect::<Option<_>>()?,
                        except,
                    })
                })
                .collect::<Option<_>>()?,
        ),
        WireBody::ClientEvent { c, e, d, u, x } => {
            // Relayed verbatim into frames: it must be a JSON string every client can parse.
            serde_json::from_str::<String>(&d).ok()?;
            let user = match u {
                None => None,
                Some(u) => Some(UserId::new(&u)?),
            };
            Body::ClientEvent {
                channel: channel(&c)?,
                event: event_name(&e)?,
                data: RawJson(d),
                user,
                socket: SocketId::parse(&x)?,
            }
        }
        WireBody::Delta { c } => {
            Body::Delta(c.into_iter().map(typed_change).collect::<Option<_>>()?)
        }
        WireBody::Snapshot { r, apps } => Body::Snapshot {
            reply_wanted: r,
            apps: apps
                .into_iter()
                .map(|(app, c)| Some((AppId::new(&app), typed_contribution(c)?)))
                .collect::<Option<_>>()?,
        },
        WireBody::Heartbeat => Body::Heartbeat,
        WireBody::SnapshotRequest { of } => Body::SnapshotRequest { of: NodeId(of) },
        WireBody::TerminateUser { u } => Body::TerminateUser(UserId::new(&u)?),
        WireBody::LeaveDue { c, u, tn, ts } => Body::LeaveDue {
            key: match u {
                None => LeaveKey::Vacated(channel(&c)?),
                Some(u) => LeaveKey::MemberRemoved(channel(&c)?, UserId::new(&u)?),
            },
            token: LeaveToken {
                node: NodeId(tn),
                seq: ts,
            },
        },
    })
}

fn typed_change(change: WireChange) -> Option<Change> {
    Some(match change {
        WireChange::Connections { n } => Change::Connections(n),
        WireChange::Subscribers { c, n } => Change::Subscribers(channel(&c)?, n),
        WireChange::Member { c, u, i, p } => Change::Member {
            channel: channel(&c)?,
            user: UserId::new(&u)?,
            info: json_text(i)?,
            present: p,
        },
        WireChange::User { u, p } => Change::User(UserId::new(&u)?, p),
    })
}

fn typed_contribution(c: WireContribution) -> Option<Contribution> {
    Some(Contribution {
        connections: c.n,
        subscribers: c
            .s
            .into_iter()
            .map(|(ch, n)| Some((channel(&ch)?, n)))
            .collect::<Option<_>>()?,
        members: c
            .m
            .into_iter()
            .map(|(ch, members)| {
                let members = members
                    .into_iter()
                    .map(|(u, i)| Some((UserId::new(&u)?, json_text(i)?)))
                    .collect::<Option<_>>()?;
                Some((channel(&ch)?, members))
            })
            .collect::<Option<_>>()?,
        users: c
            .u
            .into_iter()
            .map(|u| UserId::new(&u))
            .collect::<Option<_>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> BusMessage {
        let news = ChannelName::parse("presence-room", 200).unwrap();
        BusMessage {
            node: NodeId(3),
            seq: 17,
            app: Some(AppId::new("app-id")),
            body: Body::Delta(vec![
                Change::Subscribers(news.clone(), 2),
                Change::Member {
                    channel: news,
                    user: UserId::new("alice").unwrap(),
                    info: Some("{\"name\":\"A\"}".into()),
                    present: true,
                },
            ]),
        }
    }

    #[test]
    fn a_message_round_trips_and_is_compact() {
        let bytes = encode("ferrocast", &sample());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with("{\"v\":1,\"p\":\"ferrocast\",\"n\":3,\"s\":17,\"a\":\"app-id\""));
        assert!(text.len() < 200, "{text}");
        assert_eq!(decode("ferrocast", &bytes), Ok(sample()));
    }

    #[test]
    fn foreign_versions_and_clusters_are_told_apart_from_garbage() {
        let bytes = encode("ferrocast", &sample());
        assert_eq!(decode("other", &bytes), Err(Rejection::OtherCluster));
        let future = String::from_utf8(bytes)
            .unwrap()
            .replace("\"v\":1", "\"v\":2");
        assert_eq!(
            decode("ferrocast", future.as_bytes()),
            Err(Rejection::ForeignVersion)
        );
        for garbage in [
            &b"not json"[..],
            b"{}",
            b"{\"v\":1,\"p\":\"ferrocast\"}",
            b"{\"v\":1,\"p\":\"ferrocast\",\"n\":1,\"s\":1,\"b\":{\"t\":\"nope\"}}",
            // An app-scoped body without its app.
            b"{\"v\":1,\"p\":\"ferrocast\",\"n\":1,\"s\":1,\"b\":{\"t\":\"term\",\"u\":\"x\"}}",
            // A client event whose data is not a JSON string literal.
            b"{\"v\":1,\"p\":\"ferrocast\",\"n\":1,\"s\":1,\"a\":\"x\",\"b\":{\"t\":\"ce\",\"c\":\"private-a\",\"e\":\"client-x\",\"d\":\"{}\",\"x\":\"1.2\"}}",
            // A member whose user_info is not JSON.
            b"{\"v\":1,\"p\":\"ferrocast\",\"n\":1,\"s\":1,\"a\":\"x\",\"b\":{\"t\":\"d\",\"c\":[{\"k\":\"m\",\"c\":\"presence-a\",\"u\":\"u\",\"i\":\"{oops\",\"p\":true}]}}",
            // An invalid channel name.
            b"{\"v\":1,\"p\":\"ferrocast\",\"n\":1,\"s\":1,\"a\":\"x\",\"b\":{\"t\":\"d\",\"c\":[{\"k\":\"s\",\"c\":\"bad channel\",\"n\":1}]}}",
        ] {
            assert_eq!(
                decode("ferrocast", garbage),
                Err(Rejection::Malformed),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn a_leave_due_round_trips_for_channels_and_members() {
        let channel = ChannelName::parse("presence-room", 200).unwrap();
        let token = LeaveToken {
            node: NodeId(2),
            seq: LeaveToken::DEATH,
        };
        for key in [
            LeaveKey::Vacated(channel.clone()),
            LeaveKey::MemberRemoved(channel.clone(), UserId::new("u").unwrap()),
        ] {
            let message = BusMessage {
                node: NodeId(1),
                seq: 9,
                app: Some(AppId::new("app-id")),
                body: Body::LeaveDue { key, token },
            };
            let bytes = encode("ferrocast", &message);
            assert_eq!(decode("ferrocast", &bytes), Ok(message));
        }
    }

    #[test]
    fn node_wide_bodies_carry_no_app() {
        let heartbeat = BusMessage {
            node: NodeId(1),
            seq: 1,
            app: None,
            body: Body::Heartbeat,
        };
        let bytes = encode("p", &heartbeat);
        assert_eq!(
            bytes,
            b"{\"v\":1,\"p\":\"p\",\"n\":1,\"s\":1,\"b\":{\"t\":\"hb\"}}"
        );
        assert_eq!(decode("p", &bytes), Ok(heartbeat));
    }
}
