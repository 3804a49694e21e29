//! Arbitrary sequences of app-store events against one engine, with the invariants checked
//! after every step.
//!
//! The world is small so that every limit and timer is reached in a short run: one app in the
//! file, two apps the store holds, one key nobody has; lookups time out after a second, a
//! "missing" is remembered for two, a found app cached for ten, at most four wait on a lookup
//! and two lookups are in flight at once. The store's answers are whatever an [`Op::Answer`]
//! says, to a lookup the engine asked for or to none (news of a change), and may be odd: a
//! disabled app, a new secret or key, a key another app holds, an invalid app.
//!
//! After every operation: no input was called misuse; every connection is waiting (nothing sent
//! to it), welcomed with exactly one `pusher:connection_established` first, or closed exactly
//! once and sent nothing after; every request is answered exactly once and no later than its
//! lookup's deadline; no lookup is asked again while it is in flight; nothing waits past
//! `lookup_timeout_ms`; the file's apps are served under their keys. At the end, with every
//! client gone and every time to live passed, no connection and no app-store entry is left.

use arbitrary::{Arbitrary, Unstructured};
use ferrocast_engine::driver::Driver;
use ferrocast_engine::http_auth::signed_query;
use ferrocast_engine::{
    AppAnswer, AppConfig, AppLookup, AppStoreConfig, Config, ConnId, HttpRequest, Input, Output,
    ReqId, WsRequest,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// Most operations one input runs.
pub const MAX_OPS: usize = 256;

/// Milliseconds a lookup may take before its waiters are refused.
pub const LOOKUP_TIMEOUT_MS: u64 = 1_000;
/// Seconds a found app is served before it is asked for again.
pub const CACHE_TTL_SECS: u64 = 10;
/// Seconds a "missing" answer holds.
pub const MISSING_TTL_SECS: u64 = 2;

/// The keys connections and requests use: the file's app, the store's two, and one nobody has.
pub const KEYS: [&str; 4] = ["app-key", "store-key-1", "store-key-2", "junk-key"];
/// The ids of the same four apps, in the same order.
pub const IDS: [&str; 4] = ["app-id", "store-1", "store-2", "junk-id"];
/// The secrets of the same four apps, as the store first holds them.
pub const SECRETS: [&str; 4] = [
    "app-secret",
    "store-secret-1",
    "store-secret-2",
    "junk-secret",
];

/// One step of a run; every pick is resolved against the state when it runs.
#[derive(Debug, Clone, Arbitrary)]
pub enum Op {
    /// A handshake with `KEYS[key % 4]`.
    Connect {
        /// Which key.
        key: u8,
    },
    /// A message from a connection that is open or still waiting.
    Message {
        /// Which connection, among those open or waiting.
        conn: u8,
        /// What it says.
        message: Message,
    },
    /// A client goes away (open or still waiting).
    Disconnect {
        /// Which connection, among those open or waiting.
        conn: u8,
    },
    /// An API request naming an app by id (path) or key (`auth_key` of a `/users` route).
    Http {
        /// Which app, `% 4`.
        app: u8,
        /// Whether it names the app by key rather than id.
        by_key: bool,
        /// Publish (POST events) rather than read (GET channels); by key: terminate a user.
        publish: bool,
        /// Which secret signs it.
        secret: SecretPick,
    },
    /// The store answers a lookup, asked for or not.
    Answer {
        /// Below 192 and with lookups in flight: one of them; otherwise one of the eight
        /// possible lookups (key or id of each app).
        lookup: u8,
        /// The answer.
        answer: AnswerPick,
    },
    /// The file is re-read.
    Reload(ReloadPick),
    /// The server shuts down (only when `chance == 0`, so rarely: a run ends there in effect).
    Shutdown {
        /// Whether this one happens.
        chance: u8,
    },
    /// The fake clock moves on.
    Advance(AdvancePick),
}

/// What a client sends.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Message {
    /// `pusher:subscribe` to the public channel `news`.
    Subscribe,
    /// `pusher:subscribe` to a private channel with a bad signature.
    SubscribeBadAuth,
    /// `pusher:ping`.
    Ping,
    /// Not JSON.
    Junk,
}

