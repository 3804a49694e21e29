//! Runs `loadgen --quick` against the built `ferrocast` binary, alone, over TLS (`--tls`,
//! against the TLS floor) and as a cluster of two nodes over `redis-server`, and checks correctness only: every scenario ran, nothing was
//! lost, duplicated or reordered, and the table was printed. Timings are printed, never
//! asserted: the machine may be busy.

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

    let plots = std::env::temp_dir().join(format!("loadgen-smoke-plots-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .arg("--quick")
        .arg("--spawn-server")
        .arg(&server)
        .arg("--plot")
        .arg(&plots)
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
    // --plot drew the run's own figures.
    for (file, text) in [
        ("fanout-cpu.svg", "write floor: one write per delivery"),
        ("fanout-latency.svg", "200 subscribers"),
        ("idle-rss.svg", "ferrocast RSS"),
        ("figures.json", "\"subscribers\": 200"),
    ] {
        let body = std::fs::read_to_string(plots.join(file))
            .unwrap_or_else(|e| panic!("no {file} in {}: {e}", plots.display()));
        assert!(body.contains(text), "{file} lacks {text:?}");
    }
    let _ = std::fs::remove_dir_all(&plots);
}

/// Whether `redis-server` is on PATH.
fn redis_server_on_path() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
    })
}

#[test]
fn quick_cluster_run_over_two_nodes_is_correct() {
    let Some(server) = server_binary() else {
        println!(
            "skipped: build the server first (cargo build --release -p ferrocast); \
             no target/{{release,debug}}/ferrocast was found"
        );
        return;
    };
    // The cluster mode is part of what this test covers: a missing Redis is a failure.
    assert!(
        redis_server_on_path(),
        "redis-server is not on PATH: install it (Debian: apt-get install redis-server); \
         the cluster smoke run cannot be skipped"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--quick", "--cluster", "2"])
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
        "loadgen reported failures against a cluster of {}",
        server.display()
    );
    for row in [
        "cluster fan-out 200 over 2 nodes: latency",
        "cluster fan-out 200 over 2 nodes: server CPU per delivery on each node, burst",
        "cluster fan-out 200 over 2 nodes: Redis CPU per publish",
        "cluster 400 connections over 2 nodes: time until all subscribed",
        "cluster 400 connections over 2 nodes: server RSS per subscribed connection",
    ] {
        assert!(stdout.contains(row), "no row {row:?} in the table");
    }
    assert!(stdout.contains("every delivery arrived exactly once and in order"));
    assert!(!stdout.contains("FAILED"));
}

#[test]
fn quick_tls_run_against_the_tls_floor_is_correct() {
    let Some(server) = server_binary() else {
        println!(
            "skipped: build the server first (cargo build --release -p ferrocast); \
             no target/{{release,debug}}/ferrocast was found"
        );
        return;
    };

    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--quick", "--tls", "--scenarios", "fanout,storm,idle"])
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
        "loadgen --tls reported failures against {}",
        server.display()
    );
    for row in [
        // The plain figures of the same run…
        "| fan-out 200: server CPU per delivery, burst",
        "| storm 300: server CPU per connection",
        "| idle: server RSS",
        // …and the TLS ones against the TLS floor and against them.
        "| TLS fan-out 200: server CPU per delivery, burst ",
        "TLS floor ",
        "| TLS fan-out 200: cipher suite",
        "| TLS fan-out 200: server CPU per delivery, burst, TLS against plain",
        "| TLS storm 300: server CPU per connection ",
        "TLS accept floor ",
        "| TLS storm 300: server CPU per connection, TLS against plain",
        "| TLS idle @500: server RSS per subscribed connection, TLS against plain",
    ] {
        assert!(stdout.contains(row), "no row {row:?} in the table");
    }
    assert!(stdout.contains("every delivery arrived exactly once and in order"));
    assert!(!stdout.contains("FAILED"));
}
