//! Deterministic instruction counts of the engine's hot paths, under
//! `valgrind --tool=callgrind`: per publish request (an HTTP API publish to a channel of one
//! subscriber: parse, signature check, one delivery, the answer), per publish to 1000
//! subscribers, per delivery (the extra cost of the latter over the former, divided by the
//! 999 extra deliveries: about zero, as the engine hands one shared frame and recipient list
//! to the shell, which does the per-socket work), per
//! connection (open, subscribe to a public channel, close) and per presence join (at 100
//! members, with the 100 `member_added` notifications).
//!
//! `icount` runs itself under callgrind twice per operation, 10 and 60 times after the same
//! set-up, and divides the difference (set-up and start-up cancel out); it prints each figure
//! against `benches/icount-baseline.txt`. `icount --write-baseline` records the current figures
//! there. `icount --op OP N` is one run (what callgrind measures).
//!
//! The `shell:` figures are the same operations through the real server (see [`shell`]): the
//! `ferrocast` binary beside `icount` (or `--server PATH`) under callgrind, driven over
//! loopback; `--engine-only` and `--shell-only` measure one half. `icount --profile OP N`
//! keeps one such run's callgrind file in the current directory, to annotate.

mod shell;

use ferrocast_benches::Bench;
use ferrocast_engine::Input;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// The runs' operation counts: the figure is the difference over the difference.
const FEW: usize = 10;
const MANY: usize = 60;
const SUBSCRIBERS: usize = 1000;
const MEMBERS: usize = 100;
const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/icount-baseline.txt");

/// The measured operations, in the order they are printed.
const OPS: [&str; 4] = ["publish", "fanout", "connection", "presence-join"];

/// Shell runs: `SHELL_FEW` and twice that of each operation.
const SHELL_FEW: usize = 100;
const SHELL_FEW_CONNECTIONS: usize = 40;
const USAGE: &str = "usage: icount [--write-baseline] [--engine-only | --shell-only] \
                     [--server PATH] | icount --op OP N | icount --profile OP N";

