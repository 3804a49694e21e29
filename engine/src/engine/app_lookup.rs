//! Apps from an app store: unknown keys and ids looked up, the waits they cause, the cache.
//!
//! When [`crate::AppStoreConfig::lookups`] is on, a connection with a key the engine does not
//! serve, or an API request naming an unknown app, waits while the engine asks the shell
//! ([`Output::LookupApp`]); every connection and request for the same key waits on that one
//! lookup. The answer ([`Input::App`]) lets them through as for an app from the file, or
//! refuses them: 4001 / 404 for an app the store does not have (remembered for
//! `missing_ttl_secs`, so a client retrying a wrong key costs no query), 4100 / 503 when the
//! store cannot be asked or does not answer within `lookup_timeout_ms`.
//!
//! An app found is served for `cache_ttl_secs`, then asked for again if it is in use (stale
//! rather than refused if the store is down meanwhile) and forgotten otherwise. An answer
//! nobody asked for is the store's news of a change: applied to an app served from the store,
//! through the same per-app update as a reload (a disabled app's connections closed with 4003,
//! a deleted one's with 4001), and otherwise only clearing a remembered "missing".

use super::{Due, Engine};
use crate::close_code::CloseCode;
use crate::config::AppConfig;
use crate::ids::{AppId, ConnId, ReqId};
use crate::interface::{AppAnswer, AppLookup, HttpRequest, Input, Output, WsRequest};
use crate::timers::TimerKey;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Messages a waiting connection may send before its app is known (Pusher clients send none
/// before `pusher:connection_established`); one more closes it.
const MAX_EARLY_INPUTS: usize = 16;

/// The engine's side of the app store.
#[derive(Default)]
pub(super) struct AppStore {
    /// Lookups asked of the shell and not answered yet.
    in_flight: BTreeMap<AppLookup, Lookup>,
    /// Keys and ids the store said it does not have, and until when that answer holds.
    missing: BTreeMap<AppLookup, Instant>,
    /// Apps served from the store, and when each is due to be asked for again.
    cached: BTreeMap<AppId, Instant>,
    /// Connections waiting for a lookup, by connection.
    waiting: BTreeMap<ConnId, WaitingConn>,
}

impl AppStore {
    /// Entries of lookups, waits and remembered answers, for leak checks.
    pub(super) fn len(&self) -> usize {
        self.in_flight.len() + self.missing.len() + self.waiting.len()
    }

    /// Whether `conn` is a handshake waiting for its app.
    pub(super) fn is_waiting(&self, conn: ConnId) -> bool {
        self.waiting.contains_key(&conn)
    }

    /// Connections waiting for their app, counted against the node's capacity.
    pub(super) fn waiting_connections(&self) -> usize {
        self.waiting.len()
    }

    /// Whether `app` came from the store (and is cached) rather than from the configuration.
    pub(super) fn serves(&self, app: &AppId) -> bool {
        self.cached.contains_key(app)
    }

    /// `app` is a file app from now on: it is no longer refreshed from the store.
    pub(super) fn release(&mut self, app: &AppId) {
        self.cached.remove(app);
    }
}

/// One lookup in flight and who waits for its answer.
struct Lookup {
    deadline: TimerKey,
    conns: BTreeSet<ConnId>,
    requests: Vec<(ReqId, HttpRequest)>,
}

impl Lookup {
    fn waiters(&self) -> usize {
        self.conns.len() + self.requests.len()
    }
}

/// A handshake waiting for its app, with what the client sent meanwhile.
struct WaitingConn {
    lookup: AppLookup,
    request: WsRequest,
    early: Vec<Input>,
}

/// What an app store timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StoreDue {
    /// The lookup has had its time: its waiters are refused as if the store were down.
    Deadline(AppLookup),
    /// A remembered "missing" may have run out.
    MissingExpiry(AppLookup),
    /// A cached app may be due to be asked for again (or forgotten, if unused).
    Refresh(AppId),
}

/// Why an unknown app was not found; the refusal a waiter gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NotFound {
    /// The store does not have it (or lookups are off): 4001 / 404.
    Missing,
    /// The store could not be asked, or did not answer in time: 4100 / 503.
    Unavailable,
    /// Too many connections or lookups wait already: 4100 / 503.
    Busy,
}

impl NotFound {
    /// The close code and reason a connection with an unknown `key` is refused with.
    pub(super) fn refusal(self, key: &str) -> (CloseCode, String) {
        match self {
            NotFound::Missing => (
                CloseCode::APP_NOT_FOUND,
                format!("app key {key} does not exist"),
            ),
            NotFound::Unavailable => (
                CloseCode::OVER_CAPACITY,
                "the app store is unavailable: try again later".into(),
            ),
            NotFound::Busy => (
                CloseCode::OVER_CAPACITY,
                "too many connections wait for their app: try again later".into(),
            ),
        }
    }

