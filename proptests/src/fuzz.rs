//! Entry points of the fuzz targets, callable on stable so committed corpora replay as tests.
//!
//! Each `fuzz/fuzz_targets/*.rs` is a one-line call into one of these; each panics on a
//! broken invariant (the fuzzer's signal) and returns quietly otherwise.

use crate::harness::{self, Harness};
use crate::ops::*;
use arbitrary::{Arbitrary, Unstructured};
use ferrocast_engine::driver::{Driver, FAKE_EPOCH_UNIX_MS};
use ferrocast_engine::http_auth::signed_query;
use ferrocast_engine::wire::websocket::{Decoder, WsEvent};
use ferrocast_engine::{CloseCode, Config, ConnId, HttpRequest, Input, Output, WsRequest};

/// Most operations one `engine_ops` input may run.
pub const MAX_OPS: usize = 256;

/// `client_message`: `data` as one text message from a connection of [`populated`].
pub fn client_message(data: &[u8]) {
    let mut harness = populated();
    let input = Input::Text {
        conn: ConnId(1),
        text: data.to_vec(),
    };
    if let Err(e) = harness.unchecked_input(input) {
        panic!("{e}");
    }
    if let Err(e) = harness.close_all_unchecked() {
        panic!("{e}");
    }
}

/// `config`: `data` as a TOML configuration; a valid one must also serve a connection.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::from_toml(text) else {
        return;
    };
    assert!(
        config.validate().is_ok(),
        "from_toml accepted what validate refuses"
    );
    let app = config.apps[0].clone();
    let path = format!("{}/app/{}", config.path_prefix, app.key);
    let mut driver = Driver::new(config, 0);
    let request = WsRequest {
        path,
        query: "protocol=7".into(),
        origin: None,
        peer: None,
        secure: false,
    };
    let mut closed = false;
    let opened = Input::Opened {
        conn: ConnId(1),
        request,
    };
    driver
        .feed(opened, |output| match output {
            Output::Send { conn, .. } => assert_eq!(conn, ConnId(1)),
            Output::Close { code, .. } => {
                // Only a disabled app or one with no room may refuse the first connection.
                assert!(
                    code == CloseCode::APP_DISABLED || code == CloseCode::OVER_CONNECTION_QUOTA,
                    "first connection closed with {code}"
                );
                closed = true;
            }
            // A refusal is also said as a log line.
            Output::Notice(_) => {}
            other => panic!("unexpected output to a connect: {other:?}"),
        })
        .expect("a fresh connection is no misuse");
    if !closed {
        driver
            .feed(Input::Closed { conn: ConnId(1) }, |_| {})
            .expect("open");
    }
    assert_eq!(
        driver.engine().state_counts(),
        Default::default(),
        "state left after the only close"
    );
}

/// `engine_ops`: `data` as a seed and a sequence of [`Op`]s, checked against the model.
pub fn engine_ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(seed) = u64::arbitrary(&mut u) else {
        return;
    };
    let ops: Vec<Op> = u
        .arbitrary_iter::<Op>()
        .map(|iter| iter.take(MAX_OPS).map_while(Result::ok).collect())
        .unwrap_or_default();
    if let Err(e) = harness::run(seed, &ops) {
        panic!("{e}\nops: {ops:#?}");
    }
}

/// `app_store`: `data` as a sequence of app-store events (see [`crate::app_store`]), every
/// invariant checked after each.
pub fn app_store(data: &[u8]) {
    let ops = crate::app_store::decode(data);
    if let Err(e) = crate::app_store::run(&ops) {
        panic!("{e}\nops: {ops:#?}");
    }
}

/// The connections every request-level target starts from: two on app A sharing a private
/// and a presence channel, the first signed in with a watchlist.
fn populated() -> Harness {
    let mut harness = Harness::new(1);
    let mut ops = vec![
        Op::Connect {
            target: ConnectPick::AppA,
        },
        Op::Connect {
            target: ConnectPick::AppA,
        },
    ];
    for conn in 0..2 {
        for channel in [
            ChannelPick::Private,
            ChannelPick::Presence,
            ChannelPick::PublicCache,
        ] {
            ops.push(Op::Subscribe {
                conn,
                channel,
                auth: AuthPick::Valid,
                user: conn,
                info: 0,
            });
        }
    }
    ops.push(Op::SignIn {
        conn: 0,
        user: 0,
        auth: SigninAuthPick::Valid,
        watchlist: 0b11,
    });
    for op in &ops {
        harness
            .step(op)
            .unwrap_or_else(|e| panic!("setup {op:?}: {e}"));
    }
    harness
}

