//! Every vector pins a known rule, every rule has a vector, and the README's table is current.
//!
//! `SPEC_BLESS=1` rewrites the table in `spec/README.md` instead of failing.

use ferrocast_spec::{rules, vector, vectors_dir};

#[test]
fn rules_and_vectors_cover_each_other_and_the_readme_table_is_current() {
    let rules = rules::load(&vectors_dir().join("rules.json")).expect("rules load");
    let vectors = vector::load_dir(&vectors_dir()).expect("vectors load");
    let problems = rules::coverage_problems(&rules, &vectors);
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    let readme_path = vectors_dir().join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("spec/README.md");
    let table = rules::table(&rules, &vectors);
    let fresh = rules::with_table(&readme, &table).expect("README has the rule-table markers");
    if fresh != readme {
        if std::env::var_os("SPEC_BLESS").is_some() {
            std::fs::write(&readme_path, fresh).expect("write README");
        } else {
            panic!("spec/README.md's rule table is stale: run SPEC_BLESS=1 cargo test -p ferrocast-spec --test rules");
        }
    }
}

#[test]
fn a_rule_without_a_source_is_refused() {
    let without = r#"{"rules": [{"id": "1.x", "section": "§1", "text": "t"}]}"#;
    let err = rules::parse(without).expect_err("a rule without a source must not load");
    assert!(err.contains("source"), "{err}");
    let not_a_page = r#"{"rules": [{"id": "1.x", "section": "§1", "text": "t",
        "source": "pusher-docs", "reference": "somewhere"}]}"#;
    assert!(rules::parse(not_a_page).is_err());
    let empty = r#"{"rules": [{"id": "1.x", "section": "§1", "text": "t",
        "source": "ferrocast", "reference": " "}]}"#;
    assert!(rules::parse(empty).is_err());
    let good = r#"{"rules": [{"id": "1.x", "section": "§1", "text": "t",
        "source": "client-behaviour", "reference": "pusher-js reconnects on 4200"}]}"#;
    assert_eq!(
        rules::parse(good).expect("loads")[0].source,
        rules::Source::ClientBehaviour
    );
}

#[test]
fn the_shipped_catalogue_uses_every_class_and_scores_per_class() {
    let rules = rules::load(&vectors_dir().join("rules.json")).expect("rules load");
    for class in rules::Source::ALL {
        assert!(
            rules.iter().any(|r| r.source == class),
            "no {} rule",
            class.name()
        );
    }
    let mut score = rules::ClassScore::default();
    score.add(rules::Source::PusherDocs, &ferrocast_spec::Outcome::Pass);
    score.add(
        rules::Source::Ferrocast,
        &ferrocast_spec::Outcome::Fail("x".into()),
    );
    score.add(
        rules::Source::Ferrocast,
        &ferrocast_spec::Outcome::Skip("y".into()),
    );
    assert_eq!(
        score.line(),
        "score: pusher-docs 1/1, client-behaviour 0/0, ferrocast 0/1"
    );
}

#[test]
fn after_a_crash_the_score_counts_not_run_vectors_apart() {
    use ferrocast_spec::{Outcome, Tally};
    let mut score = rules::ClassScore::default();
    let mut tally = Tally::default();
    for (class, outcome) in [
        (rules::Source::PusherDocs, Outcome::Pass),
        (
            rules::Source::Ferrocast,
            Outcome::ServerCrashed("gone".into()),
        ),
        (rules::Source::Ferrocast, Outcome::NotRun),
        (rules::Source::PusherDocs, Outcome::NotRun),
    ] {
        score.add(class, &outcome);
        tally.add(&outcome);
    }
    assert_eq!(
        score.line(),
        "score: pusher-docs 1/1 (1 not run), client-behaviour 0/0 (0 not run), ferrocast 0/1 (1 not run)"
    );
    assert_eq!(
        tally.closing_line(),
        "1 passed, 1 failed, 0 skipped, 2 not run"
    );
}
