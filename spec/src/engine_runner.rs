//! Replaying vectors on the engine itself, through its simulator and fake clock.
//!
//! Beyond the transcript, the engine runner checks what only it can see: no message is left
//! unread at the end, and once every client has gone the engine holds no state for them.

use crate::config;
use crate::runner::{self, HttpAnswer, HttpCall, Outgoing, Received, Transport, Wait, WebhookPost};
use crate::template::{App, Context};
use crate::vector::Vector;
use crate::Outcome;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{Config, ConnId, Input, WsRequest};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

/// The credentials engine runs use (those of the SDK signature vectors).
pub fn engine_app() -> App {
    App {
        id: "app-id".into(),
        key: "app-key".into(),
        secret: "app-secret".into(),
    }
}

/// Where webhooks point in engine runs (never contacted).
pub const ENGINE_WEBHOOK_URL: &str = "http://127.0.0.1:9/webhooks";

/// Runs one vector on a fresh engine and classifies the result, honouring `known_failure`.
pub fn run_vector(vector: &Vector) -> Outcome {
    let result = catch_unwind(AssertUnwindSafe(|| replay(vector))).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into());
        Err(format!("the engine or simulator panicked: {what}"))
    });
    Outcome::classify(vector, result)
}

fn replay(vector: &Vector) -> Result<(), String> {
    let app = engine_app();
    let json = config::build(&app, vector.config.as_ref(), ENGINE_WEBHOOK_URL)?;
    let config: Config = serde_json::from_value(json.clone())
        .map_err(|e| format!("the engine refuses the vector's config {json}: {e}"))?;
    config
        .validate()
        .map_err(|e| format!("the engine refuses the vector's config {json}: {e}"))?;
    let mut transport = EngineTransport::new(Simulator::new(config, 7));
    let mut ctx = Context::new(app);
    runner::run(vector, &mut transport, &mut ctx)?;
    transport.finish()
}

/// A [`Transport`] over the engine's simulator.
pub struct EngineTransport {
    sim: Simulator,
    clients: BTreeMap<String, ConnId>,
    inboxes: BTreeMap<String, VecDeque<Received>>,
    /// Clients that closed their own socket.
    hung_up: BTreeSet<String>,
}

impl EngineTransport {
    /// Wraps a simulator.
    pub fn new(sim: Simulator) -> Self {
        EngineTransport {
            sim,
            clients: BTreeMap::new(),
            inboxes: BTreeMap::new(),
            hung_up: BTreeSet::new(),
        }
    }

    fn conn(&self, client: &str) -> Result<ConnId, String> {
        self.clients
            .get(client)
            .copied()
            .ok_or_else(|| format!("client {client:?} never connected"))
    }

    fn open_conn(&self, client: &str) -> Result<ConnId, String> {
        let conn = self.conn(client)?;
        match self.sim.closed(conn) {
            Some((code, _)) => Err(format!(
                "client {client:?} is closed (code {code}); it cannot act any more"
            )),
            None => Ok(conn),
        }
    }

    fn pull(&mut self, client: &str) -> Result<(), String> {
        let conn = self.conn(client)?;
        let inbox = self.inboxes.entry(client.to_owned()).or_default();
        for message in self.sim.take(conn) {
            inbox.push_back(if message.event == "#pong" {
                Received::Pong
            } else {
                Received::Text(message.raw)
            });
        }
        Ok(())
    }

    fn misuse(e: ferrocast_engine::ApiMisuse) -> String {
        format!("the engine refused the input as misuse: {e}")
    }

    /// End-of-vector checks: nothing unread, and no state left once every client has gone.
    pub fn finish(&mut self) -> Result<(), String> {
        let names: Vec<String> = self.clients.keys().cloned().collect();
        for name in &names {
            self.pull(name)?;
            if let Some(left) = self.inboxes[name].front() {
                return Err(format!(
                    "after the last step, {name} still had an unexpected {left:?}"
                ));
            }
        }
        for name in &names {
            let conn = self.clients[name];
            if self.sim.closed(conn).is_none() {
                self.sim
                    .input(Input::Closed { conn })
                    .map_err(Self::misuse)?;
            }
        }
        let counts = self.sim.engine().state_counts();
        let leaked = counts.connections
            + counts.socket_ids
            + counts.channels
            + counts.users
            + counts.watched_users;
        if leaked != 0 {
            return Err(format!(
                "state leaked after every client closed: {counts:?}"
            ));
        }
        Ok(())
    }
}

impl Transport for EngineTransport {
    fn connect(
        &mut self,
        client: &str,
        path: &str,
        query: &str,
        origin: Option<&str>,
        secure: bool,
    ) -> Result<(), String> {
        if let Some(old) = self.clients.get(client) {
            if self.sim.closed(*old).is_none() {
                return Err(format!("client {client:?} is already connected"));
            }
        }
        let conn = self.sim.connect_with(WsRequest {
            path: path.into(),
            query: query.into(),
            origin: origin.map(str::to_owned),
            peer: None,
            secure,
        });
        self.clients.insert(client.to_owned(), conn);
        self.inboxes.insert(client.to_owned(), VecDeque::new());
        self.hung_up.remove(client);
        Ok(())
    }

    fn send(&mut self, client: &str, frame: Outgoing) -> Result<(), String> {
        let conn = self.open_conn(client)?;
        let input = match frame {
            Outgoing::Text(text) => Input::Text { conn, text },
            Outgoing::Binary(data) => Input::Binary { conn, data },
            Outgoing::Ping(payload) => {
                return self.sim.ws_ping(conn, &payload).map_err(Self::misuse);
            }
        };
        self.sim.input(input).map_err(Self::misuse)
    }

    fn disconnect(&mut self, client: &str) -> Result<(), String> {
        let conn = self.open_conn(client)?;
        self.pull(client)?;
        self.sim.disconnect(conn);
        self.hung_up.insert(client.to_owned());
        Ok(())
    }

    fn receive(&mut self, client: &str, _wait: Wait) -> Result<Received, String> {
        self.pull(client)?;
        if let Some(next) = self.inboxes.get_mut(client).and_then(VecDeque::pop_front) {
            return Ok(next);
        }
        let conn = self.conn(client)?;
        match self.sim.closed(conn) {
            Some(_) if self.hung_up.contains(client) => Err(format!(
                "client {client:?} closed its own socket; it receives nothing"
            )),
            Some((code, _)) => Ok(Received::Closed(code)),
            None => Ok(Received::Nothing),
        }
    }

    fn advance(&mut self, seconds: f64) -> Result<(), String> {
        self.sim.advance(Duration::from_secs_f64(seconds));
        Ok(())
    }

    fn unix_secs(&self) -> u64 {
        self.sim.moment().unix_ms / 1000
    }

    fn http(&mut self, call: &HttpCall) -> Result<HttpAnswer, String> {
        let (status, body) = self
            .sim
            .http(&call.method, &call.path, &call.query, &call.body);
        Ok(HttpAnswer { status, body })
    }

    fn webhooks(&mut self, _wait: Wait) -> Result<Vec<WebhookPost>, String> {
        Ok(self
            .sim
            .take_webhooks()
            .into_iter()
            .map(|d| WebhookPost {
                headers: d.headers,
                body: d.body.to_vec(),
            })
            .collect())
    }

    fn slow_consumer(&mut self, client: &str) -> Result<(), String> {
        let conn = self.open_conn(client)?;
        self.sim
            .input(Input::SlowConsumer { conn })
            .map_err(Self::misuse)
    }
}
