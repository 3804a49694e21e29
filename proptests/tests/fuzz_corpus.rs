//! Replays every committed fuzz input (`fuzz/corpus/<target>/*`, and any crash kept under
//! `fuzz/regressions/<target>/*`) through the same function its fuzz target calls, on stable.
// A test crate: helpers unwrap like the tests they serve, a panic is the failure report.
#![allow(clippy::unwrap_used)]

use ferrocast_proptests::fuzz;
use std::fs;
use std::path::Path;

/// The body of a fuzz target.
type Target = fn(&[u8]);

/// Each cargo-fuzz target and the library function its body calls.
const TARGETS: [(&str, Target); 7] = [
    ("client_message", fuzz::client_message),
    ("config", fuzz::config),
    ("engine_ops", fuzz::engine_ops),
    ("ws_frame", fuzz::ws_frame),
    // Raw-bytes inputs need the shell's parser, which this crate does not link: the shell's
    // `fuzz_http_corpus` test replays them; the API-shaped inputs replay here in full.
    ("http_request", |data| fuzz::http_request(data, None)),
    ("bus_message", fuzz::bus_message),
    ("app_store", fuzz::app_store),
];

fn replay(dir: &str) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(dir);
    let Ok(entries) = fs::read_dir(&root) else {
        return 0;
    };
    let mut count = 0;
    for entry in entries {
        let target_dir = entry.expect("readable corpus directory").path();
        let name = target_dir
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let run = TARGETS
            .iter()
            .find(|(target, _)| *target == name)
            .unwrap_or_else(|| {
                panic!("{dir}/{name} belongs to no known fuzz target; add it to TARGETS")
            })
            .1;
        let mut files: Vec<_> = fs::read_dir(&target_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for file in files {
            let data = fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "fuzz input {} fails", file.display());
            count += 1;
        }
    }
    count
}

#[test]
fn every_committed_fuzz_input_passes() {
    let replayed = replay("corpus") + replay("regressions");
    assert!(
        replayed > 0,
        "no fuzz corpus found next to the proptests crate"
    );
}

#[test]
fn every_fuzz_target_has_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (target, _) in TARGETS {
        let seeds = fs::read_dir(root.join(target)).map_or(0, |d| d.count());
        assert!(seeds > 0, "fuzz/corpus/{target} has no seeds");
    }
}
