//! `loadgen`: end-to-end load generator for Pusher-compatible servers, with physical floors.
//!
//! Run `loadgen --spawn-server target/release/ferrocast` (or `--ws-url ws://HOST:PORT
//! --server-pid PID` against any server); `--quick` for a few-second smoke run.

#[path = "../loadgen/mod.rs"]
mod loadgen;

use clap::Parser;
use loadgen::args::Args;
use loadgen::client::Shared;
use loadgen::report::Report;
use loadgen::rig::Rig;
use loadgen::{
    app_store, cluster_scenarios, fanout, floor, floor_http, scenarios, soak, sustained, sys, tls,
    worker,
};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = Args::parse();
    sys::raise_nofile_limit();
    if let Some(cpu) = args.cpu {
        sys::pin_to_cpu(cpu);
    }
    let outcome = if args.worker {
        args.tls_ca
            .as_deref()
            .map(tls::client_config)
            .transpose()
            .and_then(|tls| {
                let shared = Shared {
                    app_key: args.app_key.clone(),
                    app_secret: args.app_secret.clone(),
                    epoch_ns: args.epoch_ns,
                    deflate: args.deflate,
                    tls,
                };
                worker::Worker::new(shared).map_err(|e| e.to_string())
            })
            .and_then(worker::Worker::run)
    } else if args.floor_server {
        match (&args.floor_cert, &args.floor_key) {
            (Some(cert), Some(key)) => tls::server_config(cert, key)
                .and_then(|config| floor::run("127.0.0.1", Some(config))),
            _ => floor::run("127.0.0.1", None),
        }
    } else if args.floor_http {
        floor_http::run("127.0.0.1", &args.app_secret)
    } else if let Some(secs) = args.soak {
        return match soak::run(&args, secs) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("loadgen: soak: {e}");
                ExitCode::from(2)
            }
        };
    } else {
        return coordinate(args);
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One scenario: measures, adds rows and failures to the report.
type Scenario = fn(&mut Rig, &mut Report) -> Result<(), String>;

fn coordinate(args: Args) -> ExitCode {
    let limit = sys::raise_nofile_limit();
    if args.cluster.is_some() && args.spawn_server.is_none() {
        eprintln!("loadgen: --cluster needs --spawn-server PATH (the nodes are started here)");
        return ExitCode::from(2);
    }
    if args.app_store.is_some() && args.spawn_server.is_none() {
        eprintln!("loadgen: --app-store needs --spawn-server PATH (the servers are started here)");
        return ExitCode::from(2);
    }
    let mut rig = match Rig::new(args) {
        Ok(rig) => rig,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    print_setup(&rig, limit);
    let plot_dir = rig.args.plot.clone();
    let mut report = Report::default();
    let plan = rig.plan.clone();
    let steps: [(&str, Scenario); 10] = [
        ("fanout", fanout::run),
        ("channels", scenarios::many_channels),
        ("storm", scenarios::storm),
        ("idle", scenarios::idle),
        ("presence", scenarios::presence),
        ("sustained", sustained::run),
        ("sequential", sustained::sequential),
        ("cluster-fanout", cluster_scenarios::fanout),
        ("cluster-connections", cluster_scenarios::connections),
        ("app-store", app_store::run),
    ];
    run_steps(&mut rig, &mut report, &steps, |name| plan.runs(name));
    if rig.tls_files.is_some() {
        // The same scenarios again over TLS, each figure beside the plain one just measured.
        rig.set_secure(true);
        run_steps(&mut rig, &mut report, &steps, |name| {
            TLS_SCENARIOS.contains(&name) && plan.runs(name)
        });
    }
    rig.shutdown();
    println!();
    println!(
        "load average at the end: {:.2}",
        sys::load_average().unwrap_or(0.0)
    );
    print!("{}", report.table());
    if let Some(dir) = &plot_dir {
        match loadgen::plot::write(dir, "figures.json", &report.measured) {
            Ok(files) => println!("charts: {}", files.join(", ")),
            Err(e) => report.fail(format!("cannot write the charts: {e}")),
        }
    }
    for note in &report.notes {
        println!("{note}");
    }
    if report.failures.is_empty() {
        println!("correctness: every delivery arrived exactly once and in order; no client was refused or dropped");
        ExitCode::SUCCESS
    } else {
        println!("correctness: {} FAILURES", report.failures.len());
        for failure in &report.failures {
            println!("  - {failure}");
        }
        ExitCode::FAILURE
    }
}

/// The scenarios `--tls` runs a second time over TLS.
const TLS_SCENARIOS: [&str; 3] = ["fanout", "storm", "idle"];

/// Runs the steps `wanted` selects, recording a broken one's error as a failure.
fn run_steps(
    rig: &mut Rig,
    report: &mut Report,
    steps: &[(&str, Scenario)],
    wanted: impl Fn(&str) -> bool,
) {
    for &(name, step) in steps {
        if !wanted(name) {
            continue;
        }
        if let Err(e) = step(rig, report).and_then(|()| rig.check_server()) {
            report.fail(format!("{}{name}: {e}", rig.mode()));
            // A broken scenario may leave clients behind; start the next one clean.
            if let Err(e) = rig.close_all() {
                report.fail(format!("{name}: cannot close its clients: {e}"));
                break;
            }
        }
    }
}

fn print_setup(rig: &Rig, limit: u64) {
    let source = rig
        .server_pid
        .and_then(sys::process_cpu_ns)
        .map(|(_, s)| match s {
            sys::CpuSource::Schedstat => "/proc/PID/task/*/schedstat (ns)".to_string(),
            sys::CpuSource::StatTicks => format!(
                "/proc/PID/stat utime+stime ({} ticks/s)",
                sys::clock_ticks_per_sec()
            ),
        })
        .unwrap_or_else(|| "not measured (no --server-pid)".into());
    println!(
        "loadgen: server {} (pid {}), {} CPUs, {}, descriptor limit {limit}, load average {:.2}",
        rig.ws.addr,
        rig.server_pid.map_or("unknown".into(), |p| p.to_string()),
        rig.cpus,
        if rig.pinned {
            format!(
                "server on CPU {}, generator on CPU {}",
                rig.args.server_cpu(),
                rig.args.generator_cpu
            )
        } else {
            "not pinned".into()
        },
        sys::load_average().unwrap_or(0.0)
    );
    println!(
        "loadgen: server CPU time from {source}; plan {:?}",
        rig.plan
    );
}
