//! Replays every conformance vector on the engine through its simulator.
//!
//! `SPEC_FILTER=substring` runs only the vectors whose id contains it.

use ferrocast_spec::{engine_runner, vector, vectors_dir, Outcome, Tally};

#[test]
fn every_vector_holds_on_the_engine() {
    let vectors = vector::load_dir(&vectors_dir()).expect("vectors load");
    let filter = std::env::var("SPEC_FILTER").unwrap_or_default();
    let mut tally = Tally::default();
    let mut problems = Vec::new();
    for vector in vectors.iter().filter(|v| v.id.contains(&filter)) {
        let outcome = engine_runner::run_vector(vector);
        let line = outcome.line(&vector.id);
        println!("{line}");
        tally.add(&outcome);
        if matches!(outcome, Outcome::Fail(_) | Outcome::UnexpectedPass(_)) {
            problems.push(line);
        }
    }
    println!(
        "engine conformance: {} (of which {} known failures)",
        tally.closing_line(),
        tally.known
    );
    assert!(
        problems.is_empty(),
        "{} vector(s) went wrong on the engine:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
