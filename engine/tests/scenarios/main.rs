//! Scenario tests: whole conversations with the engine on the simulator, with a fake clock.
//! One test binary (one module per topic) so the suite builds and links once.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

mod app_store;
mod bad_input;
mod capacity;
mod cleanup;
mod client_events;
mod compression;
mod connection;
mod console;
mod determinism;
mod http_api;
mod liveness;
mod notices;
mod origins;
mod presence;
mod reload;
mod shutdown;
mod signin;
mod subscriptions;
mod webhooks;