/// Which secret signs a request.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum SecretPick {
    /// The app's first secret.
    Original,
    /// The secret a [`FoundPick`] may rotate to.
    Rotated,
    /// A secret no app has.
    Wrong,
}

/// What the store says.
#[derive(Debug, Clone, Arbitrary)]
pub enum AnswerPick {
    /// It has the app, with these variations.
    Found(FoundPick),
    /// It has no such app.
    Missing,
    /// It cannot be asked.
    Unavailable,
}

/// Variations on the app a found answer describes.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct FoundPick {
    /// `% 4`: 0 and 3 the app the lookup names, 1 and 2 store app 1 or 2 whatever was asked.
    pub app: u8,
    /// Disabled when `% 8 == 0`.
    pub enabled: u8,
    /// `% 8`: 0 to 4 the first secret, 5 and 6 the rotated one, 7 an empty one (invalid).
    pub secret: u8,
    /// `% 8`: 0 to 4 its own key, 5 the other store app's, 6 the file app's, 7 a new one.
    pub key: u8,
    /// Most connections, `% 4`.
    pub max_connections: Option<u8>,
}

/// What the re-read file says.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum ReloadPick {
    /// The same as at start.
    Same,
    /// The file's app with a new secret.
    FileAppRotated,
    /// Store app 1 is listed in the file now.
    AdoptStoreApp,
    /// A new file app takes store app 1's key.
    TakeStoreKey,
    /// An invalid file (an empty secret): nothing changes.
    Invalid,
}

/// How far the clock moves.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum AdvancePick {
    /// Under one and a half seconds, in milliseconds.
    Millis(u16),
    /// Up to 120 seconds.
    Secs(u8),
    /// Exactly one of the deadlines or just beside it.
    Edge(u8),
}

impl AdvancePick {
    fn duration(self) -> Duration {
        match self {
            AdvancePick::Millis(ms) => Duration::from_millis(u64::from(ms % 1_500)),
            AdvancePick::Secs(s) => Duration::from_secs(u64::from(s % 121)),
            AdvancePick::Edge(pick) => {
                const EDGES: [u64; 7] = [999, 1_000, 1_001, 2_000, 9_999, 10_000, 10_001];
                Duration::from_millis(EDGES[usize::from(pick) % EDGES.len()])
            }
        }
    }
}

/// Reads operations from `data` until it runs out or [`MAX_OPS`] are read.
pub fn decode(data: &[u8]) -> Vec<Op> {
    let mut u = Unstructured::new(data);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    ops
}

/// The configuration every run starts from: the default file app, lookups on, small limits.
pub fn config() -> Config {
    Config {
        apps: vec![AppConfig::default()],
        app_store: AppStoreConfig {
            lookups: true,
            cache_ttl_secs: CACHE_TTL_SECS,
            missing_ttl_secs: MISSING_TTL_SECS,
            lookup_timeout_ms: LOOKUP_TIMEOUT_MS,
            max_waiting_per_lookup: 4,
            max_lookups_in_flight: 2,
        },
        ..Config::default()
    }
}

/// What a run reached, so a test can tell the runs are not vacuous.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcomes {
    /// Connections welcomed after waiting for a lookup.
    pub welcomed_after_waiting: usize,
    /// Close codes sent, and how often.
    pub closes: BTreeMap<u16, usize>,
    /// HTTP statuses answered, and how often.
    pub statuses: BTreeMap<u16, usize>,
    /// Lookups the engine asked for.
    pub lookups: usize,
}

