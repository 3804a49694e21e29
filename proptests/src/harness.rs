//! Applies each [`Op`] to the engine and to the [`Model`], and checks after every step that
//! they agree and that the engine's own invariants hold.
//!
//! Checked after every step:
//! - every connection received exactly what the model says, nothing more (app events carry a
//!   unique sequence number, so "exactly once, in order, never the sender" follows);
//! - no output names a connection that is not open (never opened, refused, or closed);
//! - each presence subscriber's view of the roster, built only from the
//!   `subscription_succeeded` / `member_added` / `member_removed` it received, equals the
//!   distinct user ids of the channel's live subscribers;
//! - `Engine::state_counts` matches the model's live state (all zero once everyone has gone).

mod http;

use crate::model::{self, Credentials, Delivery, Kind, Model};
use crate::ops::*;
use crate::wire;
use ferrocast_engine::driver::Driver;
use ferrocast_engine::signature::client_auth;
use ferrocast_engine::{ConnId, Input, Moment, Output, ReqId, StateCounts, WsRequest};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Runs `ops` from a fresh engine seeded with `seed`, then closes every connection.
pub fn run(seed: u64, ops: &[Op]) -> Result<(), String> {
    let mut harness = Harness::new(seed);
    for (i, op) in ops.iter().enumerate() {
        harness
            .step(op)
            .map_err(|e| format!("step {i} ({op:?}) broke an invariant:\n{e}"))?;
    }
    harness
        .finish()
        .map_err(|e| format!("closing every connection after the ops:\n{e}"))
}

/// An engine and a model side by side.
pub struct Harness {
    driver: Driver,
    model: Model,
    next_conn: u64,
    next_seq: u64,
    /// Connections the engine may name in outputs.
    open: BTreeSet<ConnId>,
    /// What each presence subscriber has been told about the roster.
    views: BTreeMap<(ConnId, String), BTreeSet<String>>,
    /// HTTP answers drained but not yet checked.
    responses: Vec<(ReqId, u16, Vec<u8>)>,
}

impl Harness {
    /// A fresh engine for [`ops::config`].
    pub fn new(seed: u64) -> Self {
        Harness {
            driver: Driver::new(config().clone(), seed),
            model: Model::default(),
            next_conn: 1,
            next_seq: 1,
            open: BTreeSet::new(),
            views: BTreeMap::new(),
            responses: Vec::new(),
        }
    }

