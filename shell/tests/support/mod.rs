//! Starting the real `ferrocast` binary on a free loopback port, and small blocking clients.
#![allow(dead_code, unused_macros)]
// Test helpers unwrap like the tests they serve: a panic is the failure report.
#![allow(clippy::unwrap_used)]
// These tests play the client: they build its requests and read the replies as JSON, which
// the shell itself never does (shell/clippy.toml bans it there).
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    clippy::disallowed_types
)]

/// Turns each `fn name(workers: usize)` into the tests `name::w1` and `name::w2`: the same
/// behaviour with one I/O worker and with two.
macro_rules! per_workers {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn w1() {
                    super::$name(1)
                }
                #[test]
                fn w2() {
                    super::$name(2)
                }
            }
        )*
    };
}

pub(crate) mod db_process;
pub(crate) mod mariadb;
pub(crate) mod postgres;
pub(crate) mod redis_server;
pub(crate) mod tcp_proxy;

use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocket;
use tungstenite::Message;

/// How long any single wait in these tests may take.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

static CONFIGS: AtomicUsize = AtomicUsize::new(0);

/// A running server, killed when dropped.
pub(crate) struct Server {
    child: Child,
    /// The bound loopback address.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    config: Option<PathBuf>,
    /// The lines printed after the listening line.
    stdout: Mutex<mpsc::Receiver<String>>,
}

impl Server {
    /// Starts the binary with the default configuration and `workers` I/O workers.
    pub(crate) fn start(workers: usize) -> Server {
        Self::start_with(workers, None, &[], &[])
    }

