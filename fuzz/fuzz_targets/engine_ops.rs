#![no_main]
//! Fuzz target `engine_ops`: see `ferrocast_proptests::fuzz::engine_ops`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_proptests::fuzz::engine_ops(data));
