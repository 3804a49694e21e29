//! Entry points of the fuzz targets, callable on stable so committed corpora replay as tests.
//!
//! Each `fuzz/fuzz_targets/*.rs` is a one-line call into one of these; each panics on a
//! broken invariant (the fuzzer's signal) and returns quietly otherwise.

use crate::harness::{self, Harness};
use crate::ops::*;
use arbitrary::{Arbitrary, Unstructured};
use ferrocast_engine::{Config, ConnId, Engine, Input, Moment, Output, WsRequest};

/// Most operations one `engine_ops` input may run.
pub const MAX_OPS: usize = 256;

/// `client_message`: `data` as one text message from a connection that has joined a private
/// and a presence channel beside a second connection, and signed in.
pub fn client_message(data: &[u8]) {
    let mut harness = Harness::new(1);
    let setup = [
        Op::Connect {
            target: ConnectPick::AppA,
        },
        Op::Connect {
            target: ConnectPick::AppA,
        },
    ];
    let mut ops = setup.to_vec();
    for conn in 0..2 {
        for channel in [ChannelPick::Private, ChannelPick::Presence] {
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
    let mut engine = Engine::new(config, 0);
    // The anchor of the fake clock; nothing depends on its value.
    #[allow(clippy::disallowed_methods)]
    let at = Moment::new(std::time::Instant::now(), 1_700_000_000_000);
    let request = WsRequest {
        path,
        query: "protocol=7".into(),
        origin: None,
        peer: None,
    };
    engine
        .handle_input(
            at,
            Input::Opened {
                conn: ConnId(1),
                request,
            },
        )
        .expect("a fresh connection is no misuse");
    let mut closed = false;
    loop {
        match engine.poll_output() {
            Output::Send { conn, .. } => assert_eq!(conn, ConnId(1)),
            Output::Close { code, .. } => {
                // Only a disabled app or one with no room may refuse the first connection.
                assert!(
                    code == 4003 || code == 4004,
                    "first connection closed with {code}"
                );
                closed = true;
            }
            Output::Timeout(_) => break,
            other => panic!("unexpected output to a connect: {other:?}"),
        }
    }
    if !closed {
        engine
            .handle_input(at, Input::Closed { conn: ConnId(1) })
            .expect("open");
    }
    assert_eq!(
        engine.state_counts(),
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
