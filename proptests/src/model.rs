//! The reference model: what the protocol says each operation must produce, kept as plain
//! sets and maps with no cleverness (no caches, no timers table, no incremental counts).
//!
//! The model never parses or signs anything: the harness tells it whether a signature was
//! valid (it knows, since it chose how to make it), and the model says who must receive what.
//! Expected messages are built in wire form and normalised by [`crate::wire`] like the real ones.

use crate::ops::{self, CLIENT_EVENT_BURST};
use ferrocast_engine::ConnId;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One thing a connection must receive: a message in wire form, or `{"#close": code}`.
pub type Delivery = (ConnId, Value);

/// A close marker in the same stream as messages.
pub fn close(code: u16) -> Value {
    json!({ "#close": code })
}

/// A server → client message in wire form.
pub fn message(event: &str, channel: Option<&str>, data: Value) -> Value {
    let mut m = json!({ "event": event, "data": data });
    if let Some(channel) = channel {
        m["channel"] = channel.into();
    }
    m
}

/// `pusher:error` with `code` (the message text is not compared).
pub fn error(code: Option<u16>) -> Value {
    message("pusher:error", None, json!({ "code": code, "message": "" }))
}

/// The kinds of channel, by prefix, as the protocol document lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// No reserved prefix.
    Public,
    /// `private-` (not encrypted).
    Private,
    /// `private-encrypted-`.
    Encrypted,
    /// `presence-`.
    Presence,
    /// `#server-to-user-{id}`.
    ServerToUser,
    /// Not a valid name.
    Invalid,
}

/// The kind of `name` and whether it is a cache channel.
pub fn kind_of(name: &str) -> (Kind, bool) {
    let valid_chars = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
    };
    if let Some(user) = name.strip_prefix("#server-to-user-") {
        let kind = if valid_chars(user) {
            Kind::ServerToUser
        } else {
            Kind::Invalid
        };
        return (kind, false);
    }
    if !valid_chars(name) {
        return (Kind::Invalid, false);
    }
    let cache = [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|p| name.starts_with(p));
    let kind = if name.starts_with("private-encrypted-") {
        Kind::Encrypted
    } else if name.starts_with("private-") {
        Kind::Private
    } else if name.starts_with("presence-") {
        Kind::Presence
    } else {
        Kind::Public
    };
    (kind, cache)
}

/// What the harness knows about a subscription request's credentials.
#[derive(Clone, Debug, PartialEq)]
pub enum Credentials {
    /// `auth` is right for this socket (and, for presence, `channel_data` is present and signed).
    Valid,
    /// `auth` is wrong or missing.
    Invalid,
    /// Presence: no `channel_data` at all.
    NoChannelData,
}

/// One live connection as the model sees it.
#[derive(Clone, Debug)]
pub struct Conn {
    /// Index of its app in [`ops::config`].
    pub app: usize,
    /// The socket id the engine announced.
    pub socket_id: String,
    /// Joined channels; presence ones with the member's user id.
    pub channels: BTreeMap<String, Option<String>>,
    /// The signed-in user.
    pub user: Option<String>,
    /// Users it watches (only once signed in).
    pub watchlist: Vec<String>,
    /// Instant (s) of the last frame received from it.
    last_activity: u64,
    /// When the server pinged it, while no frame has arrived since.
    pinged_at: Option<u64>,
    /// App B: when it must have signed in by.
    signin_deadline: Option<u64>,
    /// Client events accepted at the current instant.
    events_at: (u64, u32),
}

/// The whole world: live connections and presence rosters, at a whole-second clock.
#[derive(Clone, Debug, Default)]
pub struct Model {
    now: u64,
    conns: BTreeMap<ConnId, Conn>,
    /// `(app, channel)` → member user id → `user_info` of the socket that made it a member.
    rosters: BTreeMap<(usize, String), BTreeMap<String, Value>>,
    /// `(app, cache channel)` → last published `(event, data, expires_at)`.
    cache: BTreeMap<(usize, String), (String, String, u64)>,
}

/// What an [`Model::advance`] produced.
#[derive(Debug, Default)]
pub struct Advanced {
    /// Everything delivered, in order per connection.
    pub deliveries: Vec<Delivery>,
    /// Connections closed at the same instant as another: the order of simultaneous closes is
    /// unspecified, so whether they hear of each other's leaving is not compared.
    pub simultaneous: BTreeSet<ConnId>,
}

