//! A real PostgreSQL server for a test: Debian's server binaries, a fresh cluster in its own
//! temporary directory, listening on a free loopback port only, stopped and removed when dropped.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root (CI does) the cluster is
//! made and run as `nobody`, owning the temporary directory. The test connects as the role
//! `ferrocast` with a password over TCP, as the server under test would; the launcher's own
//! statements (setup, statistics) go over the Unix socket in the temporary directory as the
//! superuser `postgres`, into the `postgres` database, so they never show in the counts.

use super::db_process::{
    check_identifier, end, free_port, is_root, log_tail, nobody, password, run_bounded, temp_dir,
    SERVER_WAIT,
};
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one `psql` run may take.
const PSQL_WAIT: Duration = Duration::from_secs(15);

/// A running PostgreSQL cluster with a database and a role, both named `ferrocast`.
pub(crate) struct PostgresServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    bin: PathBuf,
    password: String,
    started_in: Duration,
}

impl PostgresServer {
    /// Makes a cluster and starts it; fails the test (never skips it) when the server binaries
    /// are missing, since `test.sh` installs Debian's `postgresql` package.
    pub(crate) fn start() -> PostgresServer {
        let began = Instant::now();
        let bin = server_bin_dir();
        // A free port can be taken between probing and binding; try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start(&bin) {
                Ok(mut server) => {
                    server.started_in = began.elapsed();
                    return server;
                }
                Err(error) => last_error = error,
            }
        }
        panic!("PostgreSQL did not start: {last_error}");
    }

    fn try_start(bin: &Path) -> Result<PostgresServer, String> {
        let dir = temp_dir("postgres");
        let mut server = PostgresServer {
            child: None,
            port: free_port(),
            dir,
            bin: bin.to_path_buf(),
            password: password(),
            started_in: Duration::ZERO,
        };
        if is_root() {
            let (uid, gid) = nobody();
            std::os::unix::fs::chown(&server.dir, Some(uid), Some(gid))
                .map_err(|e| format!("chown {:?} to nobody: {e}", server.dir))?;
        }
        let mut initdb = server.as_server_user(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(server.data_dir())
            .args(["-U", "postgres", "-E", "UTF8", "--no-locale"])
            // The launcher's socket is trusted; TCP needs the role's password.
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["--no-sync", "--no-instructions"]);
        let output = run_bounded(&mut initdb, SERVER_WAIT)?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        server.spawn()?;
        let role = format!("CREATE ROLE ferrocast LOGIN PASSWORD '{}'", server.password);
        server.admin(&[
            &role,
            "CREATE DATABASE ferrocast OWNER ferrocast",
            "CREATE EXTENSION pg_stat_statements",
        ])?;
        Ok(server)
    }

    /// A command for a server binary, run as `nobody` when this process is root.
    fn as_server_user(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.dir).env_remove("PGDATA");
        if is_root() {
            let (uid, gid) = nobody();
            command.uid(uid).gid(gid);
        }
        command
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("postgres.log")
    }

    /// Runs the postmaster on the cluster and waits until it accepts connections.
    fn spawn(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("log file: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("log file: {e}"))?;
        let socket_dir = self.dir.to_string_lossy().into_owned();
        let mut command = self.as_server_user(&self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={}", self.port)])
            .args(["-c", &format!("unix_socket_directories={socket_dir}")])
            // Nothing here needs to survive a crash; skipping the flushes makes it fast.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off"])
            // Counts each statement as it ends, for `select_count`.
            .args(["-c", "shared_preload_libraries=pg_stat_statements"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot run postgres: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + SERVER_WAIT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "postgres exited with {status}; its log:\n{}",
                    log_tail(&self.log_path())
                ));
            }
            if self.accepting() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "postgres not ready on port {} within {SERVER_WAIT:?}; log:\n{}",
                    self.port,
                    log_tail(&self.log_path())
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server accepts connections (not merely listens while starting up).
    fn accepting(&self) -> bool {
        let mut command = Command::new(self.bin.join("pg_isready"));
        command
            .args(["-q", "-h", "127.0.0.1", "-t", "2"])
            .args(["-p", &self.port.to_string()]);
        run_bounded(&mut command, Duration::from_secs(5))
            .map(|output| output.status.success())
            .unwrap_or(false)
    }

    /// Runs statements, each in its own transaction, as the superuser over the Unix socket in
    /// the `postgres` database.
    fn admin(&self, statements: &[&str]) -> Result<String, String> {
        let mut command = Command::new("psql");
        command
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .arg("-h")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string()]);
        for statement in statements {
            command.args(["-c", statement]);
        }
        psql_result(&mut command)
    }

    /// The loopback port the server listens on.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://ferrocast:PASSWORD@127.0.0.1:PORT/ferrocast`.
    pub(crate) fn url(&self) -> String {
        format!(
            "postgres://ferrocast:{}@127.0.0.1:{}/ferrocast",
            self.password, self.port
        )
    }

    /// The role's password (also in `url()`).
    pub(crate) fn password(&self) -> &str {
        &self.password
    }

    /// How long `start()` took, from finding the binaries to the database being ready.
    pub(crate) fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Runs `statement` (one or more, `;`-separated) as the role `ferrocast` over TCP with
    /// `psql -At`, returning its output without the last newline; panics with psql's stderr
    /// when it fails.
    pub(crate) fn sql(&self, statement: &str) -> String {
        self.try_sql(statement)
            .unwrap_or_else(|error| panic!("psql {statement:?} failed: {error}"))
    }

    /// `sql`, returning psql's stderr as the error instead of panicking (for outage tests).
    pub(crate) fn try_sql(&self, statement: &str) -> Result<String, String> {
        let mut command = Command::new("psql");
        command
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", &self.url()])
            .args(["-c", statement]);
        psql_result(&mut command)
    }

    /// How many SELECT statements naming `table` the database has finished, as counted by
    /// `pg_stat_statements` (each execution once, simple or extended protocol, updated as the
    /// statement ends). `pg_stat_user_tables` is not used: it counts scans rather than
    /// statements, and a long-lived connection reports it up to seconds late. Compare two
    /// readings within one run of the server.
    pub(crate) fn select_count(&self, table: &str) -> u64 {
        check_identifier(table);
        let query = format!(
            "SELECT coalesce(sum(s.calls), 0) FROM pg_stat_statements s \
             JOIN pg_database d ON d.oid = s.dbid \
             WHERE d.datname = 'ferrocast' AND s.toplevel \
             AND s.query ~* '^\\s*(select|with)\\M' AND s.query ~* '\\m{table}\\M'"
        );
        let out = self
            .admin(&[&query])
            .unwrap_or_else(|error| panic!("reading pg_stat_statements: {error}"));
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("pg_stat_statements count {out:?}"))
    }

    /// Stops the server with a fast shutdown (clients are disconnected); the data stay.
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            end(&mut child, "INT", SERVER_WAIT);
        }
    }

    /// Starts the stopped server again on the same data directory and port.
    pub(crate) fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again on a running server");
        let began = Instant::now();
        self.spawn()
            .unwrap_or_else(|error| panic!("PostgreSQL did not start again: {error}"));
        self.started_in = began.elapsed();
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: nothing is kept, so nothing needs to be written.
            end(&mut child, "QUIT", Duration::from_secs(5));
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Debian's newest `/usr/lib/postgresql/VERSION/bin` that holds `initdb`.
fn server_bin_dir() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no /usr/lib/postgresql/*/bin/initdb: these tests need a real PostgreSQL \
             (test.sh installs Debian's postgresql package; or run \
             `apt-get install -y postgresql`)"
        ),
    }
}

/// Runs a psql command with bounded connect and statement times; its output or its stderr.
fn psql_result(command: &mut Command) -> Result<String, String> {
    command
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGOPTIONS", "-c statement_timeout=10000")
        .env_remove("PGPASSWORD")
        .env_remove("PGSERVICE");
    let output = run_bounded(command, PSQL_WAIT)?;
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
