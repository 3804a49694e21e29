//! The HTTP API: routing, request signatures, app checks and rate limits.
//!
//! Every answer is a real status code with a JSON body; errors are `{"error": "..."}`.

use super::app_lookup::{NotFound, Waiter};
use super::Engine;
use crate::http_auth::{self, percent_decode, Query};
use crate::http_response;
use crate::ids::{AppId, ReqId};
use crate::interface::{AppLookup, HttpRequest, Output};
use serde_json::{json, Value};

/// An HTTP answer other than success.
#[derive(Debug)]
pub(super) struct HttpError {
    pub status: u16,
    pub message: String,
}

impl HttpError {
    pub(super) fn new(status: u16, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
        }
    }

    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
}

/// What an API route does, once the request is signed and allowed.
enum Route {
    Publish,
    PublishBatch,
    ListChannels,
    ChannelInfo(String),
    ChannelUsers(String),
    TerminateUser(String),
}

impl Route {
    /// Whether it publishes (counted against the event rate) rather than reads.
    fn is_publish(&self) -> bool {
        matches!(self, Route::Publish | Route::PublishBatch)
    }
}

impl Engine {
    /// A publish from the admin console: the HTTP API's publish without its signature check
    /// (the admin listener checked its token), answered the same way.
    pub(super) fn admin_publish(&mut self, req: ReqId, app: &str, body: &[u8]) {
        let answer = self
            .app_by_id(app)
            .and_then(|app| self.http_publish(&app, body));
        let (status, body) = match answer {
            Ok(body) => (200, body.to_string().into_bytes()),
            Err(error) => {
                self.notice(
                    None,
                    format!(
                        "console publish to app {app:?} answered {}: {}",
                        error.status, error.message
                    ),
                );
                (error.status, http_response::error_body(&error.message))
            }
        };
        self.outputs
            .push_back(Output::HttpResponse { req, status, body });
    }

    pub(super) fn on_http(&mut self, req: ReqId, request: &HttpRequest) {
        if let Some(lookup) = self.http_lookup(request) {
            if self.should_look_up(&lookup).is_ok() {
                let waiter = Waiter::Request(req, request.clone());
                return self.wait_for_app(lookup, waiter);
            }
        }
        self.answer_now(req, request);
    }

    /// Answers a request that waited for its app's lookup: as usual if the app is known now
    /// or the store does not have it (404), with 503 if the store could not say.
    pub(super) fn answer_after_lookup(&mut self, req: ReqId, request: &HttpRequest, why: NotFound) {
        if why != NotFound::Missing && self.http_lookup(request).is_some() {
            return self.refuse_request(req, request, why);
        }
        self.answer_now(req, request);
    }

    /// The lookup an API request needs before it can be answered: the app it names is
    /// unknown here.
    fn http_lookup(&self, request: &HttpRequest) -> Option<AppLookup> {
        if !self.config.app_store.lookups {
            return None;
        }
        let mut segments = request.path.trim_matches('/').split('/');
        match (segments.next(), segments.next()) {
            (Some("apps"), Some(id)) if !id.is_empty() => {
                let id = percent_decode(id);
                (!self.apps.contains_key(id.as_str())).then_some(AppLookup::Id(id))
            }
            (Some("users"), _) => Query::parse(&request.query)
                .get("auth_key")
                .filter(|key| !self.app_by_key.contains_key(*key))
                .map(|key| AppLookup::Key(key.to_owned())),
            _ => None,
        }
    }

