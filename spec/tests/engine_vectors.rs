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

#[test]
fn a_wrong_expectation_fails_with_its_step_and_path() {
    let text = r#"{"id": "t/wrong", "rule": "x", "steps": [
        {"connect": "alice", "key": "nope", "established": false},
        {"expect": "alice", "message": {"event": "pusher:error", "data": {"code": 4002, "message": "{{string}}"}}}
    ]}"#;
    let vectors = vector::parse_file(text, std::path::Path::new("t/wrong.json")).unwrap();
    match engine_runner::run_vector(&vectors[0]) {
        Outcome::Fail(why) => {
            assert!(why.contains("step 2"), "{why}");
            assert!(
                why.contains("$.data.code: expected 4002, got 4001"),
                "{why}"
            );
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn unread_messages_fail_the_vector() {
    let text = r#"{"id": "t/unread", "rule": "x", "steps": [
        {"connect": "alice"},
        {"send": "alice", "json": {"event": "pusher:ping", "data": {}}}
    ]}"#;
    let vectors = vector::parse_file(text, std::path::Path::new("t/unread.json")).unwrap();
    let outcome = engine_runner::run_vector(&vectors[0]);
    assert!(
        matches!(&outcome, Outcome::Fail(why) if why.contains("pusher:pong")),
        "{outcome:?}"
    );
}
