//! A minimal HTTP/1.1 client for the API (one request per connection, bounded waits) and a
//! minimal server that records webhook POSTs.

use crate::runner::{HttpAnswer, HttpCall, WebhookPost};
use serde_json::Value;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Sends `call` to `addr` and reads the whole response within `timeout`.
pub fn request(
    addr: SocketAddr,
    host: &str,
    call: &HttpCall,
    timeout: Duration,
) -> Result<HttpAnswer, String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let target = if call.query.is_empty() {
        call.path.clone()
    } else {
        format!("{}?{}", call.path, call.query)
    };
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        call.method,
        call.body.len()
    );
    if !call.body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(&call.body))
        .map_err(|e| format!("writing the request failed: {e}"))?;
    let (status, _headers, body) = read_message(&mut stream, timeout, true)?;
    let text = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(HttpAnswer { status, body })
}

/// Header names and values as sent.
type Headers = Vec<(String, String)>;

/// A parsed message head: status (0 for requests), headers, body offset, `Content-Length`.
type Head = (u16, Headers, usize, Option<usize>);

/// Reads one HTTP message: the status (responses) or 0 (requests), headers and body.
fn read_message(
    stream: &mut TcpStream,
    timeout: Duration,
    is_response: bool,
) -> Result<(u16, Headers, Vec<u8>), String> {
    let deadline = Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut eof = false;
    let mut parsed: Option<Head> = None;
    loop {
        if parsed.is_none() {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let mut lines = head.split("\r\n");
                let first = lines.next().unwrap_or_default();
                let status = if is_response {
                    first
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| format!("bad status line {first:?}"))?
                } else {
                    0
                };
                let headers: Headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                    .collect();
                let length = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok());
                let chunked = headers.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
                });
                if chunked {
                    return Err("chunked responses are not supported by this runner".into());
                }
                parsed = Some((status, headers, end + 4, length));
            }
        }
        if let Some((status, headers, start, length)) = &parsed {
            let have = buf.len() - start;
            let done = match length {
                Some(n) => have >= *n,
                None => eof || !is_response,
            };
            if done {
                let end = length.map_or(buf.len(), |n| start + n);
                return Ok((*status, headers.clone(), buf[*start..end].to_vec()));
            }
        }
        if eof {
            return Err(format!(
                "connection closed mid-message after {} bytes",
                buf.len()
            ));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!("no complete HTTP message within {timeout:?}"));
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut chunk) {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading failed: {e}")),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Records every POST it receives and answers `200 {}`.
pub struct WebhookReceiver {
    addr: SocketAddr,
    posts: Arc<Mutex<Vec<WebhookPost>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl WebhookReceiver {
    /// Listens on a free loopback port.
    pub fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let posts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_posts, thread_stop) = (posts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                if let Ok((_, headers, body)) =
                    read_message(&mut stream, Duration::from_secs(5), false)
                {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                    if let Ok(mut posts) = thread_posts.lock() {
                        posts.push(WebhookPost { headers, body });
                    }
                }
            }
        });
        Ok(WebhookReceiver {
            addr,
            posts,
            stop,
            thread: Some(thread),
        })
    }

    /// The URL to configure.
    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    /// Takes the POSTs received so far.
    pub fn take(&self) -> Vec<WebhookPost> {
        self.posts
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
