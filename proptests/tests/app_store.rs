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

/// Bytes from a fixed xorshift sequence: the same inputs on every run.
fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The runs reach what they are meant to check: store apps welcomed after a lookup, every
/// refusal code and status of the app store, lookups asked.
#[test]
fn random_runs_reach_every_app_store_outcome() {
    let mut total = app_store::Outcomes::default();
    for seed in 0..64 {
        let ops = app_store::decode(&pseudo_random_bytes(seed, 1024));
        let outcomes = app_store::run(&ops).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        total.welcomed_after_waiting += outcomes.welcomed_after_waiting;
        total.lookups += outcomes.lookups;
        for (code, n) in outcomes.closes {
            *total.closes.entry(code).or_default() += n;
        }
        for (status, n) in outcomes.statuses {
            *total.statuses.entry(status).or_default() += n;
        }
    }
    assert!(total.welcomed_after_waiting > 0, "{total:?}");
    assert!(total.lookups > 0, "{total:?}");
    // Missing, disabled, store down / busy / timed out, shutdown.
    for code in [4001, 4003, 4100, 4200] {
        assert!(
            total.closes.contains_key(&code),
            "no close {code}: {total:?}"
        );
    }
    for status in [200, 401, 404, 503] {
        assert!(
            total.statuses.contains_key(&status),
            "no status {status}: {total:?}"
        );
    }
}