    fn answer_now(&mut self, req: ReqId, request: &HttpRequest) {
        let (status, body) = match self.answer_http(request) {
            Ok(body) => (200, answer_bytes(&body)),
            Err(error) => {
                if self.watching() {
                    if let Some(app) = self.http_app(request) {
                        let detail = super::debug::Detail {
                            data: Some(format!(
                                "HTTP {} {} answered {}: {}",
                                request.method, request.path, error.status, error.message
                            )),
                            ..Default::default()
                        };
                        self.debug(&app, super::DebugKind::Error, detail);
                    }
                }
                self.notice(
                    None,
                    format!(
                        "HTTP {} {} answered {}: {}",
                        request.method, request.path, error.status, error.message
                    ),
                );
                (error.status, http_response::error_body(&error.message))
            }
        };
        // Counted for the app the path names, known or not (an unknown id names no app).
        if let Some(app) = self.http_app(request) {
            if let Some(counters) = self.counters_of_app(&app) {
                counters.http_calls += 1;
                counters.http_bytes_received += request.body.len() as u64;
                counters.http_bytes_sent += body.len() as u64;
            }
        }
        self.outputs
            .push_back(Output::HttpResponse { req, status, body });
    }

    /// The app an API request is addressed to, as [`Engine::answer_http`] finds it.
    fn http_app(&self, request: &HttpRequest) -> Option<AppId> {
        let mut segments = request.path.trim_matches('/').split('/');
        match (segments.next(), segments.next()) {
            (Some("apps"), Some(id)) => self.app_by_id(id).ok(),
            (Some("users"), _) => Query::parse(&request.query)
                .get("auth_key")
                .and_then(|key| self.app_by_key.get(key))
                .cloned(),
            _ => None,
        }
    }

    fn answer_http(&mut self, request: &HttpRequest) -> Result<Value, HttpError> {
        let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        // HEAD asks what GET would answer; the shell leaves the body out.
        let method = match request.method.as_str() {
            "HEAD" => "GET",
            other => other,
        };
        match (method, segments.as_slice()) {
            ("GET", [""]) | ("GET", ["up"]) => Ok(json!({ "ok": true })),
            ("GET", ["up", id]) => self.app_health(id),
            ("GET", ["ready"]) if self.shutting_down => {
                Err(HttpError::new(503, "shutting down: connect elsewhere"))
            }
            ("GET", ["ready"]) => Ok(json!({ "ok": true })),
            ("GET", _) if self.is_websocket_path(&request.path) => Err(HttpError::new(
                426,
                "this is the WebSocket endpoint: connect with a WebSocket upgrade \
                 (Connection: Upgrade, Upgrade: websocket)",
            )),
            (_, ["apps", id, rest @ ..]) => {
                let app = self.app_by_id(id)?;
                self.serve_api(&app, route(&request.method, rest)?, request)
            }
            // The Python SDK (3.x) leaves out `/apps/{id}` here; its `auth_key` names the app.
            (_, ["users", ..]) => {
                let route = route(&request.method, &segments)?;
                let key = Query::parse(&request.query)
                    .get("auth_key")
                    .map(str::to_owned);
                let app = key
                    .as_deref()
                    .and_then(|key| self.app_by_key.get(key))
                    .cloned()
                    .ok_or_else(|| HttpError::new(401, "auth_key names no app"))?;
                self.serve_api(&app, route, request)
            }
            _ => Err(HttpError::new(
                404,
                format!("no such endpoint: {} {}", request.method, request.path),
            )),
        }
    }

    /// Signature, app state and rate checks, then the endpoint itself.
    fn serve_api(
        &mut self,
        app: &AppId,
        route: Route,
        request: &HttpRequest,
    ) -> Result<Value, HttpError> {
        // Parsed once: the signature check and the endpoints read the same parameters.
        let query = Query::parse(&request.query);
        self.authorize_http(app, request, &query)?;
        if !route.is_publish() {
            self.charge_rate(app, false, 1)?;
        }
        match route {
            Route::Publish => self.http_publish(app, &request.body),
            Route::PublishBatch => self.http_publish_batch(app, &request.body),
            Route::ListChannels => self.http_list_channels(app, &query),
            Route::ChannelInfo(channel) => self.http_channel_info(app, &channel, &query),
            Route::ChannelUsers(channel) => self.http_channel_users(app, &channel),
            Route::TerminateUser(user) => self.http_terminate_user(app, &user),
        }
    }

