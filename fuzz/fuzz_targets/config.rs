#![no_main]
//! Fuzz target `config`: see `ferrocast_proptests::fuzz::config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_proptests::fuzz::config(data));
