//! The operations a test or fuzz case applies, and the small fixed world they act in.
//!
//! Every field is a small pick (an index or an enum) resolved against the live state when the
//! operation runs, so any sequence is meaningful: a connection index wraps around the live
//! connections, a user index wraps around [`USERS`].

use arbitrary::Arbitrary;
use ferrocast_engine::{AppConfig, Config};

/// Seconds of silence before the server pings (small, so timers fire in short runs).
pub const ACTIVITY_TIMEOUT_SECS: u64 = 10;
/// Seconds a pinged connection has to show activity before 4201.
pub const PONG_TIMEOUT_SECS: u64 = 3;
/// Seconds an app-B connection has to sign in before 4009.
pub const SIGNIN_TIMEOUT_SECS: u64 = 7;
/// Client events a connection may send at one instant (the bucket refills fully each second).
pub const CLIENT_EVENT_BURST: u32 = 10;
/// Members a presence channel of app A holds.
pub const APP_A_MAX_MEMBERS: usize = 3;
/// The one origin whose pages may connect to app B (server-side clients with none may too).
pub const APP_B_ORIGIN: &str = "https://b.example.com";
/// Connections app B accepts at once.
pub const APP_B_MAX_CONNECTIONS: usize = 3;
/// Largest message either app accepts.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Seconds a cache channel remembers its last event.
pub const CACHE_TTL_SECS: u64 = 20;
/// Most live connections the harness keeps; further connects are skipped.
pub const MAX_LIVE: usize = 10;

/// User ids; the last one travels as a JSON number and must come back as the string `"42"`.
pub const USERS: [&str; 4] = ["u0", "u1", "u2", "42"];

/// The two apps: A is permissive, B requires sign-in, forbids client events and lists the
/// origins its pages may connect from.
pub fn config() -> &'static Config {
    static CONFIG: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
    CONFIG.get_or_init(build_config)
}

fn build_config() -> Config {
    let base = AppConfig {
        max_message_bytes: MAX_MESSAGE_BYTES,
        client_event_rate_per_sec: CLIENT_EVENT_BURST,
        client_event_burst: CLIENT_EVENT_BURST,
        cache_ttl_secs: CACHE_TTL_SECS,
        ..AppConfig::default()
    };
    Config {
        path_prefix: String::new(),
        activity_timeout_secs: ACTIVITY_TIMEOUT_SECS,
        pong_timeout_secs: PONG_TIMEOUT_SECS,
        apps: vec![
            AppConfig {
                id: "1".into(),
                key: "key-a".into(),
                secret: "secret-a".into(),
                client_events: true,
                max_presence_members: APP_A_MAX_MEMBERS,
                ..base.clone()
            },
            AppConfig {
                id: "2".into(),
                key: "key-b".into(),
                secret: "secret-b".into(),
                client_events: false,
                user_auth_required: true,
                user_auth_timeout_secs: SIGNIN_TIMEOUT_SECS,
                max_connections: Some(APP_B_MAX_CONNECTIONS as u32),
                allowed_origins: vec![APP_B_ORIGIN.into()],
                ..base
            },
        ],
        ..Config::default()
    }
}

