#![no_main]
//! Fuzz target `http_request`: see `ferrocast_proptests::fuzz::http_request`. Raw-bytes
//! inputs go through the shell's own HTTP head parser, which this crate links directly so
//! that the proptests crate does not depend on the shell.

use ferrocast::{parse_head, HeadLimits, Parsed};
use ferrocast_engine::HttpRequest;

/// The shell's head parser under fixed limits, its result as the engine would see it.
fn parse_raw(bytes: &[u8]) -> Option<HttpRequest> {
    let limits = HeadLimits {
        max_head_bytes: 8 * 1024,
        max_headers: 32,
        max_body_bytes: 64 * 1024,
    };
    let Parsed::Head(head) = parse_head(bytes, &limits) else {
        return None;
    };
    assert!(head.head_len <= bytes.len(), "head longer than the input");
    let body = &bytes[head.head_len..];
    let body = body[..head.content_length.min(body.len())].to_vec();
    Some(HttpRequest {
        method: head.method,
        path: head.path,
        query: head.query,
        body,
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrocast_proptests::fuzz::http_request(data, Some(parse_raw))
});
