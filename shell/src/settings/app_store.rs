//! The `[app_store]` table: where apps come from besides the file. With a database driver the
//! engine looks up every key and id it does not know (see [`crate::app_store`]).

use super::declared_defaults;
use crate::bus::redact_url;
use clap::Args;
use ferrocast_engine::AppStoreConfig;
use serde::{Deserialize, Serialize};

/// Which store apps are read from, besides the file's `[[apps]]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppStoreDriver {
    /// The configuration file only.
    #[default]
    Config,
    /// A PostgreSQL table in soketi's layout, changes heard through LISTEN/NOTIFY.
    Postgres,
    /// A MySQL or MariaDB table in soketi's layout.
    Mysql,
}

/// The `[app_store]` settings, each also a flag and an environment variable.
#[derive(Clone, PartialEq, Eq, Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppStoreSettings {
    /// Where apps come from besides the file: `config` (the file only), `postgres` or `mysql`
    /// (a table in soketi's layout, looked up by key or id and cached).
    #[arg(
        id = "app_store.driver",
        long = "app-store-driver",
        env = "FERROCAST_APP_STORE_DRIVER",
        value_enum,
        default_value_t = AppStoreDriver::Config
    )]
    pub driver: AppStoreDriver,

    /// The database: `postgres://user:password@host:port/db` or
    /// `mysql://user:password@host:port/db` (needed with a database driver).
    #[arg(
        id = "app_store.url",
        long = "app-store-url",
        env = "FERROCAST_APP_STORE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,

    /// The table the apps are read from (an SQL identifier, `schema.table` allowed).
    #[arg(
        id = "app_store.table",
        long = "app-store-table",
        env = "FERROCAST_APP_STORE_TABLE",
        default_value = "apps"
    )]
    pub table: String,

    /// Seconds an app read from the database is served before it is read again.
    #[arg(
        id = "app_store.cache_ttl_secs",
        long = "app-store-cache-ttl-secs",
        env = "FERROCAST_APP_STORE_CACHE_TTL_SECS",
        default_value_t = 60
    )]
    pub cache_ttl_secs: u64,

    /// Seconds a key or id the database does not have is refused without asking again.
    #[arg(
        id = "app_store.missing_ttl_secs",
        long = "app-store-missing-ttl-secs",
        env = "FERROCAST_APP_STORE_MISSING_TTL_SECS",
        default_value_t = 5
    )]
    pub missing_ttl_secs: u64,

    /// Milliseconds one lookup may take (connecting included) before it is given up and the
    /// connection or request waiting for it is refused.
    #[arg(
        id = "app_store.lookup_timeout_ms",
        long = "app-store-lookup-timeout-ms",
        env = "FERROCAST_APP_STORE_LOOKUP_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub lookup_timeout_ms: u64,

    /// The PostgreSQL channel to LISTEN on: each notification's payload is an app id to read
    /// again (packaging/sql/postgres.sql installs a trigger that sends them).
    #[arg(
        id = "app_store.notify_channel",
        long = "app-store-notify-channel",
        env = "FERROCAST_APP_STORE_NOTIFY_CHANNEL",
        default_value = "ferrocast_apps"
    )]
    pub notify_channel: String,
}

impl Default for AppStoreSettings {
    /// The built-in defaults: the declared `default_value`s, with no environment read.
    fn default() -> Self {
        declared_defaults()
    }
}

impl std::fmt::Debug for AppStoreSettings {
    // The URL's password is a secret: it never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppStoreSettings")
            .field("driver", &self.driver)
            .field("url", &self.url.as_deref().map(redact_store_url))
            .field("table", &self.table)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .field("missing_ttl_secs", &self.missing_ttl_secs)
            .field("lookup_timeout_ms", &self.lookup_timeout_ms)
            .field("notify_channel", &self.notify_channel)
            .finish()
    }
}

impl AppStoreSettings {
    /// Whether apps are looked up in a database.
    pub fn uses_database(&self) -> bool {
        self.driver != AppStoreDriver::Config
    }

    /// What the engine is told: lookups on with a database, off with the file alone.
    pub fn engine_config(&self) -> AppStoreConfig {
        AppStoreConfig {
            lookups: self.uses_database(),
            cache_ttl_secs: self.cache_ttl_secs,
            missing_ttl_secs: self.missing_ttl_secs,
            lookup_timeout_ms: self.lookup_timeout_ms,
            ..AppStoreConfig::default()
        }
    }