/// `ws_frame`: bytes from a client through the WebSocket frame decoder, whole and in pieces.
///
/// The first byte picks the message cap, the second the read sizes and (its top bit) whether
/// permessage-deflate was negotiated; the same events must come out however the bytes are
/// split across reads.
pub fn ws_frame(data: &[u8]) {
    let [cap, split, stream @ ..] = data else {
        return;
    };
    let max_message = 16 + usize::from(*cap) * 4;
    let deflate = *split & 0x80 != 0;
    let new_decoder = || {
        let decoder = Decoder::new(max_message);
        if deflate {
            decoder.with_permessage_deflate()
        } else {
            decoder
        }
    };
    let mut whole = Vec::new();
    let mut decoder = new_decoder();
    decoder.decode(stream, &mut whole);
    let mut pieces = Vec::new();
    let mut chunked = new_decoder();
    let mut rest = stream;
    let mut size = usize::from(*split % 17) + 1;
    while !rest.is_empty() {
        let (now, later) = rest.split_at(size.min(rest.len()));
        chunked.decode(now, &mut pieces);
        rest = later;
        size = size % 17 + 1;
        // A decoder holds one header, one message and one control payload at most.
        assert!(
            chunked.buffered() <= 2 * (max_message + 125 + 14) + 64,
            "decoder holds {} bytes with a cap of {max_message}",
            chunked.buffered()
        );
    }
    assert_eq!(whole, pieces, "splitting the input changed the events");
    assert_eq!(decoder.is_finished(), chunked.is_finished());
    for (i, event) in whole.iter().enumerate() {
        match event {
            WsEvent::Text(text) => assert!(text.len() <= max_message, "text over the cap"),
            WsEvent::Compressed(data) => {
                assert!(deflate, "a compressed message without deflate");
                assert!(data.len() <= max_message, "compressed message over the cap");
            }
            WsEvent::Ping(payload) => assert!(payload.len() <= 125, "ping payload over 125"),
            WsEvent::Close(_) | WsEvent::ProtocolError(_) | WsEvent::InvalidUtf8(_) => {
                assert_eq!(i + 1, whole.len(), "events after the end: {whole:?}");
                assert!(decoder.is_finished());
            }
            _ => {}
        }
    }
}

/// The body of a fuzzed `events` / `batch_events` request, built from arbitrary parts.
#[derive(Debug, Arbitrary)]
struct FuzzEvent {
    name: Option<String>,
    channel: Option<ChannelPick>,
    channels: Option<Vec<ChannelPick>>,
    odd_channel: Option<String>,
    data: Option<String>,
    socket_id: Option<String>,
    info: Option<String>,
}

impl FuzzEvent {
    fn to_json(&self) -> serde_json::Value {
        let mut event = serde_json::Map::new();
        let mut put = |key: &str, value: Option<serde_json::Value>| {
            if let Some(value) = value {
                event.insert(key.into(), value);
            }
        };
        put("name", self.name.clone().map(Into::into));
        let channel = self
            .odd_channel
            .clone()
            .or(self.channel.map(ChannelPick::name));
        put("channel", channel.map(Into::into));
        let channels = self.channels.as_ref();
        put(
            "channels",
            channels.map(|c| c.iter().map(|c| c.name()).collect::<Vec<_>>().into()),
        );
        put("data", self.data.clone().map(Into::into));
        put("socket_id", self.socket_id.clone().map(Into::into));
        put("info", self.info.clone().map(Into::into));
        event.into()
    }
}

/// A request from the backend, as a fuzzer builds it.
#[derive(Debug, Arbitrary)]
#[allow(clippy::large_enum_variant)] // built once per input; boxing buys nothing
enum FuzzRequest {
    /// Raw bytes through the shell's head parser (see [`HeadParser`]), then to the engine.
    Raw(Vec<u8>),
    /// A request to an API route, signed properly or not at all.
    Api {
        method: u8,
        app: u8,
        route: u8,
        odd_route: Option<String>,
        params: Vec<(String, String)>,
        body: FuzzBody,
        signed: bool,
        raw_query: String,
    },
}

#[derive(Debug, Arbitrary)]
enum FuzzBody {
    Event(FuzzEvent),
    Batch(Vec<FuzzEvent>),
    Bytes(Vec<u8>),
}

/// Turns raw request bytes into the request the engine would see, as the shell's HTTP head
/// parser does (`None`: the shell refuses or is still waiting for the head).
pub type HeadParser = fn(&[u8]) -> Option<HttpRequest>;