/// One step of a scenario.
#[derive(Clone, Debug, PartialEq, Eq, Arbitrary)]
pub enum Op {
    /// Open a WebSocket connection.
    Connect {
        /// Which app (or none) and which protocol version.
        target: ConnectPick,
    },
    /// `pusher:subscribe`.
    Subscribe {
        /// Index into the live connections.
        conn: u8,
        /// The channel.
        channel: ChannelPick,
        /// How the `auth` field is made.
        auth: AuthPick,
        /// Index into [`USERS`] for presence `channel_data`.
        user: u8,
        /// Varies the presence `user_info`.
        info: u8,
    },
    /// `pusher:unsubscribe`.
    Unsubscribe {
        /// Index into the live connections.
        conn: u8,
        /// The channel.
        channel: ChannelPick,
    },
    /// `client-*` events, `repeat` of them at the same instant (to go over the rate).
    ClientEvent {
        /// Index into the live connections.
        conn: u8,
        /// The channel.
        channel: ChannelPick,
        /// The event name.
        name: EventPick,
        /// The payload's shape.
        data: DataPick,
        /// How many to send at once (at least one).
        repeat: u8,
    },
    /// `pusher:signin`.
    SignIn {
        /// Index into the live connections.
        conn: u8,
        /// Index into [`USERS`].
        user: u8,
        /// Whether the signature is right.
        auth: SigninAuthPick,
        /// Bit `i` puts `USERS[i]` on the watchlist.
        watchlist: u8,
    },
    /// A liveness probe from the client.
    Ping {
        /// Index into the live connections.
        conn: u8,
        /// Which kind.
        kind: PingPick,
    },
    /// A message the server must refuse without closing.
    Junk {
        /// Index into the live connections.
        conn: u8,
        /// Which kind.
        kind: JunkPick,
    },
    /// The connection ends, one way or another.
    Disconnect {
        /// Index into the live connections.
        conn: u8,
        /// How.
        how: DisconnectPick,
    },
    /// `POST /apps/{id}/events` (or `batch_events`, one item per channel) from the backend.
    Publish {
        /// Index of the app (wraps around the two).
        app: u8,
        /// The channels (duplicates dropped; none is a bad request).
        channels: Vec<ChannelPick>,
        /// The `socket_id` to leave out.
        exclude: ExcludePick,
        /// Whether to use `batch_events`.
        batch: bool,
        /// Whether to ask for `info=user_count,subscription_count`.
        info: bool,
        /// The `data`.
        data: HttpDataPick,
        /// How the request is signed.
        signature: SignaturePick,
    },
    /// A read-only HTTP API query.
    Query {
        /// Index of the app (wraps around the two).
        app: u8,
        /// Which query.
        query: QueryPick,
        /// How the request is signed.
        signature: SignaturePick,
    },
    /// `POST /apps/{id}/users/{user}/terminate_connections`.
    Terminate {
        /// Index of the app (wraps around the two).
        app: u8,
        /// Index into [`USERS`].
        user: u8,
    },
    /// Time passes; every timer due on the way fires at its own instant.
    Advance {
        /// Whole seconds (0 is taken as 1).
        secs: u8,
    },
}

/// Where a connection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum ConnectPick {
    /// App A, protocol 7.
    AppA,
    /// App B (sign-in required, connection quota), protocol 7, from a page of its origin.
    AppB,
    /// App B from a server-side client: no `Origin`, admitted.
    AppBServerSide,
    /// App B from another site's page: 4009.
    AppBForeignOrigin,
    /// An unknown key: 4001.
    UnknownKey,
    /// App A with `protocol=8`: 4007.
    UnsupportedProtocol,
    /// App A with no `protocol` parameter: accepted as 7.
    NoProtocol,
}

/// A channel from a small pool, so connections meet on the same ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum ChannelPick {
    /// `news`.
    Public,
    /// `cache-news`.
    PublicCache,
    /// `private-a`.
    Private,
    /// `private-cache-a`.
    PrivateCache,
    /// `private-encrypted-a`.
    Encrypted,
    /// `presence-a`.
    Presence,
    /// `presence-cache-a`.
    PresenceCache,
    /// `#server-to-user-{USERS[user]}`.
    ServerToUser {
        /// Index into [`USERS`].
        user: u8,
    },
    /// `bad name!`, which no channel may be called.
    Invalid,
}

impl ChannelPick {
    /// The channel name sent on the wire.
    pub fn name(self) -> String {
        match self {
            ChannelPick::Public => "news".into(),
            ChannelPick::PublicCache => "cache-news".into(),
            ChannelPick::Private => "private-a".into(),
            ChannelPick::PrivateCache => "private-cache-a".into(),
            ChannelPick::Encrypted => "private-encrypted-a".into(),
            ChannelPick::Presence => "presence-a".into(),
            ChannelPick::PresenceCache => "presence-cache-a".into(),
            ChannelPick::ServerToUser { user } => format!("#server-to-user-{}", user_id(user)),
            ChannelPick::Invalid => "bad name!".into(),
        }
    }
}

