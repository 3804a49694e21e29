//! The vector format: files, vectors and steps, parsed strictly so a typo fails loudly.
//!
//! `spec/README.md` documents the format for vector authors; this module is its parser.

use serde_json::{Map, Value};
use std::fs;
use std::path::{Path, PathBuf};

/// One conformance vector: a transcript pinning one rule of the protocol.
#[derive(Clone, Debug)]
pub struct Vector {
    /// Unique id, `group/name`.
    pub id: String,
    /// The rule ids (from `vectors/rules.json`) this vector pins; the first is the main one.
    pub rules: Vec<String>,
    /// What the vector shows, for humans.
    pub description: String,
    /// Free tags; `needs_fake_clock` and `engine_only` change how runners treat it.
    pub tags: Vec<String>,
    /// Config overrides: `{"server": {..}, "app": {..}, "apps": [..]}`.
    pub config: Option<Value>,
    /// Set when the engine is known to break this rule: the reason.
    pub known_failure: Option<String>,
    /// The transcript.
    pub steps: Vec<Step>,
    /// The file it came from.
    pub file: PathBuf,
}

impl Vector {
    /// Whether the vector carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Total seconds of fake time the vector advances.
    pub fn advanced_seconds(&self) -> f64 {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Advance { seconds } => *seconds,
                _ => 0.0,
            })
            .sum()
    }
}

/// What a client sends.
#[derive(Clone, Debug)]
pub enum Payload {
    /// A JSON value (templated), sent as a text frame.
    Json(Value),
    /// Raw text (templated), sent as a text frame.
    Text(String),
    /// Bytes given in hex, sent as a text frame even when not UTF-8 (engine only).
    TextBytes(Vec<u8>),
    /// A binary frame with these bytes.
    Binary(Vec<u8>),
}

/// How an HTTP step signs its request.
#[derive(Clone, Debug, Default)]
pub struct SignSpec {
    /// Send no auth parameters at all.
    pub unsigned: bool,
    /// `auth_key` to send instead of the app's.
    pub key: Option<String>,
    /// Secret to sign with instead of the app's.
    pub secret: Option<String>,
    /// Seconds added to the current wall time for `auth_timestamp`.
    pub timestamp_offset: i64,
    /// A literal `auth_timestamp`.
    pub timestamp: Option<String>,
    /// `auth_version` to send (default `1.0`).
    pub auth_version: Option<String>,
    /// A literal `body_md5` to send instead of the real one.
    pub body_md5: Option<String>,
    /// A literal `auth_signature`.
    pub signature: Option<String>,
    /// Auth parameters to leave out of the request after signing.
    pub drop: Vec<String>,
    /// Send the signature in upper case.
    pub uppercase_signature: bool,
    /// Sign this path instead of the one requested.
    pub signed_path: Option<String>,
    /// Sign this method instead of the one requested.
    pub signed_method: Option<String>,
}

/// One HTTP API request and what it must answer.
#[derive(Clone, Debug)]
pub struct HttpStep {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path (templated).
    pub path: String,
    /// Extra query parameters, signed with the rest.
    pub query: Vec<(String, String)>,
    /// The body: a JSON value (serialized compactly) or raw text.
    pub body: Option<Payload>,
    /// Signing instructions.
    pub sign: SignSpec,
    /// The status the server must answer.
    pub expect_status: Option<u16>,
    /// A pattern the JSON body must match.
    pub expect_body: Option<Value>,
}

