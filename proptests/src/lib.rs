//! A reference model of the Ferrocast engine, and the harness that checks the engine against it.
//!
//! [`ops::Op`] sequences (from proptest strategies in [`strategy`], or from fuzzer bytes via
//! `arbitrary`) are applied to the engine and to [`model::Model`] side by side by
//! [`harness::run`], which checks after every step that both agree and that the engine's
//! invariants hold. [`fuzz`] holds the bodies of the cargo-fuzz targets, so committed fuzz
//! corpora replay as ordinary tests. [`cluster`] extends the model to three nodes over a
//! simulated bus, with partitions and node deaths. [`app_store`] drives arbitrary sequences of
//! app-store lookups, answers and store news, checking the engine's invariants after each.

pub mod app_store;
pub mod cluster;
#[cfg(feature = "proptest")]
pub mod cluster_strategy;
pub mod fuzz;
pub mod harness;
pub mod model;
pub mod ops;
#[cfg(feature = "proptest")]
pub mod strategy;
pub mod wire;