    /// Checks what serde cannot: a URL of the driver's scheme, identifiers, sane times.
    pub(super) fn validate(&self) -> Result<(), String> {
        let schemes: &[&str] = match self.driver {
            AppStoreDriver::Config => {
                return match self.url {
                    Some(_) => Err("app_store.url is set but app_store.driver is \"config\": \
                                    set driver = \"postgres\" or \"mysql\" to use it"
                        .into()),
                    None => Ok(()),
                }
            }
            AppStoreDriver::Postgres => &["postgres://", "postgresql://"],
            AppStoreDriver::Mysql => &["mysql://"],
        };
        let driver = format!("{:?}", self.driver).to_ascii_lowercase();
        let Some(url) = self.url.as_deref() else {
            return Err(format!(
                "app_store.url is required with driver = \"{driver}\" \
                 (flag --app-store-url, variable FERROCAST_APP_STORE_URL)"
            ));
        };
        if !schemes.iter().any(|scheme| url.starts_with(scheme)) {
            return Err(format!(
                "app_store.url {:?} must start with {} for driver = \"{driver}\"",
                redact_store_url(url),
                schemes.join(" or ")
            ));
        }
        sql_identifier(&self.table, true)
            .map_err(|why| format!("app_store.table {:?} {why}", self.table))?;
        sql_identifier(&self.notify_channel, false)
            .map_err(|why| format!("app_store.notify_channel {:?} {why}", self.notify_channel))?;
        if self.cache_ttl_secs == 0 || self.lookup_timeout_ms == 0 {
            return Err(
                "app_store.cache_ttl_secs and app_store.lookup_timeout_ms must be at least 1"
                    .into(),
            );
        }
        Ok(())
    }

    /// The table as `[app_store]` shows it in `--print-config`: the URL's password hidden.
    pub(super) fn redacted(&self) -> toml::Table {
        let mut shown = self.clone();
        shown.url = shown.url.as_deref().map(redact_store_url);
        super::table_of(&shown)
    }
}

/// Whether `name` is a plain SQL identifier (letters, digits, `_`, not starting with a digit,
/// at most 63 bytes, PostgreSQL's limit), or two joined by a dot when `qualified` is allowed.
/// Only such names are put into queries, quoted, so no name can smuggle SQL in.
fn sql_identifier(name: &str, qualified: bool) -> Result<(), &'static str> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > if qualified { 2 } else { 1 } {
        return Err("has too many dots");
    }
    for part in parts {
        let mut bytes = part.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        if !first_ok || part.len() > 63 || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(
                "is not an SQL identifier (letters, digits and _, not starting with a digit, \
                 at most 63 characters)",
            );
        }
    }
    Ok(())
}

/// A database URL with its password replaced by `***`, in the user part
/// (`user:password@`) and in a `password=` query parameter alike.
pub(crate) fn redact_store_url(url: &str) -> String {
    let url = redact_url(url);
    let Some((base, query)) = url.split_once('?') else {
        return url;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((name, _)) if name.eq_ignore_ascii_case("password") => format!("{name}=***"),
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_in_the_user_part_and_the_query() {
        assert_eq!(
            redact_store_url("postgres://ferro:s3cret@127.0.0.1:5432/apps"),
            "postgres://ferro:***@127.0.0.1:5432/apps"
        );
        assert_eq!(
            redact_store_url("mysql://u@h/db?password=s3cret&ssl-mode=required"),
            "mysql://u@h/db?password=***&ssl-mode=required"
        );
        assert_eq!(redact_store_url("postgres://h/db"), "postgres://h/db");
        let settings = AppStoreSettings {
            driver: AppStoreDriver::Postgres,
            url: Some("postgres://ferro:s3cret@h/db".into()),
            ..AppStoreSettings::default()
        };
        let debug = format!("{settings:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("***"),
            "{debug}"
        );
        let shown = toml::to_string(&settings.redacted()).unwrap();
        assert!(
            !shown.contains("s3cret") && shown.contains("***"),
            "{shown}"
        );
    }

    #[test]
    fn identifiers_are_letters_digits_and_underscores() {
        for good in ["apps", "_x", "App_2", "tenant.apps"] {
            assert_eq!(sql_identifier(good, true), Ok(()), "{good}");
        }
        for bad in [
            "",
            "2apps",
            "apps;drop",
            "a\"b",
            "a`b",
            "a b",
            "a.b.c",
            ".apps",
            "apps.",
            &"x".repeat(64),
        ] {
            assert!(sql_identifier(bad, true).is_err(), "{bad:?}");
        }
        assert!(sql_identifier("a.b", false).is_err());
    }
}
