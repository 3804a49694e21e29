#![no_main]
//! Fuzz target `http_request`: see `ferrocast_proptests::fuzz::http_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_proptests::fuzz::http_request(data));
