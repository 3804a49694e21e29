//! Cluster scenarios: several engines over the simulated bus, with a fake clock.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

mod app_store;
mod bus_format;
mod cross_node;
mod fan_out;
mod liveness;
mod presence;
mod queries;
mod webhooks;
