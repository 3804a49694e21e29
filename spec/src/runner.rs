//! The interpreter: replays a vector's steps over any [`Transport`] (the engine's simulator or
//! real sockets) and reports the first mismatch precisely.

use crate::matcher;
use crate::sign;
use crate::template::Context;
use crate::vector::{HttpStep, Payload, Step, Vector};
use serde_json::{json, Value};
use std::collections::VecDeque;

/// What a client got next.
#[derive(Clone, Debug, PartialEq)]
pub enum Received {
    /// A text frame.
    Text(String),
    /// A binary frame (the protocol never sends one).
    Binary(Vec<u8>),
    /// A WebSocket pong control frame.
    Pong,
    /// The server closed the connection with this code.
    Closed(u16),
    /// Nothing arrived (in time).
    Nothing,
}

/// How long a live transport should wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Something is expected: wait up to the expect timeout.
    ForSomething,
    /// Nothing is expected: wait the short quiet period.
    Quiet,
}

/// A frame a client sends.
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// A text frame (bytes, so engine vectors can send invalid UTF-8).
    Text(Vec<u8>),
    /// A binary frame.
    Binary(Vec<u8>),
    /// A WebSocket ping control frame.
    Ping(Vec<u8>),
}

/// One HTTP request, fully formed.
#[derive(Clone, Debug)]
pub struct HttpCall {
    /// Method.
    pub method: String,
    /// Path without query.
    pub path: String,
    /// Encoded query string without `?`.
    pub query: String,
    /// Raw body.
    pub body: Vec<u8>,
}

/// One HTTP response: status and body (JSON, or the raw text as a JSON string).
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Parsed body.
    pub body: Value,
}

/// One webhook POST the server made.
#[derive(Clone, Debug)]
pub struct WebhookPost {
    /// Headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: Vec<u8>,
}

/// Where vectors are replayed: the engine's simulator or a live server.
pub trait Transport {
    /// Opens a WebSocket connection for `client`, with an `Origin` header when given, over
    /// TLS when `secure`.
    fn connect(
        &mut self,
        client: &str,
        path: &str,
        query: &str,
        origin: Option<&str>,
        secure: bool,
    ) -> Result<(), String>;
    /// Sends a frame from `client`.
    fn send(&mut self, client: &str, frame: Outgoing) -> Result<(), String>;
    /// `client` closes its socket.
    fn disconnect(&mut self, client: &str) -> Result<(), String>;
    /// The next thing `client` received.
    fn receive(&mut self, client: &str, wait: Wait) -> Result<Received, String>;
    /// Lets time pass.
    fn advance(&mut self, seconds: f64) -> Result<(), String>;
    /// The server's wall clock in Unix seconds (for `auth_timestamp`).
    fn unix_secs(&self) -> u64;
    /// Makes an HTTP API request.
    fn http(&mut self, call: &HttpCall) -> Result<HttpAnswer, String>;
    /// Webhook POSTs received since the last call.
    fn webhooks(&mut self, wait: Wait) -> Result<Vec<WebhookPost>, String>;
    /// The shell reports `client` as a slow consumer (engine only).
    fn slow_consumer(&mut self, client: &str) -> Result<(), String>;
}

/// The query string pusher-js 8 connects with.
pub const PUSHER_JS_QUERY: &str = "protocol=7&client=js&version=8.4.0&flash=false";

/// Replays `vector` on `transport`; `Err` names the step and the difference.
pub fn run(
    vector: &Vector,
    transport: &mut dyn Transport,
    ctx: &mut Context,
) -> Result<(), String> {
    let mut interp = Interpreter {
        transport,
        ctx,
        webhook_events: VecDeque::new(),
    };
    for (i, step) in vector.steps.iter().enumerate() {
        interp
            .step(step)
            .map_err(|e| format!("step {} ({}): {e}", i + 1, describe(step)))?;
    }
    Ok(())
}

