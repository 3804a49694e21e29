//! The `ferrocast` binary: parse the configuration, bind, serve until a signal.

use clap::Parser;
use ferrocast::cli::Cli;
use ferrocast::webhook_delivery;
use ferrocast::{Server, Settings};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = init_logging(cli.log_level.as_deref()) {
        eprintln!("ferrocast: {message}");
        return ExitCode::from(2);
    }
    let text = match &cli.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("ferrocast: cannot read {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        None => String::new(),
    };
    let settings = match Settings::load(&text, &cli.overrides()) {
        Ok(settings) => settings,
        Err(message) => {
            let source = cli
                .config
                .as_ref()
                .map(|p| format!(" in {}", p.display()))
                .unwrap_or_default();
            eprintln!("ferrocast: bad configuration{source}: {message}");
            return ExitCode::from(2);
        }
    };
    if settings.engine.uses_default_credentials() {
        tracing::warn!(
            "WARNING: an app uses the default example credentials (app-key / app-secret); \
             set real ones with --config or FERROCAST_APP_KEY / FERROCAST_APP_SECRET"
        );
    }
    let server_settings = &settings.server;
    let (webhooks, webhook_workers) = match webhook_delivery::start(
        server_settings.webhook_workers,
        server_settings.webhook_queue_capacity,
        server_settings.webhook_retry_policy(),
    ) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("ferrocast: cannot start webhook delivery threads: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut server = match Server::bind(&settings, Box::new(webhooks.clone())) {
        Ok(server) => server,
        Err(e) => {
            eprintln!(
                "ferrocast: cannot listen on {}:{}: {e}",
                settings.server.host, settings.server.port
            );
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = server.handle_signals() {
        eprintln!("ferrocast: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let addr = server.local_addr();
    tracing::info!(
        %addr,
        apps = settings.engine.apps.len(),
        workers = server.workers(),
        "listening"
    );
    // Tests and scripts wait for this exact line on stdout.
    println!("ferrocast listening on {addr}");
    let outcome = server.run();
    webhooks.close();
    webhook_workers.join_within(Duration::from_millis(settings.server.close_linger_ms));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocast: event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: Option<&str>) -> Result<(), String> {
    let filter = match level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| format!("bad log level {level:?}: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    // Colour codes only for a terminal: logs piped to files and tests stay greppable.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
