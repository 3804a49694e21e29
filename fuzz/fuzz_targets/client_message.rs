#![no_main]
//! Fuzz target `client_message`: see `ferrocast_proptests::fuzz::client_message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_proptests::fuzz::client_message(data));
