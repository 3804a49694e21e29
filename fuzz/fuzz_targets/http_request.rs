#![no_main]
//! Fuzz target `http_request`: see `ferrocast_proptests::fuzz::http_request`. Raw-bytes
//! inputs go through the shell's own HTTP request parser, which this crate links directly so
//! that the proptests crate does not depend on the shell.

use ferrocast::{parse_request, HeadLimits};
use ferrocast_engine::HttpRequest;

/// The shell's request parser, under small limits so that refusals are reached too.
fn parse_raw(bytes: &[u8]) -> Option<HttpRequest> {
    let limits = HeadLimits {
        max_head_bytes: 8 * 1024,
        max_headers: 32,
        max_body_bytes: 64 * 1024,
    };
    parse_request(bytes, &limits)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrocast_proptests::fuzz::http_request(data, Some(parse_raw))
});
