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