/// What to measure, from the command line.
struct Plan {
    engine: bool,
    shell: bool,
    server: Option<PathBuf>,
    write: bool,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--op", op, n] => match n.parse() {
            Ok(n) => run_op(op, n),
            Err(_) => Err(format!("not a count: {n}")),
        },
        ["--profile", op, n] => match n.parse() {
            Ok(n) => profile(op, n),
            Err(_) => Err(format!("not a count: {n}")),
        },
        flags => plan(flags).and_then(|plan| {
            let figures = measure(&plan)?;
            if plan.write {
                let mut all = read_baseline();
                all.extend(figures.iter().map(|(k, v)| (k.clone(), *v)));
                write_baseline(&all)
            } else {
                print_against(&figures, &read_baseline());
                Ok(())
            }
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("icount: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One shell run of `op` whose callgrind file is kept (`./callgrind.shell-OP-N.out`), for
/// `callgrind_annotate --inclusive=yes`.
fn profile(op: &str, n: usize) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = std::env::current_dir().map_err(|e| e.to_string())?;
    let total = shell::total(&exe.with_file_name("ferrocast"), &dir, op, n)?;
    println!(
        "{total} instructions: {}",
        dir.join(format!("shell-{op}-{n}.out")).display()
    );
    Ok(())
}

fn plan(flags: &[&str]) -> Result<Plan, String> {
    let mut plan = Plan {
        engine: true,
        shell: true,
        server: None,
        write: false,
    };
    let mut flags = flags.iter();
    while let Some(&flag) = flags.next() {
        match flag {
            "--write-baseline" => plan.write = true,
            "--engine-only" => plan.shell = false,
            "--shell-only" => plan.engine = false,
            "--server" => plan.server = Some(flags.next().ok_or(USAGE)?.into()),
            _ => return Err(USAGE.into()),
        }
    }
    if !plan.engine && !plan.shell {
        return Err(USAGE.into());
    }
    Ok(plan)
}

/// One run: the set-up of `op`, then `n` of it.
fn run_op(op: &str, n: usize) -> Result<(), String> {
    let mut bench = Bench::new();
    let mut deliveries = 0;
    match op {
        "publish" | "fanout" => {
            for _ in 0..SUBSCRIBERS {
                let (conn, socket_id) = bench.connect();
                bench.subscribe(conn, &socket_id, "prices");
            }
            let (conn, socket_id) = bench.connect();
            bench.subscribe(conn, &socket_id, "solo");
            let channel = if op == "fanout" { "prices" } else { "solo" };
            let request = bench.publish_request(channel, "{\"price\":101.5}");
            for _ in 0..n {
                deliveries += black_box(bench.publish(&request));
            }
        }
        "connection" => {
            for _ in 0..n {
                let (conn, socket_id) = bench.connect();
                bench.subscribe(conn, &socket_id, "lobby");
                deliveries += bench.feed(Input::Closed { conn });
            }
        }
        "presence-join" => {
            let mut joins = Vec::new();
            for user in 0..MEMBERS + MANY {
                let (conn, socket_id) = bench.connect();
                let data = format!("{{\"user_id\":\"u{user}\",\"user_info\":{{\"n\":{user}}}}}");
                let text = Bench::subscribe_message(&socket_id, "presence-room", Some(&data));
                if user < MEMBERS {
                    bench.feed(Input::Text { conn, text });
                } else {
                    joins.push(Input::Text { conn, text });
                }
            }
            for join in joins.into_iter().take(n) {
                deliveries += black_box(bench.feed(join));
            }
        }
        other => return Err(format!("unknown operation {other:?}; one of {OPS:?}")),
    }
    println!("{deliveries} deliveries");
    Ok(())
}

/// Instructions per operation, by name.
fn measure(plan: &Plan) -> Result<BTreeMap<String, f64>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("ferrocast-icount-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut figures = BTreeMap::new();
    let outcome = (|| {
        if plan.engine {
            figures.extend(measure_engine(&exe, &dir)?);
        }
        if plan.shell {
            let server = match &plan.server {
                Some(path) => path.clone(),
                None => exe.with_file_name("ferrocast"),
            };
            if server.exists() {
                figures.extend(measure_shell(&server, &dir)?);
            } else if plan.server.is_some() || !plan.engine {
                return Err(format!("no server binary at {}", server.display()));
            } else {
                eprintln!(
                    "icount: no {} (cargo build --release -p ferrocast): shell figures skipped",
                    server.display()
                );
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    outcome.map(|()| figures)
}

/// The whole server's instructions per operation (`shell: delivery` derived from the
/// fan-out to 100 and the publish to nobody).
fn measure_shell(server: &Path, dir: &Path) -> Result<BTreeMap<String, f64>, String> {
    let mut per_op = BTreeMap::new();
    for op in shell::SHELL_OPS {
        let few = if op == "connection" {
            SHELL_FEW_CONNECTIONS
        } else {
            SHELL_FEW
        };
        let once = shell::total(server, dir, op, few)?;
        let twice = shell::total(server, dir, op, 2 * few)?;
        per_op.insert(op, (twice as f64 - once as f64) / few as f64);
    }
    let mut figures = BTreeMap::new();
    figures.insert(
        "shell: publish request, no subscribers".to_string(),
        per_op["publish"],
    );
    figures.insert(
        format!("shell: publish to {}", shell::FANOUT),
        per_op["fanout"],
    );
    figures.insert(
        "shell: delivery".to_string(),
        (per_op["fanout"] - per_op["publish"]) / shell::FANOUT as f64,
    );
    figures.insert("shell: connection".to_string(), per_op["connection"]);
    Ok(figures)
}

/// The engine's instructions per operation (`delivery` derived from `fanout` and `publish`).
fn measure_engine(exe: &Path, dir: &Path) -> Result<BTreeMap<String, f64>, String> {
    let mut per_op = BTreeMap::new();
    for op in OPS {
        let few = callgrind_total(exe, dir, op, FEW)?;
        let many = callgrind_total(exe, dir, op, MANY)?;
        per_op.insert(op, (many as f64 - few as f64) / (MANY - FEW) as f64);
    }
    let mut figures = BTreeMap::new();
    figures.insert("publish request".to_string(), per_op["publish"]);
    figures.insert("publish to 1000".to_string(), per_op["fanout"]);
    figures.insert(
        "delivery".to_string(),
        (per_op["fanout"] - per_op["publish"]) / (SUBSCRIBERS - 1) as f64,
    );
    figures.insert("connection".to_string(), per_op["connection"]);
    figures.insert("presence join".to_string(), per_op["presence-join"]);
    Ok(figures)
}

/// Total instructions of one run of `op` under callgrind.
fn callgrind_total(exe: &Path, dir: &Path, op: &str, n: usize) -> Result<u64, String> {
    let out: PathBuf = dir.join(format!("{op}-{n}.out"));
    let status = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["--op", op, &n.to_string()])
        .output()
        .map_err(|e| format!("cannot run valgrind (is it installed?): {e}"))?;
    if !status.status.success() {
        return Err(format!(
            "{op} {n} failed under callgrind: {}",
            String::from_utf8_lossy(&status.stderr)
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    total_of(&text).ok_or_else(|| format!("no totals in {}", out.display()))
}

/// The instruction total of a callgrind output file (its `summary:` or `totals:` line).
fn total_of(callgrind_out: &str) -> Option<u64> {
    callgrind_out
        .lines()
        .filter_map(|line| {
            line.strip_prefix("summary:")
                .or_else(|| line.strip_prefix("totals:"))
        })
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// `name = instructions` lines; `#` starts a comment.
fn parse_baseline(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .filter_map(|line| {
            let (name, value) = line.split_once('=')?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

fn read_baseline() -> BTreeMap<String, f64> {
    std::fs::read_to_string(BASELINE)
        .map(|text| parse_baseline(&text))
        .unwrap_or_default()
}

fn write_baseline(figures: &BTreeMap<String, f64>) -> Result<(), String> {
    let mut text = String::from(
        "# Instructions per operation (callgrind), recorded by `icount --write-baseline`.\n",
    );
    for (name, value) in figures {
        text.push_str(&format!("{name} = {value:.1}\n"));
    }
    std::fs::write(BASELINE, text).map_err(|e| format!("{BASELINE}: {e}"))?;
    print_against(figures, &BTreeMap::new());
    Ok(())
}

fn print_against(figures: &BTreeMap<String, f64>, baseline: &BTreeMap<String, f64>) {
    println!(
        "{:<40} {:>12} {:>12} {:>8}",
        "instructions per", "now", "baseline", "change"
    );
    for (name, &now) in figures {
        match baseline.get(name) {
            Some(&base) if base > 0.0 => println!(
                "{name:<40} {now:>12.1} {base:>12.1} {:>+7.1}%",
                (now - base) / base * 100.0
            ),
            _ => println!("{name:<40} {now:>12.1} {:>12} {:>8}", "—", "—"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_read_from_callgrind_output() {
        let out = "version: 1\ncmd: x\nevents: Ir\nfn=main\n1 5\nsummary: 123456\ntotals: 123456\n";
        assert_eq!(total_of(out), Some(123_456));
        assert_eq!(total_of("events: Ir\ntotals: 77\n"), Some(77));
        assert_eq!(total_of("events: Ir\n"), None);
    }

    #[test]
    fn the_baseline_file_round_trips_with_comments() {
        let text = "# comment\ndelivery = 812\npublish request = 40000 # note\nbroken\n";
        let baseline = parse_baseline(text);
        assert_eq!(baseline.len(), 2);
        assert_eq!(baseline["delivery"], 812.0);
        assert_eq!(baseline["publish request"], 40_000.0);
    }
}
