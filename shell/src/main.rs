//! The `ferrocast` binary: parse the configuration, bind, serve until a signal.

use ferrocast::Cli;

use ferrocast::{LogFormat, Server, Settings};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::from_process();
    if cli.check_config {
        return check_config(&cli);
    }
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
    if let Err(message) = init_logging(
        settings.server.log_level.as_deref(),
        settings.server.log_format,
    ) {
        eprintln!("ferrocast: {message}");
        return ExitCode::from(2);
    }
    if settings.engine.uses_default_credentials() {
        tracing::warn!(
            "an app uses the default example credentials (app-key / app-secret); \
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
    if let Some(path) = &cli.config {
        server.reload_config_from(path.clone(), cli.overrides.clone());
    }
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

/// `--check-config`: everything `bind` would refuse except the port itself, then the
/// effective settings.
fn check_config(cli: &Cli) -> ExitCode {
    let checked = load_settings(cli).and_then(|settings| {
        if let Some(files) = settings.server.tls.files() {
            files.load().map_err(|e| format!("TLS: {e}"))?;
        }
        settings
            .to_redacted_toml()
            .map_err(|e| format!("cannot print the configuration: {e}"))
    });
    match checked {
        Ok(text) => {
            print!("{text}");
            eprintln!("ferrocast: the configuration is valid");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("ferrocast: {message}");
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

fn init_logging(level: Option<&str>, format: LogFormat) -> Result<(), String> {
    let filter = match level {
        Some(level) => {
            EnvFilter::try_new(level).map_err(|e| format!("bad log level {level:?}: {e}"))?
        }
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // Colour codes only for a terminal: logs piped to files and tests stay greppable.
        LogFormat::Human => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        // The event's fields at the top level, beside timestamp, level and target.
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
    Ok(())
}
