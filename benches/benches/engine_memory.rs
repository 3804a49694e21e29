//! Bytes of engine state per connection, measured with a counting allocator (not a timing).
//!
//! Run with `cargo bench -p ferrocast-benches --bench engine_memory`.

use ferrocast_benches::Bench;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// Counts live heap bytes so the state an engine holds can be read off before and after.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Heap bytes per connection after `setup` has opened `n` connections on a fresh engine.
fn bytes_per_connection(n: usize, setup: impl Fn(&mut Bench, usize)) -> f64 {
    let mut bench = Bench::new();
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    for i in 0..n {
        setup(&mut bench, i);
    }
    let after = LIVE_BYTES.load(Ordering::Relaxed);
    let per = (after - before) as f64 / n as f64;
    drop(bench);
    per
}

fn main() {
    // `cargo bench` passes `--bench`; anything else (a filter) is ignored.
    println!("engine state per connection (heap bytes, counting allocator)");
    for n in [1_000, 10_000] {
        let idle = bytes_per_connection(n, |bench, _| {
            bench.connect();
        });
        let shared = bytes_per_connection(n, |bench, _| {
            let (conn, socket_id) = bench.connect();
            bench.subscribe(conn, &socket_id, "shared");
        });
        let own = bytes_per_connection(n, |bench, i| {
            let (conn, socket_id) = bench.connect();
            bench.subscribe(conn, &socket_id, &format!("channel-{i}"));
        });
        println!("  n={n:>6}: connected {idle:>7.0}   + one shared channel {shared:>7.0}   + own channel {own:>7.0}");
    }
}
