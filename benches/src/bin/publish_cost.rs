//! Runs the engine's publish path a given number of times, for instruction counts under
//! `valgrind --tool=callgrind`: `publish_cost PUBLISHES [watch]` publishes to a channel of
//! 1000 subscribers, with the admin console's debug feed on when `watch` is given. The cost
//! of one publish is the difference between two runs' totals divided by the difference in
//! publishes (setup cancels out).

use ferrocast_benches::Bench;
use std::hint::black_box;

fn main() {
    let mut args = std::env::args().skip(1);
    let publishes: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .expect("usage: publish_cost PUBLISHES [watch]");
    let watch = args.next().as_deref() == Some("watch");
    let mut bench = Bench::new();
    for _ in 0..1_000 {
        let (conn, socket_id) = bench.connect();
        bench.subscribe(conn, &socket_id, "prices");
    }
    if watch {
        bench.feed(ferrocast_engine::Input::Watch { on: true });
    }
    let request = bench.publish_request("prices", "{\"price\":101.5}");
    let mut deliveries = 0;
    for _ in 0..publishes {
        deliveries += black_box(bench.publish(&request));
    }
    println!("{deliveries} deliveries");
}
