//! `ferrocast-echo`: the server's sockets, handshake, frame codec, output queues and close
//! paths with an echo protocol in place of Pusher's, for outside WebSocket conformance suites
//! (Autobahn|Testsuite). Built only with `--features echo`; it has no HTTP API and no apps.
//!
//! Usage: `ferrocast-echo [PORT]` (default 9001), listening on 127.0.0.1. It prints
//! `ferrocast-echo listening on ADDR` once bound and serves until SIGINT or SIGTERM.

use ferrocast::{Overrides, Server, Settings};
use std::process::ExitCode;

/// Large enough for the suite's biggest messages (16 MiB in cases 9.1.6 and 9.2.6) and for
/// the bursts of its performance cases to be echoed without the slow-consumer limit.
const SETTINGS: &str = r#"
[server]
host = "127.0.0.1"
workers = 1
max_output_bytes = 134217728
max_output_frames = 1000000
[rate_limit]
enabled = false
[[apps]]
id = "echo"
key = "echo"
secret = "echo"
max_message_bytes = 67108864
"#;

fn main() -> ExitCode {
    let port = match std::env::args().nth(1).map(|p| p.parse::<u16>()) {
        None => 9001,
        Some(Ok(port)) => port,
        Some(Err(e)) => {
            eprintln!("ferrocast-echo: the port must be a number: {e}");
            return ExitCode::from(2);
        }
    };
    let text = format!("{SETTINGS}\n");
    let mut settings = match Settings::load(&text, &Overrides::default()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("ferrocast-echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    settings.server.port = port;
    let (webhooks, _) = ferrocast::webhook_pool(1, 1, Default::default());
    let mut server = match Server::bind(&settings, Box::new(webhooks)) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("ferrocast-echo: {e}");
            return ExitCode::FAILURE;
        }
    };
    server.serve_echo();
    if let Err(e) = server.handle_signals() {
        eprintln!("ferrocast-echo: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    println!("ferrocast-echo listening on {}", server.local_addr());
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocast-echo: {e}");
            ExitCode::FAILURE
        }
    }
}