/// How a subscription's `auth` is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum AuthPick {
    /// Signed correctly for this socket (presence: with `channel_data`).
    Valid,
    /// Signed with a wrong secret.
    WrongSecret,
    /// Signed for another connection's socket id.
    OtherSocket,
    /// No `auth` field.
    Missing,
    /// Presence: a valid signature but no `channel_data` field.
    NoChannelData,
}

/// A client event's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum EventPick {
    /// `client-msg`.
    Valid,
    /// `client-` and 200 more characters: over the name limit.
    TooLong,
    /// A name without the `client-` prefix.
    NotClient,
}

/// A client event's `data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum DataPick {
    /// A JSON object (relayed as its JSON text in a string).
    Object,
    /// A JSON string (relayed as is).
    Text,
    /// No `data` field.
    Missing,
}

/// A sign-in's signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum SigninAuthPick {
    /// Signed correctly.
    Valid,
    /// Signed with a wrong secret.
    WrongSecret,
    /// Signed for another connection's socket id.
    OtherSocket,
}

/// A liveness probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum PingPick {
    /// The `pusher:ping` event: answered with `pusher:pong`.
    Event,
    /// The `pusher:pong` event: activity, no answer.
    PongEvent,
    /// A WebSocket ping frame: the shell answers it; activity to the engine.
    Frame,
    /// A WebSocket pong frame: activity, no answer.
    PongFrame,
}

/// A message refused with a `pusher:error` (no code), the connection kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum JunkPick {
    /// `{` — not JSON.
    NotJson,
    /// `{"event":1}` — JSON of the wrong shape.
    WrongShape,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// An unknown `pusher:` event.
    UnknownEvent,
    /// `pusher:subscribe` without data.
    SubscribeWithoutData,
    /// A binary message.
    Binary,
}

/// How a connection ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum DisconnectPick {
    /// The client closes the socket.
    Client,
    /// A text message over the size limit: close 1009.
    OversizedText,
    /// The shell reports a frame over its buffer: close 1009.
    OversizedFrame,
    /// The shell reports a slow reader: `pusher:error` 4100 and close 4100.
    SlowConsumer,
}

/// Which connection an HTTP publish excludes with `socket_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum ExcludePick {
    /// No `socket_id`.
    Nobody,
    /// The socket id of a live connection (index into the live connections).
    Conn(u8),
    /// A well-formed socket id no connection has.
    Unknown,
    /// A malformed socket id: 400.
    Malformed,
}

/// An HTTP publish's `data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum HttpDataPick {
    /// A string.
    Text,
    /// A JSON object (published as its JSON text).
    Object,
    /// A string over the payload limit: 413.
    TooLarge,
}

/// How an HTTP request is signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum SignaturePick {
    /// With the app's key and secret, now.
    Valid,
    /// With a wrong secret: 401.
    WrongSecret,
    /// With the other app's credentials: 401 (cross-app isolation).
    OtherApp,
    /// Eleven minutes ago: 401.
    Stale,
}

/// A read-only HTTP API query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum QueryPick {
    /// `GET /channels`.
    Channels,
    /// `GET /channels?filter_by_prefix=presence-&info=user_count`.
    PresenceChannels,
    /// `GET /channels/{channel}?info=subscription_count` (plus `user_count` for presence).
    Channel(ChannelPick),
    /// `GET /channels/{channel}/users`.
    Users(ChannelPick),
}

/// `USERS[i % len]`.
pub fn user_id(i: u8) -> &'static str {
    USERS[i as usize % USERS.len()]
}

/// The JSON form of a user id on the wire (a number for `42`).
pub fn user_id_json(i: u8) -> serde_json::Value {
    let id = user_id(i);
    match id.parse::<u64>() {
        Ok(n) => serde_json::Value::from(n),
        Err(_) => serde_json::Value::from(id),
    }
}

/// The watchlist a bitmask selects, in [`USERS`] order.
pub fn watchlist(mask: u8) -> Vec<u8> {
    (0..USERS.len() as u8)
        .filter(|i| mask & (1 << i) != 0)
        .collect()
}
