//! Replays the committed `http_request` fuzz corpus with raw-bytes inputs parsed by the
//! shell's own request parser, as the fuzz target does (the proptests crate replays the rest
//! of the corpus, but it does not link the shell).
// A test crate: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use ferrocast::{parse_request, HeadLimits};
use ferrocast_engine::HttpRequest;
use std::fs;
use std::path::Path;

/// The fuzz target's parser and limits.
fn parse_raw(bytes: &[u8]) -> Option<HttpRequest> {
    let limits = HeadLimits {
        max_head_bytes: 8 * 1024,
        max_headers: 32,
        max_body_bytes: 64 * 1024,
    };
    parse_request(bytes, &limits)
}

#[test]
fn every_http_request_seed_passes_through_the_shells_parser() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/http_request");
    let mut seeds: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    for seed in &seeds {
        let data = fs::read(seed).unwrap();
        let outcome = std::panic::catch_unwind(|| {
            ferrocast_proptests::fuzz::http_request(&data, Some(parse_raw))
        });
        assert!(outcome.is_ok(), "fuzz input {} fails", seed.display());
    }
}

#[test]
fn raw_seeds_parse_into_requests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/http_request");
    for name in ["raw_get_channels", "raw_publish", "raw_terminate"] {
        let data = fs::read(dir.join(name)).unwrap();
        // The seed is an arbitrary-encoded `Raw` request: its bytes contain a request head.
        let start = data
            .windows(4)
            .position(|w| w == b"GET " || w == b"POST")
            .unwrap_or_else(|| panic!("{name}: no request line in the seed"));
        assert!(
            parse_raw(&data[start..]).is_some(),
            "{name}: the shell's parser refused the seed's request"
        );
    }
}
