//! Cluster scenarios: several engines over the simulated bus, with a fake clock.

mod common;

mod bus_format;
mod cross_node;
mod fan_out;
mod liveness;
mod presence;
mod queries;
mod webhooks;
