//! Proptest strategies for operation sequences, weighted so that connections meet on the
//! same channels often enough for fan-out, presence and rate limits to matter.

use crate::ops::*;
use proptest::prelude::*;
use proptest::sample::select;

/// A connection target, mostly app A.
pub fn connect_pick() -> impl Strategy<Value = ConnectPick> {
    prop_oneof![
        8 => Just(ConnectPick::AppA),
        3 => Just(ConnectPick::AppB),
        1 => Just(ConnectPick::AppBServerSide),
        1 => Just(ConnectPick::AppBForeignOrigin),
        1 => Just(ConnectPick::UnknownKey),
        1 => Just(ConnectPick::UnsupportedProtocol),
        1 => Just(ConnectPick::NoProtocol),
    ]
}

/// A channel from the pool, mostly the ones with rules.
pub fn channel_pick() -> impl Strategy<Value = ChannelPick> {
    prop_oneof![
        2 => Just(ChannelPick::Public),
        2 => Just(ChannelPick::PublicCache),
        4 => Just(ChannelPick::Private),
        1 => Just(ChannelPick::PrivateCache),
        1 => Just(ChannelPick::Encrypted),
        6 => Just(ChannelPick::Presence),
        2 => Just(ChannelPick::PresenceCache),
        2 => (0..USERS.len() as u8).prop_map(|user| ChannelPick::ServerToUser { user }),
        1 => Just(ChannelPick::Invalid),
    ]
}

/// A channel for client events: mostly ones they are allowed on.
pub fn client_event_channel() -> impl Strategy<Value = ChannelPick> {
    prop_oneof![
        5 => Just(ChannelPick::Private),
        5 => Just(ChannelPick::Presence),
        2 => channel_pick(),
    ]
}

/// A subscription's credentials, mostly valid.
pub fn auth_pick() -> impl Strategy<Value = AuthPick> {
    prop_oneof![
        12 => Just(AuthPick::Valid),
        1 => Just(AuthPick::WrongSecret),
        1 => Just(AuthPick::OtherSocket),
        1 => Just(AuthPick::Missing),
        1 => Just(AuthPick::NoChannelData),
    ]
}

/// An HTTP request's signature, mostly valid.
pub fn signature_pick() -> impl Strategy<Value = SignaturePick> {
    prop_oneof![
        12 => Just(SignaturePick::Valid),
        1 => Just(SignaturePick::WrongSecret),
        1 => Just(SignaturePick::OtherApp),
        1 => Just(SignaturePick::Stale),
    ]
}

fn publish() -> impl Strategy<Value = Op> {
    (
        prop_oneof![4 => Just(0u8), 1 => Just(1u8)],
        proptest::collection::vec(channel_pick(), 1..=3),
        prop_oneof![
            4 => Just(ExcludePick::Nobody),
            4 => any::<u8>().prop_map(ExcludePick::Conn),
            1 => Just(ExcludePick::Unknown),
            1 => Just(ExcludePick::Malformed),
        ],
        any::<bool>(),
        any::<bool>(),
        prop_oneof![
            6 => Just(HttpDataPick::Text),
            3 => Just(HttpDataPick::Object),
            1 => Just(HttpDataPick::TooLarge),
        ],
        signature_pick(),
    )
        .prop_map(
            |(app, channels, exclude, batch, info, data, signature)| Op::Publish {
                app,
                channels,
                exclude,
                batch,
                info,
                data,
                signature,
            },
        )
}

fn query() -> impl Strategy<Value = Op> {
    let query = prop_oneof![
        Just(QueryPick::Channels),
        Just(QueryPick::PresenceChannels),
        channel_pick().prop_map(QueryPick::Channel),
        channel_pick().prop_map(QueryPick::Users),
    ];
    (0..2u8, query, signature_pick()).prop_map(|(app, query, signature)| Op::Query {
        app,
        query,
        signature,
    })
}

fn client_event() -> impl Strategy<Value = Op> {
    (
        any::<u8>(),
        client_event_channel(),
        prop_oneof![
            10 => Just(EventPick::Valid),
            1 => Just(EventPick::TooLong),
            1 => Just(EventPick::NotClient),
        ],
        select(vec![DataPick::Object, DataPick::Text, DataPick::Missing]),
        prop_oneof![8 => Just(1u8), 2 => 2..13u8],
    )
        .prop_map(|(conn, channel, name, data, repeat)| Op::ClientEvent {
            conn,
            channel,
            name,
            data,
            repeat,
        })
}

fn signin() -> impl Strategy<Value = Op> {
    (
        any::<u8>(),
        0..USERS.len() as u8,
        prop_oneof![
            8 => Just(SigninAuthPick::Valid),
            1 => Just(SigninAuthPick::WrongSecret),
            1 => Just(SigninAuthPick::OtherSocket),
        ],
        0..16u8,
    )
        .prop_map(|(conn, user, auth, watchlist)| Op::SignIn {
            conn,
            user,
            auth,
            watchlist,
        })
}

fn misc() -> impl Strategy<Value = Op> {
    let ping = select(vec![
        PingPick::Event,
        PingPick::PongEvent,
        PingPick::Frame,
        PingPick::PongFrame,
    ]);
    let junk = select(vec![
        JunkPick::NotJson,
        JunkPick::WrongShape,
        JunkPick::NotUtf8,
        JunkPick::UnknownEvent,
        JunkPick::SubscribeWithoutData,
        JunkPick::Binary,
    ]);
    let how = prop_oneof![
        6 => Just(DisconnectPick::Client),
        1 => Just(DisconnectPick::OversizedText),
        1 => Just(DisconnectPick::OversizedFrame),
        1 => Just(DisconnectPick::SlowConsumer),
    ];
    prop_oneof![
        2 => (any::<u8>(), ping).prop_map(|(conn, kind)| Op::Ping { conn, kind }),
        1 => (any::<u8>(), junk).prop_map(|(conn, kind)| Op::Junk { conn, kind }),
        3 => (any::<u8>(), how).prop_map(|(conn, how)| Op::Disconnect { conn, how }),
        2 => (0..2u8, 0..USERS.len() as u8).prop_map(|(app, user)| Op::Terminate { app, user }),
        3 => prop_oneof![4 => 1..=3u8, 1 => 4..=15u8].prop_map(|secs| Op::Advance { secs }),
    ]
}

/// One operation.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => connect_pick().prop_map(|target| Op::Connect { target }),
        12 => (any::<u8>(), channel_pick(), auth_pick(), 0..USERS.len() as u8, 0..3u8).prop_map(
            |(conn, channel, auth, user, info)| Op::Subscribe { conn, channel, auth, user, info }
        ),
        2 => (any::<u8>(), channel_pick()).prop_map(|(conn, channel)| Op::Unsubscribe { conn, channel }),
        6 => client_event(),
        3 => signin(),
        5 => publish(),
        2 => query(),
        5 => misc(),
    ]
}

/// A scenario: one to three connections opened, then up to `max_len` operations.
pub fn ops(max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    let opening = proptest::collection::vec(connect_pick(), 1..=3);
    let rest = proptest::collection::vec(op(), 1..=max_len.max(1));
    (opening, rest).prop_map(|(opening, rest)| {
        let connects = opening.into_iter().map(|target| Op::Connect { target });
        connects.chain(rest).collect()
    })
}