    /// The HTTP status and message a request for an unknown app is answered with.
    fn http(self) -> (u16, &'static str) {
        match self {
            NotFound::Missing => (404, "app not found"),
            NotFound::Unavailable => (503, "the app store is unavailable: try again later"),
            NotFound::Busy => (503, "too many requests wait for their app: try again later"),
        }
    }
}

/// Something waiting for a lookup.
pub(super) enum Waiter {
    /// A handshake.
    Conn(ConnId, WsRequest),
    /// An API request.
    Request(ReqId, HttpRequest),
}

impl Engine {
    /// Whether an unknown key or id should be asked of the store now; `Err` says how it is
    /// refused instead (lookups off, or a "missing" remembered).
    pub(super) fn should_look_up(&self, lookup: &AppLookup) -> Result<(), NotFound> {
        let now = self.moment().now;
        if !self.config.app_store.lookups {
            return Err(NotFound::Missing);
        }
        match self.store.missing.get(lookup) {
            Some(until) if *until > now => Err(NotFound::Missing),
            _ => Ok(()),
        }
    }

    /// Makes `waiter` wait for `lookup`, asking the store unless a lookup is already in flight.
    pub(super) fn wait_for_app(&mut self, lookup: AppLookup, waiter: Waiter) {
        let limits = &self.config.app_store;
        let (max_waiting, max_in_flight) =
            (limits.max_waiting_per_lookup, limits.max_lookups_in_flight);
        let full = match self.store.in_flight.get(&lookup) {
            Some(pending) => pending.waiters() >= max_waiting,
            None => self.store.in_flight.len() >= max_in_flight,
        };
        if full {
            self.notice(
                None,
                format!("{lookup:?} refused: too many wait for the app store"),
            );
            return self.refuse_waiter(waiter, NotFound::Busy);
        }
        if !self.store.in_flight.contains_key(&lookup) {
            self.ask_store(lookup.clone());
        }
        let pending = self
            .store
            .in_flight
            .get_mut(&lookup)
            .expect("inserted above");
        match waiter {
            Waiter::Conn(conn, request) => {
                pending.conns.insert(conn);
                let early = Vec::new();
                self.store.waiting.insert(
                    conn,
                    WaitingConn {
                        lookup,
                        request,
                        early,
                    },
                );
            }
            Waiter::Request(req, request) => pending.requests.push((req, request)),
        }
    }

    /// Takes an input for a connection still waiting for its app: kept until the app is known
    /// (messages and signs of life), or acted on at once (a close). `Some` gives back an input
    /// that is not for a waiting connection.
    pub(super) fn input_while_waiting(&mut self, input: Input) -> Option<Input> {
        // The common case, and the only one without an app store: nobody waits.
        if self.store.waiting.is_empty() {
            return Some(input);
        }
        let conn = match &input {
            Input::Text { conn, .. }
            | Input::Binary { conn, .. }
            | Input::Activity { conn }
            | Input::Oversized { conn }
            | Input::SlowConsumer { conn }
            | Input::Closed { conn } => *conn,
            _ => return Some(input),
        };
        let Some(waiting) = self.store.waiting.get_mut(&conn) else {
            return Some(input);
        };
        let closing = match input {
            Input::Closed { .. } => None,
            Input::Oversized { .. } => Some((CloseCode::MESSAGE_TOO_BIG, "message too large")),
            Input::SlowConsumer { .. } => Some((
                CloseCode::OVER_CAPACITY,
                "connection closed: it reads too slowly",
            )),
            early if waiting.early.len() < MAX_EARLY_INPUTS => {
                waiting.early.push(early);
                return None;
            }
            _ => Some((
                CloseCode::OVER_CAPACITY,
                "too many messages before the connection was established",
            )),
        };
        let waiting = self.stop_waiting(conn).expect("found above");
        if let Some((code, reason)) = closing {
            self.refuse_handshake(conn, &waiting.request, code, reason.into());
        }
        None
    }

    /// Forgets that `conn` waits, in its lookup too.
    fn stop_waiting(&mut self, conn: ConnId) -> Option<WaitingConn> {
        let waiting = self.store.waiting.remove(&conn)?;
        if let Some(pending) = self.store.in_flight.get_mut(&waiting.lookup) {
            pending.conns.remove(&conn);
        }
        Some(waiting)
    }

