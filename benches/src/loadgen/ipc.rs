//! The conversation between the coordinating generator and its child processes (client
//! workers and the floor servers): one JSON object per line on the child's stdin and stdout.

use super::histogram::Sparse;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// Which channel each client of a `Connect` subscribes to.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum ChannelSpec {
    /// Every client on this channel.
    Shared(String),
    /// Client `i` on `{prefix}{i}`.
    PerClient(String),
}

/// How far each client's sequence (or, unverified, its count of events) must get.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Targets {
    /// The same target for every client.
    All(u64),
    /// `values[i - first]` for the client with index `i`.
    Each {
        /// Index of the client the first value belongs to.
        first: u64,
        /// One target per client.
        values: Vec<u64>,
    },
}

/// Where clients connect.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WsTarget {
    /// Server address.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request target of the upgrade (`/app/{key}?protocol=7...`).
    pub path: String,
    /// Whether it is `wss://` (TLS).
    #[serde(default)]
    pub tls: bool,
}

/// A batch of clients to open and subscribe.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ConnectSpec {
    /// Where they connect: client `i` goes to `targets[i % len]` (several nodes of a cluster).
    pub targets: Vec<WsTarget>,
    /// Global index of the first new client (names its channel and user id).
    pub first_index: u64,
    /// How many clients.
    pub count: u32,
    /// Their channels.
    pub channel: ChannelSpec,
    /// Subscribe to a presence channel, as user `u{index}`.
    pub presence: bool,
    /// Whether events carry checked sequence numbers (false against the floors).
    pub verify: bool,
    /// Handshakes and subscriptions in flight at once.
    pub inflight: u32,
    /// Give up after this long.
    pub timeout_ms: u64,
}

impl ConnectSpec {
    /// The server client `index` connects to.
    pub(crate) fn target_of(&self, index: u64) -> &WsTarget {
        &self.targets[(index % self.targets.len() as u64) as usize]
    }
}

/// A command to a client worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Command {
    /// Open and subscribe clients; answered by `Connected`.
    Connect(ConnectSpec),
    /// Wait until every client reaches its target; answered by `Awaited`.
    Await {
        /// The targets.
        targets: Targets,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// Presence churn: each round one member leaves and joins again; answered by `Churned`.
    Churn {
        /// Join/leave rounds.
        rounds: u32,
        /// Give up after this long.
        timeout_ms: u64,
    },
    /// Report counters and latencies; answered by `Stats`.
    Stats {
        /// Start new counters afterwards.
        reset: bool,
    },
    /// Drop every client; answered by `Closed`.
    CloseAll,
    /// Exit the process.
    Exit,
}

/// Counters of a worker since the last reset.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Stats {
    /// Clients currently subscribed.
    pub clients: u32,
    /// Application events received.
    pub deliveries: u64,
    /// Bytes read off the clients' sockets.
    pub wire_bytes: u64,
    /// Messages that arrived compressed (permessage-deflate).
    pub compressed: u64,
    /// Events whose sequence number was not the previous one plus one.
    pub order_errors: u64,
    /// Subscribed clients the server closed or dropped.
    pub unexpected_closes: u64,
    /// `pusher:error` and `pusher:subscription_error` messages.
    pub pusher_errors: u64,
    /// Publish-to-receive latency of each delivery, in nanoseconds.
    pub latency: Sparse,
    /// The text of one application event as received (to rebuild the server's frame).
    pub sample_payload: Option<String>,
    /// The TLS cipher suite a client negotiated (none over plain TCP).
    #[serde(default)]
    pub tls_suite: Option<String>,
    /// The first few problems, for the report.
    pub notes: Vec<String>,
}

/// A worker's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Reply {
    /// Clients opened.
    Connected {
        /// Subscribed successfully.
        subscribed: u32,
        /// Failed to connect, upgrade or subscribe.
        failed: u32,
        /// When the first connect started (monotonic ns).
        start_ns: u64,
        /// When the last subscription finished.
        end_ns: u64,
        /// The first few failures.
        errors: Vec<String>,
    },
    /// Targets reached, or not.
    Awaited {
        /// Every client reached its target.
        complete: bool,
        /// When the last one did (monotonic ns).
        done_ns: u64,
        /// Clients short of their target.
        short_clients: u32,
        /// Events missing in total.
        missing: u64,
    },
    /// Presence churn done.
    Churned {
        /// Rounds completed.
        rounds: u32,
        /// `member_added` received by all clients during the rounds.
        added: u64,
        /// `member_removed` received by all clients during the rounds.
        removed: u64,
        /// What each of the two should be.
        expected: u64,
        /// Every client's member list ended complete and consistent.
        members_ok: bool,
        /// Start and end (monotonic ns).
        start_ns: u64,
        /// End of the last round.
        end_ns: u64,
        /// Time from a member leaving until every other member saw it back.
        round_latency: Sparse,
    },
    /// Counters.
    Stats(Stats),
    /// Every client dropped.
    Closed,
}

