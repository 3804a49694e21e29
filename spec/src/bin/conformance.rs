//! `ferrocast-conformance`: replays the conformance vectors over real sockets against a running
//! Pusher-compatible server (`--url`), or against `ferrocast` binaries it starts itself with each
//! vector's configuration (`--server-bin`). Prints `ok`/`FAIL`/`skip` per vector and a closing
//! `N passed, N failed, N skipped` line, after a
//! `score: pusher-docs P/R, client-behaviour P/R, ferrocast P/R` line (vectors passed / run
//! per source class of their rules); exits non-zero on any failure.
//!
//! A server that goes away mid-run (its process exits, or its port stops accepting
//! connections) is reported once, `server crashed at vector ID`, instead of as a failure of
//! every vector after it: those are printed `not-run` and counted apart, and the exit code is 3.

use ferrocast_spec::live::{self, http::WebhookReceiver, redis::RedisProcess, Options};
use ferrocast_spec::rules::{self, ClassScore};
use ferrocast_spec::template::App;
use ferrocast_spec::{vector, vectors_dir, Tally};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: ferrocast-conformance (--url ws://HOST:PORT | --host H --port P | --server-bin PATH)
    [--app-id ID] [--app-key KEY] [--app-secret SECRET] [--vectors DIR] [--filter TEXT]
    [--timeout-ms 2000] [--quiet-ms 150] [--max-sleep-secs 10] [--skip-webhooks] [--cluster N]

  --url / --host --port  a running server; vectors needing their own configuration are skipped
  --server-bin PATH      start PATH --host 127.0.0.1 --port 0 --config FILE for every vector
  --app-*                the app under test (default app-id / app-key / app-secret)
  --filter TEXT          only vectors whose id contains TEXT
  --skip-webhooks        skip vectors that expect webhook deliveries
  --cluster N            with --server-bin: N nodes per vector over a redis-server the runner
                         starts (from PATH); clients spread over the nodes, HTTP to each in turn";

fn main() -> ExitCode {
    match parse(std::env::args().skip(1).collect()) {
        Ok(Some((options, dir, filter))) => run(&options, &dir, &filter),
        Ok(None) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferrocast-conformance: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

type Parsed = (Options, PathBuf, String);

fn parse(args: Vec<String>) -> Result<Option<Parsed>, String> {
    let mut url = None;
    let mut host = None;
    let mut port = None;
    let mut options = Options {
        target: None,
        server_bin: None,
        app: App {
            id: "app-id".into(),
            key: "app-key".into(),
            secret: "app-secret".into(),
        },
        timeout: Duration::from_millis(2000),
        quiet: Duration::from_millis(150),
        max_sleep_secs: 10.0,
        skip_webhooks: false,
        cluster_nodes: 0,
        redis_url: None,
        work_dir: std::env::temp_dir()
            .join(format!("ferrocast-conformance-{}", std::process::id())),
    };
    let mut dir = vectors_dir();
    let mut filter = String::new();
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let millis = |v: String| {
            v.parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| format!("{flag} takes milliseconds"))
        };
        match flag.as_str() {
            "--url" => url = Some(value()?),
            "--host" => host = Some(value()?),
            "--port" => port = Some(value()?),
            "--server-bin" => options.server_bin = Some(PathBuf::from(value()?)),
            "--app-id" => options.app.id = value()?,
            "--app-key" => options.app.key = value()?,
            "--app-secret" => options.app.secret = value()?,
            "--vectors" => dir = PathBuf::from(value()?),
            "--filter" => filter = value()?,
            "--skip-webhooks" => options.skip_webhooks = true,
            "--cluster" => {
                options.cluster_nodes = value()?
                    .parse()
                    .map_err(|_| "--cluster takes a number of nodes".to_string())?
            }
            "--timeout-ms" => options.timeout = millis(value()?)?,
            "--quiet-ms" => options.quiet = millis(value()?)?,
            "--max-sleep-secs" => {
                options.max_sleep_secs = value()?
                    .parse()
                    .map_err(|_| "--max-sleep-secs takes seconds".to_string())?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    options.target = match (url, host, port) {
        (Some(url), None, None) => Some(live::target_from_url(&url)?),
        (None, Some(host), Some(port)) => Some(format!("{host}:{port}")),
        (None, None, None) if options.server_bin.is_some() => None,
        _ => return Err("give --url, or --host and --port, or --server-bin".into()),
    };
    if options.cluster_nodes > 1 && options.server_bin.is_none() {
        return Err("--cluster starts its nodes: it needs --server-bin".into());
    }
    Ok(Some((options, dir, filter)))
}

fn run(options: &Options, dir: &std::path::Path, filter: &str) -> ExitCode {
    let vectors = match vector::load_dir(dir) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("ferrocast-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    // Every vector is scored under the source class of its rules (`rules.json` beside them).
    let catalogue = match rules::load(&dir.join("rules.json")) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ferrocast-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&options.work_dir) {
        eprintln!("ferrocast-conformance: {}: {e}", options.work_dir.display());
        return ExitCode::from(2);
    }
    let receiver = match &options.server_bin {
        Some(_) => match WebhookReceiver::start() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("ferrocast-conformance: cannot start the webhook receiver: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // One Redis for the whole run: pub/sub keeps no state, and each vector's nodes use a
    // prefix of their own.
    let redis = if options.cluster_nodes > 1 {
        match RedisProcess::start(&options.work_dir, Duration::from_secs(10)) {
            Ok(redis) => Some(redis),
            Err(e) => {
                eprintln!("ferrocast-conformance: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let options = &Options {
        redis_url: redis.as_ref().map(|r| r.url.clone()),
        ..options.clone()
    };
    // A crash is told from failures by the port refusing connections it accepted before.
    if let (None, Some(target)) = (&options.server_bin, &options.target) {
        if let Err(e) = live::accepts_connections(target, options.timeout) {
            eprintln!("ferrocast-conformance: the server is not reachable: {e}");
            return ExitCode::from(2);
        }
    }
    let mut tally = Tally::default();
    let mut score = ClassScore::default();
    let mut crashed_at: Option<&str> = None;
    for vector in vectors.iter().filter(|v| v.id.contains(filter)) {
        let class = rules::class_of(vector, &catalogue);
        let outcome = if crashed_at.is_some() {
            ferrocast_spec::Outcome::NotRun
        } else {
            live::run_vector(vector, options, receiver.as_ref())
        };
        println!("{} [{}]", outcome.line(&vector.id), class.name());
        if let ferrocast_spec::Outcome::ServerCrashed(_) = outcome {
            println!("server crashed at vector {}", vector.id);
            crashed_at = Some(&vector.id);
        }
        tally.add(&outcome);
        score.add(class, &outcome);
    }
    drop(receiver);
    drop(redis);
    let _ = std::fs::remove_dir_all(&options.work_dir);
    if tally.known > 0 {
        println!("{} known failures (counted as skipped)", tally.known);
    }
    if let Some(id) = crashed_at {
        println!(
            "server crashed at vector {id}: {} vectors after it not run",
            tally.not_run
        );
    }
    println!("{}", score.line());
    println!("{}", tally.closing_line());
    if crashed_at.is_some() {
        ExitCode::from(3)
    } else if tally.failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
