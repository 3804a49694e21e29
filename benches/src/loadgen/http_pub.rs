//! The publisher: signed Pusher HTTP API requests over one keep-alive connection, plain or
//! through rustls (`https://`).

use ferrocast_engine::http_auth::signed_query;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Reconnect before a request if the connection sat idle this long (servers time idle
/// keep-alive connections out; retrying a publish instead could deliver it twice).
const MAX_IDLE: Duration = Duration::from_secs(3);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// App credentials for signing.
#[derive(Clone, Debug)]
pub(crate) struct Credentials {
    /// App id (in the path).
    pub app_id: String,
    /// App key.
    pub key: String,
    /// App secret.
    pub secret: String,
}

/// One event of a publish.
pub(crate) struct Event<'a> {
    /// Channel name.
    pub channel: &'a str,
    /// Event name.
    pub name: &'a str,
    /// Event data (a string).
    pub data: &'a str,
}

/// A blocking byte stream: a socket, or a TLS session over one.
trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// A keep-alive HTTP/1.1 client for the publish endpoints.
pub(crate) struct Publisher {
    addr: SocketAddr,
    host: String,
    prefix: String,
    creds: Credentials,
    tls: Option<Arc<ClientConfig>>,
    stream: Option<Box<dyn Stream>>,
    last_used: Instant,
    buf: Vec<u8>,
    /// Requests sent.
    pub requests: u64,
    /// New connections made.
    pub connects: u64,
}

impl Publisher {
    /// A publisher for the server at `addr` (`host` for the Host header, `prefix` before `/apps`).
    pub(crate) fn new(addr: SocketAddr, host: String, prefix: String, creds: Credentials) -> Self {
        Publisher {
            addr,
            host,
            prefix,
            creds,
            tls: None,
            stream: None,
            last_used: Instant::now(),
            buf: Vec::with_capacity(4096),
            requests: 0,
            connects: 0,
        }
    }

    /// The same publisher speaking `https://` with `config`.
    pub(crate) fn with_tls(mut self, config: Arc<ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }

    /// Where it sends requests, and the Host header it names.
    pub(crate) fn target(&self) -> (SocketAddr, &str) {
        (self.addr, &self.host)
    }

    /// `POST /apps/{id}/events` for one channel.
    pub(crate) fn trigger(&mut self, event: &Event) -> Result<(), String> {
        let body =
            serde_json::json!({"name": event.name, "channel": event.channel, "data": event.data});
        self.post("events", body.to_string())
    }

    /// `POST /apps/{id}/batch_events` with up to ten events.
    pub(crate) fn batch(&mut self, events: &[Event]) -> Result<(), String> {
        let batch: Vec<_> = events
            .iter()
            .map(|e| serde_json::json!({"name": e.name, "channel": e.channel, "data": e.data}))
            .collect();
        self.post(
            "batch_events",
            serde_json::json!({ "batch": batch }).to_string(),
        )
    }

    fn post(&mut self, endpoint: &str, body: String) -> Result<(), String> {
        let path = format!("{}/apps/{}/{endpoint}", self.prefix, self.creds.app_id);
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let query = signed_query(
            &self.creds.key,
            &self.creds.secret,
            "POST",
            &path,
            &[],
            body.as_bytes(),
            unix,
        );
        let request = format!(
            "POST {path}?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        if self.last_used.elapsed() > MAX_IDLE {
            self.stream = None;
        }
        let stream = match self.stream.take() {
            Some(s) => s,
            None => self
                .connect()
                .map_err(|e| format!("cannot connect to the HTTP API: {e}"))?,
        };
        self.requests += 1;
        let (status, keep, stream) = self.exchange(stream, request.as_bytes())?;
        self.last_used = Instant::now();
        if keep {
            self.stream = Some(stream);
        }
        if status != 200 {
            return Err(format!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&self.buf)
            ));
        }
        Ok(())
    }

    fn connect(&mut self) -> io::Result<Box<dyn Stream>> {
        let stream = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        self.connects += 1;
        let Some(config) = &self.tls else {
            return Ok(Box::new(stream));
        };
        // The Host header may carry a port; the certificate names the host alone.
        let name = self.host.rsplit_once(':').map_or(&*self.host, |(h, _)| h);
        let name = ServerName::try_from(name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let conn = ClientConnection::new(config.clone(), name).map_err(io::Error::other)?;
        Ok(Box::new(StreamOwned::new(conn, stream)))
    }

    /// Sends a request and reads the response; leaves the body in `self.buf`.
    fn exchange(
        &mut self,
        mut stream: Box<dyn Stream>,
        request: &[u8],
    ) -> Result<(u16, bool, Box<dyn Stream>), String> {
        stream
            .write_all(request)
            .map_err(|e| format!("sending a request: {e}"))?;
        let mut raw = Vec::with_capacity(1024);
        let mut chunk = [0u8; 8192];
        let (status, keep, head_len, length, chunked) = loop {
            let n = stream
                .read(&mut chunk)
                .map_err(|e| format!("reading a response: {e}"))?;
            if n == 0 {
                return Err("the server closed the HTTP connection before answering".into());
            }
            raw.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&raw) {
                Ok(httparse::Status::Complete(head_len)) => {
                    let header = |name: &str| {
                        response
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
                    };
                    let length =
                        header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
                    let chunked =
                        header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
                    let keep = !header("connection").is_some_and(|v| v.contains("close"));
                    break (response.code.unwrap_or(0), keep, head_len, length, chunked);
                }
                Ok(httparse::Status::Partial) if raw.len() < 64 << 10 => {}
                Ok(httparse::Status::Partial) => return Err("response head too large".into()),
                Err(e) => return Err(format!("bad HTTP response: {e}")),
            }
        };
        let mut body = raw.split_off(head_len);
        if chunked {
            while !chunked_complete(&body) {
                let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed inside a chunked body".into());
                }
                body.extend_from_slice(&chunk[..n]);
            }
            self.buf = dechunk(&body);
        } else {
            let length = length.unwrap_or(0);
            while body.len() < length {
                let n = stream.read(&mut chunk).map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("connection closed inside a body".into());
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(length);
            self.buf = body;
        }
        Ok((status, keep, stream))
    }
}

/// Whether a chunked body has arrived up to its final zero-length chunk.
fn chunked_complete(body: &[u8]) -> bool {
    let mut at = 0;
    loop {
        let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") else {
            return false;
        };
        let size_text = String::from_utf8_lossy(&body[at..at + eol]);
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            return false;
        };
        at += eol + 2;
        if size == 0 {
            return body[at..].windows(2).any(|w| w == b"\r\n");
        }
        at += size + 2;
        if at > body.len() {
            return false;
        }
    }
}

fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(eol) = body[at..].windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&body[at..at + eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        at += eol + 2;
        if size == 0 || at + size > body.len() {
            break;
        }
        out.extend_from_slice(&body[at..at + size]);
        at += size + 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_recognised_and_joined() {
        let body = b"2\r\n{}\r\n3\r\nabc\r\n0\r\n\r\n";
        assert!(chunked_complete(body));
        assert!(!chunked_complete(&body[..10]));
        assert_eq!(dechunk(body), b"{}abc");
    }
}
