//! An embeddable simulator: one engine, a fake clock and any number of fake clients.
//!
//! Everything runs in one thread with no real time: [`Simulator::advance`] moves the clock and
//! fires each timer at its exact instant, so tests of timeouts take microseconds and never
//! flake. The simulator checks the engine's contract as it goes and panics when it is broken:
//! an output naming a connection that is not open, or a frame after a close.
//!
//! ```
//! use ferrocast_engine::{sim::Simulator, Config};
//! use serde_json::json;
//!
//! let mut sim = Simulator::new(Config::default(), 7);
//! let alice = sim.connect("app-key");
//! assert_eq!(sim.take(alice)[0].event, "pusher:connection_established");
//! sim.send_json(alice, json!({"event": "pusher:subscribe", "data": {"channel": "news"}}));
//! assert_eq!(sim.take(alice)[0].event, "pusher_internal:subscription_succeeded");
//! ```

use crate::driver::Driver;
use crate::ids::{ConnId, ReqId};
use crate::interface::{
    ApiMisuse, HttpRequest, Input, Moment, Notice, Output, WebhookDelivery, WsRequest,
};
use crate::wire::websocket::{Frame, Opcode};
use crate::{http_auth, signature};
use crate::{Config, Engine};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// One message a fake client received, with `data` decoded when it was a JSON string.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// The `event` field (`"#pong"` for a WebSocket pong control frame).
    pub event: String,
    /// The `channel` field, if any.
    pub channel: Option<String>,
    /// The `data` field, parsed from its string form when it held JSON.
    pub data: Value,
    /// The top-level `user_id` (client events on presence channels).
    pub user_id: Option<String>,
    /// The frame's payload exactly as sent.
    pub raw: String,
    /// Whether the frame may go out compressed (its app has compression on).
    pub compressible: bool,
}

impl Message {
    fn from_frame(frame: &Frame) -> Self {
        if frame.opcode() == Opcode::Pong {
            return Message {
                event: "#pong".into(),
                channel: None,
                data: Value::Null,
                user_id: None,
                raw: String::new(),
                compressible: frame.is_compressible(),
            };
        }
        let raw = frame.payload_text();
        let value: Value = serde_json::from_str(&raw).expect("the engine sends JSON text");
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        let data = match value.get("data") {
            Some(Value::String(s)) => {
                serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone()))
            }
            Some(other) => other.clone(),
            None => Value::Null,
        };
        Message {
            event: text("event").unwrap_or_default(),
            channel: text("channel"),
            data,
            user_id: text("user_id"),
            raw,
            compressible: frame.is_compressible(),
        }
    }
}

#[derive(Default)]
struct FakeClient {
    /// The key in the path it connected to, to pick the secret its backend signs with.
    app_key: String,
    inbox: VecDeque<Message>,
    closed: Option<(u16, String)>,
}

/// A deterministic world around one [`Engine`].
pub struct Simulator {
    driver: Driver,
    next_conn: u64,
    next_req: u64,
    clients: BTreeMap<ConnId, FakeClient>,
    responses: BTreeMap<ReqId, (u16, Value)>,
    webhooks: Vec<WebhookDelivery>,
    /// Outputs drained from the engine and not yet routed (kept to reuse its allocation).
    drained: Vec<Output>,
    /// Messages the engine published on the cluster bus, for a cluster simulator to carry.
    bus_out: Vec<Vec<u8>>,
    /// The latest [`MAX_NOTICES`] log lines the engine asked for, oldest first.
    notices: VecDeque<Notice>,
    /// Debug events for the admin console (only while watching), oldest first.
    debug: Vec<crate::DebugEvent>,
    /// App lookups the engine asked for, not yet taken.
    lookups: Vec<crate::AppLookup>,
}

/// Log lines a simulator keeps (a long run would otherwise grow without bound).
const MAX_NOTICES: usize = 1024;

impl Simulator {
    /// A simulator around a fresh engine built from `config` and `seed`.
    pub fn new(config: Config, seed: u64) -> Self {
        Self::around(Driver::new(config, seed))
    }

