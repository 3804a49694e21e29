#![no_main]
//! Fuzz target `ws_frame`: see `ferrocast_proptests::fuzz::ws_frame`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_proptests::fuzz::ws_frame(data));