/// One step of a transcript.
#[derive(Clone, Debug)]
pub enum Step {
    /// Open a WebSocket; when `established`, the first message must be `connection_established`
    /// and its socket id is remembered under the client's name.
    Connect {
        /// The client's name in this vector.
        client: String,
        /// Request path; defaults to `/app/{key}`.
        path: Option<String>,
        /// App key; defaults to the app's.
        key: Option<String>,
        /// Query string; defaults to what pusher-js sends.
        query: Option<String>,
        /// The `Origin` header to send, as a browser page would; none by default.
        origin: Option<String>,
        /// Whether to consume and check the welcome message.
        established: bool,
        /// Whether the connection is made over TLS (`wss://`); plain by default.
        secure: bool,
    },
    /// Send a frame.
    Send {
        /// The sender.
        client: String,
        /// What to send.
        payload: Payload,
        /// Send it this many times.
        repeat: u32,
    },
    /// Send a WebSocket ping control frame.
    WsPing {
        /// The sender.
        client: String,
        /// The ping payload.
        payload: String,
    },
    /// The client closes its socket.
    Disconnect {
        /// The client.
        client: String,
    },
    /// The next message the client receives must match `message`.
    Expect {
        /// The receiver.
        client: String,
        /// The pattern (see the matcher).
        message: Value,
        /// Expect it this many times in a row.
        repeat: u32,
    },
    /// The next thing the client receives must be a WebSocket pong frame.
    ExpectPong {
        /// The receiver.
        client: String,
    },
    /// The server must close the client's connection with `code`, with nothing before it.
    ExpectClose {
        /// The receiver.
        client: String,
        /// The close code.
        code: u16,
    },
    /// The client must receive nothing (live runners wait a short quiet period).
    ExpectNothing {
        /// The receiver.
        client: String,
    },
    /// Let seconds of (fake) time pass.
    Advance {
        /// How long.
        seconds: f64,
    },
    /// An HTTP API call.
    Http(Box<HttpStep>),
    /// The next webhook events must match these patterns, in order.
    ExpectWebhook {
        /// One pattern per event.
        events: Vec<Value>,
    },
    /// No webhook event may be pending.
    ExpectNoWebhook,
    /// Engine only: the shell reports the connection's output buffer overflowed.
    SlowConsumer {
        /// The slow client.
        client: String,
    },
}

impl Step {
    /// The step's action word, for messages.
    pub fn action(&self) -> &'static str {
        match self {
            Step::Connect { .. } => "connect",
            Step::Send { .. } => "send",
            Step::WsPing { .. } => "ws_ping",
            Step::Disconnect { .. } => "disconnect",
            Step::Expect { .. } => "expect",
            Step::ExpectPong { .. } => "expect_pong",
            Step::ExpectClose { .. } => "expect_close",
            Step::ExpectNothing { .. } => "expect_nothing",
            Step::Advance { .. } => "advance",
            Step::Http(_) => "http",
            Step::ExpectWebhook { .. } => "expect_webhook",
            Step::ExpectNoWebhook => "expect_no_webhook",
            Step::SlowConsumer { .. } => "slow_consumer",
        }
    }
}

/// Loads every vector under `dir/<group>/*.json`, sorted by path, checking ids are unique.
pub fn load_dir(dir: &Path) -> Result<Vec<Vector>, String> {
    let mut files = Vec::new();
    let groups = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for group in groups {
        let group = group.map_err(|e| e.to_string())?.path();
        if !group.is_dir() {
            continue;
        }
        for file in fs::read_dir(&group).map_err(|e| format!("{}: {e}", group.display()))? {
            let file = file.map_err(|e| e.to_string())?.path();
            if file.extension().is_some_and(|e| e == "json") {
                files.push(file);
            }
        }
    }
    files.sort();
    let mut vectors = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let parsed = parse_file(&text, &file).map_err(|e| format!("{}: {e}", file.display()))?;
        vectors.extend(parsed);
    }
    let mut ids: Vec<&str> = vectors.iter().map(|v| v.id.as_str()).collect();
    ids.sort_unstable();
    if let Some(dup) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("vector id {:?} is used twice", dup[0]));
    }
    Ok(vectors)
}

/// Parses one file: a vector object, or `{"vectors": [..]}`.
pub fn parse_file(text: &str, file: &Path) -> Result<Vec<Vector>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let group = file
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let list = match value.get("vectors") {
        Some(Value::Array(list)) => list.clone(),
        Some(_) => return Err("\"vectors\" must be an array".into()),
        None => vec![value],
    };
    list.iter()
        .map(|v| {
            let vector = parse_vector(v, file)?;
            if !vector.id.starts_with(&format!("{group}/")) {
                return Err(format!(
                    "vector id {:?} must start with its group {group:?}/",
                    vector.id
                ));
            }
            Ok(vector)
        })
        .collect()
}