    /// Whether `path` is where clients connect: `{path_prefix}/app/{key}`.
    fn is_websocket_path(&self, path: &str) -> bool {
        path.strip_prefix(self.config.path_prefix.as_str())
            .and_then(|rest| rest.strip_prefix("/app/"))
            .is_some_and(|key| !key.is_empty() && !key.contains('/'))
    }

    fn app_health(&self, id: &str) -> Result<Value, HttpError> {
        let app = self.app_by_id(id)?;
        if self.apps[&app].config.enabled {
            Ok(json!({ "ok": true }))
        } else {
            Err(HttpError::new(503, format!("app {id} is disabled")))
        }
    }

    fn app_by_id(&self, id: &str) -> Result<AppId, HttpError> {
        let id = percent_decode(id);
        self.apps
            .get_key_value(id.as_str())
            .map(|(id, _)| id.clone())
            .ok_or_else(|| HttpError::new(404, format!("app {id} not found")))
    }

    /// Signature (401), app enabled (403), then the per-app rate limits (429).
    fn authorize_http(
        &mut self,
        app: &AppId,
        request: &HttpRequest,
        query: &Query<'_>,
    ) -> Result<(), HttpError> {
        let key = query
            .get("auth_key")
            .ok_or_else(|| HttpError::new(401, "missing auth_key query parameter"))?;
        let state = &self.apps[app];
        let config = &state.config;
        if key != config.key {
            return Err(HttpError::new(
                401,
                format!("auth_key {key:?} is not the key of app {}", config.id),
            ));
        }
        let now_secs = self.moment().unix_ms / 1000;
        http_auth::verify_request_with(
            &state.signer,
            &request.method,
            &request.path,
            query,
            &request.body,
            now_secs,
        )
        .map_err(|e| HttpError::new(401, e.to_string()))?;
        if !config.enabled {
            return Err(HttpError::new(
                403,
                format!("app {} is disabled", config.id),
            ));
        }
        Ok(())
    }

    /// Takes `cost` from the app's event or read allowance, or answers 429.
    pub(super) fn charge_rate(
        &mut self,
        app: &AppId,
        publish: bool,
        cost: u32,
    ) -> Result<(), HttpError> {
        let now = self.moment().now;
        let state = self.app_mut(app);
        let (limit, bucket, what) = if publish {
            (
                state.config.max_events_per_sec,
                &mut state.http_event_bucket,
                "events",
            )
        } else {
            (
                state.config.max_reads_per_sec,
                &mut state.http_read_bucket,
                "read requests",
            )
        };
        let Some(rate) = limit else { return Ok(()) };
        let bucket =
            bucket.get_or_insert_with(|| crate::token_bucket::TokenBucket::new(rate, rate, now));
        if bucket.try_take_n(cost, now) {
            Ok(())
        } else {
            Err(HttpError::new(
                429,
                format!("app is over its limit of {rate} {what} per second"),
            ))
        }
    }
}

/// The bytes of a success answer; the empty object (every plain publish's) without running
/// the serializer.
fn answer_bytes(body: &Value) -> Vec<u8> {
    match body {
        Value::Object(map) if map.is_empty() => b"{}".to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// Matches the part of the path after `/apps/{id}/`.
fn route(method: &str, rest: &[&str]) -> Result<Route, HttpError> {
    let route = match rest {
        ["events"] => Route::Publish,
        ["batch_events"] => Route::PublishBatch,
        ["channels"] => Route::ListChannels,
        ["channels", channel] => Route::ChannelInfo(percent_decode(channel)),
        ["channels", channel, "users"] => Route::ChannelUsers(percent_decode(channel)),
        ["users", user, "terminate_connections"] => Route::TerminateUser(percent_decode(user)),
        _ => {
            return Err(HttpError::new(
                404,
                format!("no such endpoint: /apps/{{id}}/{}", rest.join("/")),
            ))
        }
    };
    let expected = if route.is_publish() || matches!(route, Route::TerminateUser(_)) {
        "POST"
    } else {
        "GET"
    };
    if method != expected {
        return Err(HttpError::new(
            405,
            format!("use {expected} for this endpoint"),
        ));
    }
    Ok(route)
}