impl Model {
    /// Live connections.
    pub fn conns(&self) -> &BTreeMap<ConnId, Conn> {
        &self.conns
    }

    /// The roster of a presence channel: member id → `user_info`.
    pub fn roster(&self, app: usize, channel: &str) -> BTreeMap<String, Value> {
        self.rosters
            .get(&(app, channel.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// Distinct `(app, channel)` pairs with at least one subscriber.
    pub fn occupied_channels(&self) -> BTreeSet<(usize, String)> {
        self.conns
            .values()
            .flat_map(|c| c.channels.keys().map(move |ch| (c.app, ch.clone())))
            .collect()
    }

    /// Distinct `(app, user)` pairs signed in.
    pub fn signed_in_users(&self) -> BTreeSet<(usize, String)> {
        self.conns
            .values()
            .filter_map(|c| c.user.clone().map(|u| (c.app, u)))
            .collect()
    }

    /// Distinct `(app, user)` pairs on some live watchlist.
    pub fn watched_users(&self) -> BTreeSet<(usize, String)> {
        self.conns
            .values()
            .flat_map(|c| c.watchlist.iter().map(move |u| (c.app, u.clone())))
            .collect()
    }

    /// Cache channels remembering an event.
    pub fn cached_events(&self) -> usize {
        self.cache.len()
    }

    /// Connections still bound by a sign-in deadline.
    pub fn signin_deadlines(&self) -> usize {
        self.conns
            .values()
            .filter(|c| c.signin_deadline.is_some())
            .count()
    }

    /// A connection attempt for `app` (None: unknown key) with the protocol accepted or not.
    pub fn connect(
        &mut self,
        conn: ConnId,
        app: Option<usize>,
        protocol_ok: bool,
        origin: Option<&str>,
    ) -> Vec<Delivery> {
        let config = ops::config();
        let refusal = if !protocol_ok {
            Some(4007)
        } else {
            match app {
                None => Some(4001),
                // The harness sends only exact origins: a listed one, a foreign one or none.
                Some(i)
                    if origin.is_some_and(|o| {
                        let listed = &config.apps[i].allowed_origins;
                        !listed.is_empty() && !listed.iter().any(|l| l == o)
                    }) =>
                {
                    Some(4009)
                }
                Some(i) => {
                    let live = self.conns.values().filter(|c| c.app == i).count();
                    let full = config.apps[i]
                        .max_connections
                        .is_some_and(|max| live >= max as usize);
                    full.then_some(4004)
                }
            }
        };
        if let Some(code) = refusal {
            return vec![(conn, error(Some(code))), (conn, close(code))];
        }
        let app = app.expect("refused above");
        let required = config.apps[app].user_auth_required;
        self.conns.insert(
            conn,
            Conn {
                app,
                socket_id: String::new(),
                channels: BTreeMap::new(),
                user: None,
                watchlist: Vec::new(),
                last_activity: self.now,
                pinged_at: None,
                signin_deadline: required.then_some(self.now + ops::SIGNIN_TIMEOUT_SECS),
                events_at: (self.now, 0),
            },
        );
        let data = json!({ "socket_id": "", "activity_timeout": ops::ACTIVITY_TIMEOUT_SECS });
        vec![(
            conn,
            message(
                "pusher:connection_established",
                None,
                data.to_string().into(),
            ),
        )]
    }

    /// Records the socket id the engine announced.
    pub fn set_socket_id(&mut self, conn: ConnId, socket_id: String) {
        self.conns.get_mut(&conn).expect("live").socket_id = socket_id;
    }

    /// A frame arrived from `conn`: it is alive, and any ping is answered.
    pub fn activity(&mut self, conn: ConnId) {
        let now = self.now;
        let c = self.conns.get_mut(&conn).expect("live");
        c.last_activity = now;
        c.pinged_at = None;
    }

    /// `pusher:subscribe` to `channel` with `credentials`; `member` is the presence
    /// `(user_id, user_info)` the `channel_data` names.
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        channel: &str,
        credentials: Credentials,
        member: Option<(String, Value)>,
    ) -> Vec<Delivery> {
        let (kind, cache) = kind_of(channel);
        let c = &self.conns[&conn];
        let app = c.app;
        let refuse = |kind: &str, status: u16| {
            let data = json!({ "type": kind, "error": "", "status": status }).to_string();
            vec![(
                conn,
                message("pusher:subscription_error", Some(channel), data.into()),
            )]
        };
        let member = match (kind, credentials) {
            (Kind::Invalid, _) => return refuse("BadRequest", 400),
            (Kind::Public, _) => None,
            (Kind::Private | Kind::Encrypted, Credentials::Invalid) => {
                return refuse("AuthError", 401)
            }
            (Kind::Private | Kind::Encrypted, _) => None,
            (Kind::Presence, Credentials::NoChannelData) => return refuse("BadRequest", 400),
            (Kind::Presence, Credentials::Invalid) => return refuse("AuthError", 401),
            (Kind::Presence, Credentials::Valid) => {
                let (user, info) = member.expect("presence subscriptions name a member");
                let roster = self.roster(app, channel);
                let max = ops::config().apps[app].max_presence_members;
                if !roster.contains_key(&user) && roster.len() >= max {
                    return refuse("Forbidden", 403);
                }
                Some((user, info))
            }
            (Kind::ServerToUser, _) => {
                let wanted = channel.strip_prefix("#server-to-user-");
                if c.user.as_deref() != wanted {
                    return refuse("Forbidden", 403);
                }
                None
            }
        };
        let mut out = Vec::new();
        let already = c.channels.contains_key(channel);
        if matches!(kind, Kind::Private | Kind::Encrypted | Kind::Presence) {
            // Like Pusher: a private or presence subscription authorizes the connection
            // as a sign-in does, so the sign-in deadline no longer applies.
            self.conns.get_mut(&conn).expect("live").signin_deadline = None;
        }
        if !already {
            let user = member.as_ref().map(|(u, _)| u.clone());
            if let Some((user, info)) = member {
                let roster = self.rosters.entry((app, channel.to_owned())).or_default();
                if !roster.contains_key(&user) {
                    roster.insert(user.clone(), info.clone());
                    let data = json!({ "user_id": user, "user_info": info }).to_string();
                    let added = message("pusher_internal:member_added", Some(channel), data.into());
                    for other in self.subscribers(app, channel) {
                        out.push((other, added.clone()));
                    }
                }
            }
            let c = self.conns.get_mut(&conn).expect("live");
            c.channels.insert(channel.to_owned(), user);
        }
        let data = if kind == Kind::Presence {
            let roster = self.roster(app, channel);
            let ids: Vec<&String> = roster.keys().collect();
            json!({ "presence": { "ids": ids, "hash": roster, "count": roster.len() } })
        } else {
            json!({})
        };
        let mut mine = vec![(
            conn,
            message(
                "pusher_internal:subscription_succeeded",
                Some(channel),
                data.to_string().into(),
            ),
        )];
        if cache {
            let replay = match self.cache.get(&(app, channel.to_owned())) {
                Some((event, data, _)) => message(event, Some(channel), data.clone().into()),
                None => message("pusher:cache_miss", Some(channel), "{}".into()),
            };
            mine.push((conn, replay));
        }
        mine.extend(out);
        mine
    }

    /// `pusher:unsubscribe`: no reply; the last socket of a member leaving is announced.
    pub fn unsubscribe(&mut self, conn: ConnId, channel: &str) -> Vec<Delivery> {
        self.leave(conn, channel)
    }

    /// A `client-*` event (already counted as activity); `event_ok` is false for a bad name.
    pub fn client_event(
        &mut self,
        conn: ConnId,
        event: &str,
        channel: &str,
        wire_data: Value,
    ) -> Vec<Delivery> {
        let config = ops::config();
        let now = self.now;
        let c = &self.conns[&conn];
        let app = c.app;
        let refuse = |code: Option<u16>| vec![(conn, error(code))];
        if !event.starts_with("client-") {
            return refuse(None);
        }
        if !config.apps[app].client_events || event.len() > config.apps[app].max_event_name_len {
            return refuse(None);
        }
        let (kind, _) = kind_of(channel);
        if !matches!(kind, Kind::Private | Kind::Presence) {
            return refuse(None);
        }
        let Some(member) = c.channels.get(channel).cloned() else {
            return refuse(None);
        };
        let c = self.conns.get_mut(&conn).expect("live");
        if c.events_at.0 != now {
            c.events_at = (now, 0);
        }
        if c.events_at.1 >= CLIENT_EVENT_BURST {
            return refuse(Some(4301));
        }
        c.events_at.1 += 1;
        let mut relayed = message(event, Some(channel), wire_data);
        if let Some(user) = member {
            relayed["user_id"] = user.into();
        }
        self.subscribers(app, channel)
            .into_iter()
            .filter(|other| *other != conn)
            .map(|other| (other, relayed.clone()))
            .collect()
    }

    /// An app event published through the HTTP API to `channel`, skipping `except`.
    pub fn publish(
        &mut self,
        app: usize,
        channel: &str,
        event: &str,
        data: &str,
        except: Option<ConnId>,
    ) -> Vec<Delivery> {
        if kind_of(channel).1 {
            let expires = self.now + ops::CACHE_TTL_SECS;
            let entry = (event.to_owned(), data.to_owned(), expires);
            self.cache.insert((app, channel.to_owned()), entry);
        }
        let relayed = message(event, Some(channel), data.into());
        self.subscribers(app, channel)
            .into_iter()
            .filter(|c| Some(*c) != except)
            .map(|c| (c, relayed.clone()))
            .collect()
    }

    /// The backend ends every connection signed in as `user` in `app`: 4009.
    pub fn terminate(&mut self, app: usize, user: &str) -> Vec<Delivery> {
        let victims: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.app == app && c.user.as_deref() == Some(user))
            .map(|(id, _)| *id)
            .collect();
        victims
            .into_iter()
            .flat_map(|conn| self.server_close(conn, 4009, true))
            .collect()
    }

    /// How many connections of `app` are subscribed to `channel`.
    pub fn subscription_count(&self, app: usize, channel: &str) -> usize {
        self.subscribers(app, channel).len()
    }

    /// The live connection with `socket_id`, in any app.
    pub fn socket_owner(&self, socket_id: &str) -> Option<ConnId> {
        self.conns
            .iter()
            .find(|(_, c)| c.socket_id == socket_id)
            .map(|(id, _)| *id)
    }

    /// `pusher:signin` for `user` with the exact `user_data` text sent.
    pub fn signin(
        &mut self,
        conn: ConnId,
        user: &str,
        signature_ok: bool,
        watchlist: Vec<String>,
        user_data: &str,
    ) -> Vec<Delivery> {
        let app = self.conns[&conn].app;
        if !signature_ok || self.conns[&conn].user.is_some() {
            if ops::config().apps[app].user_auth_required {
                let mut out = vec![(conn, error(Some(4009)))];
                out.extend(self.remove(conn, close(4009)));
                return out;
            }
            return vec![(conn, error(None))];
        }
        let came_online = !self.signed_in_users().contains(&(app, user.to_owned()));
        let c = self.conns.get_mut(&conn).expect("live");
        c.user = Some(user.to_owned());
        c.watchlist = watchlist.clone();
        c.signin_deadline = None;
        let data = json!({ "user_data": user_data }).to_string();
        let mut out = vec![(conn, message("pusher:signin_success", None, data.into()))];
        if !watchlist.is_empty() {
            let online_now = self.signed_in_users();
            let (online, offline): (Vec<String>, Vec<String>) = watchlist
                .into_iter()
                .partition(|w| online_now.contains(&(app, w.clone())));
            out.push((conn, watchlist_events(&online, &offline)));
        }
        if came_online {
            out.extend(self.tell_watchers(app, user, "online", conn));
        }
        out
    }

    /// A `pusher:ping` event: answered with `pusher:pong`.
    pub fn ping_event(&mut self, conn: ConnId) -> Vec<Delivery> {
        vec![(conn, message("pusher:pong", None, json!({})))]
    }

    /// Anything the server cannot use: `pusher:error` without a code, the connection kept.
    pub fn junk(&mut self, conn: ConnId) -> Vec<Delivery> {
        vec![(conn, error(None))]
    }

    /// The client went away: others hear of it, `conn` hears nothing.
    pub fn client_closed(&mut self, conn: ConnId) -> Vec<Delivery> {
        let mut out = self.remove(conn, close(0));
        out.retain(|(c, _)| *c != conn);
        out
    }

    /// The server closes `conn` with `code`, after a `pusher:error` when `with_error`.
    pub fn server_close(&mut self, conn: ConnId, code: u16, with_error: bool) -> Vec<Delivery> {
        let mut out = Vec::new();
        if with_error {
            out.push((conn, error(Some(code))));
        }
        out.extend(self.remove(conn, close(code)));
        out
    }

    /// Moves the clock `secs` forward, firing pings, pong timeouts and sign-in deadlines.
    pub fn advance(&mut self, secs: u64) -> Advanced {
        let target = self.now + secs;
        let mut result = Advanced::default();
        while let Some(at) = self.next_deadline().filter(|at| *at <= target) {
            self.now = at;
            let mut closing = Vec::new();
            for (&conn, c) in &mut self.conns {
                if c.signin_deadline == Some(at) {
                    closing.push((conn, 4009));
                } else if c
                    .pinged_at
                    .is_some_and(|p| p + ops::PONG_TIMEOUT_SECS == at)
                {
                    closing.push((conn, 4201));
                } else if c.pinged_at.is_none()
                    && c.last_activity + ops::ACTIVITY_TIMEOUT_SECS == at
                {
                    c.pinged_at = Some(at);
                    let ping = message("pusher:ping", None, json!({}));
                    result.deliveries.push((conn, ping));
                }
            }
            if closing.len() > 1 {
                result.simultaneous.extend(closing.iter().map(|(c, _)| *c));
            }
            for (conn, code) in closing {
                let out = self.server_close(conn, code, true);
                result.deliveries.extend(out);
            }
        }
        self.now = target;
        self.cache.retain(|_, (_, _, expires)| *expires > target);
        result
    }

    fn next_deadline(&self) -> Option<u64> {
        self.conns
            .values()
            .flat_map(|c| {
                let liveness = match c.pinged_at {
                    Some(p) => p + ops::PONG_TIMEOUT_SECS,
                    None => c.last_activity + ops::ACTIVITY_TIMEOUT_SECS,
                };
                [Some(liveness), c.signin_deadline]
            })
            .flatten()
            .min()
    }

    /// Live subscribers of `channel` in `app`, in id order.
    fn subscribers(&self, app: usize, channel: &str) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.app == app && c.channels.contains_key(channel))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Takes `conn` out of `channel`; announces a presence member's departure.
    fn leave(&mut self, conn: ConnId, channel: &str) -> Vec<Delivery> {
        let c = self.conns.get_mut(&conn).expect("live");
        let app = c.app;
        let Some(member) = c.channels.remove(channel) else {
            return Vec::new();
        };
        let Some(user) = member else {
            return Vec::new();
        };
        let still_there = self
            .conns
            .values()
            .any(|c| c.app == app && c.channels.get(channel) == Some(&Some(user.clone())));
        if still_there {
            return Vec::new();
        }
        let key = (app, channel.to_owned());
        let roster = self.rosters.get_mut(&key).expect("a member has a roster");
        roster.remove(&user);
        if roster.is_empty() {
            self.rosters.remove(&key);
        }
        let data = json!({ "user_id": user }).to_string();
        let removed = message("pusher_internal:member_removed", Some(channel), data.into());
        self.subscribers(app, channel)
            .into_iter()
            .map(|other| (other, removed.clone()))
            .collect()
    }

