//! Runs `loadgen --app-store postgres` and `--app-store mysql` with small sizes against the
//! built `ferrocast` binary, on real databases the generator starts on loopback, and checks
//! correctness only: every client subscribed, the file store asked no database, the warm
//! cache made one query for all the connections, the cold run one per connection (as counted
//! by the server's metrics and by the database itself), and the table was printed. Timings
//! are printed, never asserted: the machine may be busy.

use std::path::PathBuf;
use std::process::Command;

/// Clients per run: small, so the three runs take a few seconds.
const CLIENTS: u32 = 100;

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

/// One bounded run with `driver`; its stdout, after checking the exit status.
fn run(driver: &str) -> Option<String> {
    let Some(server) = server_binary() else {
        println!(
            "skipped: build the server first (cargo build --release -p ferrocast); \
             no target/{{release,debug}}/ferrocast was found"
        );
        return None;
    };
    let output = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(["--app-store", driver, "--repeats", "1", "--no-floors"])
        .args(["--storm", &CLIENTS.to_string()])
        .arg("--spawn-server")
        .arg(&server)
        .output()
        .expect("loadgen runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "loadgen --app-store {driver} reported failures against {}",
        server.display()
    );
    Some(stdout)
}

/// The rows every app-store run prints, with the query counts each store must cause.
fn check(driver: &str, stdout: &str) {
    let size = CLIENTS;
    for row in [
        format!("app store {driver} {size}, file store: server CPU per connection"),
        format!("app store {driver} {size}, database, warm cache: server CPU per connection"),
        format!(
            "app store {driver} {size}, database, cold (a lookup per connection): server CPU per connection"
        ),
    ] {
        assert!(stdout.contains(&row), "no row {row:?} in the table");
    }
    let queries = |store: &str| {
        cell(
            stdout,
            &format!("{driver} {size}, {store}: queries per run"),
        )
    };
    assert_eq!(
        queries("database, warm cache").as_deref(),
        Some("1 (database saw 1 SELECTs)"),
        "the warm cache must make one query for all the connections"
    );
    assert_eq!(
        queries("database, cold (a lookup per connection)"),
        Some(format!("{size} (database saw {size} SELECTs)")),
        "the cold run must make one query per connection"
    );
    assert!(stdout.contains("every delivery arrived exactly once and in order"));
    assert!(!stdout.contains("FAILED"));
}

#[test]
fn app_store_run_on_postgres_is_correct() {
    if let Some(stdout) = run("postgres") {
        check("postgres", &stdout);
    }
}

#[test]
fn app_store_run_on_mariadb_is_correct() {
    if let Some(stdout) = run("mysql") {
        check("mysql", &stdout);
    }
}

/// The "ours" cell of the table row whose scenario ends with `label`.
fn cell(stdout: &str, label: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        match cells.as_slice() {
            ["", scenario, ours, ..] if scenario.ends_with(label) => Some(ours.to_string()),
            _ => None,
        }
    })
}
