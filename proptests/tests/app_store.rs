//! Random app-store event sequences (connects, messages, requests, the store's answers and
//! news, reloads, time) against the engine, with its invariants checked after every step: the
//! same runs as the `app_store` fuzz target, from random bytes, on stable.
//!
//! `PROPTEST_CASES` (default 256) sets how many runs.

use ferrocast_proptests::app_store;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

fn config() -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/app_store.txt",
        ))),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn app_store_events_keep_the_engine_consistent(data in vec(any::<u8>(), 0..2048)) {
        let ops = app_store::decode(&data);
        if let Err(failure) = app_store::run(&ops) {
            prop_assert!(false, "{}\nops: {:#?}", failure, ops);
        }
    }
}