    /// Starts the binary with `workers` I/O workers, an optional TOML file, extra flags and
    /// environment variables.
    pub(crate) fn start_with(
        workers: usize,
        config: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        let config = config.map(write_config);
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferrocast"));
        command
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--workers", &workers.to_string()])
            .args(args)
            .env_remove("RUST_LOG")
            .env("FERROCAST_LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        if let Some(path) = &config {
            command.arg("--config").arg(path);
        }
        let mut child = command.spawn().expect("spawn ferrocast");
        let stderr = collect(child.stderr.take().expect("stderr"));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let line = rx.recv_timeout(WAIT).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no listening line; stderr:\n{}", stderr.lock().unwrap());
        });
        let addr = line
            .strip_prefix("ferrocast listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .expect("listening address");
        Server {
            child,
            addr,
            stderr,
            config,
            stdout: Mutex::new(rx),
        }
    }

    /// Waits for the `ferrocast metrics on ADDR` line of a server started with
    /// `--metrics true`, and returns the address.
    pub(crate) fn metrics_addr(&self) -> SocketAddr {
        let line = self
            .stdout
            .lock()
            .unwrap()
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no metrics line; stderr:\n{}", self.stderr()));
        line.strip_prefix("ferrocast metrics on ")
            .unwrap_or_else(|| panic!("unexpected line {line:?}"))
            .parse()
            .expect("metrics address")
    }

    /// The I/O worker that served each accepted connection so far, in order of acceptance
    /// (from the debug log).
    pub(crate) fn accepted_by(&self) -> Vec<usize> {
        self.stderr()
            .lines()
            .filter(|line| line.contains(" accepted "))
            .filter_map(|line| {
                let rest = line.split("worker=").nth(1)?;
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// What the server logged so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The operating system process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the process `signal` (`HUP`, `TERM`, …) with `kill`.
    pub(crate) fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Replaces the configuration file the server was started with (for SIGHUP reloads).
    pub(crate) fn rewrite_config(&self, text: &str) {
        let path = self
            .config
            .as_ref()
            .expect("started with a configuration file");
        std::fs::write(path, text).expect("rewrite the configuration");
    }

    /// Waits (bounded) for the process to exit.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        while start.elapsed() < WAIT {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not exit; stderr:\n{}", self.stderr());
    }

    /// Opens a WebSocket to `path_and_query`.
    pub(crate) fn ws(&self, path_and_query: &str) -> WebSocket<TcpStream> {
        let stream = self.tcp();
        let url = format!("ws://{}{}", self.addr, path_and_query);
        let (ws, _) = tungstenite::client::client(url.as_str(), stream).expect("handshake");
        ws
    }

    /// A raw TCP connection with read and write timeouts.
    pub(crate) fn tcp(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.config {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Runs the binary to completion (it must exit by itself) and returns its status and stderr.
pub(crate) fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrocast"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferrocast");
    let stderr = collect(child.stderr.take().expect("stderr"));
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            // Give the collector a moment to see the end of the pipe.
            std::thread::sleep(Duration::from_millis(50));
            let text = stderr.lock().unwrap().clone();
            return (status, text);
        }
        if start.elapsed() > WAIT {
            let _ = child.kill();
            panic!("ferrocast kept running with {args:?} {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes a configuration file that the caller's `Server` removes.
pub(crate) fn write_config(text: &str) -> PathBuf {
    let n = CONFIGS.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("ferrocast-test-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                return;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

/// Reads the next text message as JSON, skipping control frames.
pub(crate) fn next_json<S: Read + Write>(ws: &mut WebSocket<S>) -> serde_json::Value {
    for _ in 0..100 {
        match ws.read().expect("read") {
            Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
    panic!("no text message");
}

/// Reads until a close frame and returns its code (skipping anything before it).
pub(crate) fn close_code(ws: &mut WebSocket<TcpStream>) -> u16 {
    for _ in 0..1000 {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)).unwrap_or(1005),
            Ok(_) => continue,
            Err(e) => panic!("connection ended without a close frame: {e}"),
        }
    }
    panic!("no close frame");
}

/// The socket id announced in `pusher:connection_established`.
pub(crate) fn socket_id(established: &serde_json::Value) -> String {
    assert_eq!(established["event"], "pusher:connection_established");
    let data: serde_json::Value =
        serde_json::from_str(established["data"].as_str().expect("data is a string")).unwrap();
    data["socket_id"].as_str().expect("socket_id").to_owned()
}

/// One HTTP response read from a raw socket: status line, headers (lower-cased names), body.
#[derive(Debug)]
pub(crate) struct HttpResponse {
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The status code.
    pub(crate) fn status(&self) -> u16 {
        self.status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code")
    }
}

/// Reads one response framed by Content-Length from `reader`.
pub(crate) fn read_response(reader: &mut BufReader<TcpStream>) -> HttpResponse {
    let mut status_line = String::new();
    reader.read_line(&mut status_line).expect("status line");
    let mut headers = Vec::new();
    for _ in 0..100 {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header line");
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').expect("header");
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = HttpResponse {
        status_line: status_line.trim_end().to_owned(),
        headers,
        body: Vec::new(),
    };
    let len: usize = response
        .header("content-length")
        .map(|v| v.parse().expect("length"))
        .unwrap_or(0);
    response.body = vec![0; len];
    reader.read_exact(&mut response.body).expect("body");
    response
}

/// Writes all of `bytes`.
pub(crate) fn send_raw(stream: &mut TcpStream, bytes: &[u8]) {
    stream.write_all(bytes).expect("write");
}

/// Seconds since the Unix epoch, for `auth_timestamp`.
pub(crate) fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A complete signed `POST /apps/{app_id}/events` request (keep-alive), signed with `key` and
/// `secret` at `auth_timestamp` `timestamp`.
pub(crate) fn signed_events_request(
    app_id: &str,
    (key, secret): (&str, &str),
    body: &str,
    timestamp: u64,
) -> String {
    let path = format!("/apps/{app_id}/events");
    let query = ferrocast_engine::http_auth::signed_query(
        key,
        secret,
        "POST",
        &path,
        &[],
        body.as_bytes(),
        timestamp,
    );
    format!(
        "POST {path}?{query} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Publishes `name` on `channel` through the HTTP API on a connection of its own.
pub(crate) fn publish(server: &Server, channel: &str, name: &str, data: &str) {
    let stream = server.tcp();
    let mut writer = stream.try_clone().unwrap();
    writer
        .write_all(publish_request(channel, name, data, "keep-alive").as_bytes())
        .expect("write");
    let response = read_response(&mut BufReader::new(stream));
    assert_eq!(
        response.status(),
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
}

/// A signed HTTP API request publishing `name` on `channel`, with this `Connection` header.
pub(crate) fn publish_request(channel: &str, name: &str, data: &str, connection: &str) -> String {
    let body = json!({"name": name, "channel": channel, "data": data}).to_string();
    signed_events_request("app-id", ("app-key", "app-secret"), &body, unix_secs()).replacen(
        "Host: t\r\n",
        &format!("Host: t\r\nConnection: {connection}\r\n"),
        1,
    )
}

/// Subscribes `ws` (already past `connection_established`) to the public `channel`.
pub(crate) fn subscribe_public(ws: &mut WebSocket<TcpStream>, channel: &str) {
    let msg = json!({"event": "pusher:subscribe", "data": {"channel": channel}});
    ws.send(Message::Text(msg.to_string().into()))
        .expect("subscribe");
    let reply = next_json(ws);
    assert_eq!(
        reply["event"], "pusher_internal:subscription_succeeded",
        "{reply}"
    );
}

/// The resident memory of process `pid` in KiB (`VmRSS` of `/proc/{pid}/status`).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// CPU time (user and system) the process `pid` has used so far, from `/proc/{pid}/stat`.
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // The command name may hold spaces; the fields after its closing parenthesis do not.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("a command name")
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // USER_HZ is 100 on every Linux this runs on.
    Duration::from_millis(ticks * 10)
}
