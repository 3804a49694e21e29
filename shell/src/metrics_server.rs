//! The metrics listener: `GET /metrics` on an address of its own, never on the public port,
//! and, with an `[admin] token`, the admin console's routes (see [`crate::admin`]).
//!
//! A plain blocking thread serves one scrape at a time: scrapes come every few seconds from
//! a handful of Prometheus servers, so a mio loop would buy nothing. Each connection gets a
//! read and write timeout, and is closed after its answer, so a client that stalls holds the
//! listener for at most those timeouts. The request head is parsed by the shell's own parser.

use crate::admin::{self, Admin, Answer};
use crate::http::{self, HeadLimits, Parsed};
use crate::metrics::Sources;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The media type of the OpenMetrics text format `prometheus-client` writes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long one scraper may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A scrape is a bare GET, a console publish a small JSON body: beyond these, refused.
const LIMITS: HeadLimits = HeadLimits {
    max_head_bytes: 8 * 1024,
    max_headers: 64,
    max_body_bytes: 64 * 1024,
};

/// The bound metrics socket, not yet served.
pub(crate) struct MetricsListener {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `host:port` (port 0 picks a free one).
    pub(crate) fn bind(host: &str, port: u16) -> io::Result<MetricsListener> {
        let cannot = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot listen for metrics on {host}:{port}: {e}"),
            )
        };
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(cannot)?
            .next()
            .ok_or_else(|| cannot(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
        let listener = TcpListener::bind(addr).map_err(cannot)?;
        let local_addr = listener.local_addr()?;
        Ok(MetricsListener {
            listener,
            local_addr,
        })
    }

    /// The address actually bound.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves scrapes from `sources` (when metrics are on) and the admin routes (when a
    /// token is set), forever: the body of the supervised `metrics` thread, which the
    /// process exit ends (it holds nothing that needs flushing).
    pub(crate) fn serve(self, sources: Option<Sources>, admin: Option<Admin>) -> io::Result<()> {
        for stream in self.listener.incoming() {
            match stream {
                Ok(stream) => {
                    if let Err(e) = serve_one(stream, sources.as_ref(), admin.as_ref()) {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    // Out of descriptors, say: do not spin.
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Ok(())
    }
}

/// Reads one request (head and body) and answers it: the metrics for `GET /metrics`, the
/// admin routes, an error else.
fn serve_one(
    mut stream: TcpStream,
    sources: Option<&Sources>,
    admin: Option<&Admin>,
) -> io::Result<()> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 2048];
    let head = loop {
        match http::parse_head(&buf, &LIMITS) {
            Parsed::Head(head) if buf.len() >= head.head_len + head.content_length => {
                break Ok(head)
            }
            Parsed::Head(_) | Parsed::Partial => {}
            Parsed::Refused(refusal) => break Err(refusal.status),
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = match head {
        Ok(head) => head,
        Err(status) => return plain(stream, status, "text/plain", Vec::new(), false),
    };
    if admin::is_admin_path(&head.path) {
        return match admin {
            Some(admin) => {
                let body = buf[head.head_len..head.head_len + head.content_length].to_vec();
                admin.serve(&head, &buf[..head.head_len], body, stream)
            }
            None => admin::answer(
                stream,
                &Answer {
                    status: 404,
                    content_type: "text/plain",
                    body: b"the admin console is off: set [admin] token\n".to_vec(),
                },
            ),
        };
    }
    let (status, content_type, body) = match sources {
        Some(sources) if head.path == "/metrics" => {
            if matches!(head.method.as_str(), "GET" | "HEAD") {
                let head_only = head.method == "HEAD";
                let body = sources.render().into_bytes();
                return plain(stream, 200, CONTENT_TYPE, body, head_only);
            }
            (405, "text/plain", b"GET only\n".to_vec())
        }
        Some(_) => (404, "text/plain", b"metrics are at /metrics\n".to_vec()),
        None => (
            404,
            "text/plain",
            b"metrics are off; the console is at /console\n".to_vec(),
        ),
    };
    plain(stream, status, content_type, body, false)
}

/// Writes one answer and closes.
fn plain(
    mut stream: TcpStream,
    status: u16,
    content_type: &str,
    body: Vec<u8>,
    head_only: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        http::reason_phrase(status),
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&body)?;
    }
    stream.flush()
}