/// Runs `ops`, then closes everything and lets every time to live pass; `Err` says which
/// invariant broke, and where.
pub fn run(ops: &[Op]) -> Result<Outcomes, String> {
    let mut world = World::new();
    for (i, op) in ops.iter().enumerate() {
        world
            .step(op)
            .and_then(|()| world.check())
            .map_err(|e| format!("after op {i} ({op:?}) at {:?}: {e}", world.now()))?;
    }
    world.finish().map_err(|e| format!("at the end: {e}"))?;
    Ok(world.outcomes)
}

/// Where a connection stands, as seen from the outputs it got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Opened; nothing sent to it yet.
    Waiting,
    /// Its first frame was a `pusher:error`: its Close must follow in the same step.
    Refusing,
    /// Welcomed.
    Open,
    /// Closed by the engine.
    Closed,
    /// The client went away.
    Gone,
}

struct Conn {
    opened: Duration,
    state: ConnState,
    /// Whether its handshake was left waiting for a lookup.
    waited: bool,
}

struct Request {
    sent: Duration,
    answered: bool,
}

/// The engine under test and what its outputs told so far.
struct World {
    driver: Driver,
    conns: BTreeMap<ConnId, Conn>,
    requests: BTreeMap<ReqId, Request>,
    /// Lookups asked for and not answered or timed out, with when each was asked.
    in_flight: BTreeMap<AppLookup, Duration>,
    /// The apps of the last valid configuration, which must stay served under their keys.
    file_apps: Vec<AppConfig>,
    next_conn: u64,
    next_req: u64,
    outcomes: Outcomes,
}

impl World {
    fn new() -> Self {
        let config = config();
        World {
            file_apps: config.apps.clone(),
            driver: Driver::new(config, 7),
            conns: BTreeMap::new(),
            requests: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_conn: 1,
            next_req: 1,
            outcomes: Outcomes::default(),
        }
    }

    fn now(&self) -> Duration {
        self.driver.clock().elapsed()
    }

    fn timeout() -> Duration {
        Duration::from_millis(LOOKUP_TIMEOUT_MS)
    }

