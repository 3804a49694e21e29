//! The command line. The settings' flags come from the structs in [`crate::settings`], flattened
//! here, so that every setting is declared once; this file adds only what is not a setting.

use crate::settings::{
    AdminSettings, AppStoreSettings, ClusterOverrides, EngineOverrides, FirstAppOverrides,
    MetricsSettings, Overrides, RateLimitSettings, ServerSettings,
};
use clap::error::{ContextKind, ContextValue, ErrorKind};
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

    /// Check the configuration, the TLS files included: print the effective settings
    /// (secrets redacted) and exit 0, or say what is wrong and exit 1.
    #[arg(long)]
    pub check_config: bool,

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

    /// The `[admin]` settings as given here.
    #[command(flatten)]
    admin: AdminSettings,

    /// The `[app_store]` settings as given here.
    #[command(flatten)]
    app_store: AppStoreSettings,

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
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Cli::command()
            .try_get_matches_from(&args)
            .map_err(|e| name_the_variable(e, &args))?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.overrides = Overrides::given(
            &cli.server,
            &cli.engine,
            &cli.first_app,
            &cli.cluster,
            &cli.rate_limit,
            &cli.metrics,
            &cli.admin,
            &cli.app_store,
            &matches,
        );
        Ok(cli)
    }
}

/// A bad value that came from an environment variable is reported by that variable's name:
/// clap names the flag, which the user never typed.
fn name_the_variable(error: clap::Error, args: &[OsString]) -> clap::Error {
    if !matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return error;
    }
    let Some(ContextValue::String(shown)) = error.get(ContextKind::InvalidArg) else {
        return error;
    };
    let flag = shown.split_whitespace().next().unwrap_or_default();
    let typed = args.iter().skip(1).any(|arg| {
        arg.to_str().is_some_and(|arg| {
            arg == flag
                || arg
                    .strip_prefix(flag)
                    .is_some_and(|rest| rest.starts_with('='))
        })
    });
    let command = Cli::command();
    let variable = command
        .get_arguments()
        .find(|arg| {
            arg.get_long()
                .is_some_and(|long| flag == format!("--{long}"))
        })
        .and_then(|arg| arg.get_env())
        .and_then(|env| env.to_str());
    let (false, Some(variable)) = (typed, variable) else {
        return error;
    };
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default();
    let message = first.strip_prefix("error: ").unwrap_or(first).replace(
        &format!("'{shown}'"),
        &format!("{variable} (the setting of {flag})"),
    );
    command.clone().error(error.kind(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_value_from_a_flag_names_the_flag() {
        let error = Cli::try_parse_args(["ferrocast", "--port", "abc"]).unwrap_err();
        assert!(error.to_string().contains("'--port <PORT>'"), "{error}");
    }
}
