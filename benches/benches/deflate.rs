//! permessage-deflate cost: one broadcast message compressed at level 1 and level 6, at the
//! sizes Pusher events come in, with the compressed size printed beside each. The server
//! compresses each broadcast once (no context takeover), so this is its cost per publish.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flate2::{Compress, Compression, FlushCompress};
use std::hint::black_box;

/// A Pusher event of about `len` bytes: JSON data in a JSON string, as an app publishes it.
fn event(len: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut i = 0;
    while items.iter().map(|s: &String| s.len() + 1).sum::<usize>() + 60 < len {
        items.push(format!(
            "{{\\\"id\\\":{i},\\\"user\\\":\\\"user-{}\\\",\\\"price\\\":{}.{:02},\\\"status\\\":\\\"open\\\"}}",
            i * 7919 % 1000,
            100 + i * 37 % 900,
            i * 13 % 100
        ));
        i += 1;
    }
    format!(
        "{{\"event\":\"orders\",\"channel\":\"market\",\"data\":\"[{}]\"}}",
        items.join(",")
    )
    .into_bytes()
}

/// One message, compressed the way the server does: a reset compressor, a sync flush.
fn compress(compressor: &mut Compress, payload: &[u8], out: &mut Vec<u8>) -> usize {
    compressor.reset();
    out.clear();
    compressor
        .compress_vec(payload, out, FlushCompress::Sync)
        .expect("deflate");
    out.len() - 4
}

fn levels(c: &mut Criterion) {
    let mut group = c.benchmark_group("deflate");
    for len in [128, 256, 512, 1500, 8000] {
        let payload = event(len);
        group.throughput(Throughput::Bytes(payload.len() as u64));
        for level in [1, 4, 6] {
            let mut compressor = Compress::new(Compression::new(level), false);
            let mut out = Vec::with_capacity(payload.len() * 2 + 64);
            let size = compress(&mut compressor, &payload, &mut out);
            println!(
                "deflate level {level}: {} bytes -> {size} ({:.0}%)",
                payload.len(),
                100.0 * size as f64 / payload.len() as f64
            );
            group.bench_function(
                BenchmarkId::new(format!("level{level}"), payload.len()),
                |b| b.iter(|| black_box(compress(&mut compressor, black_box(&payload), &mut out))),
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = levels
}
criterion_main!(benches);
