//! The command line. The settings' flags come from the structs in [`crate::settings`], flattened
//! here, so that every setting is declared once; this file adds only what is not a setting.

use crate::settings::{
    ClusterOverrides, EngineOverrides, FirstAppOverrides, MetricsSettings, Overrides,
    RateLimitSettings, ServerSettings,
};
use clap::{CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

/// Ferrocast: a Pusher Channels compatible real-time server.
///
/// Every `[server]` and `[cluster]` setting, `path_prefix` and the first app's credentials are
/// a flag, an environment variable and a key of the TOML file; a flag beats its variable, which
/// beats the file, which beats the default.
#[derive(Clone, Debug, Parser)]
#[command(name = "ferrocast", version, about, long_about = None)]
pub struct Cli {
    /// TOML configuration file: a `[server]` table plus the engine's settings and `[[apps]]`.
    #[arg(short, long, env = "FERROCAST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Print the effective configuration as TOML (secrets redacted) and exit.
    #[arg(long)]
    pub print_config: bool,

    /// The `[server]` settings as given here (file values are merged in by `Settings::load`).
    #[command(flatten)]
    server: ServerSettings,

    /// The engine settings that have a flag.
    #[command(flatten)]
    engine: EngineOverrides,

    /// The first app's settings that have a flag.
    #[command(flatten)]
    first_app: FirstAppOverrides,

    /// The `[cluster]` settings that have a flag.
    #[command(flatten)]
    cluster: ClusterOverrides,

    /// The `[rate_limit]` settings as given here.
    #[command(flatten)]
    rate_limit: RateLimitSettings,

    /// The `[metrics]` settings as given here.
    #[command(flatten)]
    metrics: MetricsSettings,

    /// The settings given as flags or environment variables, for `Settings::load`.
    #[arg(skip)]
    pub overrides: Overrides,
}

impl Cli {
    /// Parses the process's arguments and environment; exits with clap's message if they are bad.
    pub fn from_process() -> Cli {
        Self::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the program name first) and the process's environment.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Cli::command().try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.overrides = Overrides::given(
            &cli.server,
            &cli.engine,
            &cli.first_app,
            &cli.cluster,
            &cli.rate_limit,
            &cli.metrics,
            &matches,
        );
        Ok(cli)
    }
}