    /// The store's answer to `lookup`, or its news of a change.
    pub(super) fn on_app_answer(&mut self, lookup: AppLookup, answer: AppAnswer) {
        let pending = self.store.in_flight.remove(&lookup);
        if let Some(pending) = &pending {
            self.timers.cancel(pending.deadline);
        }
        let asked = pending.is_some();
        let outcome = match answer {
            AppAnswer::Found(config) => self.store_found(&lookup, *config, asked),
            AppAnswer::Missing => {
                self.store_missing(&lookup, asked);
                Some(NotFound::Missing)
            }
            AppAnswer::Unavailable => {
                self.store_unavailable(&lookup);
                Some(NotFound::Unavailable)
            }
        };
        if asked {
            self.refresh_again_if_due(&lookup);
        }
        if let Some(pending) = pending {
            self.release_waiters(pending, outcome);
        }
    }

    /// A refresh answered with another app's settings left its own app with no refresh due,
    /// so it would be neither refreshed nor forgotten: it is asked for again later, as if the
    /// store had been unavailable.
    fn refresh_again_if_due(&mut self, lookup: &AppLookup) {
        let AppLookup::Id(id) = lookup else {
            return;
        };
        let id = AppId::new(id);
        let now = self.moment().now;
        if self.store.cached.get(&id).is_some_and(|at| *at <= now) {
            self.schedule_refresh(id);
        }
    }

    /// A lookup that had its time is refused as if the store were down; a late answer is
    /// then taken as news.
    fn lookup_timed_out(&mut self, lookup: AppLookup) {
        let Some(pending) = self.store.in_flight.remove(&lookup) else {
            return;
        };
        let timeout = self.config.app_store.lookup_timeout_ms;
        self.notice(
            None,
            format!("app store lookup {lookup:?} not answered within {timeout} ms"),
        );
        self.store_unavailable(&lookup);
        self.release_waiters(pending, Some(NotFound::Unavailable));
    }

    /// Lets each waiter of an answered lookup go on: admitted or answered if its app is known
    /// now, refused as `outcome` says otherwise.
    fn release_waiters(&mut self, pending: Lookup, outcome: Option<NotFound>) {
        let refusal = outcome.unwrap_or(NotFound::Missing);
        for conn in pending.conns {
            if let Some(waiting) = self.store.waiting.remove(&conn) {
                self.open_after_lookup(conn, &waiting.request, refusal);
                if self.conns.contains_key(&conn) {
                    for early in waiting.early {
                        // Each was valid input for this connection, which is open now.
                        let _ = self.dispatch(early);
                    }
                }
            }
        }
        for (req, request) in pending.requests {
            self.answer_after_lookup(req, &request, refusal);
        }
    }

    /// Answers an API request for an app the store could not give.
    pub(super) fn refuse_request(&mut self, req: ReqId, request: &HttpRequest, why: NotFound) {
        let (status, message) = why.http();
        self.notice(
            None,
            format!(
                "HTTP {} {} answered {status}: {message}",
                request.method, request.path
            ),
        );
        let body = crate::http_response::error_body(message);
        self.outputs
            .push_back(Output::HttpResponse { req, status, body });
    }

    fn refuse_waiter(&mut self, waiter: Waiter, why: NotFound) {
        match waiter {
            Waiter::Conn(conn, request) => self.open_after_lookup(conn, &request, why),
            Waiter::Request(req, request) => self.refuse_request(req, &request, why),
        }
    }

    /// Refuses every waiter: the server is shutting down.
    pub(super) fn refuse_all_waiters(&mut self) {
        let lookups: Vec<AppLookup> = self.store.in_flight.keys().cloned().collect();
        for lookup in lookups {
            if let Some(pending) = self.store.in_flight.remove(&lookup) {
                self.timers.cancel(pending.deadline);
                // As when it times out: a refresh cut short is due again later, so an app
                // nobody uses after the shutdown is still forgotten.
                self.store_unavailable(&lookup);
                self.release_waiters(pending, Some(NotFound::Unavailable));
            }
        }
    }