/// `http_request`: a request through the shell's HTTP framing and the engine's API,
/// signature checks included, against a server with live connections.
///
/// This crate stays independent of the shell, so the shell's head parser comes in as
/// `parse_raw`: the fuzz target passes it; without one, raw-bytes inputs are skipped.
pub fn http_request(data: &[u8], parse_raw: Option<HeadParser>) {
    let Ok(request) = FuzzRequest::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let Some(request) = to_http(request, parse_raw) else {
        return;
    };
    let mut harness = populated();
    if let Err(e) = harness.unchecked_http(request.clone()) {
        panic!("{e}\nrequest: {request:?}");
    }
    if let Err(e) = harness.close_all_unchecked() {
        panic!("{e}\nrequest: {request:?}");
    }
}

fn to_http(request: FuzzRequest, parse_raw: Option<HeadParser>) -> Option<HttpRequest> {
    match request {
        FuzzRequest::Raw(bytes) => parse_raw.and_then(|parse| parse(&bytes)),
        FuzzRequest::Api {
            method,
            app,
            route,
            odd_route,
            params,
            body,
            signed,
            raw_query,
        } => {
            const METHODS: [&str; 4] = ["POST", "GET", "PUT", "DELETE"];
            const ROUTES: [&str; 8] = [
                "events",
                "batch_events",
                "channels",
                "channels/presence-a",
                "channels/presence-a/users",
                "channels/%23server-to-user-u0",
                "users/u0/terminate_connections",
                "users/42/terminate_connections",
            ];
            let config = crate::ops::config();
            let app = &config.apps[usize::from(app) % config.apps.len()];
            let method = METHODS[usize::from(method) % METHODS.len()];
            let route =
                odd_route.unwrap_or_else(|| ROUTES[usize::from(route) % ROUTES.len()].into());
            let path = format!("/apps/{}/{route}", app.id);
            let body = match body {
                FuzzBody::Event(event) => event.to_json().to_string().into_bytes(),
                FuzzBody::Batch(events) => {
                    let batch: Vec<_> = events.iter().map(FuzzEvent::to_json).collect();
                    serde_json::json!({ "batch": batch })
                        .to_string()
                        .into_bytes()
                }
                FuzzBody::Bytes(bytes) => bytes,
            };
            let query = if signed {
                let params: Vec<(&str, &str)> = params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let now = FAKE_EPOCH_UNIX_MS / 1000;
                signed_query(&app.key, &app.secret, method, &path, &params, &body, now)
            } else {
                raw_query
            };
            Some(HttpRequest {
                method: method.into(),
                path,
                query,
                body,
            })
        }
    }
}

/// `bus_message`: bytes arriving from the cluster bus at a node with live subscribers (a
/// public channel and a presence member), then time passing across heartbeats and the node
/// timeout. A peer may send anything: the engine must never panic, must drop what it cannot
/// use (counting it), and must still close cleanly.
pub fn bus_message(data: &[u8]) {
    use ferrocast_engine::sim::Simulator;
    use ferrocast_engine::NodeId;
    use std::time::Duration;

    let mut sim = Simulator::new_node(Config::default(), 7, NodeId(1));
    sim.input(Input::BusUp).expect("bus input");
    let public = sim.connect("app-key");
    sim.send_json(
        public,
        serde_json::json!({"event": "pusher:subscribe", "data": {"channel": "news"}}),
    );
    let member = sim.connect("app-key");
    let channel_data = r#"{"user_id":"u1","user_info":{"name":"Ann"}}"#;
    let auth = sim.presence_auth(member, "presence-room", channel_data);
    sim.send_json(
        member,
        serde_json::json!({"event": "pusher:subscribe", "data": {
            "channel": "presence-room", "auth": auth, "channel_data": channel_data}}),
    );
    // Our own messages echo back first, as the bus would deliver them.
    for echo in sim.take_bus() {
        sim.input(Input::Bus(echo)).expect("bus input");
    }
    // The bytes whole, and again split at every NUL (several messages in one input).
    sim.input(Input::Bus(data.to_vec())).expect("bus input");
    for part in data.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        sim.input(Input::Bus(part.to_vec())).expect("bus input");
    }
    sim.advance(Duration::from_secs(30));
    sim.disconnect(public);
    sim.disconnect(member);
    sim.advance(Duration::from_secs(30));
    let counts = sim.engine().state_counts();
    assert_eq!(
        counts.connections, 0,
        "connections left after every client closed"
    );
}
