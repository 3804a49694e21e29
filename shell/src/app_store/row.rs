//! One row of soketi's `apps` table layout, as the database gave it, turned into the engine's
//! [`AppConfig`].
//!
//! The layout is soketi's (column names, `-1` for "no limit", sizes in kilobytes, webhooks as a
//! JSON array), so that a soketi user points this server at the same table. A column that is
//! absent or NULL keeps the engine's default; columns the mapping does not know are ignored
//! (tables often carry `created_at` and such). A value that cannot be meant (a missing secret,
//! a limit that is text or negative, webhooks that are not JSON) is an error naming the app and
//! the column: the app is then refused as if it were not there, never half-read.

use ferrocast_engine::{AppConfig, WebhookConfig};
use std::collections::BTreeMap;
use std::fmt;

/// One column's value, in the few shapes both databases' drivers give.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    /// SQL NULL.
    Null,
    /// Any integer column (`tinyint(1)` and `smallint` flags included).
    Int(i64),
    /// A floating-point or decimal column.
    Float(f64),
    /// A text column, or any column PostgreSQL gave as text (its JSON columns included).
    Text(String),
}

/// A row: column name → value.
pub(crate) type Row = BTreeMap<String, Value>;

/// Why a row is not an app, naming the app and, when one is to blame, the column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RowError {
    /// The row's `id`, or `?` when even that is unreadable.
    pub(crate) app: String,
    /// The column at fault, if one is.
    pub(crate) column: Option<&'static str>,
    /// What is wrong, for people.
    pub(crate) problem: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.column {
            Some(column) => write!(f, "app {:?}: column {column}: {}", self.app, self.problem),
            None => write!(f, "app {:?}: {}", self.app, self.problem),
        }
    }
}

impl std::error::Error for RowError {}

/// Every column the mapping reads, in the order of soketi's `CREATE TABLE` (the rest of a
/// row is ignored).
#[cfg(test)]
pub(crate) const COLUMNS: [&str; 18] = [
    "id",
    "key",
    "secret",
    "max_connections",
    "enable_client_messages",
    "enabled",
    "max_backend_events_per_sec",
    "max_client_events_per_sec",
    "max_read_req_per_sec",
    "max_presence_members_per_channel",
    "max_presence_member_size_in_kb",
    "max_channel_name_length",
    "max_event_channels_at_once",
    "max_event_name_length",
    "max_event_payload_in_kb",
    "max_event_batch_size",
    "webhooks",
    "enable_user_authentication",
];

/// The app a row describes, checked as the engine checks an app from the file.
pub(crate) fn app_from_row(row: &Row) -> Result<AppConfig, RowError> {
    let id = match row.get("id") {
        Some(Value::Text(id)) if !id.is_empty() => id.clone(),
        Some(Value::Int(id)) => id.to_string(),
        _ => {
            return Err(RowError {
                app: "?".into(),
                column: Some("id"),
                problem: "missing or not text".into(),
            })
        }
    };
    let reader = Reader { row, app: &id };
    let mut app = AppConfig {
        id: id.clone(),
        key: reader.required_text("key")?,
        secret: reader.required_text("secret")?,
        ..AppConfig::default()
    };
    if let Some(limit) = reader.limit("max_connections", 0)? {
        app.max_connections = limit
            .map(|n| reader.fit("max_connections", n))
            .transpose()?;
    }
    if let Some(on) = reader.flag("enable_client_messages")? {
        app.client_events = on;
    }
    if let Some(on) = reader.flag("enabled")? {
        app.enabled = on;
    }
    if let Some(limit) = reader.limit("max_backend_events_per_sec", 1)? {
        app.max_events_per_sec = limit
            .map(|n| reader.fit("max_backend_events_per_sec", n))
            .transpose()?;
    }
    if let Some(limit) = reader.limit("max_client_events_per_sec", 1)? {
        // soketi's limit is a rate with no separate burst: a second's worth may come at once.
        let rate = match limit {
            Some(n) => reader.fit("max_client_events_per_sec", n)?,
            None => u32::MAX,
        };
        app.client_event_rate_per_sec = rate;
        app.client_event_burst = rate;
    }
    if let Some(limit) = reader.limit("max_read_req_per_sec", 1)? {
        app.max_reads_per_sec = limit
            .map(|n| reader.fit("max_read_req_per_sec", n))
            .transpose()?;
    }
    if let Some(n) = reader.count("max_presence_members_per_channel")? {
        app.max_presence_members = n;
    }
    if let Some(bytes) = reader.kilobytes("max_presence_member_size_in_kb")? {
        app.max_presence_user_info_bytes = bytes;
    }
    if let Some(n) = reader.count("max_channel_name_length")? {
        app.max_channel_name_len = n;
    }
    if let Some(n) = reader.count("max_event_channels_at_once")? {
        app.max_event_channels = n;
    }
    if let Some(n) = reader.count("max_event_name_length")? {
        app.max_event_name_len = n;
    }
    if let Some(bytes) = reader.kilobytes("max_event_payload_in_kb")? {
        app.max_event_payload_bytes = bytes;
    }
    if let Some(n) = reader.count("max_event_batch_size")? {
        app.max_batch_size = n;
    }
    if let Some(hooks) = reader.webhooks()? {
        app.webhooks = hooks;
    }
    if let Some(on) = reader.flag("enable_user_authentication")? {
        app.user_auth_required = on;
    }
    app.validate().map_err(|why| RowError {
        app: id.clone(),
        column: None,
        problem: format!("refused{why}"),
    })?;
    Ok(app)
}