    /// Applies one operation to both sides and checks every invariant.
    pub fn step(&mut self, op: &Op) -> Result<(), String> {
        match *op {
            Op::Connect { target } => self.connect(target)?,
            Op::Subscribe {
                conn,
                channel,
                auth,
                user,
                info,
            } => {
                if let Some(conn) = self.pick(conn) {
                    self.subscribe(conn, channel, auth, user, info)?;
                }
            }
            Op::Unsubscribe { conn, channel } => {
                if let Some(conn) = self.pick(conn) {
                    let name = channel.name();
                    let text = json!({"event": "pusher:unsubscribe", "data": {"channel": name}});
                    self.model.activity(conn);
                    let expected = self.model.unsubscribe(conn, &name);
                    self.text_step(conn, &text.to_string(), expected)?;
                    self.views.remove(&(conn, name));
                }
            }
            Op::ClientEvent {
                conn,
                channel,
                name,
                data,
                repeat,
            } => {
                if let Some(conn) = self.pick(conn) {
                    for _ in 0..repeat.clamp(1, 13) {
                        if !self.model.conns().contains_key(&conn) {
                            break;
                        }
                        self.client_event(conn, channel, name, data)?;
                    }
                }
            }
            Op::SignIn {
                conn,
                user,
                auth,
                watchlist,
            } => {
                if let Some(conn) = self.pick(conn) {
                    self.signin(conn, user, auth, watchlist)?;
                }
            }
            Op::Ping { conn, kind } => {
                if let Some(conn) = self.pick(conn) {
                    self.model.activity(conn);
                    match kind {
                        PingPick::Event => {
                            let expected = self.model.ping_event(conn);
                            self.text_step(conn, r#"{"event":"pusher:ping","data":{}}"#, expected)?
                        }
                        PingPick::PongEvent => {
                            self.text_step(conn, r#"{"event":"pusher:pong","data":{}}"#, vec![])?
                        }
                        // The shell answers a ping frame itself; the engine sees activity
                        // for either control frame and says nothing.
                        PingPick::Frame | PingPick::PongFrame => {
                            self.input_step(Input::Activity { conn }, vec![], &BTreeSet::new())?
                        }
                    }
                }
            }
            Op::Junk { conn, kind } => {
                if let Some(conn) = self.pick(conn) {
                    self.model.activity(conn);
                    let expected = self.model.junk(conn);
                    let text: &[u8] = match kind {
                        JunkPick::NotJson => b"{",
                        JunkPick::WrongShape => br#"{"event":1}"#,
                        JunkPick::NotUtf8 => b"\xff\xfe{}",
                        JunkPick::UnknownEvent => br#"{"event":"pusher:nope","data":{}}"#,
                        JunkPick::SubscribeWithoutData => br#"{"event":"pusher:subscribe"}"#,
                        JunkPick::Binary => {
                            return self.input_step(
                                Input::Binary {
                                    conn,
                                    data: Vec::new(),
                                },
                                expected,
                                &BTreeSet::new(),
                            )
                        }
                    };
                    let input = Input::Text {
                        conn,
                        text: text.to_vec(),
                    };
                    self.input_step(input, expected, &BTreeSet::new())?;
                }
            }
            Op::Disconnect { conn, how } => {
                if let Some(conn) = self.pick(conn) {
                    self.disconnect(conn, how)?;
                }
            }
            Op::Publish {
                app,
                ref channels,
                exclude,
                batch,
                info,
                data,
                signature,
            } => self.publish(app, channels, exclude, batch, info, data, signature)?,
            Op::Query {
                app,
                query,
                signature,
            } => self.query(app, query, signature)?,
            Op::Terminate { app, user } => self.terminate(app, user)?,
            Op::Advance { secs } => self.advance(u64::from(secs.clamp(1, 30)))?,
        }
        self.check_state()
    }

    /// Closes every live connection from the client side and checks nothing is left behind.
    pub fn finish(&mut self) -> Result<(), String> {
        let live: Vec<ConnId> = self.model.conns().keys().copied().collect();
        for conn in live {
            self.disconnect(conn, DisconnectPick::Client)?;
            self.check_state()?;
        }
        // Cache channels remember their last event for a while after everyone has gone.
        self.advance(CACHE_TTL_SECS)?;
        self.check_state()?;
        let counts = self.driver.engine().state_counts();
        if counts != StateCounts::default() {
            return Err(format!(
                "every connection has gone but state is left: {counts:?}"
            ));
        }
        if let Some(at) = self.driver.next_timer() {
            return Err(format!(
                "every connection has gone but a timer is pending at {at:?}"
            ));
        }
        Ok(())
    }

    /// Feeds an input the model does not follow; only output well-formedness is checked.
    /// Afterwards only [`Harness::close_all_unchecked`] makes sense.
    pub fn unchecked_input(&mut self, input: Input) -> Result<(), String> {
        self.feed(input).map(drop)
    }

    /// Feeds an HTTP request the model does not follow; checks it gets one well-formed answer.
    pub fn unchecked_http(
        &mut self,
        request: ferrocast_engine::HttpRequest,
    ) -> Result<u16, String> {
        let req = ReqId(u64::MAX);
        self.feed(Input::Http { req, request })?;
        let responses = std::mem::take(&mut self.responses);
        let [(got, status, body)] = responses.as_slice() else {
            return Err(format!("expected one HTTP response, got {responses:?}"));
        };
        if *got != req || !matches!(status, 200 | 400 | 401 | 403 | 404 | 405 | 413 | 429) {
            return Err(format!("answer {got:?} {status} to {req:?}"));
        }
        let body: Value = serde_json::from_slice(body)
            .map_err(|e| format!("HTTP answer body is not JSON: {e}"))?;
        if *status != 200 && !body.get("error").is_some_and(Value::is_string) {
            return Err(format!("{status} without an error message: {body}"));
        }
        Ok(*status)
    }

    /// Closes every connection the engine still has open and checks nothing is left behind.
    pub fn close_all_unchecked(&mut self) -> Result<(), String> {
        while let Some(conn) = self.open.pop_first() {
            self.feed(Input::Closed { conn })?;
        }
        self.pass_time(Duration::from_secs(CACHE_TTL_SECS))?;
        let counts = self.driver.engine().state_counts();
        let timer = self.driver.next_timer();
        if counts != StateCounts::default() || timer.is_some() {
            return Err(format!(
                "every connection has gone but state is left: {counts:?}, timer {timer:?}"
            ));
        }
        Ok(())
    }

    fn pick(&self, index: u8) -> Option<ConnId> {
        let live: Vec<ConnId> = self.model.conns().keys().copied().collect();
        (!live.is_empty()).then(|| live[index as usize % live.len()])
    }

    fn moment(&self) -> Moment {
        self.driver.moment()
    }

    fn app_of(&self, conn: ConnId) -> &'static ferrocast_engine::AppConfig {
        &config().apps[self.model.conns()[&conn].app]
    }

    fn socket_id(&self, conn: ConnId) -> String {
        self.model.conns()[&conn].socket_id.clone()
    }

    /// Another live connection's socket id (or one no connection has).
    fn other_socket_id(&self, conn: ConnId) -> String {
        self.model
            .conns()
            .iter()
            .find(|(c, _)| **c != conn)
            .map_or_else(|| "0.0".into(), |(_, c)| c.socket_id.clone())
    }

    fn connect(&mut self, target: ConnectPick) -> Result<(), String> {
        if self.open.len() >= MAX_LIVE {
            return Ok(());
        }
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        const FOREIGN: Option<&str> = Some("https://evil.example.net");
        let (key, query, origin, app, protocol_ok) = match target {
            ConnectPick::AppA => ("key-a", "protocol=7&client=js", FOREIGN, Some(0), true),
            ConnectPick::AppB => (
                "key-b",
                "protocol=7&client=js",
                Some(APP_B_ORIGIN),
                Some(1),
                true,
            ),
            ConnectPick::AppBServerSide => ("key-b", "protocol=7", None, Some(1), true),
            ConnectPick::AppBForeignOrigin => ("key-b", "protocol=7", FOREIGN, Some(1), true),
            ConnectPick::UnknownKey => ("key-x", "protocol=7", FOREIGN, None, true),
            ConnectPick::UnsupportedProtocol => ("key-a", "protocol=8", None, Some(0), false),
            ConnectPick::NoProtocol => ("key-a", "client=js", None, Some(0), true),
        };
        let request = WsRequest {
            path: format!("/app/{key}"),
            query: query.into(),
            origin: origin.map(str::to_owned),
            peer: None,
            secure: false,
        };
        self.open.insert(conn);
        let actual = self.feed(Input::Opened { conn, request })?;
        let expected = self.model.connect(conn, app, protocol_ok, origin);
        if let Some((_, established)) = actual
            .iter()
            .find(|(_, m)| wire::event_of(m) == "pusher:connection_established")
        {
            let id = wire::socket_id_of(established)?;
            if self.model.conns().values().any(|c| c.socket_id == id) {
                return Err(format!("socket id {id} given to two live connections"));
            }
            if self.model.conns().contains_key(&conn) {
                self.model.set_socket_id(conn, id);
            }
        }
        self.compare(&expected, &actual, &BTreeSet::new())
    }

    fn subscribe(
        &mut self,
        conn: ConnId,
        channel: ChannelPick,
        auth: AuthPick,
        user: u8,
        info: u8,
    ) -> Result<(), String> {
        let name = channel.name();
        let (kind, _) = model::kind_of(&name);
        let app = self.app_of(conn);
        let user_info = json!({ "name": user_id(user), "v": info % 3 });
        let channel_data = json!({ "user_id": user_id_json(user), "user_info": user_info });
        let channel_data = channel_data.to_string();
        let signed_by = |socket_id: &str| {
            if kind == Kind::Presence {
                format!("{socket_id}:{name}:{channel_data}")
            } else {
                format!("{socket_id}:{name}")
            }
        };
        let own = signed_by(&self.socket_id(conn));
        let auth_value = match auth {
            AuthPick::Valid | AuthPick::NoChannelData => {
                Some(client_auth(&app.key, &app.secret, own.as_bytes()))
            }
            AuthPick::WrongSecret => Some(client_auth(&app.key, "not-the-secret", own.as_bytes())),
            AuthPick::OtherSocket => {
                let other = signed_by(&self.other_socket_id(conn));
                Some(client_auth(&app.key, &app.secret, other.as_bytes()))
            }
            AuthPick::Missing => None,
        };
        let mut data = json!({ "channel": name });
        if let Some(auth) = auth_value {
            data["auth"] = auth.into();
        }
        if kind == Kind::Presence && auth != AuthPick::NoChannelData {
            data["channel_data"] = channel_data.clone().into();
        }
        let credentials = match auth {
            AuthPick::Valid => Credentials::Valid,
            AuthPick::NoChannelData if kind == Kind::Presence => Credentials::NoChannelData,
            AuthPick::NoChannelData => Credentials::Valid,
            _ => Credentials::Invalid,
        };
        let member = (kind == Kind::Presence).then(|| (user_id(user).to_owned(), user_info));
        let text = json!({ "event": "pusher:subscribe", "data": data });
        self.model.activity(conn);
        let expected = self.model.subscribe(conn, &name, credentials, member);
        self.text_step(conn, &text.to_string(), expected)
    }

    fn client_event(
        &mut self,
        conn: ConnId,
        channel: ChannelPick,
        name: EventPick,
        data: DataPick,
    ) -> Result<(), String> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let event = match name {
            EventPick::Valid => "client-msg".to_owned(),
            EventPick::TooLong => format!("client-{}", "x".repeat(200)),
            EventPick::NotClient => "other-event".to_owned(),
        };
        let channel = channel.name();
        let mut text = json!({ "event": event, "channel": channel });
        let wire_data = match data {
            DataPick::Object => {
                let object = json!({ "n": seq });
                text["data"] = object.clone();
                Value::String(object.to_string())
            }
            DataPick::Text => {
                text["data"] = format!("t{seq}").into();
                Value::String(format!("t{seq}"))
            }
            DataPick::Missing => Value::String("null".into()),
        };
        self.model.activity(conn);
        let expected = self.model.client_event(conn, &event, &channel, wire_data);
        self.text_step(conn, &text.to_string(), expected)
    }

