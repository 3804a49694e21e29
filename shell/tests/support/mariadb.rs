//! A real MariaDB server for a test: Debian's `mariadbd`, a fresh data directory made by
//! `mariadb-install-db` in its own temporary directory, listening on a free loopback port only,
//! killed and removed when dropped.
//!
//! The test connects as `ferrocast` with a password over TCP, as the server under test would;
//! the launcher's own statements (setup, statistics) go over the Unix socket in the temporary
//! directory as `root`, with no default database, so they never show in the counts.

use super::db_process::{
    check_identifier, end, free_port, is_root, log_tail, password, run_bounded, temp_dir,
    SERVER_WAIT,
};
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one `mariadb` client run may take.
const CLIENT_WAIT: Duration = Duration::from_secs(15);

/// The redo log size, small so that each test's directory stays small; the same for
/// `mariadb-install-db` and `mariadbd`.
const REDO_LOG: &str = "--innodb-log-file-size=8M";

/// A running MariaDB server with a database and a user, both named `ferrocast`.
pub(crate) struct MariaDbServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    password: String,
    started_in: Duration,
}

impl MariaDbServer {
    /// Makes a data directory and starts the server; fails the test (never skips it) when
    /// `mariadbd` is missing, since `test.sh` installs Debian's `mariadb-server` package.
    pub(crate) fn start() -> MariaDbServer {
        let began = Instant::now();
        for program in ["mariadbd", "mariadb-install-db", "mariadb"] {
            if which(program).is_none() {
                panic!(
                    "{program} is not on PATH: these tests need a real MariaDB \
                     (test.sh installs Debian's mariadb-server and mariadb-client packages; \
                     or run `apt-get install -y mariadb-server mariadb-client`)"
                );
            }
        }
        // A free port can be taken between probing and binding; try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(mut server) => {
                    server.started_in = began.elapsed();
                    return server;
                }
                Err(error) => last_error = error,
            }
        }
        panic!("MariaDB did not start: {last_error}");
    }

    fn try_start() -> Result<MariaDbServer, String> {
        let mut server = MariaDbServer {
            child: None,
            port: free_port(),
            dir: temp_dir("mariadb"),
            password: password(),
            started_in: Duration::ZERO,
        };
        let mut install = Command::new(which("mariadb-install-db").expect("mariadb-install-db"));
        // `--no-defaults` first, so that no /etc/mysql option file applies.
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", server.data_dir().display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            .args(["--skip-name-resolve", REDO_LOG])
            .args(server.user_arg())
            .current_dir(&server.dir);
        let output = run_bounded(&mut install, SERVER_WAIT)?;
        if !output.status.success() {
            return Err(format!(
                "mariadb-install-db failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        server.spawn()?;
        let password = &server.password;
        server.admin(&format!(
            "CREATE DATABASE ferrocast; \
             CREATE USER 'ferrocast'@'127.0.0.1' IDENTIFIED BY '{password}'; \
             CREATE USER 'ferrocast'@'localhost' IDENTIFIED BY '{password}'; \
             GRANT ALL ON ferrocast.* TO 'ferrocast'@'127.0.0.1'; \
             GRANT ALL ON ferrocast.* TO 'ferrocast'@'localhost';"
        ))?;
        Ok(server)
    }

    /// `mariadbd` refuses to run as root unless told to; elsewhere it runs as whoever starts it.
    fn user_arg(&self) -> Vec<&'static str> {
        match is_root() {
            true => vec!["--user=root"],
            false => vec![],
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mariadb.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("mariadbd.log")
    }

    /// Runs `mariadbd` on the data directory and waits until it answers over its socket.
    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("log file: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let dir = self.dir.display().to_string();
        let mut command = Command::new(which("mariadbd").expect("mariadbd"));
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={dir}/mariadbd.pid"))
            .arg(format!("--tmpdir={dir}"))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
            ])
            // Nothing here needs to survive a crash; skipping the flushes makes it fast.
            .args([
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-doublewrite=0",
            ])
            .args(["--innodb-buffer-pool-size=16M", REDO_LOG])
            // Table lock events count each statement's read of a table, for `select_count`.
            .args(["--performance-schema=ON"])
            .arg("--performance-schema-instrument=wait/lock/table/sql/handler=ON")
            .args(self.user_arg())
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run mariadbd: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + SERVER_WAIT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "mariadbd exited with {status}; its log:\n{}",
                    log_tail(&self.log_path())
                ));
            }
            if self.accepting() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "mariadbd not ready on port {} within {SERVER_WAIT:?}; log:\n{}",
                    self.port,
                    log_tail(&self.log_path())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server listens on its port and answers a query on its socket.
    fn accepting(&self) -> bool {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
            return false;
        }
        let mut query = self.client_on_socket();
        query.args(["-e", "SELECT 1"]);
        run_bounded(&mut query, Duration::from_secs(5))
            .map(|output| output.status.success())
            .unwrap_or(false)
    }

    /// The `mariadb` client as root over the Unix socket, with no default database.
    fn client_on_socket(&self) -> Command {
        let mut command = Command::new("mariadb");
        command
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            .args([
                "--protocol=SOCKET",
                "-uroot",
                "--batch",
                "--skip-column-names",
            ])
            .arg("--connect-timeout=5");
        command
    }

    /// Runs statements as root over the Unix socket, with no default database.
    fn admin(&self, statements: &str) -> Result<String, String> {
        let mut command = self.client_on_socket();
        command.args(["-e", statements]);
        client_result(&mut command)
    }

    /// The loopback port the server listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://ferrocast:PASSWORD@127.0.0.1:PORT/ferrocast`.
    pub(crate) fn url(&self) -> String {
        format!(
            "mysql://ferrocast:{}@127.0.0.1:{}/ferrocast",
            self.password, self.port
        )
    }

    /// The user's password (also in `url()`).
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// How long `start()` took, from making the data directory to the database being ready.
    pub(crate) fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Runs `statement` (one or more, `;`-separated) as `ferrocast` over TCP with the
    /// `mariadb` client in batch mode (tab-separated columns, no headers), returning its
    /// output without the last newline; panics with the client's stderr when it fails.
    pub(crate) fn sql(&self, statement: &str) -> String {
        self.try_sql(statement)
            .unwrap_or_else(|error| panic!("mariadb {statement:?} failed: {error}"))
    }

    /// `sql`, returning the client's stderr as the error instead of panicking (for outage
    /// tests).
    pub(crate) fn try_sql(&self, statement: &str) -> Result<String, String> {
        let mut command = Command::new("mariadb");
        command
            .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
            .args(["-P", &self.port.to_string(), "-u", "ferrocast"])
            .arg(format!("--password={}", self.password))
            .args(["--batch", "--skip-column-names", "--connect-timeout=5"])
            .arg("--init-command=SET SESSION max_statement_time = 10")
            .args(["-D", "ferrocast", "-e", statement]);
        client_result(&mut command)
    }

    /// How many times statements have read `table` since the server (last) started: the
    /// read table locks of `performance_schema.table_lock_waits_summary_by_table`
    /// (`COUNT_READ_EXTERNAL`), which every statement that reads the table takes once per
    /// reference to it, whether sent as text or as a prepared statement, counted as the
    /// statement runs. Writes (INSERT, UPDATE, DELETE, SELECT ... FOR UPDATE) take write
    /// locks and do not count.
    pub(crate) fn select_count(&self, table: &str) -> u64 {
        check_identifier(table);
        let out = self
            .admin(&format!(
                "SELECT COALESCE(SUM(COUNT_READ_EXTERNAL), 0) \
                 FROM performance_schema.table_lock_waits_summary_by_table \
                 WHERE OBJECT_SCHEMA = 'ferrocast' AND OBJECT_NAME = '{table}'"
            ))
            .unwrap_or_else(|error| panic!("reading performance_schema: {error}"));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("performance_schema count {out:?}"))
    }

    /// Stops the server with a normal shutdown (clients are disconnected); the data stay.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            end(&mut child, "TERM", SERVER_WAIT);
        }
    }

    /// Starts the stopped server again on the same data directory and port.
    pub(crate) fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again on a running server");
        let began = Instant::now();
        self.spawn()
            .unwrap_or_else(|error| panic!("MariaDB did not start again: {error}"));
        self.started_in = began.elapsed();
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Nothing is kept, so nothing needs a clean shutdown.
            end(&mut child, "KILL", Duration::from_secs(5));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The full path of `program` on PATH (Debian puts `mariadbd` in /usr/sbin, which a
/// non-root PATH may lack, so that is searched too).
fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|candidate| candidate.is_file());
    found
}

/// Runs a `mariadb` client command; its output or its stderr.
fn client_result(command: &mut Command) -> Result<String, String> {
    command.env_remove("MYSQL_PWD").env_remove("MYSQL_HOST");
    let output = run_bounded(command, CLIENT_WAIT)?;
    if !output.status.success() {
        return Err(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}
