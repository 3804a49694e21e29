//! MySQL and MariaDB: the query connection. Rows come over the binary protocol of prepared
//! statements, so integer columns arrive as integers and the rest (text, `json`, decimals) as
//! bytes, read as text. MySQL has no LISTEN: changes apply when an app's cache expires.

use super::row::{Row, Value};
use super::{quoted, Connection, Connector};
use ferrocast_engine::AppLookup;
use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, Statement};
use std::time::Duration;

/// Opens query connections.
pub(super) struct MyConnector {
    opts: Opts,
    table: String,
}

impl MyConnector {
    /// A connector for `url` and `table` (a checked identifier), each step bounded by
    /// `timeout`.
    pub(super) fn new(url: &str, table: &str, timeout: Duration) -> Result<Self, String> {
        let opts =
            Opts::from_url(url).map_err(|e| format!("app_store.url is not a MySQL URL: {e}"))?;
        let opts = OptsBuilder::from_opts(opts)
            .tcp_connect_timeout(Some(timeout))
            .read_timeout(Some(timeout))
            .write_timeout(Some(timeout))
            // The address given is the one used: no switch to a local socket behind it.
            .prefer_socket(false);
        Ok(MyConnector {
            opts: opts.into(),
            table: quoted(table, '`'),
        })
    }
}

impl Connector for MyConnector {
    fn connect(&self) -> Result<Box<dyn Connection>, String> {
        let mut conn = Conn::new(self.opts.clone()).map_err(|e| e.to_string())?;
        let select =
            |column: &str| format!("SELECT * FROM {} WHERE `{column}` = ? LIMIT 1", self.table);
        let by_key = conn.prep(select("key")).map_err(|e| e.to_string())?;
        let by_id = conn.prep(select("id")).map_err(|e| e.to_string())?;
        Ok(Box::new(MyConnection {
            conn,
            by_key,
            by_id,
        }))
    }
}

/// One query connection with its two statements.
struct MyConnection {
    conn: Conn,
    by_key: Statement,
    by_id: Statement,
}

impl Connection for MyConnection {
    fn fetch(&mut self, lookup: &AppLookup) -> Result<Option<Row>, String> {
        let (statement, value) = match lookup {
            AppLookup::Key(key) => (&self.by_key, key),
            AppLookup::Id(id) => (&self.by_id, id),
        };
        let found: Option<mysql::Row> = self
            .conn
            .exec_first(statement, (value.as_str(),))
            .map_err(|e| e.to_string())?;
        let Some(found) = found else {
            return Ok(None);
        };
        let mut row = Row::new();
        for (index, column) in found.columns_ref().iter().enumerate() {
            let value = match found.as_ref(index) {
                None | Some(mysql::Value::NULL) => Value::Null,
                Some(mysql::Value::Int(n)) => Value::Int(*n),
                Some(mysql::Value::UInt(n)) => match i64::try_from(*n) {
                    Ok(n) => Value::Int(n),
                    Err(_) => Value::Float(*n as f64),
                },
                Some(mysql::Value::Float(f)) => Value::Float(f64::from(*f)),
                Some(mysql::Value::Double(f)) => Value::Float(*f),
                Some(mysql::Value::Bytes(bytes)) => {
                    Value::Text(String::from_utf8_lossy(bytes).into_owned())
                }
                // Dates and times (`created_at`, …) are no setting: kept only as present.
                Some(other) => Value::Text(format!("{other:?}")),
            };
            row.insert(column.name_str().into_owned(), value);
        }
        Ok(Some(row))
    }

    fn ping(&mut self) -> Result<(), String> {
        self.conn.ping().map_err(|e| e.to_string())
    }
}