    fn signin(
        &mut self,
        conn: ConnId,
        user: u8,
        auth: SigninAuthPick,
        mask: u8,
    ) -> Result<(), String> {
        let app = self.app_of(conn);
        let watched = watchlist(mask);
        let mut user_data =
            json!({ "id": user_id_json(user), "user_info": { "name": user_id(user) } });
        if !watched.is_empty() {
            let ids: Vec<Value> = watched.iter().map(|w| user_id_json(*w)).collect();
            user_data["watchlist"] = ids.into();
        }
        let user_data = user_data.to_string();
        let socket_id = match auth {
            SigninAuthPick::OtherSocket => self.other_socket_id(conn),
            _ => self.socket_id(conn),
        };
        let signed = format!("{socket_id}::user::{user_data}");
        let secret = match auth {
            SigninAuthPick::WrongSecret => "not-the-secret",
            _ => app.secret.as_str(),
        };
        let auth_value = client_auth(&app.key, secret, signed.as_bytes());
        let text = json!({
            "event": "pusher:signin",
            "data": { "auth": auth_value, "user_data": user_data },
        });
        let watchlist = watched.iter().map(|w| user_id(*w).to_owned()).collect();
        self.model.activity(conn);
        let ok = auth == SigninAuthPick::Valid;
        let expected = self
            .model
            .signin(conn, user_id(user), ok, watchlist, &user_data);
        self.text_step(conn, &text.to_string(), expected)
    }

