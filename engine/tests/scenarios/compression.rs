//! An app's `compression` switch: its frames are marked so the shell never deflates them.

use crate::common::{subscribe, SEED};
use ferrocast_engine::sim::Simulator;
use ferrocast_engine::Config;

/// Whether every frame a subscriber of an app with `compression` got may be compressed.
fn frames_compressible(compression: bool) -> Vec<bool> {
    let mut config = Config::default();
    config.apps[0].compression = compression;
    let mut sim = Simulator::new(config, SEED);
    let conn = sim.connect("app-key");
    let mut got = subscribe(&mut sim, conn, "news");
    sim.trigger("news", "big", &"x".repeat(2000));
    got.extend(sim.take(conn));
    assert_eq!(
        got.iter().map(|m| m.event.as_str()).collect::<Vec<_>>(),
        [
            "pusher:connection_established",
            "pusher_internal:subscription_succeeded",
            "big"
        ]
    );
    got.iter().map(|m| m.compressible).collect()
}

#[test]
fn an_app_with_compression_off_gets_only_uncompressible_frames() {
    assert_eq!(frames_compressible(false), [false; 3]);
    assert_eq!(frames_compressible(true), [true; 3]);
}
