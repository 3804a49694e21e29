//! Random operations over a three-node cluster, with partitions, deaths and bus delays,
//! checked after every step and once the bus is quiet (see `ferrocast_proptests::cluster`).
//!
//! `PROPTEST_CASES` (default 256) and `FERROCAST_CLUSTER_MAX_OPS` (default 60) crank it
//! up: `PROPTEST_CASES=2000 FERROCAST_CLUSTER_MAX_OPS=120 cargo test -p ferrocast-proptests
//! --release --test cluster`.

use ferrocast_proptests::{cluster, cluster_strategy};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // `ProptestConfig::default()` reads PROPTEST_CASES (256 by default): a few seconds in debug.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/cluster.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_cluster_agrees_with_the_model(
        seed in any::<u64>(),
        ops in cluster_strategy::ops(env_or("FERROCAST_CLUSTER_MAX_OPS", 60)),
    ) {
        if let Err(failure) = cluster::run(seed, &ops) {
            prop_assert!(false, "{}", failure);
        }
    }
}