    /// Connections that may still send: open or waiting.
    fn live(&self) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| matches!(c.state, ConnState::Open | ConnState::Waiting))
            .map(|(id, _)| *id)
            .collect()
    }

    fn feed(&mut self, input: Input) -> Result<(), String> {
        let mut outputs = Vec::new();
        let verdict = self.driver.feed(input.clone(), |o| outputs.push(o));
        if let Err(misuse) = verdict {
            return Err(format!("{input:?} called misuse: {misuse}"));
        }
        self.observe(outputs)
    }

    fn step(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Connect { key } => {
                let conn = ConnId(self.next_conn);
                self.next_conn += 1;
                let key = KEYS[usize::from(*key) % KEYS.len()];
                let request = WsRequest {
                    path: format!("/app/{key}"),
                    query: "protocol=7".into(),
                    origin: None,
                    peer: None,
                    secure: false,
                };
                let opened = self.now();
                self.conns.insert(
                    conn,
                    Conn {
                        opened,
                        state: ConnState::Waiting,
                        waited: false,
                    },
                );
                self.feed(Input::Opened { conn, request })?;
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.waited = c.state == ConnState::Waiting;
                }
                Ok(())
            }
            Op::Message { conn, message } => {
                let live = self.live();
                let Some(&conn) = pick(&live, *conn) else {
                    return Ok(());
                };
                let text = match message {
                    Message::Subscribe => {
                        r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#
                    }
                    Message::SubscribeBadAuth => {
                        r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":"store-key-1:00"}}"#
                    }
                    Message::Ping => r#"{"event":"pusher:ping","data":{}}"#,
                    Message::Junk => "not json",
                };
                let text = text.as_bytes().to_vec();
                self.feed(Input::Text { conn, text })
            }
            Op::Disconnect { conn } => {
                let live = self.live();
                let Some(&conn) = pick(&live, *conn) else {
                    return Ok(());
                };
                self.disconnect(conn)
            }
            Op::Http {
                app,
                by_key,
                publish,
                secret,
            } => {
                let req = ReqId(self.next_req);
                self.next_req += 1;
                let request = http_request(
                    usize::from(*app) % IDS.len(),
                    *by_key,
                    *publish,
                    *secret,
                    self.driver.moment().unix_ms / 1000,
                );
                let sent = self.now();
                self.requests.insert(
                    req,
                    Request {
                        sent,
                        answered: false,
                    },
                );
                self.feed(Input::Http { req, request })
            }
            Op::Answer { lookup, answer } => {
                let lookup = self.pick_lookup(*lookup);
                let answer = match answer {
                    AnswerPick::Found(found) => {
                        AppAnswer::Found(Box::new(found_app(&lookup, *found)))
                    }
                    AnswerPick::Missing => AppAnswer::Missing,
                    AnswerPick::Unavailable => AppAnswer::Unavailable,
                };
                // Answered or news, the engine is no longer waiting for it.
                self.in_flight.remove(&lookup);
                self.feed(Input::App { lookup, answer })
            }
            Op::Reload(pick) => {
                let next = reloaded(*pick);
                if next.validate().is_ok() {
                    self.file_apps.clone_from(&next.apps);
                }
                self.feed(Input::Reload(Box::new(next)))
            }
            Op::Shutdown { chance } => {
                if *chance != 0 {
                    return Ok(());
                }
                // Every lookup's waiters are refused: none is in flight any more.
                self.in_flight.clear();
                self.feed(Input::Shutdown)
            }
            Op::Advance(pick) => self.advance(pick.duration()),
        }
    }

    fn disconnect(&mut self, conn: ConnId) -> Result<(), String> {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.state = ConnState::Gone;
        }
        self.feed(Input::Closed { conn })
    }

    /// A lookup in flight (most of the time, when there is one) or any of the eight.
    fn pick_lookup(&self, pick: u8) -> AppLookup {
        let in_flight: Vec<&AppLookup> = self.in_flight.keys().collect();
        if pick < 192 {
            if let Some(lookup) = self::pick(&in_flight, pick) {
                return (*lookup).clone();
            }
        }
        let i = usize::from(pick) % 8;
        if i < 4 {
            AppLookup::Key(KEYS[i].into())
        } else {
            AppLookup::Id(IDS[i - 4].into())
        }
    }

    /// Moves the clock to `by` later, one due timer at a time, so that every output is seen
    /// at the instant it was produced.
    fn advance(&mut self, by: Duration) -> Result<(), String> {
        let target = self.now() + by;
        for _ in 0..100_000 {
            let now = self.now();
            let due = self
                .driver
                .next_timer()
                .map(|at| self.driver.clock().since_start(at));
            let to = match due {
                Some(due) if due < target => due.max(now),
                _ => target,
            };
            let mut outputs = Vec::new();
            self.driver.advance(to - now, |o| outputs.push(o));
            self.observe(outputs)?;
            self.check_deadlines()?;
            if to == target {
                return Ok(());
            }
        }
        Err("timers never let the clock reach its target".into())
    }

    /// Checks each output against what was seen before it.
    fn observe(&mut self, outputs: Vec<Output>) -> Result<(), String> {
        let now = self.now();
        for output in outputs {
            match output {
                Output::Send { conn, frame } => {
                    let event = event_name(&frame.payload_text());
                    self.sent(conn, &event)?;
                }
                Output::Broadcast {
                    conns,
                    except,
                    frame,
                } => {
                    let event = event_name(&frame.payload_text());
                    for &conn in conns.iter().filter(|c| Some(**c) != except) {
                        let state = self.conns.get(&conn).map(|c| c.state);
                        if state != Some(ConnState::Open) {
                            return Err(format!(
                                "broadcast of {event} to connection {} in state {state:?}",
                                conn.0
                            ));
                        }
                    }
                }
                Output::Close { conn, code, .. } => {
                    let c = self
                        .conns
                        .get_mut(&conn)
                        .ok_or_else(|| format!("close of unknown connection {}", conn.0))?;
                    match c.state {
                        ConnState::Closed | ConnState::Gone => {
                            return Err(format!(
                                "connection {} closed ({code}) in state {:?}",
                                conn.0, c.state
                            ))
                        }
                        _ => c.state = ConnState::Closed,
                    }
                    *self.outcomes.closes.entry(code.get()).or_default() += 1;
                }
                Output::HttpResponse { req, status, .. } => {
                    let r = self
                        .requests
                        .get_mut(&req)
                        .ok_or_else(|| format!("response to unknown request {}", req.0))?;
                    if r.answered {
                        return Err(format!("request {} answered twice ({status})", req.0));
                    }
                    r.answered = true;
                    *self.outcomes.statuses.entry(status).or_default() += 1;
                }
                Output::LookupApp(lookup) => {
                    let timeout = Self::timeout();
                    self.in_flight.retain(|_, asked| *asked + timeout > now);
                    if let Some(asked) = self.in_flight.get(&lookup) {
                        return Err(format!(
                            "{lookup:?} asked again while in flight (asked at {asked:?})"
                        ));
                    }
                    self.in_flight.insert(lookup, now);
                    self.outcomes.lookups += 1;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn sent(&mut self, conn: ConnId, event: &str) -> Result<(), String> {
        let c = self
            .conns
            .get_mut(&conn)
            .ok_or_else(|| format!("{event} sent to unknown connection {}", conn.0))?;
        let established = event == "pusher:connection_established";
        if established && c.waited {
            self.outcomes.welcomed_after_waiting += 1;
        }
        c.state = match (c.state, established) {
            (ConnState::Waiting, true) => ConnState::Open,
            (ConnState::Waiting, false) if event == "pusher:error" => ConnState::Refusing,
            (ConnState::Open, false) => ConnState::Open,
            (state, _) => {
                return Err(format!(
                    "{event} sent to connection {} in state {state:?}",
                    conn.0
                ))
            }
        };
        Ok(())
    }

    /// Nothing waits past its lookup's deadline.
    fn check_deadlines(&self) -> Result<(), String> {
        let now = self.now();
        let timeout = Self::timeout();
        for (conn, c) in &self.conns {
            if c.state == ConnState::Waiting && now >= c.opened + timeout {
                return Err(format!(
                    "connection {} opened at {:?} still waits",
                    conn.0, c.opened
                ));
            }
        }
        for (req, r) in &self.requests {
            if !r.answered && now >= r.sent + timeout {
                return Err(format!(
                    "request {} sent at {:?} still unanswered",
                    req.0, r.sent
                ));
            }
        }
        Ok(())
    }

    /// The invariants that hold between any two operations.
    fn check(&self) -> Result<(), String> {
        self.check_deadlines()?;
        if let Some((conn, _)) = self
            .conns
            .iter()
            .find(|(_, c)| c.state == ConnState::Refusing)
        {
            return Err(format!(
                "connection {} told an error but not closed",
                conn.0
            ));
        }
        let engine = self.driver.engine();
        let open = self
            .conns
            .values()
            .filter(|c| c.state == ConnState::Open)
            .count();
        let counted = engine.state_counts().connections;
        if open != counted {
            return Err(format!(
                "{open} connections welcomed and open, the engine counts {counted}"
            ));
        }
        for app in &self.file_apps {
            let served = engine.served_app(&app.key).map(|a| a.id.as_str());
            if served != Some(app.id.as_str()) {
                return Err(format!(
                    "file app {} not served under its key {} (served: {served:?})",
                    app.id, app.key
                ));
            }
        }
        Ok(())
    }

    /// Every client leaves, every time to live passes: nothing may be left.
    fn finish(&mut self) -> Result<(), String> {
        for conn in self.live() {
            self.disconnect(conn)?;
        }
        self.advance(Duration::from_secs(4 * CACHE_TTL_SECS))?;
        self.check()?;
        if let Some((req, _)) = self.requests.iter().find(|(_, r)| !r.answered) {
            return Err(format!("request {} never answered", req.0));
        }
        let counts = self.driver.engine().state_counts();
        if counts.connections != 0 || counts.app_store_entries != 0 {
            return Err(format!("state left: {counts:?}"));
        }
        for key in KEYS {
            if let Some(app) = self.driver.engine().served_app(key) {
                if !self.file_apps.iter().any(|file| file.id == app.id) {
                    return Err(format!("store app {} still served, unused", app.id));
                }
            }
        }
        Ok(())
    }
}

fn pick<T>(items: &[T], pick: u8) -> Option<&T> {
    (!items.is_empty()).then(|| &items[usize::from(pick) % items.len()])
}

/// The `event` of a Pusher message, or a placeholder for anything else.
fn event_name(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v["event"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("(not a Pusher message: {payload:?})"))
}

/// The app `KEYS[i]` / `IDS[i]` as the store first holds it.
fn base_app(i: usize) -> AppConfig {
    AppConfig {
        id: IDS[i].into(),
        key: KEYS[i].into(),
        secret: SECRETS[i].into(),
        ..AppConfig::default()
    }
}

/// The secret a found answer may rotate an app to.
fn rotated(i: usize) -> String {
    format!("rotated-{}", SECRETS[i])
}

/// The app a found answer to `lookup` describes.
fn found_app(lookup: &AppLookup, pick: FoundPick) -> AppConfig {
    let named = match lookup {
        AppLookup::Key(key) => KEYS.iter().position(|k| k == key),
        AppLookup::Id(id) => IDS.iter().position(|i| i == id),
    }
    .unwrap_or(3);
    let i = match pick.app % 4 {
        1 => 1,
        2 => 2,
        _ => named,
    };
    let mut app = base_app(i);
    app.enabled = !pick.enabled.is_multiple_of(8);
    match pick.secret % 8 {
        5 | 6 => app.secret = rotated(i),
        7 => app.secret = String::new(),
        _ => {}
    }
    match pick.key % 8 {
        5 => app.key = KEYS[if i == 1 { 2 } else { 1 }].into(),
        6 => app.key = KEYS[0].into(),
        7 => app.key = format!("new-{}", KEYS[i]),
        _ => {}
    }
    app.max_connections = pick.max_connections.map(|m| u32::from(m % 4));
    app
}

/// The request `Op::Http` sends, signed at `unix_secs`.
fn http_request(
    i: usize,
    by_key: bool,
    publish: bool,
    secret: SecretPick,
    unix_secs: u64,
) -> HttpRequest {
    let secret = match secret {
        SecretPick::Original => SECRETS[i].to_owned(),
        SecretPick::Rotated => rotated(i),
        SecretPick::Wrong => "wrong-secret".to_owned(),
    };
    let (method, path, body) = match (by_key, publish) {
        (true, _) => (
            "POST",
            "/users/u1/terminate_connections".to_owned(),
            Vec::new(),
        ),
        (false, true) => (
            "POST",
            format!("/apps/{}/events", IDS[i]),
            br#"{"name":"e","channel":"news","data":"{}"}"#.to_vec(),
        ),
        (false, false) => ("GET", format!("/apps/{}/channels", IDS[i]), Vec::new()),
    };
    let query = signed_query(KEYS[i], &secret, method, &path, &[], &body, unix_secs);
    HttpRequest {
        method: method.into(),
        path,
        query,
        body,
    }
}

/// The configuration a reload brings.
fn reloaded(pick: ReloadPick) -> Config {
    let mut next = config();
    match pick {
        ReloadPick::Same => {}
        ReloadPick::FileAppRotated => next.apps[0].secret = rotated(0),
        ReloadPick::AdoptStoreApp => next.apps.push(base_app(1)),
        ReloadPick::TakeStoreKey => next.apps.push(AppConfig {
            id: "file-2".into(),
            key: KEYS[1].into(),
            secret: "file-2-secret".into(),
            ..AppConfig::default()
        }),
        ReloadPick::Invalid => next.apps[0].secret = String::new(),
    }
    next
}
