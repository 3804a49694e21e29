//! Random operation sequences applied to the engine and the reference model side by side.
//!
//! `PROPTEST_CASES` (default 256) and `FERROCAST_PROPTEST_MAX_OPS` (default 60) crank it up:
//! `PROPTEST_CASES=20000 FERROCAST_PROPTEST_MAX_OPS=200 cargo test -p ferrocast-proptests --release`.

use ferrocast_proptests::{harness, strategy};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn max_ops() -> usize {
    std::env::var("FERROCAST_PROPTEST_MAX_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // `ProptestConfig::default()` already reads PROPTEST_CASES; 256 is its default too.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn engine_agrees_with_the_model(seed in any::<u64>(), ops in strategy::ops(max_ops())) {
        if let Err(failure) = harness::run(seed, &ops) {
            prop_assert!(false, "{}", failure);
        }
    }
}
