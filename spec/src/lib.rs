//! Ferrocast's protocol specification as executable conformance vectors.
//!
//! Vectors live in `spec/vectors/<group>/*.json` (format: `spec/README.md`). The same files
//! are replayed on the engine through its simulator ([`engine_runner`], run by `cargo test`)
//! and over real sockets against any Pusher-compatible server ([`live`], the
//! `ferrocast-conformance` binary).

pub mod config;
pub mod engine_runner;
pub mod live;
pub mod matcher;
pub mod rules;
pub mod runner;
pub mod sign;
pub mod template;
pub mod vector;

use std::path::PathBuf;
use vector::Vector;

/// The vectors shipped with this crate.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/vectors"))
}

/// How one vector went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step matched.
    Pass,
    /// A step did not match: why.
    Fail(String),
    /// Not run here: why.
    Skip(String),
    /// Failed, as its `known_failure` says it does.
    KnownFailure {
        /// The vector's stated reason.
        reason: String,
        /// What actually went wrong.
        error: String,
    },
    /// Marked `known_failure` but passed: the mark is stale.
    UnexpectedPass(String),
    /// The server went away during this vector (its process exited, or its port stopped
    /// accepting connections): why. Counted as a failure; the run stops here.
    ServerCrashed(String),
    /// Not run because the server crashed at an earlier vector.
    NotRun,
}

impl Outcome {
    /// Classifies a replay's result against the vector's `known_failure` mark.
    pub fn classify(vector: &Vector, result: Result<(), String>) -> Outcome {
        match (result, &vector.known_failure) {
            (Ok(()), None) => Outcome::Pass,
            (Err(e), None) => Outcome::Fail(e),
            (Err(error), Some(reason)) => Outcome::KnownFailure {
                reason: reason.clone(),
                error,
            },
            (Ok(()), Some(reason)) => Outcome::UnexpectedPass(reason.clone()),
        }
    }

    /// The report line for vector `id`.
    pub fn line(&self, id: &str) -> String {
        match self {
            Outcome::Pass => format!("ok {id}"),
            Outcome::Fail(why) => format!("FAIL {id}: {why}"),
            Outcome::Skip(why) => format!("skip {id}: {why}"),
            Outcome::KnownFailure { reason, error } => {
                format!("known-failure {id}: {reason}\n      (it failed with: {error})")
            }
            Outcome::UnexpectedPass(reason) => {
                format!("ok {id} (marked known_failure \"{reason}\" but passed: remove the mark)")
            }
            Outcome::ServerCrashed(why) => format!("CRASH {id}: {why}"),
            Outcome::NotRun => format!("not-run {id}: the server crashed at an earlier vector"),
        }
    }
}

/// Counts of outcomes and the closing line runners print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Vectors that passed (including stale known failures).
    pub passed: usize,
    /// Vectors that failed.
    pub failed: usize,
    /// Vectors skipped.
    pub skipped: usize,
    /// Vectors that failed as marked.
    pub known: usize,
    /// Vectors during which the server crashed (also counted in `failed`).
    pub crashed: usize,
    /// Vectors not run because the server had crashed.
    pub not_run: usize,
}

impl Tally {
    /// Counts one outcome.
    pub fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Pass | Outcome::UnexpectedPass(_) => self.passed += 1,
            Outcome::Fail(_) => self.failed += 1,
            Outcome::Skip(_) => self.skipped += 1,
            Outcome::KnownFailure { .. } => self.known += 1,
            Outcome::ServerCrashed(_) => {
                self.failed += 1;
                self.crashed += 1;
            }
            Outcome::NotRun => self.not_run += 1,
        }
    }

    /// `N passed, N failed, N skipped` (known failures count as skipped there), then
    /// `, N not run` once a crash left vectors unrun: those are neither failures nor skips.
    pub fn closing_line(&self) -> String {
        let mut line = format!(
            "{} passed, {} failed, {} skipped",
            self.passed,
            self.failed,
            self.skipped + self.known
        );
        if self.crashed > 0 || self.not_run > 0 {
            line.push_str(&format!(", {} not run", self.not_run));
        }
        line
    }
}
