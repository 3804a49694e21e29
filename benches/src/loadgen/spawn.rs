//! Starting and stopping the processes of a run: the server under test (`--spawn-server`),
//! the generator's own client workers and floor servers, and parsing the URLs they serve.

use super::http_pub::Credentials;
use super::ipc::{ChildLink, WsTarget};
use super::sys;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a spawned server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A server binary started for the run.
pub(crate) struct ServerProc {
    child: Child,
    /// Its process id (the server itself, `taskset` execs it).
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    config: PathBuf,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Set once a cluster node logs that its Redis bus is connected.
    bus_connected: Arc<AtomicBool>,
    /// Where it serves `/metrics`, once it said so.
    metrics: Arc<Mutex<Option<SocketAddr>>>,
}

impl ServerProc {
    /// Starts `bin --host 127.0.0.1 --port 0 --config FILE` and `extra` arguments, pinned to
    /// `cpu` when given.
    pub(crate) fn spawn(
        bin: &Path,
        creds: &Credentials,
        presence_members: u32,
        cpu: Option<usize>,
        extra: &[String],
    ) -> Result<Self, String> {
        static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
        let config = std::env::temp_dir().join(format!(
            "ferrocast-loadgen-{}-{serial}.toml",
            std::process::id()
        ));
        let toml = format!(
            "[[apps]]\nid = {:?}\nkey = {:?}\nsecret = {:?}\nmax_presence_members = {}\n",
            creds.app_id,
            creds.key,
            creds.secret,
            presence_members.max(100)
        );
        std::fs::write(&config, toml)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let mut command = match cpu.filter(|_| taskset_available()) {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpu.to_string()).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        sys::die_with_parent(&mut command);
        command
            .args(["--host", "127.0.0.1", "--port", "0", "--config"])
            .arg(&config)
            // Every generated client comes from 127.0.0.1: storms of thousands of connections
            // are the point here, not what a per-address limit would refuse.
            .args(["--rate-limit", "false"])
            // Its counters (frames per write) are scraped by the sustained scenario.
            .args(["--metrics", "true", "--metrics-port", "0"])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let pid = child.id();
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = Arc::clone(&stderr_tail);
        let bus_connected = Arc::new(AtomicBool::new(false));
        let connected = Arc::clone(&bus_connected);
        let stderr = child.stderr.take().expect("stderr was piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("cluster bus: connected") {
                    connected.store(true, Ordering::Release);
                }
                let mut tail = tail.lock().expect("not poisoned");
                if tail.len() == 20 {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, rx) = mpsc::channel();
        let metrics = Arc::new(Mutex::new(None));
        let metrics_seen = Arc::clone(&metrics);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("ferrocast listening on ") {
                    let _ = tx.send(addr.trim().to_string());
                } else if let Some(addr) = line.strip_prefix("ferrocast metrics on ") {
                    *metrics_seen.lock().expect("not poisoned") = addr.trim().parse().ok();
                }
            }
        });
        let mut server = ServerProc {
            child,
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            config,
            stderr_tail,
            bus_connected,
            metrics,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                server.addr = addr
                    .parse()
                    .map_err(|e| format!("bad listening address {addr}: {e}"))?;
                Ok(server)
            }
            Err(_) => Err(format!(
                "{} printed no listening line within {START_TIMEOUT:?}; stderr: {}",
                bin.display(),
                server.stderr_tail()
            )),
        }
    }

    /// Waits until the node has logged that its cluster bus is connected.
    pub(crate) fn wait_bus_connected(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        while !self.bus_connected.load(Ordering::Acquire) {
            if !self.alive() || std::time::Instant::now() >= deadline {
                return Err(format!(
                    "node on {} did not connect to Redis within {timeout:?}; stderr: {}",
                    self.addr,
                    self.stderr_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Where it serves `/metrics` (it prints that right after its listening line).
    pub(crate) fn metrics_addr(&self) -> Option<SocketAddr> {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let addr = *self.metrics.lock().expect("not poisoned");
            if addr.is_some() || std::time::Instant::now() >= deadline {
                return addr;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether it is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The last lines it wrote to stderr.
    pub(crate) fn stderr_tail(&self) -> String {
        let tail = self.stderr_tail.lock().expect("not poisoned");
        tail.iter().cloned().collect::<Vec<_>>().join(" | ")
    }

    /// SIGTERM, then SIGKILL if it has not exited within three seconds.
    pub(crate) fn stop(mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        if !self.alive() {
            return;
        }
        // SAFETY: signalling a child this process started and has not yet reaped.
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        for _ in 0..300 {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        self.terminate();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// Whether `taskset` can pin a child to a CPU.
pub(crate) fn taskset_available() -> bool {
    Command::new("taskset")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts a floor server pinned to `cpu`, serving TLS with `tls` (certificate, key) when
/// given; returns it and where it listens.
pub(crate) fn spawn_floor(
    cpu: Option<usize>,
    tls: Option<(&Path, &Path)>,
) -> Result<(ChildLink, SocketAddr), String> {
    let mut mode = vec!["--floor-server".to_string()];
    if let Some((cert, key)) = tls {
        for (flag, path) in [("--floor-cert", cert), ("--floor-key", key)] {
            let path = path
                .to_str()
                .ok_or_else(|| format!("{}: not a UTF-8 path", path.display()))?;
            mode.extend([flag.to_string(), path.to_string()]);
        }
    }
    let mode: Vec<&str> = mode.iter().map(String::as_str).collect();
    spawn_floor_as(cpu, &mode)
}

/// Starts the HTTP publish floor pinned to `cpu`, signing with `secret`.
pub(crate) fn spawn_http_floor(
    cpu: Option<usize>,
    secret: &str,
) -> Result<(ChildLink, SocketAddr), String> {
    spawn_floor_as(cpu, &["--floor-http", "--app-secret", secret])
}

fn spawn_floor_as(cpu: Option<usize>, mode: &[&str]) -> Result<(ChildLink, SocketAddr), String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the generator binary: {e}"))?;
    let mut command = Command::new(exe);
    command.args(mode);
    if let Some(cpu) = cpu {
        command.arg("--cpu").arg(cpu.to_string());
    }
    let mut link = ChildLink::spawn(command, "floor")
        .map_err(|e| format!("cannot start the floor server: {e}"))?;
    let line = link.recv_line(Duration::from_secs(10))?;
    let addr = line
        .strip_prefix("floor listening on ")
        .ok_or_else(|| format!("floor: unexpected first line {line:?}"))?
        .parse()
        .map_err(|e| format!("floor: bad address: {e}"))?;
    Ok((link, addr))
}

/// Starts a client worker (inheriting this process's CPU affinity).
pub(crate) fn spawn_worker(
    index: usize,
    epoch_ns: u64,
    creds: &Credentials,
    deflate: bool,
    tls_ca: Option<&Path>,
) -> Result<ChildLink, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the generator binary: {e}"))?;
    let mut command = Command::new(exe);
    command
        .arg("--worker")
        .arg("--epoch-ns")
        .arg(epoch_ns.to_string())
        .arg("--app-key")
        .arg(&creds.key)
        .arg("--app-secret")
        .arg(&creds.secret);
    if deflate {
        command.arg("--deflate");
    }
    if let Some(ca) = tls_ca {
        command.arg("--tls-ca").arg(ca);
    }
    ChildLink::spawn(command, &format!("worker {index}"))
        .map_err(|e| format!("cannot start a worker: {e}"))
}

/// Host, port and path of a `scheme://host:port/path` URL.
fn split_url<'a>(url: &'a str, scheme: &str) -> Result<(String, SocketAddr, &'a str), String> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| format!("{url}: expected a {scheme}:// URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let with_port = if authority.contains(':') {
        authority.to_string()
    } else {
        format!(
            "{authority}:{}",
            if scheme.ends_with('s') { 443 } else { 80 }
        )
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    Ok((authority.to_string(), addr, path))
}

/// Parses `--ws-url`: a full `ws://host:port/app/{key}?…` URL (`wss://` for TLS), or a base
/// URL (with an optional path prefix) to which `/app/{key}?protocol=7` is added.
pub(crate) fn ws_target(url: &str, key: &str) -> Result<WsTarget, String> {
    let tls = url.starts_with("wss://");
    let (host, addr, path) = split_url(url, if tls { "wss" } else { "ws" })?;
    let path = if path.contains("/app/") {
        if path.contains('?') {
            path.to_string()
        } else {
            format!("{path}?protocol=7")
        }
    } else {
        format!(
            "{}/app/{key}?protocol=7&client=ferrocast-loadgen&version=0.1.0",
            path.trim_end_matches('/')
        )
    };
    Ok(WsTarget {
        addr,
        host,
        path,
        tls,
    })
}

/// Where the publisher sends its requests.
#[derive(Clone, Debug)]
pub(crate) struct HttpTarget {
    /// Server address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Path prefix before `/apps`.
    pub prefix: String,
    /// Whether it is `https://`.
    pub tls: bool,
}

/// Parses `--http-url` (`http://host:port[/prefix]`, `https://` for TLS).
pub(crate) fn http_target(url: &str) -> Result<HttpTarget, String> {
    let tls = url.starts_with("https://");
    let (host, addr, path) = split_url(url, if tls { "https" } else { "http" })?;
    Ok(HttpTarget {
        addr,
        host,
        prefix: path.trim_end_matches('/').to_string(),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_urls_with_and_without_the_app_path() {
        let t = ws_target("ws://127.0.0.1:6001", "k").unwrap();
        assert_eq!(t.addr.port(), 6001);
        assert!(t.path.starts_with("/app/k?protocol=7"));
        let t = ws_target("ws://127.0.0.1:6001/ws/app/other?protocol=7", "k").unwrap();
        assert_eq!(t.path, "/ws/app/other?protocol=7");
        assert!(!t.tls);
        assert!(ws_target("wss://127.0.0.1:1", "k").unwrap().tls);
        assert!(ws_target("http://127.0.0.1:1", "k").is_err());
    }

    #[test]
    fn http_urls_keep_a_prefix() {
        let t = http_target("http://127.0.0.1:8080/pusher/").unwrap();
        assert_eq!(
            (t.addr.port(), t.host.as_str(), t.prefix.as_str(), t.tls),
            (8080, "127.0.0.1:8080", "/pusher", false)
        );
        assert!(http_target("https://127.0.0.1:8443").unwrap().tls);
    }
}