fn parse_vector(value: &Value, file: &Path) -> Result<Vector, String> {
    let obj = value.as_object().ok_or("a vector must be an object")?;
    let mut fields = Fields::new(obj, "vector");
    let id = fields.string("id")?.ok_or("vector without an id")?;
    let at = |e: String| format!("vector {id}: {e}");
    let rules = match fields.take("rule") {
        Some(Value::String(rule)) => vec![rule],
        Some(Value::Array(rules)) => rules
            .into_iter()
            .map(|r| r.as_str().map(str::to_owned).ok_or("rule ids are strings"))
            .collect::<Result<_, _>>()
            .map_err(|e| at(e.into()))?,
        _ => return Err(at("needs \"rule\": a rule id or a list of them".into())),
    };
    let description = fields
        .string("description")
        .map_err(at)?
        .unwrap_or_default();
    let tags = match fields.take("tags") {
        None => Vec::new(),
        Some(Value::Array(tags)) => tags
            .into_iter()
            .map(|t| t.as_str().map(str::to_owned).ok_or("tags are strings"))
            .collect::<Result<_, _>>()
            .map_err(|e| at(e.into()))?,
        Some(_) => return Err(at("\"tags\" must be an array".into())),
    };
    let config = fields.take("config");
    let known_failure = fields.string("known_failure").map_err(at)?;
    let steps = match fields.take("steps") {
        Some(Value::Array(steps)) => steps
            .iter()
            .enumerate()
            .map(|(i, s)| parse_step(s).map_err(|e| at(format!("step {}: {e}", i + 1))))
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err(at("needs \"steps\": an array".into())),
    };
    fields.finish().map_err(at)?;
    Ok(Vector {
        id,
        rules,
        description,
        tags,
        config,
        known_failure,
        steps,
        file: file.to_owned(),
    })
}

const ACTIONS: &[&str] = &[
    "connect",
    "send",
    "ws_ping",
    "disconnect",
    "expect",
    "expect_pong",
    "expect_close",
    "expect_nothing",
    "advance",
    "http",
    "expect_webhook",
    "expect_no_webhook",
    "slow_consumer",
];

fn parse_step(value: &Value) -> Result<Step, String> {
    let obj = value.as_object().ok_or("a step must be an object")?;
    let actions: Vec<&str> = ACTIONS
        .iter()
        .copied()
        .filter(|a| obj.contains_key(*a))
        .collect();
    let [action] = actions[..] else {
        return Err(format!(
            "a step needs exactly one action key among {ACTIONS:?}, found {actions:?}"
        ));
    };
    let mut f = Fields::new(obj, action);
    let step = match action {
        "connect" => Step::Connect {
            client: f.required_string("connect")?,
            path: f.string("path")?,
            key: f.string("key")?,
            query: f.string("query")?,
            origin: f.string("origin")?,
            established: f.bool("established")?.unwrap_or(true),
            secure: f.bool("secure")?.unwrap_or(false),
        },
        "send" => Step::Send {
            client: f.required_string("send")?,
            payload: f
                .payload()?
                .ok_or("send needs json, text, text_hex or binary")?,
            repeat: f.u64("repeat")?.unwrap_or(1) as u32,
        },
        "ws_ping" => Step::WsPing {
            client: f.required_string("ws_ping")?,
            payload: f.string("payload")?.unwrap_or_default(),
        },
        "disconnect" => Step::Disconnect {
            client: f.required_string("disconnect")?,
        },
        "expect" => Step::Expect {
            client: f.required_string("expect")?,
            message: f.take("message").ok_or("expect needs \"message\"")?,
            repeat: f.u64("repeat")?.unwrap_or(1) as u32,
        },
        "expect_pong" => Step::ExpectPong {
            client: f.required_string("expect_pong")?,
        },
        "expect_close" => Step::ExpectClose {
            client: f.required_string("expect_close")?,
            code: f.u64("code")?.ok_or("expect_close needs \"code\"")? as u16,
        },
        "expect_nothing" => Step::ExpectNothing {
            client: f.required_string("expect_nothing")?,
        },
        "advance" => Step::Advance {
            seconds: f
                .take("advance")
                .and_then(|v| v.as_f64())
                .filter(|s| *s >= 0.0)
                .ok_or("advance takes a number of seconds")?,
        },
        "http" => Step::Http(Box::new(parse_http(&mut f)?)),
        "expect_webhook" => match f.take("expect_webhook") {
            Some(Value::Array(events)) => Step::ExpectWebhook { events },
            Some(event @ Value::Object(_)) => Step::ExpectWebhook {
                events: vec![event],
            },
            _ => return Err("expect_webhook takes an event pattern or a list of them".into()),
        },
        "expect_no_webhook" => {
            f.take("expect_no_webhook");
            Step::ExpectNoWebhook
        }
        "slow_consumer" => Step::SlowConsumer {
            client: f.required_string("slow_consumer")?,
        },
        _ => unreachable!("listed in ACTIONS"),
    };
    f.finish()?;
    Ok(step)
}

