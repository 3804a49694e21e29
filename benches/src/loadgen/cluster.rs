//! The processes of the cluster mode: a `redis-server` on a free loopback port with no
//! persistence, and N ferrocast nodes joined through it, each pinned to a CPU.

use super::http_pub::{Credentials, Publisher};
use super::ipc::WsTarget;
use super::spawn::{self, ServerProc};
use super::sys;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long Redis and the nodes may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A `redis-server` started for the run, in its own temporary directory.
pub(crate) struct RedisProc {
    child: Child,
    /// Its process id (to read its CPU time from /proc).
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    dir: PathBuf,
}

impl RedisProc {
    /// Starts Debian's `redis-server` from PATH on a free 127.0.0.1 port, without RDB or AOF
    /// persistence, and waits until it answers `PING`.
    pub(crate) fn spawn(cpus: Option<&str>) -> Result<Self, String> {
        let bin = find_on_path("redis-server").ok_or(
            "redis-server is not on PATH; the cluster mode needs it \
             (Debian: apt-get install redis-server)",
        )?;
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "ferrocast-loadgen-redis-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut command = match cpus.filter(|_| spawn::taskset_available()) {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        sys::die_with_parent(&mut command);
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning", "--logfile", ""])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut redis = RedisProc {
            pid: child.id(),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while !redis.answers_ping() {
            if Instant::now() >= deadline || !matches!(redis.child.try_wait(), Ok(None)) {
                return Err(format!(
                    "redis-server on {} did not answer PING within {START_TIMEOUT:?}",
                    redis.addr
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    /// The URL the nodes are given.
    pub(crate) fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// How many `PUBLISH` commands Redis has served (`INFO commandstats`), to check that one
    /// HTTP publish costs one Redis `PUBLISH` whatever the number of nodes and subscribers.
    pub(crate) fn publish_calls(&self) -> Option<u64> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(b"INFO commandstats\r\n").ok()?;
        // The answer is one bulk string: `$LEN\r\n` then LEN bytes and `\r\n`.
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).ok()?;
            if n == 0 {
                return None;
            }
            answer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&answer);
            let (header, body) = text.split_once("\r\n")?;
            let len: usize = header.strip_prefix('$')?.parse().ok()?;
            if body.len() >= len {
                return parse_publish_calls(&body[..len]);
            }
        }
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Redis and the nodes of one cluster run.
pub(crate) struct Cluster {
    /// The Redis the nodes share.
    pub redis: RedisProc,
    /// The nodes; publishes go through the first.
    pub nodes: Vec<ServerProc>,
    /// Where clients of each node connect.
    pub targets: Vec<WsTarget>,
}

impl Cluster {
    /// Starts Redis, then `n` nodes (node `i` pinned to `cpus[i % len]` when given), and
    /// waits until every node's bus is connected.
    pub(crate) fn start(
        bin: &Path,
        creds: &Credentials,
        n: u32,
        cpus: Option<&[usize]>,
        heartbeat_ms: u64,
    ) -> Result<Self, String> {
        // Redis may run on any CPU the nodes use: its cost is read from /proc either way.
        let redis_cpus = cpus.map(|c| {
            c.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        });
        let redis = RedisProc::spawn(redis_cpus.as_deref())?;
        let extra = [
            "--redis-url".to_string(),
            redis.url(),
            "--cluster-heartbeat-ms".to_string(),
            heartbeat_ms.to_string(),
            "--cluster-node-timeout-ms".to_string(),
            (heartbeat_ms * 10).to_string(),
        ];
        let mut nodes = Vec::with_capacity(n as usize);
        for i in 0..n as usize {
            let cpu = cpus.filter(|c| !c.is_empty()).map(|c| c[i % c.len()]);
            nodes.push(ServerProc::spawn(bin, creds, 100, cpu, &extra)?);
        }
        for node in &mut nodes {
            node.wait_bus_connected(START_TIMEOUT)?;
        }
        let targets = nodes
            .iter()
            .map(|node| spawn::ws_target(&format!("ws://{}", node.addr), &creds.key))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cluster {
            redis,
            nodes,
            targets,
        })
    }

    /// A publisher talking to the first node.
    pub(crate) fn publisher(&self, creds: &Credentials) -> Publisher {
        let addr = self.nodes[0].addr;
        Publisher::new(addr, addr.to_string(), String::new(), creds.clone())
    }

    /// Process ids of the nodes.
    pub(crate) fn node_pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid).collect()
    }

    /// An error naming the first node (or Redis) that has died.
    pub(crate) fn check(&mut self) -> Result<(), String> {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            if !node.alive() {
                return Err(format!(
                    "node {} exited unexpectedly; its last stderr lines: {}",
                    i + 1,
                    node.stderr_tail()
                ));
            }
        }
        if !matches!(self.redis.child.try_wait(), Ok(None)) {
            return Err("redis-server exited unexpectedly".into());
        }
        Ok(())
    }

    /// Stops the nodes, then Redis.
    pub(crate) fn stop(mut self) {
        for node in self.nodes.drain(..) {
            node.stop();
        }
    }
}

/// How many of `n` clients spread round-robin over `nodes` land on node `i`.
pub(crate) fn share_of(n: u32, nodes: usize, i: usize) -> u32 {
    let nodes = nodes.max(1) as u32;
    n / nodes + u32::from((i as u32) < n % nodes)
}

/// The CPUs the nodes are pinned to in turn: `--server-cpu` or every CPU of the machine.
pub(crate) fn node_cpus(explicit: Option<&[usize]>, cpus: usize) -> Vec<usize> {
    match explicit {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ => (0..cpus.max(1)).collect(),
    }
}

/// `calls` of the `cmdstat_publish` line of an `INFO commandstats` answer (0 when absent:
/// Redis lists only commands it has served).
fn parse_publish_calls(info: &str) -> Option<u64> {
    let Some(line) = info.lines().find(|l| l.starts_with("cmdstat_publish:")) else {
        return Some(0);
    };
    line.split([':', ','])
        .find_map(|field| field.strip_prefix("calls="))?
        .parse()
        .ok()
}

fn free_port() -> Result<u16, String> {
    // The port is released before Redis binds it; another process taking it in between makes
    // Redis fail to start, which is reported, never silently mixed up.
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free loopback port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_spread_evenly_over_the_nodes() {
        let shares: Vec<u32> = (0..3).map(|i| share_of(50_000, 3, i)).collect();
        assert_eq!(shares, vec![16_667, 16_667, 16_666]);
        assert_eq!(share_of(2, 3, 2), 0);
    }

    #[test]
    fn publish_calls_are_read_from_commandstats() {
        let info = "# Commandstats\r\ncmdstat_ping:calls=3,usec=1,usec_per_call=0.33\r\n\
                    cmdstat_publish:calls=1234,usec=5678,usec_per_call=4.60,rejected_calls=0\r\n";
        assert_eq!(parse_publish_calls(info), Some(1234));
        assert_eq!(parse_publish_calls("# Commandstats\r\n"), Some(0));
    }

    #[test]
    fn nodes_take_the_given_cpus_or_every_cpu() {
        assert_eq!(node_cpus(None, 2), vec![0, 1]);
        assert_eq!(node_cpus(Some(&[1]), 2), vec![1]);
    }
}