    /// Forgets `conn` (leaving channels, signing out), ending its stream with `last`.
    fn remove(&mut self, conn: ConnId, last: Value) -> Vec<Delivery> {
        let channels: Vec<String> = self.conns[&conn].channels.keys().cloned().collect();
        let mut out = Vec::new();
        for channel in channels {
            out.extend(self.leave(conn, &channel));
        }
        let c = self.conns.remove(&conn).expect("live");
        if let Some(user) = c.user {
            if !self.signed_in_users().contains(&(c.app, user.clone())) {
                out.extend(self.tell_watchers(c.app, &user, "offline", conn));
            }
        }
        out.push((conn, last));
        out
    }

    /// `watchlist_events` about `user` to every live connection watching it but `except`.
    fn tell_watchers(&self, app: usize, user: &str, name: &str, except: ConnId) -> Vec<Delivery> {
        let ids = vec![user.to_owned()];
        let none = Vec::new();
        let report = if name == "online" {
            watchlist_events(&ids, &none)
        } else {
            watchlist_events(&none, &ids)
        };
        self.conns
            .iter()
            .filter(|(id, c)| {
                **id != except && c.app == app && c.watchlist.iter().any(|w| w == user)
            })
            .map(|(id, _)| (*id, report.clone()))
            .collect()
    }
}

/// `pusher_internal:watchlist_events` listing who is online and offline (empty lists left out).
fn watchlist_events(online: &[String], offline: &[String]) -> Value {
    let events: Vec<Value> = [("online", online), ("offline", offline)]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(name, ids)| json!({ "name": name, "user_ids": ids }))
        .collect();
    let data = json!({ "events": events }).to_string();
    message("pusher_internal:watchlist_events", None, data.into())
}
