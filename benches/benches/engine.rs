//! Criterion benchmarks of the engine alone: no sockets, no simulator on the measured path.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ferrocast_benches::Bench;
use ferrocast_engine::Input;
use std::hint::black_box;

fn subscribe(c: &mut Criterion) {
    let mut group = c.benchmark_group("subscribe");
    for (name, channel) in [("public", "news"), ("private_hmac", "private-news")] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut bench = Bench::new();
                    let (conn, socket_id) = bench.connect();
                    let text = Bench::subscribe_message(&socket_id, channel, None);
                    (bench, conn, text)
                },
                // Return the engine so criterion drops it outside the measurement.
                |(mut bench, conn, text)| {
                    (black_box(bench.feed(Input::Text { conn, text })), bench)
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn presence_join_at_100_members(c: &mut Criterion) {
    c.bench_function("presence_join_100_members", |b| {
        b.iter_batched(
            || {
                let mut bench = Bench::new();
                for user in 0..100 {
                    let (conn, socket_id) = bench.connect();
                    let data =
                        format!("{{\"user_id\":\"u{user}\",\"user_info\":{{\"n\":{user}}}}}");
                    let text = Bench::subscribe_message(&socket_id, "presence-room", Some(&data));
                    bench.feed(Input::Text { conn, text });
                }
                let (conn, socket_id) = bench.connect();
                let text = Bench::subscribe_message(
                    &socket_id,
                    "presence-room",
                    Some("{\"user_id\":\"new\"}"),
                );
                (bench, conn, text)
            },
            // Return the engine so criterion drops it outside the measurement.
            |(mut bench, conn, text)| (black_box(bench.feed(Input::Text { conn, text })), bench),
            BatchSize::LargeInput,
        )
    });
}

fn http_publish_parse_and_verify(c: &mut Criterion) {
    let mut bench = Bench::new();
    let request = bench.publish_request("empty-channel", "{\"price\":101.5}");
    c.bench_function("http_publish_parse_verify", |b| {
        b.iter(|| black_box(bench.publish(&request)))
    });
}

fn fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("fan_out");
    for subscribers in [1_000u64, 10_000] {
        let mut bench = Bench::new();
        for _ in 0..subscribers {
            let (conn, socket_id) = bench.connect();
            bench.subscribe(conn, &socket_id, "prices");
        }
        let request = bench.publish_request("prices", "{\"price\":101.5}");
        // Throughput in deliveries: criterion reports time per delivery and deliveries/s.
        group.throughput(Throughput::Elements(subscribers));
        group.bench_with_input(
            BenchmarkId::from_parameter(subscribers),
            &request,
            |b, request| b.iter(|| black_box(bench.publish(request))),
        );
    }
    group.finish();
}

/// The publish path with the admin console watching: one debug event per publish on top of
/// the fan-out (compare with `fan_out/1000`, which runs with nobody watching).
fn fan_out_watched(c: &mut Criterion) {
    let mut bench = Bench::new();
    for _ in 0..1_000 {
        let (conn, socket_id) = bench.connect();
        bench.subscribe(conn, &socket_id, "prices");
    }
    bench.feed(Input::Watch { on: true });
    let request = bench.publish_request("prices", "{\"price\":101.5}");
    c.bench_function("fan_out_watched/1000", |b| {
        b.iter(|| black_box(bench.publish(&request)))
    });
}

criterion_group!(
    benches,
    fan_out_watched,
    subscribe,
    presence_join_at_100_members,
    http_publish_parse_and_verify,
    fan_out
);
criterion_main!(benches);