    /// Serves (or updates) the app the store found, when it was asked for or is cached;
    /// `Some` refuses the waiters instead.
    fn store_found(
        &mut self,
        lookup: &AppLookup,
        config: AppConfig,
        asked: bool,
    ) -> Option<NotFound> {
        let id = AppId::new(&config.id);
        // An insert the store tells of: a client retrying that key must not wait out "missing".
        self.store
            .missing
            .remove(&AppLookup::Key(config.key.clone()));
        self.store.missing.remove(&AppLookup::Id(config.id.clone()));
        let cached = self.store.serves(&id);
        if !asked && !cached {
            return None;
        }
        if self.apps.contains_key(&id) && !cached {
            self.notice(
                None,
                format!("app store: app {id} is also in the configuration, which is kept"),
            );
            return None;
        }
        if let Err(why) = config.validate() {
            self.notice(None, format!("app store: app {id} refused: app{}", why.0));
            return self
                .store_missing(lookup, true)
                .then_some(NotFound::Missing);
        }
        if let Some(holder) = self.app_by_key.get(config.key.as_str()) {
            if *holder != id {
                self.notice(
                    None,
                    format!("app store: app {id} refused: its key is app {holder}'s"),
                );
                return self
                    .store_missing(lookup, true)
                    .then_some(NotFound::Missing);
            }
        }
        if cached {
            if self.apps[&id].config != config {
                self.change_app(&id, config);
            }
        } else {
            let state = super::App::new(config, &self.config);
            self.app_by_key.insert(state.key.clone(), id.clone());
            self.apps.insert(id.clone(), state);
            self.cluster_app_added(&id);
        }
        self.schedule_refresh(id);
        None
    }

    /// Remembers that the store lacks `lookup`'s app, and stops serving it if it was served
    /// from the store. Returns whether the answer concerned this engine at all.
    fn store_missing(&mut self, lookup: &AppLookup, asked: bool) -> bool {
        let served = match lookup {
            AppLookup::Id(id) => Some(AppId::new(id)),
            AppLookup::Key(key) => self.app_by_key.get(key.as_str()).cloned(),
        }
        .filter(|id| self.store.serves(id));
        if let Some(id) = &served {
            self.store.cached.remove(id);
            self.remove_app(id, CloseCode::APP_NOT_FOUND, "app removed");
        }
        if !asked && served.is_none() {
            return false;
        }
        let ttl = Duration::from_secs(self.config.app_store.missing_ttl_secs);
        if !ttl.is_zero() {
            let until = self.moment().now + ttl;
            self.store.missing.insert(lookup.clone(), until);
            self.timers.schedule(
                until,
                Due::AppStore(StoreDue::MissingExpiry(lookup.clone())),
            );
        }
        true
    }

    /// The store could not answer: a cached app stays served as it was, and is asked for
    /// again after another time to live.
    fn store_unavailable(&mut self, lookup: &AppLookup) {
        if let AppLookup::Id(id) = lookup {
            let id = AppId::new(id);
            if self.store.serves(&id) {
                self.schedule_refresh(id);
            }
        }
    }

    fn schedule_refresh(&mut self, id: AppId) {
        let at = self.moment().now + Duration::from_secs(self.config.app_store.cache_ttl_secs);
        self.store.cached.insert(id.clone(), at);
        self.timers
            .schedule(at, Due::AppStore(StoreDue::Refresh(id)));
    }

    /// A store timer fired.
    pub(super) fn store_due(&mut self, due: StoreDue) {
        let now = self.moment().now;
        match due {
            StoreDue::Deadline(lookup) => self.lookup_timed_out(lookup),
            StoreDue::MissingExpiry(lookup) => {
                if self
                    .store
                    .missing
                    .get(&lookup)
                    .is_some_and(|until| *until <= now)
                {
                    self.store.missing.remove(&lookup);
                }
            }
            StoreDue::Refresh(id) => {
                // A later answer may have pushed the refresh back; this timer is then stale.
                if self.store.cached.get(&id).is_none_or(|at| *at > now) {
                    return;
                }
                if self.app_unused(&id) {
                    self.store.cached.remove(&id);
                    self.remove_app(&id, CloseCode::APP_NOT_FOUND, "app forgotten");
                    return;
                }
                let lookup = AppLookup::Id(id.as_str().to_owned());
                if !self.store.in_flight.contains_key(&lookup) {
                    self.ask_store(lookup);
                }
            }
        }
    }

    /// Asks the store for `lookup`, with nobody waiting yet, until its deadline.
    fn ask_store(&mut self, lookup: AppLookup) {
        let timeout = Duration::from_millis(self.config.app_store.lookup_timeout_ms);
        let at = self.moment().now + timeout;
        let deadline = self
            .timers
            .schedule(at, Due::AppStore(StoreDue::Deadline(lookup.clone())));
        let pending = Lookup {
            deadline,
            conns: BTreeSet::new(),
            requests: Vec::new(),
        };
        self.store.in_flight.insert(lookup.clone(), pending);
        self.outputs.push_back(Output::LookupApp(lookup));
    }

    /// Whether forgetting `app` loses nothing: no connection, channel, user, cached event or
    /// webhook still pending.
    fn app_unused(&self, app: &AppId) -> bool {
        self.apps.get(app).is_none_or(|state| {
            state.connections == 0
                && state.channels.len() == 0
                && state.users.is_empty()
                && state.cache.is_empty()
                && state.webhooks.len() == 0
        })
    }
}
