//! A real `redis-server` for a test: on a free loopback port, in its own temporary directory,
//! persisting nothing, killed and cleaned up when dropped.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static INSTANCES: AtomicUsize = AtomicUsize::new(0);

/// How long the server may take to answer its first PING.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `redis-server`.
pub(crate) struct RedisServer {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` with no persistence; fails the test (never skips it) when the
    /// binary is missing, since `test.sh` installs it.
    pub(crate) fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts `redis-server` with extra arguments (`--requirepass x`, ...).
    pub(crate) fn start_with(extra: &[&str]) -> RedisServer {
        Self::start_listening(extra, false)
    }

    /// Starts `redis-server` accepting only TLS connections (`rediss://`) on its port; `extra`
    /// names the certificate files (`--tls-cert-file`, `--tls-key-file`, `--tls-ca-cert-file`).
    pub(crate) fn start_tls(extra: &[&str]) -> RedisServer {
        Self::start_listening(extra, true)
    }

    fn start_listening(extra: &[&str], tls: bool) -> RedisServer {
        // A free port can be taken between probing and binding; try a few.
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start(extra, tls) {
                Ok(server) => return server,
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    fn try_start(extra: &[&str], tls: bool) -> Result<RedisServer, String> {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-redis-{}-{}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|e| format!("temporary directory {dir:?}: {e}"))?;
        let log = dir.join("redis.log");
        let port_text = port.to_string();
        let ports = match tls {
            false => ["--port", &port_text, "--tls-port", "0"],
            true => ["--port", "0", "--tls-port", &port_text],
        };
        let spawned = Command::new("redis-server")
            .args(ports)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .args(["--daemonize", "no"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not on PATH: these tests need a real Redis \
                 (test.sh installs Debian's redis-server package; or run \
                 `apt-get install -y redis-server`)"
            ),
            Err(error) => panic!("cannot run redis-server: {error}"),
        };
        let mut server = RedisServer { child, port, dir };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("exited with {status}; its log:\n{log}"));
            }
            if server.accepts_connections() {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                let log = fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "no answer on port {port} within {START_TIMEOUT:?}; log:\n{log}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the server listens yet (a TCP connect; it may still need a password).
    fn accepts_connections(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The server's address.
    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A plain client connection, for inspecting the server (`INFO`, `PUBSUB`, ...).
    pub(crate) fn admin(&self, url: &str) -> redis::Connection {
        redis::Client::open(url)
            .expect("admin URL")
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("admin connection to the test Redis")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free loopback port")
}
