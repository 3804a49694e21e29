//! Determinism: the same seed and the same inputs give byte-identical outputs.

use crate::common::*;
use ferrocast_engine::driver::{Driver, FakeClock};
use ferrocast_engine::signature::client_auth;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{CloseCode, Config, ConnId, Input, Output, WsRequest};
use serde_json::json;
use std::time::Duration;

/// Drives one engine through a busy conversation and records every output in order.
struct Run {
    driver: Driver,
    log: Vec<Output>,
}

impl Run {
    fn new(seed: u64, clock: FakeClock) -> Self {
        let mut config = Config::default();
        config.apps[0].max_presence_members = 3;
        Run {
            driver: Driver::with_clock(config, seed, clock),
            log: Vec::new(),
        }
    }

    fn feed(&mut self, input: Input) {
        let log = &mut self.log;
        let _ = self.driver.feed(input, |output| log.push(output));
        self.log.push(Output::Timeout(self.driver.next_timer()));
    }

    fn open(&mut self, id: u64) -> ConnId {
        let conn = ConnId(id);
        let request = WsRequest {
            path: "/app/app-key".into(),
            query: "protocol=7".into(),
            origin: None,
            peer: None,
            secure: false,
        };
        self.feed(Input::Opened { conn, request });
        conn
    }

    fn text(&mut self, conn: ConnId, value: serde_json::Value) {
        self.feed(Input::Text {
            conn,
            text: value.to_string().into_bytes(),
        });
    }

    fn sign(&self, conn: ConnId, rest: &str) -> String {
        let socket_id = self
            .driver
            .engine()
            .socket_id(conn)
            .expect("open")
            .to_string();
        client_auth(
            "app-key",
            "app-secret",
            format!("{socket_id}{rest}").as_bytes(),
        )
    }

    fn presence(&mut self, conn: ConnId, channel: &str, user: &str) {
        let data = json!({"user_id": user, "user_info": {"name": user}}).to_string();
        let auth = self.sign(conn, &format!(":{channel}:{data}"));
        self.text(
            conn,
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": data}}),
        );
    }

    fn private(&mut self, conn: ConnId, channel: &str) {
        let auth = self.sign(conn, &format!(":{channel}"));
        self.text(
            conn,
            json!({"event": "pusher:subscribe", "data": {"channel": channel, "auth": auth}}),
        );
    }

    fn signin(&mut self, conn: ConnId, user_data: &str) {
        let auth = self.sign(conn, &format!("::user::{user_data}"));
        self.text(
            conn,
            json!({"event": "pusher:signin", "data": {"auth": auth, "user_data": user_data}}),
        );
    }

    fn wait(&mut self, secs: u64) {
        for _ in 0..secs {
            let log = &mut self.log;
            self.driver
                .advance(Duration::from_secs(1), |output| log.push(output));
            self.log.push(Output::Timeout(self.driver.next_timer()));
        }
    }

    /// A conversation touching every part of the WebSocket side.
    fn script(mut self) -> Vec<Output> {
        let conns: Vec<ConnId> = (1..=6).map(|i| self.open(i)).collect();
        for (i, &conn) in conns.iter().enumerate() {
            self.presence(conn, "presence-room", &format!("user{}", i % 4));
            self.private(conn, "private-chat");
            self.text(
                conn,
                json!({"event": "pusher:subscribe", "data": {"channel": "cache-x"}}),
            );
        }
        self.signin(conns[0], r#"{"id":"user0","watchlist":["user1","user2"]}"#);
        self.signin(conns[1], r#"{"id":"user1"}"#);
        for round in 0..12 {
            let conn = conns[round % conns.len()];
            self.text(
                conn,
                json!({"event": "client-move", "channel": "presence-room", "data": {"round": round}}),
            );
            self.text(
                conn,
                json!({"event": "client-x", "channel": "private-chat", "data": "s"}),
            );
        }
        self.feed(Input::Binary {
            conn: conns[2],
            data: Vec::new(),
        });
        self.feed(Input::Text {
            conn: conns[2],
            text: b"{not json".to_vec(),
        });
        self.feed(Input::Activity { conn: conns[3] });
        self.feed(Input::Closed { conn: conns[1] });
        self.feed(Input::SlowConsumer { conn: conns[4] });
        let late = self.open(7);
        self.presence(late, "presence-room", "user9");
        self.wait(60);
        self.text(conns[0], json!({"event": "pusher:ping", "data": {}}));
        self.wait(100);
        self.feed(Input::Activity { conn: conns[0] });
        self.wait(40);
        self.log
    }
}

#[test]
fn same_seed_and_inputs_give_byte_identical_outputs() {
    let clock = FakeClock::new();

    let first = Run::new(42, clock).script();
    let second = Run::new(42, clock).script();

    assert!(
        first.len() > 100,
        "the script exercises the engine: {}",
        first.len()
    );
    assert_eq!(first.len(), second.len());
    for (i, (a, b)) in first.iter().zip(&second).enumerate() {
        assert_eq!(a, b, "output {i} differs");
        if let (Output::Send { frame: fa, .. }, Output::Send { frame: fb, .. }) = (a, b) {
            assert_eq!(fa.wire_bytes(), fb.wire_bytes());
        }
    }
}

#[test]
fn the_script_ends_with_pings_and_closes_on_the_fake_clock() {
    let log = Run::new(42, FakeClock::new()).script();

    let closes: Vec<(ConnId, CloseCode)> = log
        .iter()
        .filter_map(|o| match o {
            Output::Close { conn, code, .. } => Some((*conn, *code)),
            _ => None,
        })
        .collect();
    // conn 5 was a slow consumer; the quiet ones missed their pong; conn 1 answered it.
    assert_eq!(closes[0], (ConnId(5), CloseCode::OVER_CAPACITY));
    assert!(
        closes[1..]
            .iter()
            .all(|&(_, code)| code == CloseCode::PONG_NOT_RECEIVED),
        "{closes:?}"
    );
    assert!(!closes.iter().any(|&(conn, _)| conn == ConnId(1)));
}

#[test]
fn different_seeds_give_different_socket_ids() {
    let ids = |seed: u64| {
        let mut sim = Simulator::new(Config::default(), seed);
        (0..5)
            .map(|_| {
                let conn = sim.connect("app-key");
                sim.socket_id(conn)
            })
            .collect::<Vec<_>>()
    };

    assert_eq!(ids(1), ids(1));
    assert_ne!(ids(1), ids(2));
}

#[test]
fn simulator_transcripts_repeat_exactly() {
    let transcript = || {
        let mut sim = sim();
        let a = sim.connect("app-key");
        let b = sim.connect("app-key");
        let mut lines: Vec<String> = [a, b]
            .iter()
            .flat_map(|&c| sim.take(c))
            .map(|m| m.raw)
            .collect();
        subscribe_presence(&mut sim, a, "presence-x", &member("a", "A"));
        subscribe_presence(&mut sim, b, "presence-x", &member("b", "B"));
        trigger(&mut sim, a, "presence-x", "client-hi", json!({"n": 1}));
        sim.advance(secs(200));
        for conn in [a, b] {
            lines.push(format!("{conn:?} {:?}", sim.closed(conn)));
            lines.extend(sim.take(conn).into_iter().map(|m| m.raw));
        }
        lines
    };

    assert_eq!(transcript(), transcript());
}