fn parse_http(f: &mut Fields) -> Result<HttpStep, String> {
    let method = f.required_string("http")?.to_uppercase();
    let path = f.required_string("path")?;
    let query = match f.take("query") {
        None => Vec::new(),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => Ok((k, other.to_string())),
            })
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("query must be an object of strings".into()),
    };
    let body = match (f.take("body"), f.string("body_text")?) {
        (Some(_), Some(_)) => return Err("give body or body_text, not both".into()),
        (Some(json), None) => Some(Payload::Json(json)),
        (None, Some(text)) => Some(Payload::Text(text)),
        (None, None) => None,
    };
    let sign = match f.take("sign") {
        None => SignSpec::default(),
        Some(Value::Bool(false)) => SignSpec {
            unsigned: true,
            ..SignSpec::default()
        },
        Some(Value::Object(map)) => parse_sign(&map)?,
        Some(_) => return Err("sign takes false or an object".into()),
    };
    Ok(HttpStep {
        method,
        path,
        query,
        body,
        sign,
        expect_status: f.u64("status")?.map(|s| s as u16),
        expect_body: f.take("response"),
    })
}

fn parse_sign(map: &Map<String, Value>) -> Result<SignSpec, String> {
    let mut f = Fields::new(map, "sign");
    let spec = SignSpec {
        unsigned: false,
        key: f.string("key")?,
        secret: f.string("secret")?,
        timestamp_offset: f.take("timestamp_offset").map_or(Ok(0), |v| {
            v.as_i64().ok_or("timestamp_offset is an integer")
        })?,
        timestamp: f.string("timestamp")?,
        auth_version: f.string("auth_version")?,
        body_md5: f.string("body_md5")?,
        signature: f.string("signature")?,
        drop: match f.take("drop") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or("drop lists names"))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err("drop lists parameter names".into()),
        },
        uppercase_signature: f.bool("uppercase_signature")?.unwrap_or(false),
        signed_path: f.string("signed_path")?,
        signed_method: f.string("signed_method")?,
    };
    f.finish()?;
    Ok(spec)
}

/// Takes fields out of an object one by one, then refuses whatever is left.
struct Fields {
    map: Map<String, Value>,
    what: &'static str,
}

impl Fields {
    fn new(map: &Map<String, Value>, what: &'static str) -> Self {
        Fields {
            map: map.clone(),
            what,
        }
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    fn string(&mut self, key: &str) -> Result<Option<String>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{key} must be a string, not {other}")),
        }
    }

    fn required_string(&mut self, key: &str) -> Result<String, String> {
        self.string(key)?
            .ok_or_else(|| format!("{key} is required"))
    }

    fn bool(&mut self, key: &str) -> Result<Option<bool>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => Err(format!("{key} must be true or false, not {other}")),
        }
    }

    fn u64(&mut self, key: &str) -> Result<Option<u64>, String> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("{key} must be a non-negative integer, not {v}")),
        }
    }

    fn payload(&mut self) -> Result<Option<Payload>, String> {
        let mut found = Vec::new();
        if let Some(json) = self.take("json") {
            found.push(Payload::Json(json));
        }
        if let Some(text) = self.string("text")? {
            found.push(Payload::Text(text));
        }
        if let Some(hex) = self.string("text_hex")? {
            found.push(Payload::TextBytes(unhex(&hex)?));
        }
        if let Some(bin) = self.string("binary")? {
            found.push(Payload::Binary(bin.into_bytes()));
        }
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err("give only one of json, text, text_hex, binary".into()),
        }
    }

    fn finish(self) -> Result<(), String> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(_) => Err(format!(
                "unknown field(s) {:?} in {}",
                self.map.keys().collect::<Vec<_>>(),
                self.what
            )),
        }
    }
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if text.len() & 1 == 1 {
        return Err("text_hex has an odd length".into());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}
