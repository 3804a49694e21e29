#![no_main]
//! Fuzz target `bus_message`: see `ferrocast_proptests::fuzz::bus_message`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrocast_proptests::fuzz::bus_message(data));