fn describe(step: &Step) -> String {
    match step {
        Step::Connect { client, .. }
        | Step::Send { client, .. }
        | Step::WsPing { client, .. }
        | Step::Disconnect { client }
        | Step::Expect { client, .. }
        | Step::ExpectPong { client }
        | Step::ExpectClose { client, .. }
        | Step::ExpectNothing { client }
        | Step::SlowConsumer { client } => format!("{} {client}", step.action()),
        Step::Http(h) => format!("http {} {}", h.method, h.path),
        other => other.action().to_owned(),
    }
}

struct Interpreter<'a> {
    transport: &'a mut dyn Transport,
    ctx: &'a mut Context,
    webhook_events: VecDeque<Value>,
}

impl Interpreter<'_> {
    fn step(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Connect {
                client,
                path,
                key,
                query,
                origin,
                established,
                secure,
            } => {
                let key = match key {
                    Some(k) => self.ctx.substitute(k)?,
                    None => self.ctx.app.key.clone(),
                };
                let path = match path {
                    Some(p) => self.ctx.substitute(p)?,
                    None => format!("/app/{key}"),
                };
                let query = match query {
                    Some(q) => self.ctx.substitute(q)?,
                    None => PUSHER_JS_QUERY.to_owned(),
                };
                self.ctx.socket_ids.remove(client);
                let origin = origin
                    .as_deref()
                    .map(|o| self.ctx.substitute(o))
                    .transpose()?;
                self.transport
                    .connect(client, &path, &query, origin.as_deref(), *secure)?;
                if *established {
                    self.established(client)?;
                }
                Ok(())
            }
            Step::Send {
                client,
                payload,
                repeat,
            } => {
                let frame = match payload {
                    Payload::Json(value) => Outgoing::Text(
                        self.ctx
                            .resolve(value, Some(client))?
                            .to_string()
                            .into_bytes(),
                    ),
                    Payload::Text(text) => Outgoing::Text(self.ctx.substitute(text)?.into_bytes()),
                    Payload::TextBytes(bytes) => Outgoing::Text(bytes.clone()),
                    Payload::Binary(bytes) => Outgoing::Binary(bytes.clone()),
                };
                for _ in 0..*repeat {
                    self.transport.send(client, frame.clone())?;
                }
                Ok(())
            }
            Step::WsPing { client, payload } => self
                .transport
                .send(client, Outgoing::Ping(payload.as_bytes().to_vec())),
            Step::Disconnect { client } => self.transport.disconnect(client),
            Step::Expect {
                client,
                message,
                repeat,
            } => {
                for i in 0..*repeat {
                    self.expect_message(client, message).map_err(|e| {
                        if *repeat > 1 {
                            format!("message {} of {repeat}: {e}", i + 1)
                        } else {
                            e
                        }
                    })?;
                }
                Ok(())
            }
            Step::ExpectPong { client } => {
                match self.transport.receive(client, Wait::ForSomething)? {
                    Received::Pong => Ok(()),
                    other => Err(format!(
                        "expected a WebSocket pong frame, got {}",
                        show(&other)
                    )),
                }
            }
            Step::ExpectClose { client, code } => {
                match self.transport.receive(client, Wait::ForSomething)? {
                    Received::Closed(got) if got == *code => Ok(()),
                    Received::Closed(got) => {
                        Err(format!("expected close code {code}, got close code {got}"))
                    }
                    other => Err(format!("expected close code {code}, got {}", show(&other))),
                }
            }
            Step::ExpectNothing { client } => match self.transport.receive(client, Wait::Quiet)? {
                Received::Nothing => Ok(()),
                other => Err(format!("expected nothing, got {}", show(&other))),
            },
            Step::Advance { seconds } => self.transport.advance(*seconds),
            Step::Http(http) => self.http(http),
            Step::ExpectWebhook { events } => self.expect_webhook(events),
            Step::ExpectNoWebhook => {
                self.collect_webhooks(Wait::Quiet)?;
                match self.webhook_events.pop_front() {
                    None => Ok(()),
                    Some(event) => Err(format!("expected no webhook event, got {event}")),
                }
            }
            Step::SlowConsumer { client } => self.transport.slow_consumer(client),
        }
    }

    fn established(&mut self, client: &str) -> Result<(), String> {
        let pattern = json!({
            "event": "pusher:connection_established",
            "data": {"$json": {"socket_id": format!("{{{{socket_id:{client}}}}}"), "activity_timeout": "{{number}}"}}
        });
        let value = self.expect_message(client, &pattern)?;
        let data: Value =
            serde_json::from_str(value["data"].as_str().unwrap_or_default()).unwrap_or_default();
        match data["activity_timeout"].as_f64() {
            Some(t) if t >= 1.0 => Ok(()),
            _ => Err(format!(
                "activity_timeout must be at least 1 (pusher-js refuses less): {value}"
            )),
        }
    }

    fn expect_message(&mut self, client: &str, pattern: &Value) -> Result<Value, String> {
        match self.transport.receive(client, Wait::ForSomething)? {
            Received::Text(text) => {
                let value: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("received text that is not JSON ({e}): {text}"))?;
                matcher::check(pattern, &value, self.ctx)
                    .map_err(|e| format!("{e}\n      expected {pattern}\n      received {text}"))?;
                Ok(value)
            }
            other => Err(format!(
                "expected a message matching {pattern}, got {}",
                show(&other)
            )),
        }
    }

    fn http(&mut self, step: &HttpStep) -> Result<(), String> {
        let call = build_http_call(step, self.ctx, self.transport.unix_secs())?;
        let answer = self.transport.http(&call)?;
        let summary = || {
            format!(
                "{} {}?{} answered {} {}",
                call.method, call.path, call.query, answer.status, answer.body
            )
        };
        if let Some(status) = step.expect_status {
            if answer.status != status {
                return Err(format!("expected status {status}; {}", summary()));
            }
        }
        if let Some(pattern) = &step.expect_body {
            matcher::check(pattern, &answer.body, self.ctx)
                .map_err(|e| format!("response body {e}; {}", summary()))?;
        }
        Ok(())
    }

    fn collect_webhooks(&mut self, wait: Wait) -> Result<bool, String> {
        let posts = self.transport.webhooks(wait)?;
        let got_any = !posts.is_empty();
        for post in posts {
            let events = check_webhook(&post, &self.ctx.app)?;
            self.webhook_events.extend(events);
        }
        Ok(got_any)
    }

    /// The next `patterns.len()` webhook events, in any order (batches need not keep one).
    fn expect_webhook(&mut self, patterns: &[Value]) -> Result<(), String> {
        while self.webhook_events.len() < patterns.len() {
            if !self.collect_webhooks(Wait::ForSomething)? {
                let got: Vec<&Value> = self.webhook_events.iter().collect();
                return Err(format!(
                    "expected {} webhook event(s) matching {}, only these arrived: {got:?}",
                    patterns.len(),
                    Value::Array(patterns.to_vec())
                ));
            }
        }
        let events: Vec<Value> = self.webhook_events.drain(..patterns.len()).collect();
        let pattern = json!({ "$unordered": patterns });
        matcher::check(&pattern, &Value::Array(events.clone()), self.ctx).map_err(|e| {
            format!(
                "webhook events {e}\n      expected (any order) {}\n      received {}",
                Value::Array(patterns.to_vec()),
                Value::Array(events)
            )
        })
    }
}