    fn disconnect(&mut self, conn: ConnId, how: DisconnectPick) -> Result<(), String> {
        let none = BTreeSet::new();
        match how {
            DisconnectPick::Client => {
                self.open.remove(&conn);
                self.forget_views(conn);
                let expected = self.model.client_closed(conn);
                self.input_step(Input::Closed { conn }, expected, &none)
            }
            DisconnectPick::OversizedText => {
                self.model.activity(conn);
                let expected = self.model.server_close(conn, 1009, false);
                let text = vec![b' '; MAX_MESSAGE_BYTES + 1];
                self.input_step(Input::Text { conn, text }, expected, &none)
            }
            DisconnectPick::OversizedFrame => {
                let expected = self.model.server_close(conn, 1009, false);
                self.input_step(Input::Oversized { conn }, expected, &none)
            }
            DisconnectPick::SlowConsumer => {
                let expected = self.model.server_close(conn, 4100, true);
                self.input_step(Input::SlowConsumer { conn }, expected, &none)
            }
        }
    }

    fn advance(&mut self, secs: u64) -> Result<(), String> {
        let actual = self.pass_time(Duration::from_secs(secs))?;
        let advanced = self.model.advance(secs);
        self.compare(&advanced.deliveries, &actual, &advanced.simultaneous)
    }

