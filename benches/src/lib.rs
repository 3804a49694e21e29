//! Shared set-up for Ferrocast's benchmarks: engines pre-filled with connections and
//! subscriptions, driven through the engine's own [`Driver`] (no simulator bookkeeping on the
//! measured path: outputs are only counted).

use ferrocast_engine::driver::{Driver, FAKE_EPOCH_UNIX_MS};
use ferrocast_engine::http_auth::signed_query;
use ferrocast_engine::signature::client_auth;
use ferrocast_engine::{Config, ConnId, Engine, HttpRequest, Input, Output, ReqId, WsRequest};

/// An engine on a fake clock that does not advance, for benchmarks.
pub struct Bench {
    driver: Driver,
    next_conn: u64,
}

impl Bench {
    /// An engine serving the default app with generous limits.
    pub fn new() -> Self {
        let mut config = Config::default();
        config.apps[0].max_presence_members = 100_000;
        Bench {
            driver: Driver::new(config, 1),
            next_conn: 1,
        }
    }

    /// The engine under measurement.
    pub fn engine(&self) -> &Engine {
        self.driver.engine()
    }

    /// Feeds one input and drains the outputs, returning how many frame deliveries they carry.
    pub fn feed(&mut self, input: Input) -> usize {
        let mut deliveries = 0;
        self.driver
            .feed(input, |output| match output {
                Output::Send { .. } => deliveries += 1,
                Output::Broadcast { conns, except, .. } => {
                    deliveries += conns.len() - usize::from(except.is_some())
                }
                _ => {}
            })
            .expect("benchmarks use the engine correctly");
        deliveries
    }

    /// Opens a connection and returns it with its socket id.
    pub fn connect(&mut self) -> (ConnId, String) {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let request = WsRequest {
            path: "/app/app-key".into(),
            query: "protocol=7".into(),
            origin: None,
            peer: None,
            secure: false,
        };
        self.feed(Input::Opened { conn, request });
        (
            conn,
            self.engine()
                .socket_id(conn)
                .expect("just opened")
                .to_string(),
        )
    }

    /// A `pusher:subscribe` message for `channel`, signed when the kind needs it.
    pub fn subscribe_message(
        socket_id: &str,
        channel: &str,
        channel_data: Option<&str>,
    ) -> Vec<u8> {
        let message = match channel_data {
            Some(data) => format!("{socket_id}:{channel}:{data}"),
            None => format!("{socket_id}:{channel}"),
        };
        let auth = client_auth("app-key", "app-secret", message.as_bytes());
        let mut body = serde_json::json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}});
        if let Some(data) = channel_data {
            body["data"]["channel_data"] = data.into();
        }
        body.to_string().into_bytes()
    }

    /// Subscribes `conn` to a public channel.
    pub fn subscribe(&mut self, conn: ConnId, socket_id: &str, channel: &str) {
        let text = Self::subscribe_message(socket_id, channel, None);
        self.feed(Input::Text { conn, text });
    }

    /// A signed `POST /apps/app-id/events` for `channel`.
    pub fn publish_request(&self, channel: &str, data: &str) -> HttpRequest {
        let body =
            serde_json::json!({"name": "tick", "channel": channel, "data": data}).to_string();
        let path = "/apps/app-id/events";
        let query = signed_query(
            "app-key",
            "app-secret",
            "POST",
            path,
            &[],
            body.as_bytes(),
            FAKE_EPOCH_UNIX_MS / 1000,
        );
        HttpRequest {
            method: "POST".into(),
            path: path.into(),
            query,
            body: body.into_bytes(),
        }
    }

    /// Publishes through the HTTP API; returns the deliveries.
    pub fn publish(&mut self, request: &HttpRequest) -> usize {
        self.feed(Input::Http {
            req: ReqId(1),
            request: request.clone(),
        })
    }
}

impl Default for Bench {
    fn default() -> Self {
        Self::new()
    }
}
