//! Launching a `ferrocast` binary for one configuration and stopping it afterwards.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running server process, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `bin --host 127.0.0.1 --port 0 --config {config} --rate-limit false {extra…}` and waits (bounded)
    /// for its `ferrocast listening on HOST:PORT` line.
    pub fn start(
        bin: &Path,
        config: &Path,
        extra: &[String],
        log: &Path,
        wait: Duration,
    ) -> Result<Self, String> {
        let stderr = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(config)
            // Hundreds of vectors connect from 127.0.0.1 within a minute; the per-address
            // limits have tests of their own (shell/tests/rate_limit.rs).
            .args(["--rate-limit", "false"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        // Keep draining stdout for the server's whole life so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("ferrocast listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let mut server = ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log: log.to_owned(),
        };
        match rx.recv_timeout(wait) {
            Ok(addr) => {
                server.addr = addr
                    .parse()
                    .map_err(|e| format!("cannot parse the listening address {addr:?}: {e}"))?;
                Ok(server)
            }
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                Err(format!(
                    "the server did not report listening within {wait:?} (exit status {status:?}); its log: {}",
                    server.log_tail()
                ))
            }
        }
    }

    /// Waits (bounded) until the server's log has a line containing `needle`, e.g. the
    /// cluster bus reporting that it is connected.
    pub fn wait_for_log(&self, needle: &str, wait: Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if text.contains(needle) {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "the server did not log {needle:?} within {wait:?}; its log: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process's exit status if it has exited, waiting up to `grace` for it (bounded
    /// polling): a process that dies closes its sockets a moment before it can be reaped.
    pub fn exited(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + grace;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The last lines of the server's stderr, for failure reports.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n        ")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