fn show(received: &Received) -> String {
    match received {
        Received::Text(text) => format!("message {text}"),
        Received::Binary(bytes) => format!("a binary frame of {} bytes", bytes.len()),
        Received::Pong => "a WebSocket pong frame".into(),
        Received::Closed(code) => format!("the connection closed with code {code}"),
        Received::Nothing => "nothing (within the wait)".into(),
    }
}

/// Checks a webhook's key and signature headers and body shape; returns its events.
pub fn check_webhook(post: &WebhookPost, app: &crate::template::App) -> Result<Vec<Value>, String> {
    let header = |name: &str| {
        post.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let body = String::from_utf8_lossy(&post.body);
    if header("X-Pusher-Key") != Some(app.key.as_str()) {
        return Err(format!(
            "webhook X-Pusher-Key is {:?}, expected {:?}; body {body}",
            header("X-Pusher-Key"),
            app.key
        ));
    }
    let expected = sign::hmac_hex(&app.secret, &post.body);
    if header("X-Pusher-Signature") != Some(expected.as_str()) {
        return Err(format!(
            "webhook X-Pusher-Signature is {:?}, expected {expected}; body {body}",
            header("X-Pusher-Signature")
        ));
    }
    let value: Value = serde_json::from_slice(&post.body)
        .map_err(|e| format!("webhook body is not JSON ({e}): {body}"))?;
    if !value["time_ms"].is_u64() {
        return Err(format!("webhook body lacks a numeric time_ms: {body}"));
    }
    match &value["events"] {
        Value::Array(events) if !events.is_empty() => Ok(events.clone()),
        _ => Err(format!(
            "webhook body needs a non-empty events array: {body}"
        )),
    }
}

/// Forms the signed request an HTTP step describes, at wall time `unix_secs`.
pub fn build_http_call(step: &HttpStep, ctx: &Context, unix_secs: u64) -> Result<HttpCall, String> {
    let path = ctx.substitute(&step.path)?;
    let body = match &step.body {
        None => Vec::new(),
        Some(Payload::Json(v)) => ctx.resolve(v, None)?.to_string().into_bytes(),
        Some(Payload::Text(t)) => ctx.substitute(t)?.into_bytes(),
        Some(Payload::TextBytes(b)) | Some(Payload::Binary(b)) => b.clone(),
    };
    let mut params: Vec<(String, String)> = step
        .query
        .iter()
        .map(|(k, v)| Ok((k.clone(), ctx.substitute(v)?)))
        .collect::<Result<_, String>>()?;
    let sign = &step.sign;
    if !sign.unsigned {
        let key = match &sign.key {
            Some(k) => ctx.substitute(k)?,
            None => ctx.app.key.clone(),
        };
        let secret = match &sign.secret {
            Some(s) => ctx.substitute(s)?,
            None => ctx.app.secret.clone(),
        };
        let timestamp = match &sign.timestamp {
            Some(t) => t.clone(),
            None => (unix_secs as i64 + sign.timestamp_offset).to_string(),
        };
        params.push(("auth_key".into(), key));
        params.push(("auth_timestamp".into(), timestamp));
        params.push((
            "auth_version".into(),
            sign.auth_version.clone().unwrap_or_else(|| "1.0".into()),
        ));
        if let Some(md5) = &sign.body_md5 {
            params.push(("body_md5".into(), md5.clone()));
        } else if !body.is_empty() {
            params.push(("body_md5".into(), sign::md5_hex(&body)));
        }
        let method = sign.signed_method.as_deref().unwrap_or(&step.method);
        let signed_path = match &sign.signed_path {
            Some(p) => ctx.substitute(p)?,
            None => path.clone(),
        };
        let mut signature = match &sign.signature {
            Some(s) => s.clone(),
            None => sign::http_signature(&secret, method, &signed_path, &params),
        };
        if sign.uppercase_signature {
            signature = signature.to_uppercase();
        }
        params.push(("auth_signature".into(), signature));
        params.retain(|(k, _)| !sign.drop.contains(k));
    }
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    Ok(HttpCall {
        method: step.method.clone(),
        path,
        query,
        body,
    })
}

/// Percent-encodes everything but unreserved characters, as the Node SDK's query builder does.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
