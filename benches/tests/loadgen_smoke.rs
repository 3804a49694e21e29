//! Runs `loadgen --quick` against the built `ferrocast` binary and checks correctness only:
//! every scenario ran, nothing was lost, duplicated or reordered, and the table was printed.
//! Timings are printed, never asserted: the machine may be busy.

use std::path::PathBuf;
use std::process::Command;

/// The server binary of this workspace, release preferred, if it has been built.
fn server_binary() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("..").join("target"));
    ["release", "debug"]
        .iter()
        .map(|profile| target.join(profile).join("ferrocast"))
        .find(|path| path.is_file())
}

#[test]
fn quick_run_against_the_server_is_correct() {
    let Some(server) = server_binary() else {
        println!(
            "skipped: build the server first (cargo build --release -p ferrocast); \
             no target/{{release,debug}}/ferrocast was found"
        );
        return;
    };

    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--quick")
        .arg("--spawn-server")
        .arg(&server)
        .output()
        .expect("loadgen runs");

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "loadgen reported failures against {}",
        server.display()
    );
    assert!(stdout.contains("| scenario"), "no table printed");
    for row in [
        "fan-out 200: latency",
        "fan-out 200: server CPU per delivery",
        "many channels 300",
        "storm 300",
        "idle: server RSS",
        "presence 100 members",
    ] {
        assert!(stdout.contains(row), "no row {row:?} in the table");
    }
    assert!(stdout.contains("every delivery arrived exactly once and in order"));
    assert!(!stdout.contains("FAILED"));
}