    fn text_step(
        &mut self,
        conn: ConnId,
        text: &str,
        expected: Vec<Delivery>,
    ) -> Result<(), String> {
        let input = Input::Text {
            conn,
            text: text.as_bytes().to_vec(),
        };
        self.input_step(input, expected, &BTreeSet::new())
    }

    fn input_step(
        &mut self,
        input: Input,
        expected: Vec<Delivery>,
        lenient: &BTreeSet<ConnId>,
    ) -> Result<(), String> {
        let actual = self.feed(input)?;
        self.compare(&expected, &actual, lenient)
    }

    /// Feeds one input and drains every output, checking each names an open connection.
    fn feed(&mut self, input: Input) -> Result<Vec<Delivery>, String> {
        let described = format!("{input:?}");
        let mut outputs = Vec::new();
        self.driver
            .feed(input, |output| outputs.push(output))
            .map_err(|e| format!("the engine called {described} misuse: {e}"))?;
        self.deliveries(outputs)
    }

    /// Moves the fake clock on by `by`, firing due timers, and checks what they sent.
    fn pass_time(&mut self, by: Duration) -> Result<Vec<Delivery>, String> {
        let mut outputs = Vec::new();
        self.driver.advance(by, |output| outputs.push(output));
        self.deliveries(outputs)
    }

    /// What `outputs` deliver to each connection, checking each names an open connection.
    fn deliveries(&mut self, outputs: Vec<Output>) -> Result<Vec<Delivery>, String> {
        let mut out = Vec::new();
        for output in outputs {
            match output {
                Output::Send { conn, frame } => {
                    self.check_open(conn, &frame)?;
                    out.push((conn, wire::decode(&frame)?));
                }
                Output::Broadcast {
                    conns,
                    except,
                    frame,
                } => {
                    let message = wire::decode(&frame)?;
                    for &conn in conns.iter().filter(|c| Some(**c) != except) {
                        self.check_open(conn, &frame)?;
                        out.push((conn, message.clone()));
                    }
                }
                Output::Close { conn, code, .. } => {
                    if !self.open.remove(&conn) {
                        return Err(format!("Close {code} for {conn:?}, which is not open"));
                    }
                    out.push((conn, model::close(code.get())));
                }
                Output::HttpResponse { req, status, body } => {
                    self.responses.push((req, status, body));
                }
                Output::Webhook(_)
                | Output::Notice(_)
                | Output::Debug(_)
                | Output::LookupApp(_) => {}
                Output::Bus(_) => return Err("a single node published on a cluster bus".into()),
                Output::Timeout(_) => return Err("the driver passed on a Timeout".into()),
            }
        }
        if self.driver.next_timer().is_none() && !self.open.is_empty() {
            return Err("no timer pending while connections are open".into());
        }
        Ok(out)
    }

