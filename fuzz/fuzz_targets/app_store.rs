#![no_main]
//! Fuzz target `app_store`: see `ferrocast_proptests::fuzz::app_store`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_proptests::fuzz::app_store(data));
