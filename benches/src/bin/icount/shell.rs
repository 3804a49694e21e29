//! Whole-server instruction counts: the real `ferrocast` binary under
//! `valgrind --tool=callgrind` (every thread counted, `--trace-children=no`), driven by a
//! client in this process, outside valgrind, over loopback. Each operation runs twice after
//! the same set-up, `few` and `2 × few` times; the difference of the totals over `few` is the
//! cost of one, start-up, set-up and shutdown cancelling out.
//!
//! The server runs one I/O worker (`--workers 1`), which runs the engine inline: the shape
//! `loadgen` measures when it pins the server to one CPU.

use ferrocast_engine::http_auth::signed_query;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const APP_ID: &str = "app-id";
const KEY: &str = "app-key";
const SECRET: &str = "app-secret";
/// Subscribers of the fan-out channel: delivery = (fan-out − publish) / this.
pub(crate) const FANOUT: usize = 100;
/// How long the server under valgrind may take to say where it listens, or to answer.
const PATIENCE: Duration = Duration::from_secs(120);

/// The operations measured through the shell.
pub(crate) const SHELL_OPS: [&str; 3] = ["publish", "fanout", "connection"];

/// One run: the server under callgrind, the set-up of `op`, `n` of it, a clean shutdown.
/// Returns the instruction total of every thread.
pub(crate) fn total(server: &Path, dir: &Path, op: &str, n: usize) -> Result<u64, String> {
    let out = dir.join(format!("shell-{op}-{n}.out"));
    let config = dir.join(format!("ferrocast-icount-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!("[[apps]]\nid = {APP_ID:?}\nkey = {KEY:?}\nsecret = {SECRET:?}\n"),
    )
    .map_err(|e| format!("{}: {e}", config.display()))?;
    let mut child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg("--trace-children=no")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(server)
        .args(["--host", "127.0.0.1", "--port", "0", "--workers", "1"])
        .args(["--rate-limit", "false", "--config"])
        .arg(&config)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run valgrind (is it installed?): {e}"))?;
    let result = listening(&mut child).and_then(|addr| drive(addr, op, n));
    // SIGTERM: the server drains and exits, and callgrind writes its totals.
    // SAFETY: signalling a child this process started and has not yet reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    result?;
    if !output.status.success() {
        return Err(format!(
            "the server under callgrind failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    super::total_of(&text).ok_or_else(|| format!("no totals in {}", out.display()))
}

/// The address from the server's `ferrocast listening on ADDR` line.
fn listening(child: &mut Child) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("stdout was not piped")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("ferrocast listening on ") {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(PATIENCE)
        .map_err(|_| "the server under callgrind printed no listening line".to_string())?;
    addr.parse()
        .map_err(|e| format!("bad listening address {addr}: {e}"))
}

/// The set-up of `op`, then `n` of it, then every client gone.
fn drive(addr: SocketAddr, op: &str, n: usize) -> Result<(), String> {
    match op {
        "publish" | "fanout" => {
            let subscribers = if op == "fanout" { FANOUT } else { 0 };
            let mut socks = (0..subscribers)
                .map(|_| Ws::subscribed(addr, "prices"))
                .collect::<Result<Vec<_>, _>>()?;
            let mut http = Http::connect(addr)?;
            // Each request waits for its answer and its deliveries, so the server does the same
            // work in the same turns in every run.
            for i in 0..n {
                http.publish("prices", &format!("{{\"price\":{i}}}"))?;
                for sock in &mut socks {
                    sock.frame()?;
                }
            }
            drop(http);
            socks.clear();
        }
        "connection" => {
            for _ in 0..n {
                drop(Ws::subscribed(addr, "lobby")?);
            }
        }
        other => return Err(format!("unknown shell operation {other:?}")),
    }
    // Let the server see every hang-up before it is told to stop (idle, it counts nothing).
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

/// A blocking keep-alive HTTP client for the publish API.
struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    fn connect(addr: SocketAddr) -> Result<Self, String> {
        let stream = connect(addr)?;
        Ok(Http {
            stream,
            buf: Vec::new(),
        })
    }

    /// One signed `POST /apps/{id}/events`, answered 200.
    fn publish(&mut self, channel: &str, data: &str) -> Result<(), String> {
        let body =
            serde_json::json!({"name": "tick", "channel": channel, "data": data}).to_string();
        let path = format!("/apps/{APP_ID}/events");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let query = signed_query(KEY, SECRET, "POST", &path, &[], body.as_bytes(), now);
        let request = format!(
            "POST {path}?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream
            .write_all(request.as_bytes())
            .map_err(|e| format!("publish: {e}"))?;
        let head = read_head(&mut self.stream, &mut self.buf)?;
        if !head.starts_with("HTTP/1.1 200") {
            return Err(format!("publish answered {head:?}"));
        }
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .ok_or("an answer without Content-Length")?;
        fill(&mut self.stream, &mut self.buf, length)?;
        self.buf.drain(..length);
        Ok(())
    }
}

/// A blocking WebSocket client that subscribes to one public channel.
struct Ws {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Ws {
    /// Connects, upgrades, reads `connection_established`, subscribes and reads the answer.
    fn subscribed(addr: SocketAddr, channel: &str) -> Result<Self, String> {
        let mut stream = connect(addr)?;
        let upgrade = format!(
            "GET /app/{KEY}?protocol=7 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(upgrade.as_bytes())
            .map_err(|e| format!("upgrade: {e}"))?;
        let mut ws = Ws {
            stream,
            buf: Vec::new(),
        };
        let head = read_head(&mut ws.stream, &mut ws.buf)?;
        if !head.starts_with("HTTP/1.1 101") {
            return Err(format!("upgrade answered {head:?}"));
        }
        let established = ws.frame()?;
        if !established.contains("connection_established") {
            return Err(format!(
                "expected connection_established, got {established}"
            ));
        }
        let subscribe =
            format!("{{\"event\":\"pusher:subscribe\",\"data\":{{\"channel\":\"{channel}\"}}}}");
        ws.send(subscribe.as_bytes())?;
        let answer = ws.frame()?;
        if !answer.contains("subscription_succeeded") {
            return Err(format!("expected subscription_succeeded, got {answer}"));
        }
        Ok(ws)
    }

    /// Sends one masked text frame (a zero mask: legal, and the bytes stay readable).
    fn send(&mut self, payload: &[u8]) -> Result<(), String> {
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[0; 4]);
        frame.extend_from_slice(payload);
        self.stream
            .write_all(&frame)
            .map_err(|e| format!("send: {e}"))
    }

    /// The text of the next (unmasked, unfragmented) frame from the server.
    fn frame(&mut self) -> Result<String, String> {
        fill(&mut self.stream, &mut self.buf, 2)?;
        let (len, start) = match self.buf[1] & 0x7f {
            126 => {
                fill(&mut self.stream, &mut self.buf, 4)?;
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => return Err("an unexpectedly long frame".into()),
            n => (usize::from(n), 2),
        };
        fill(&mut self.stream, &mut self.buf, start + len)?;
        let text = String::from_utf8_lossy(&self.buf[start..start + len]).into_owned();
        self.buf.drain(..start + len);
        Ok(text)
    }
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

/// Reads until `buf` holds a whole response head; returns it and leaves what follows.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<String, String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            return Ok(head);
        }
        more(stream, buf)?;
    }
}

/// Reads until `buf` holds at least `len` bytes.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, len: usize) -> Result<(), String> {
    while buf.len() < len {
        more(stream, buf)?;
    }
    Ok(())
}

fn more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk) {
        Ok(0) => Err("the server closed the connection".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("read: {e}")),
    }
}