    fn check_open(&self, conn: ConnId, frame: &ferrocast_engine::Frame) -> Result<(), String> {
        if self.open.contains(&conn) {
            Ok(())
        } else {
            Err(format!("{frame:?} sent to {conn:?}, which is not open"))
        }
    }

    fn forget_views(&mut self, conn: ConnId) {
        self.views.retain(|(c, _), _| *c != conn);
    }

    /// Compares per connection as multisets (ordering rules checked separately), then
    /// updates the presence views from what was actually received.
    fn compare(
        &mut self,
        expected: &[Delivery],
        actual: &[Delivery],
        lenient: &BTreeSet<ConnId>,
    ) -> Result<(), String> {
        let group = |deliveries: &[Delivery]| {
            let mut by_conn: BTreeMap<ConnId, Vec<Value>> = BTreeMap::new();
            for (conn, message) in deliveries {
                by_conn
                    .entry(*conn)
                    .or_default()
                    .push(wire::normalise(message));
            }
            by_conn
        };
        let (want, got) = (group(expected), group(actual));
        let conns: BTreeSet<ConnId> = want.keys().chain(got.keys()).copied().collect();
        for conn in conns {
            let keep = |m: &Value| {
                !lenient.contains(&conn)
                    || !matches!(
                        wire::event_of(m),
                        "pusher_internal:member_removed" | "pusher_internal:watchlist_events"
                    )
            };
            let sorted = |list: Option<&Vec<Value>>| {
                let mut list: Vec<String> = list
                    .into_iter()
                    .flatten()
                    .filter(|m| keep(m))
                    .map(Value::to_string)
                    .collect();
                list.sort();
                list
            };
            let (w, g) = (sorted(want.get(&conn)), sorted(got.get(&conn)));
            if w != g {
                return Err(format!(
                    "{conn:?} should have received\n  {}\nbut received\n  {}",
                    w.join("\n  "),
                    g.join("\n  ")
                ));
            }
            check_order(conn, got.get(&conn).map_or(&[][..], Vec::as_slice))?;
        }
        for (conn, message) in actual {
            self.update_view(*conn, &wire::normalise(message))?;
        }
        Ok(())
    }