    /// A simulator around a fresh cluster node (see [`crate::cluster::sim`] for a cluster).
    pub fn new_node(config: Config, seed: u64, node: crate::NodeId) -> Self {
        Self::around(Driver::around(Engine::new_node(config, seed, node)))
    }

    fn around(driver: Driver) -> Self {
        Simulator {
            driver,
            next_conn: 1,
            next_req: 1,
            clients: BTreeMap::new(),
            responses: BTreeMap::new(),
            webhooks: Vec::new(),
            drained: Vec::new(),
            bus_out: Vec::new(),
            notices: VecDeque::new(),
            debug: Vec::new(),
            lookups: Vec::new(),
        }
    }

    /// The engine under simulation.
    pub fn engine(&self) -> &Engine {
        self.driver.engine()
    }

    /// The current simulated moment.
    pub fn moment(&self) -> Moment {
        self.driver.moment()
    }

    /// Feeds a raw input and routes every output; returns the engine's verdict on the input.
    pub fn input(&mut self, input: Input) -> Result<(), ApiMisuse> {
        let mut drained = std::mem::take(&mut self.drained);
        let verdict = self.driver.feed(input, |output| drained.push(output));
        self.route(drained);
        verdict
    }

    /// Opens a connection to `/app/{key}?protocol=7`.
    pub fn connect(&mut self, key: &str) -> ConnId {
        self.connect_to(&format!("/app/{key}"), "protocol=7&client=js&version=8.4.0")
    }

    /// Opens a plain (`ws://`) connection with an explicit path and query.
    pub fn connect_to(&mut self, path: &str, query: &str) -> ConnId {
        self.connect_from(path, query, None)
    }

    /// Opens a connection with an explicit path and query, sending `origin` as a browser
    /// would (`None`: no `Origin` header, as from a server-side client).
    pub fn connect_from(&mut self, path: &str, query: &str, origin: Option<&str>) -> ConnId {
        self.connect_with(WsRequest {
            path: path.into(),
            query: query.into(),
            origin: origin.map(str::to_owned),
            peer: None,
            secure: false,
        })
    }

    /// Opens a connection with an explicit path and query, over TLS when `secure`.
    pub fn connect_over(&mut self, path: &str, query: &str, secure: bool) -> ConnId {
        self.connect_with(WsRequest {
            path: path.into(),
            query: query.into(),
            origin: None,
            peer: None,
            secure,
        })
    }

