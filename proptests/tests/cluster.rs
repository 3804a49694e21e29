//! Random operations over a three-node cluster, with partitions, deaths and bus delays,
//! checked after every step and once the bus is quiet (see `ferrocast_proptests::cluster`).
//!
//! `PROPTEST_CASES` (default 128 here) and `FERROCAST_CLUSTER_MAX_OPS` (default 40) crank it
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
        // Each case runs simulated seconds of three engines: fewer cases than the single-node
        // model by default, so the debug run stays within seconds.
        cases: env_or("PROPTEST_CASES", 128) as u32,
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
        ops in cluster_strategy::ops(env_or("FERROCAST_CLUSTER_MAX_OPS", 40)),
    ) {
        if let Err(failure) = cluster::run(seed, &ops) {
            prop_assert!(false, "{}", failure);
        }
    }
}