    fn update_view(&mut self, conn: ConnId, message: &Value) -> Result<(), String> {
        let channel = message.get("channel").and_then(Value::as_str).unwrap_or("");
        let key = (conn, channel.to_owned());
        let user = || {
            message
                .pointer("/data/user_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("member event without a string user_id: {message}"))
        };
        match wire::event_of(message) {
            "#close" => self.forget_views(conn),
            "pusher_internal:subscription_succeeded" if channel.starts_with("presence-") => {
                let presence = &message["data"]["presence"];
                let ids: Vec<String> = presence["ids"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let set: BTreeSet<String> = ids.iter().cloned().collect();
                let hash: BTreeSet<String> = presence["hash"]
                    .as_object()
                    .map(|h| h.keys().cloned().collect())
                    .unwrap_or_default();
                if set.len() != ids.len() || presence["count"] != json!(ids.len()) || hash != set {
                    return Err(format!("inconsistent presence data to {conn:?}: {message}"));
                }
                self.views.insert(key, set);
            }
            "pusher_internal:member_added" => {
                let user = user()?;
                let view = self.views.get_mut(&key).ok_or_else(|| {
                    format!("{conn:?} got member_added on {channel} before subscription_succeeded")
                })?;
                if !view.insert(user.clone()) {
                    return Err(format!(
                        "{conn:?} got member_added for {user} already in its roster of {channel}"
                    ));
                }
            }
            "pusher_internal:member_removed" => {
                let user = user()?;
                let removed = self.views.get_mut(&key).is_some_and(|v| v.remove(&user));
                if !removed {
                    return Err(format!(
                        "{conn:?} got member_removed for {user}, not in its roster of {channel}"
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Invariants over the whole state: rosters as seen by clients, and the engine's counts.
    fn check_state(&self) -> Result<(), String> {
        let model = &self.model;
        for (conn, c) in model.conns() {
            for (channel, member) in &c.channels {
                if member.is_none() {
                    continue;
                }
                let truth: BTreeSet<String> = model
                    .conns()
                    .values()
                    .filter(|o| o.app == c.app)
                    .filter_map(|o| o.channels.get(channel).cloned().flatten())
                    .collect();
                let roster: BTreeSet<String> = model.roster(c.app, channel).into_keys().collect();
                if roster != truth {
                    return Err(format!(
                        "model roster {roster:?} of {channel} is not its live members {truth:?}"
                    ));
                }
                let view = self.views.get(&(*conn, channel.clone()));
                if view != Some(&truth) {
                    return Err(format!(
                        "{conn:?} believes the members of {channel} are {view:?}; they are {truth:?}"
                    ));
                }
            }
            let engine_id = self.driver.engine().socket_id(*conn).map(|s| s.to_string());
            if engine_id.as_deref() != Some(c.socket_id.as_str()) {
                return Err(format!(
                    "{conn:?} announced socket id {} but the engine says {engine_id:?}",
                    c.socket_id
                ));
            }
        }
        for (conn, channel) in self.views.keys() {
            let subscribed = model
                .conns()
                .get(conn)
                .is_some_and(|c| c.channels.contains_key(channel));
            if !subscribed {
                return Err(format!(
                    "{conn:?} holds a roster of {channel} without being subscribed"
                ));
            }
        }
        let live = model.conns().len();
        let got = self.driver.engine().state_counts();
        // `..got`: counts added to the engine later are only checked to be zero at the end.
        #[allow(clippy::needless_update)]
        let want = StateCounts {
            connections: live,
            socket_ids: live,
            channels: model.occupied_channels().len(),
            timers: live + model.signin_deadlines() + model.cached_events(),
            users: model.signed_in_users().len(),
            watched_users: model.watched_users().len(),
            cached_events: model.cached_events(),
            webhook_entries: 0,
            ..got
        };
        if got != want {
            return Err(format!("state counts are {got:?}; the model says {want:?}"));
        }
        Ok(())
    }
}

/// Ordering rules within one connection's messages of one step.
fn check_order(conn: ConnId, received: &[Value]) -> Result<(), String> {
    let position = |event: &str, channel: Option<&Value>| {
        received.iter().position(|m| {
            wire::event_of(m) == event && (channel.is_none() || m.get("channel") == channel)
        })
    };
    if let Some(last) = received.iter().position(|m| m.get("#close").is_some()) {
        if last + 1 != received.len() {
            return Err(format!(
                "{conn:?} received messages after its close: {received:?}"
            ));
        }
    }
    for m in received {
        if wire::event_of(m) == "pusher:cache_miss" {
            let succeeded = position("pusher_internal:subscription_succeeded", m.get("channel"));
            let miss = position("pusher:cache_miss", m.get("channel"));
            if succeeded.is_none() || succeeded > miss {
                return Err(format!(
                    "{conn:?}: cache_miss before subscription_succeeded: {received:?}"
                ));
            }
        }
    }
    if let (Some(success), Some(report)) = (
        position("pusher:signin_success", None),
        position("pusher_internal:watchlist_events", None),
    ) {
        if report < success {
            return Err(format!(
                "{conn:?}: watchlist report before signin_success: {received:?}"
            ));
        }
    }
    Ok(())
}
