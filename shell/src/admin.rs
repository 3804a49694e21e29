//! The admin routes of the metrics listener: the debug console page, its API, and reload.
//!
//! Every route needs the `[admin] token`, as `?token=` (the page's event stream, which
//! browsers cannot give headers) or `Authorization: Bearer` (the page's other calls),
//! compared in constant time; a wrong or missing one is a 401. The JSON of the snapshot and
//! the events is the engine's, passed on as bytes; only the shell's own answers (reload, the
//! listener's refusals) are written here.
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /console` | the console page (embedded in the binary) |
//! | `GET /admin/apps` | the engine's snapshot: apps, connections, occupied channels |
//! | `GET /admin/events` | server-sent events, one debug event per `data:` line |
//! | `POST /admin/publish?app=ID` | publishes the body (an HTTP API event) in app `ID` |
//! | `POST /admin/reload` | re-reads the configuration file, as SIGHUP does |

use crate::console::{ConsoleHub, Viewer};
use crate::http::{self, RequestHead};
use crate::supervisor::Notice;
use ferrocast_engine::http_auth::Query;
use std::io::{self, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// The console page: plain HTML, CSS and JavaScript, no build step.
const PAGE: &str = include_str!("console.html");
/// How often an idle event stream gets a comment, to find out that its reader has gone.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// What the admin routes need.
pub(crate) struct Admin {
    /// The `[admin] token`.
    pub(crate) token: String,
    /// The meeting point with the engine thread.
    pub(crate) hub: Arc<ConsoleHub>,
    /// Where a reload request goes (the supervisor, as for SIGHUP).
    pub(crate) notices: mpsc::Sender<Notice>,
}

/// Whether `path` is one of the admin routes (the others are the metrics listener's).
pub(crate) fn is_admin_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/admin/")
}

/// A complete answer: status, content type and body.
pub(crate) struct Answer {
    /// Status code.
    pub(crate) status: u16,
    /// `Content-Type`.
    pub(crate) content_type: &'static str,
    /// Body bytes.
    pub(crate) body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, body: Vec<u8>) -> Self {
        Answer {
            status,
            content_type: "application/json",
            body,
        }
    }

    fn error(status: u16, reason: &str) -> Self {
        Answer::json(status, http::error_body(reason))
    }
}

/// Compares two tokens in time that depends on their lengths only, never on where they
/// first differ.
fn same_token(given: &[u8], expected: &[u8]) -> bool {
    let mut differ = u8::from(given.len() != expected.len());
    for (i, &byte) in expected.iter().enumerate() {
        differ |= byte ^ given.get(i).copied().unwrap_or(!byte);
    }
    differ == 0
}

/// The `Authorization: Bearer` token in the raw request head, if any.
fn bearer(raw_head: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(raw_head).ok()?;
    text.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        if !name.trim().eq_ignore_ascii_case("authorization") {
            return None;
        }
        let value = value.trim();
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned())
    })
}

impl Admin {
    fn authorized(&self, head: &RequestHead, raw_head: &[u8]) -> bool {
        let query = Query::parse(&head.query);
        let given = query
            .get("token")
            .map(str::to_owned)
            .or_else(|| bearer(raw_head));
        given.is_some_and(|given| same_token(given.as_bytes(), self.token.as_bytes()))
    }

    /// Serves one admin request on `stream`: answers it, or for the event stream, hands the
    /// socket to a thread of its own.
    pub(crate) fn serve(
        &self,
        head: &RequestHead,
        raw_head: &[u8],
        body: Vec<u8>,
        stream: TcpStream,
    ) -> io::Result<()> {
        if !self.authorized(head, raw_head) {
            return answer(
                stream,
                &Answer::error(
                    401,
                    "a valid admin token is required (?token= or Authorization: Bearer)",
                ),
            );
        }
        let answer_with = match (head.method.as_str(), head.path.as_str()) {
            ("GET", "/console") => Answer {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: PAGE.as_bytes().to_vec(),
            },
            ("GET", "/admin/apps") => Answer::json(200, self.hub.snapshot()),
            ("GET", "/admin/events") => return self.stream_events(stream),
            ("POST", "/admin/publish") => self.publish(head, body),
            ("POST", "/admin/reload") => {
                let _ = self.notices.send(Notice::Reload);
                Answer::json(
                    202,
                    br#"{"reload":"requested","note":"the server log says what changed"}"#.to_vec(),
                )
            }
            (
                _,
                "/console" | "/admin/apps" | "/admin/events" | "/admin/publish" | "/admin/reload",
            ) => Answer::error(405, "method not allowed"),
            _ => Answer::error(404, "no such admin route"),
        };
        answer(stream, &answer_with)
    }

    fn publish(&self, head: &RequestHead, body: Vec<u8>) -> Answer {
        let query = Query::parse(&head.query);
        let Some(app) = query.get("app") else {
            return Answer::error(400, "missing app query parameter");
        };
        match self.hub.publish(app, body) {
            Some((status, body)) => Answer::json(status, body),
            None => Answer::error(503, "the engine did not answer in time"),
        }
    }

    /// Starts a server-sent events stream on a thread of its own, or refuses with 503 when
    /// enough viewers watch already.
    fn stream_events(&self, mut stream: TcpStream) -> io::Result<()> {
        let Some(viewer) = self.hub.watch() else {
            return answer(
                stream,
                &Answer::error(503, "too many console viewers; close one"),
            );
        };
        stream.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\n\
              Connection: close\r\n\r\n: watching\n\n",
        )?;
        std::thread::Builder::new()
            .name("admin-events".into())
            .spawn(move || {
                if let Err(e) = feed_viewer(stream, &viewer) {
                    tracing::debug!(error = %e, "console event stream ended");
                }
            })?;
        Ok(())
    }
}

/// Writes the viewer's events until its reader goes away (a write fails).
fn feed_viewer(mut stream: TcpStream, viewer: &Viewer) -> io::Result<()> {
    // A reader that stops reading blocks this thread only; the hub drops its events.
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    loop {
        let mut out = Vec::new();
        match viewer.events.recv_timeout(KEEPALIVE) {
            Ok(event) => {
                push_event(&mut out, &event);
                while let Ok(event) = viewer.events.try_recv() {
                    push_event(&mut out, &event);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => out.extend_from_slice(b": keepalive\n\n"),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        }
        stream.write_all(&out)?;
        stream.flush()?;
    }
}

fn push_event(out: &mut Vec<u8>, json: &[u8]) {
    // The engine's JSON has no raw newline (serde_json escapes them), so one line per event.
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
}

/// Writes one complete answer and closes.
pub(crate) fn answer(mut stream: TcpStream, answer: &Answer) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        answer.status,
        http::reason_phrase(answer.status),
        answer.content_type,
        answer.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&answer.body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(same_token(b"secret", b"secret"));
        assert!(!same_token(b"secreT", b"secret"));
        assert!(!same_token(b"secret!", b"secret"));
        assert!(!same_token(b"secre", b"secret"));
        assert!(!same_token(b"", b"secret"));
    }

    #[test]
    fn the_bearer_token_is_read_from_the_head() {
        let head = b"GET /admin/apps HTTP/1.1\r\nHost: x\r\nauthorization: Bearer abc\r\n\r\n";
        assert_eq!(bearer(head).as_deref(), Some("abc"));
        assert_eq!(bearer(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), None);
    }
}
