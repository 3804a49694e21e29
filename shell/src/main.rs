//! The `ferrocast` binary: parse the configuration, bind, serve until a signal.

use ferrocast::Cli;

use ferrocast::{Server, Settings};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::from_process();
    let settings = match load_settings(&cli) {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("ferrocast: {message}");
            return ExitCode::from(2);
        }
    };
    if cli.print_config {
        return match settings.to_redacted_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ferrocast: cannot print the configuration: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(message) = init_logging(settings.server.log_level.as_deref()) {
        eprintln!("ferrocast: {message}");
        return ExitCode::from(2);
    }
    if settings.engine.uses_default_credentials() {
        tracing::warn!(
            "WARNING: an app uses the default example credentials (app-key / app-secret); \
             set real ones with --config or FERROCAST_APP_KEY / FERROCAST_APP_SECRET"
        );
    }
    let server_settings = &settings.server;
    let (webhooks, webhook_workers) = ferrocast::webhook_pool(
        server_settings.webhook_workers,
        server_settings.webhook_queue_capacity,
        server_settings.webhook_retry_policy(),
    );
    let mut server = match Server::bind(&settings, Box::new(webhooks)) {
        Ok(server) => server,
        Err(e) => {
            // Says whether the TLS files or the listening socket failed.
            eprintln!("ferrocast: {e}");
            return ExitCode::FAILURE;
        }
    };
    server.supervise_webhook_workers(webhook_workers);
    if let Err(e) = server.handle_signals() {
        eprintln!("ferrocast: cannot install signal handlers: {e}");
        return ExitCode::FAILURE;
    }
    let addr = server.local_addr();
    tracing::info!(
        %addr,
        apps = settings.engine.apps.len(),
        workers = server.workers(),
        tls = server.is_tls(),
        "listening"
    );
    // Tests and scripts wait for this exact line on stdout.
    println!("ferrocast listening on {addr}");
    if let Some(metrics) = server.metrics_addr() {
        tracing::info!(addr = %metrics, "serving metrics at /metrics");
        println!("ferrocast metrics on {metrics}");
    }
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferrocast: event loop failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the configuration file, if any, and layers the flags and environment over it.
fn load_settings(cli: &Cli) -> Result<Settings, String> {
    let text = match &cli.config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        None => String::new(),
    };
    Settings::load(&text, &cli.overrides).map_err(|message| match &cli.config {
        Some(path) => format!("bad configuration in {}: {message}", path.display()),
        None => format!("bad configuration: {message}"),
    })
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
