//! A `redis-server` for the runner's cluster mode: one per run on a free loopback port, in a
//! scratch directory, without persistence, killed when dropped. Pub/sub keeps no state, so
//! every vector's nodes share it under a prefix of their own.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running Redis.
pub struct RedisProcess {
    child: Child,
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
}

impl RedisProcess {
    /// Starts `redis-server` (from `PATH`) and waits, at most `wait`, until it accepts.
    pub fn start(dir: &Path, wait: Duration) -> Result<Self, String> {
        let port = free_port()?;
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server (cluster mode needs it on PATH): {e}")
            })?;
        let redis = RedisProcess {
            child,
            url: format!("redis://127.0.0.1:{port}/0"),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + wait;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "redis-server did not accept on {addr} within {wait:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}