    /// Opens a connection with a whole handshake request (its peer address included).
    pub fn connect_with(&mut self, request: WsRequest) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let app_key = request
            .path
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        self.clients.insert(
            conn,
            FakeClient {
                app_key,
                ..FakeClient::default()
            },
        );
        self.input(Input::Opened { conn, request })
            .expect("fresh connection ids are never misuse");
        conn
    }

    /// Sends a text message.
    pub fn send_text(&mut self, conn: ConnId, text: &str) {
        self.input(Input::Text {
            conn,
            text: text.as_bytes().to_vec(),
        })
        .expect("sending on a closed connection");
    }

    /// Sends a WebSocket ping control frame. The simulator plays the shell's part: it answers
    /// with a pong frame (`"#pong"` in the inbox) and tells the engine of the activity.
    /// Pinging a connection the engine does not know is misuse, as for any input.
    pub fn ws_ping(&mut self, conn: ConnId, payload: &[u8]) -> Result<(), ApiMisuse> {
        self.input(Input::Activity { conn })?;
        self.deliver(conn, &Frame::pong(payload));
        Ok(())
    }

    /// Sends a JSON message.
    pub fn send_json(&mut self, conn: ConnId, value: Value) {
        self.send_text(conn, &value.to_string());
    }

    /// The client side closes the socket.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.input(Input::Closed { conn })
            .expect("closing a connection the engine knows");
        self.client(conn).closed = Some((1006, "closed by client".into()));
    }

    /// Sends an HTTP request and returns its status and JSON body (`Null` when not JSON).
    pub fn http(&mut self, method: &str, path: &str, query: &str, body: &[u8]) -> (u16, Value) {
        let req = self.http_request(method, path, query, body);
        self.response(req)
            .expect("the engine answers every HTTP request for a known app at once")
    }

    /// Sends an HTTP API request without waiting for its answer (one for an app the engine
    /// has to look up waits); [`Simulator::response`] takes the answer once it is there.
    pub fn http_request(&mut self, method: &str, path: &str, query: &str, body: &[u8]) -> ReqId {
        let req = ReqId(self.next_req);
        self.next_req += 1;
        let request = HttpRequest {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            body: body.to_vec(),
        };
        self.input(Input::Http { req, request })
            .expect("HTTP input is never misuse");
        req
    }

    /// The answer to `req`, taken, once the engine has given it.
    pub fn response(&mut self, req: ReqId) -> Option<(u16, Value)> {
        self.responses.remove(&req)
    }

    /// Sends an HTTP API request signed with `key` and `secret` (an app the engine may not
    /// know yet), without waiting for its answer.
    pub fn signed_request_as(
        &mut self,
        (key, secret): (&str, &str),
        method: &str,
        path: &str,
        body: &str,
    ) -> ReqId {
        let unix_secs = self.moment().unix_ms / 1000;
        let query =
            http_auth::signed_query(key, secret, method, path, &[], body.as_bytes(), unix_secs);
        self.http_request(method, path, &query, body.as_bytes())
    }

    /// Publishes `body` (an HTTP API event) in app `app` as the admin console does: trusted,
    /// without a signature.
    pub fn admin_publish(&mut self, app: &str, body: &str) -> (u16, Value) {
        let req = ReqId(self.next_req);
        self.next_req += 1;
        let input = Input::AdminPublish {
            req,
            app: app.into(),
            body: body.as_bytes().to_vec(),
        };
        self.input(input).expect("a publish input is never misuse");
        self.responses
            .remove(&req)
            .expect("the engine answers every publish at once")
    }

    /// Sends an HTTP API request signed with the credentials of the app named in the path
    /// (`/apps/{id}/...`; the first app otherwise), as the backend SDKs sign it.
    pub fn signed_http(
        &mut self,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &str,
    ) -> (u16, Value) {
        let id = path
            .strip_prefix("/apps/")
            .and_then(|rest| rest.split('/').next());
        let apps = &self.engine().config().apps;
        let app = apps
            .iter()
            .find(|a| Some(a.id.as_str()) == id)
            .unwrap_or(&apps[0]);
        let unix_secs = self.moment().unix_ms / 1000;
        let query = http_auth::signed_query(
            &app.key,
            &app.secret,
            method,
            path,
            params,
            body.as_bytes(),
            unix_secs,
        );
        self.http(method, path, &query, body.as_bytes())
    }

    /// Publishes `data` as `event` on `channel` through the HTTP API, expecting success.
    pub fn trigger(&mut self, channel: &str, event: &str, data: &str) {
        let app = self.engine().config().apps[0].id.clone();
        let body =
            serde_json::json!({ "name": event, "channel": channel, "data": data }).to_string();
        let (status, answer) = self.signed_http("POST", &format!("/apps/{app}/events"), &[], &body);
        assert_eq!(status, 200, "trigger failed: {answer}");
    }

    /// Moves the clock forward by `by`, firing every timer at its own instant on the way.
    pub fn advance(&mut self, by: Duration) {
        let mut drained = std::mem::take(&mut self.drained);
        self.driver.advance(by, |output| drained.push(output));
        self.route(drained);
    }

    /// Drains what `conn` has received so far.
    pub fn take(&mut self, conn: ConnId) -> Vec<Message> {
        self.client(conn).inbox.drain(..).collect()
    }

    /// Drains what `conn` received and returns the event names only.
    pub fn take_events(&mut self, conn: ConnId) -> Vec<String> {
        self.take(conn).into_iter().map(|m| m.event).collect()
    }

    /// The close code and reason, once the engine has closed `conn` (or the client did).
    pub fn closed(&self, conn: ConnId) -> Option<(u16, String)> {
        self.clients.get(&conn).and_then(|c| c.closed.clone())
    }

    /// The socket id the engine assigned to `conn`.
    pub fn socket_id(&self, conn: ConnId) -> String {
        self.engine()
            .socket_id(conn)
            .expect("connection is open")
            .to_string()
    }

    /// The debug events for the admin console since the last call, oldest first.
    pub fn take_debug(&mut self) -> Vec<crate::DebugEvent> {
        std::mem::take(&mut self.debug)
    }

    /// The app lookups the engine asked for since the last call, oldest first.
    pub fn take_lookups(&mut self) -> Vec<crate::AppLookup> {
        std::mem::take(&mut self.lookups)
    }

    /// Answers a lookup (or tells of a change) as the shell's app store would.
    pub fn app_answer(&mut self, lookup: crate::AppLookup, answer: crate::AppAnswer) {
        self.input(Input::App { lookup, answer })
            .expect("an app answer is never misuse");
    }

    /// The engine's latest log lines (at most 1024), drained, oldest first.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.notices.drain(..).collect()
    }

    /// Messages published on the cluster bus so far, drained, in publication order.
    pub fn take_bus(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.bus_out)
    }

    /// Webhooks emitted so far, drained.
    pub fn take_webhooks(&mut self) -> Vec<WebhookDelivery> {
        std::mem::take(&mut self.webhooks)
    }

    /// The `auth` a backend would sign for `conn` on a private channel.
    pub fn private_auth(&self, conn: ConnId, channel: &str) -> String {
        self.sign_for(conn, &format!("{}:{channel}", self.socket_id(conn)))
    }

    /// The `auth` a backend would sign for `conn` on a presence channel with `channel_data`.
    pub fn presence_auth(&self, conn: ConnId, channel: &str, channel_data: &str) -> String {
        self.sign_for(
            conn,
            &format!("{}:{channel}:{channel_data}", self.socket_id(conn)),
        )
    }

    /// The `auth` a backend would sign for `conn` to sign in with `user_data`.
    pub fn signin_auth(&self, conn: ConnId, user_data: &str) -> String {
        self.sign_for(
            conn,
            &format!("{}::user::{user_data}", self.socket_id(conn)),
        )
    }

    fn sign_for(&self, conn: ConnId, message: &str) -> String {
        let key = &self.clients[&conn].app_key;
        let app = self
            .engine()
            .served_app(key)
            .expect("client of an app the engine serves");
        signature::client_auth(&app.key, &app.secret, message.as_bytes())
    }

    fn client(&mut self, conn: ConnId) -> &mut FakeClient {
        self.clients
            .get_mut(&conn)
            .unwrap_or_else(|| panic!("no fake client {conn:?}"))
    }

    fn deliver(&mut self, conn: ConnId, frame: &Frame) {
        let client = self.client(conn);
        assert!(
            client.closed.is_none(),
            "engine sent {frame:?} to {conn:?} after it closed"
        );
        client.inbox.push_back(Message::from_frame(frame));
    }

    /// Delivers each output to the fake clients, checking the engine's contract on the way.
    fn route(&mut self, mut drained: Vec<Output>) {
        for output in drained.drain(..) {
            match output {
                Output::Send { conn, frame } => self.deliver(conn, &frame),
                Output::Broadcast {
                    conns,
                    except,
                    frame,
                } => {
                    for &conn in conns.iter().filter(|c| Some(**c) != except) {
                        self.deliver(conn, &frame);
                    }
                }
                Output::Close { conn, code, reason } => {
                    let client = self.client(conn);
                    assert!(client.closed.is_none(), "{conn:?} closed twice");
                    client.closed = Some((code.get(), reason));
                }
                Output::HttpResponse { req, status, body } => {
                    let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    self.responses.insert(req, (status, value));
                }
                Output::Webhook(delivery) => self.webhooks.push(delivery),
                Output::Bus(bytes) => self.bus_out.push(bytes),
                Output::Notice(notice) => {
                    if self.notices.len() == MAX_NOTICES {
                        self.notices.pop_front();
                    }
                    self.notices.push_back(notice);
                }
                Output::Debug(event) => self.debug.push(event),
                Output::LookupApp(lookup) => self.lookups.push(lookup),
                Output::Timeout(_) => unreachable!("the driver keeps the timeout"),
            }
        }
        self.drained = drained;
    }
}