/// Reads typed columns of one row, its errors naming the app.
struct Reader<'a> {
    row: &'a Row,
    app: &'a str,
}

impl Reader<'_> {
    fn error(&self, column: &'static str, problem: impl Into<String>) -> RowError {
        RowError {
            app: self.app.to_owned(),
            column: Some(column),
            problem: problem.into(),
        }
    }

    /// The column's value; `None` for absent, NULL or empty text (soketi reads `''` as unset).
    fn get(&self, column: &str) -> Option<&Value> {
        match self.row.get(column) {
            None | Some(Value::Null) => None,
            Some(Value::Text(text)) if text.trim().is_empty() => None,
            Some(value) => Some(value),
        }
    }

    fn required_text(&self, column: &'static str) -> Result<String, RowError> {
        match self.get(column) {
            Some(Value::Text(text)) => Ok(text.clone()),
            None => Err(self.error(column, "missing")),
            Some(other) => Err(self.error(column, format!("must be text, not {}", kind(other)))),
        }
    }

    /// A whole number, from an integer column, an integral float or decimal, or digits in text.
    fn integer(&self, column: &'static str) -> Result<Option<i64>, RowError> {
        let wrong = |what: &str| self.error(column, format!("must be a whole number, not {what}"));
        match self.get(column) {
            None => Ok(None),
            Some(Value::Int(n)) => Ok(Some(*n)),
            Some(Value::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Some(*f as i64)),
            Some(Value::Float(f)) => Err(wrong(&f.to_string())),
            Some(Value::Text(text)) => text
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| wrong(&format!("{text:?}"))),
            Some(other) => Err(wrong(kind(other))),
        }
    }

    /// A soketi limit: `-1` is no limit (`Some(None)`), else a number at least `least`;
    /// `None` when unset.
    fn limit(&self, column: &'static str, least: i64) -> Result<Option<Option<i64>>, RowError> {
        match self.integer(column)? {
            None => Ok(None),
            Some(-1) => Ok(Some(None)),
            Some(n) if n >= least => Ok(Some(Some(n))),
            Some(n) => Err(self.error(
                column,
                format!("{n} is neither -1 (no limit) nor at least {least}"),
            )),
        }
    }

    fn fit(&self, column: &'static str, n: i64) -> Result<u32, RowError> {
        u32::try_from(n).map_err(|_| self.error(column, format!("{n} is too large")))
    }

    /// A size or count: at least 1.
    fn count(&self, column: &'static str) -> Result<Option<usize>, RowError> {
        match self.integer(column)? {
            None => Ok(None),
            Some(n) if n >= 1 => usize::try_from(n)
                .map(Some)
                .map_err(|_| self.error(column, format!("{n} is too large"))),
            Some(n) => Err(self.error(column, format!("{n} must be at least 1"))),
        }
    }

    /// A size in kilobytes (fractions allowed, as some tables keep them), as bytes.
    fn kilobytes(&self, column: &'static str) -> Result<Option<usize>, RowError> {
        let kb = match self.get(column) {
            None => return Ok(None),
            Some(Value::Float(f)) => *f,
            Some(Value::Text(text)) => text.trim().parse::<f64>().map_err(|_| {
                self.error(
                    column,
                    format!("must be a number of kilobytes, not {text:?}"),
                )
            })?,
            Some(_) => match self.integer(column)? {
                Some(n) => n as f64,
                None => return Ok(None),
            },
        };
        let bytes = (kb * 1024.0).round();
        if !bytes.is_finite() || bytes < 1.0 || bytes > u32::MAX as f64 {
            return Err(self.error(column, format!("{kb} KB is out of range")));
        }
        Ok(Some(bytes as usize))
    }

    /// A switch: 0 or 1 (soketi's `tinyint(1)` and `smallint`), or text (`true`, `f`, …: a
    /// PostgreSQL `boolean` as text).
    fn flag(&self, column: &'static str) -> Result<Option<bool>, RowError> {
        match self.get(column) {
            None => Ok(None),
            Some(Value::Int(0)) => Ok(Some(false)),
            Some(Value::Int(1)) => Ok(Some(true)),
            Some(Value::Text(text)) => match text.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "t" => Ok(Some(true)),
                "0" | "false" | "f" => Ok(Some(false)),
                _ => Err(self.error(column, format!("must be 0 or 1, not {text:?}"))),
            },
            Some(other) => Err(self.error(column, format!("must be 0 or 1, not {}", show(other)))),
        }
    }

    /// The `webhooks` column: a JSON array of soketi's webhook objects.
    fn webhooks(&self) -> Result<Option<Vec<WebhookConfig>>, RowError> {
        const COLUMN: &str = "webhooks";
        let text = match self.get(COLUMN) {
            None => return Ok(None),
            Some(Value::Text(text)) => text,
            Some(other) => {
                return Err(self.error(COLUMN, format!("must be JSON, not {}", kind(other))))
            }
        };
        ferrocast_engine::soketi::webhooks_from_json(text)
            .map(Some)
            .map_err(|why| self.error(COLUMN, why))
    }
}

/// A value's kind, for errors that must not print it (a secret column could hold anything).
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "NULL",
        Value::Int(_) => "a number",
        Value::Float(_) => "a number",
        Value::Text(_) => "text",
    }
}

/// A non-secret value as shown in an error.
fn show(value: &Value) -> String {
    match value {
        Value::Int(n) => n.to_string(),
        Value::Float(f) => f.to_string(),
        other => kind(other).to_owned(),
    }
}

#[cfg(test)]
mod tests;