/// A command to a floor server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum FloorCommand {
    /// Write `frame` to every subscribed socket, `sweeps` times over.
    Sweep {
        /// The text payload of the frame (the same bytes the server sends).
        payload: String,
        /// Sweeps back to back.
        sweeps: u32,
    },
    /// Exit the process.
    Exit,
}

/// A floor server's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum FloorReply {
    /// Sweeps done.
    Swept {
        /// Sockets written to per sweep.
        conns: u32,
        /// CPU time of the writing thread over all sweeps.
        cpu_ns: u64,
        /// Wall time of each sweep.
        sweep_wall_ns: Vec<u64>,
        /// Writes that would have blocked (queued and flushed later).
        blocked: u64,
    },
}

/// Writes `value` as one JSON line and flushes.
pub(crate) fn send_line<T: Serialize>(out: &mut impl Write, value: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Collects complete lines from a non-blocking descriptor (a child's view of its stdin).
pub(crate) struct LineReader {
    buf: Vec<u8>,
    eof: bool,
}

impl LineReader {
    /// An empty reader.
    pub(crate) fn new() -> Self {
        LineReader {
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Reads what is available from `fd` and returns the complete lines parsed as `T`.
    pub(crate) fn read<T: DeserializeOwned>(&mut self, fd: RawFd) -> Result<Vec<T>, String> {
        let mut chunk = [0u8; 64 << 10];
        loop {
            // SAFETY: reading into a live stack buffer of the given length.
            let n = unsafe { libc::read(fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if n > 0 {
                self.buf.extend_from_slice(&chunk[..n as usize]);
                continue;
            }
            if n == 0 {
                self.eof = true;
                break;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => break,
                _ => return Err(format!("reading commands: {e}")),
            }
        }
        let mut out = Vec::new();
        while let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            out.push(serde_json::from_slice(&line).map_err(|e| format!("bad command: {e}"))?);
        }
        Ok(out)
    }

    /// Whether the writer went away.
    pub(crate) fn eof(&self) -> bool {
        self.eof
    }
}

impl Default for LineReader {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes a descriptor non-blocking (a child's stdin, before registering it with mio).
pub(crate) fn set_nonblocking(fd: &impl AsRawFd) {
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
}

/// A child process driven by JSON lines, seen from the coordinator.
pub(crate) struct ChildLink {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    name: String,
}

impl ChildLink {
    /// Starts `process` with piped stdin/stdout; a thread forwards its stdout lines.
    pub(crate) fn spawn(mut process: Process, name: &str) -> io::Result<Self> {
        super::sys::die_with_parent(&mut process);
        let mut child = process
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout was piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || forward_lines(stdout, tx));
        Ok(ChildLink {
            child,
            stdin,
            lines,
            name: name.to_string(),
        })
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one command line.
    pub(crate) fn send<T: Serialize>(&mut self, command: &T) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        send_line(stdin, command).map_err(|e| format!("{}: cannot send a command: {e}", self.name))
    }

    /// The next raw line, waiting at most `timeout`.
    pub(crate) fn recv_line(&mut self, timeout: Duration) -> Result<String, String> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => Ok(line),
            Err(RecvTimeoutError::Timeout) => {
                Err(format!("{}: no answer within {timeout:?}", self.name))
            }
            Err(RecvTimeoutError::Disconnected) => Err(format!("{}: exited", self.name)),
        }
    }

    /// The next line parsed as `T`, waiting at most `timeout`.
    pub(crate) fn recv<T: DeserializeOwned>(&mut self, timeout: Duration) -> Result<T, String> {
        let line = self.recv_line(timeout)?;
        serde_json::from_str(&line).map_err(|e| format!("{}: bad answer {line:?}: {e}", self.name))
    }

    /// Asks the child to exit, then kills it if it has not within a second.
    pub(crate) fn shutdown<T: Serialize>(mut self, exit: &T) {
        let _ = self.send(exit);
        self.stdin = None;
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildLink {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn forward_lines(stdout: impl Read, tx: mpsc::Sender<String>) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { return };
        if tx.send(line).is_err() {
            return;
        }
    }
}
