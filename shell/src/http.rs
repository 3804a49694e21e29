//! HTTP/1.1 request framing and response encoding: the transport half of the HTTP API and of
//! the WebSocket upgrade. What a request means is the engine's business; this module only
//! decides where a request ends, whether the connection stays open, and which transport
//! errors (431, 413, 411, 400, 426) to answer without bothering the engine.

use ferrocast_engine::HttpRequest;
use std::fmt::Write as _;

/// Size limits for parsing one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Most bytes of a request line plus headers.
    pub max_head_bytes: usize,
    /// Most header lines.
    pub max_headers: usize,
    /// Most bytes of a request body.
    pub max_body_bytes: usize,
}

/// A complete, framed request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes of the request line and headers, including the blank line.
    pub head_len: usize,
    /// The method, as sent.
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The query without the `?`.
    pub query: String,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    /// Whether the client asked for `HTTP/1.1`; `HTTP/1.0` clients get 1.0-style keep-alive.
    pub http11: bool,
    /// Body bytes following the head.
    pub content_length: usize,
    /// Whether the client waits for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// The `Origin` header.
    pub origin: Option<String>,
    /// `Access-Control-Request-Headers`, echoed by a preflight answer.
    pub cors_request_headers: Option<String>,
    /// Every `X-Forwarded-For` header, joined with commas.
    pub forwarded_for: Option<String>,
    /// The `X-Forwarded-Proto` header.
    pub forwarded_proto: Option<String>,
    /// The WebSocket handshake, when this is a valid upgrade request.
    pub upgrade: Option<Upgrade>,
}

/// A valid WebSocket upgrade request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// Every `Sec-WebSocket-Extensions` header, joined with commas.
    pub extensions: Option<String>,
}

/// A request the shell refuses on its own, with a status and a short reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The status code.
    pub status: u16,
    /// A human-readable reason, sent as `{"error": reason}`.
    pub reason: String,
    /// Extra response headers (e.g. `Sec-WebSocket-Version` with a 426).
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
            headers: Vec::new(),
        }
    }
}

/// The outcome of parsing what a connection has buffered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A complete head (the body may still be arriving).
    Head(RequestHead),
    /// A request that must be refused; the connection closes after the answer.
    Refused(Refusal),
}

/// One complete request at the start of `bytes`, as the engine would be fed it: `None` when
/// the head is partial or refused. The body is what follows the head, up to its
/// `Content-Length`. The `http_request` fuzz target and its corpus replay parse raw bytes
/// with it, so they exercise exactly the shell's framing.
pub fn parse_request(bytes: &[u8], limits: &HeadLimits) -> Option<HttpRequest> {
    let Parsed::Head(head) = parse_head(bytes, limits) else {
        return None;
    };
    // A head never claims more bytes than it was parsed from (the fuzz target relies on this
    // slice to catch a parser that does).
    let body = &bytes[head.head_len..];
    let body = body[..head.content_length.min(body.len())].to_vec();
    Some(HttpRequest {
        method: head.method,
        path: head.path,
        query: head.query,
        body,
    })
}

/// Header slots kept on the stack by [`parse_head`]; a larger `max_request_headers` allocates.
const STACK_HEADERS: usize = 64;

/// Parses a request head from the start of `buf`.
pub fn parse_head(buf: &[u8], limits: &HeadLimits) -> Parsed {
    // The usual limit fits on the stack: no allocation per request for the header slots.
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
    let mut on_heap = Vec::new();
    let headers: &mut [httparse::Header<'_>] = if limits.max_headers <= STACK_HEADERS {
        &mut on_stack[..limits.max_headers]
    } else {
        on_heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
        &mut on_heap
    };
    let mut request = httparse::Request::new(headers);
    let head_len = match request.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head_bytes {
                return Parsed::Refused(Refusal::new(431, "request header fields too large"));
            }
            return Parsed::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parsed::Refused(Refusal::new(431, "too many request headers"));
        }
        Err(e) => return Parsed::Refused(Refusal::new(400, format!("malformed request: {e}"))),
    };
    if head_len > limits.max_head_bytes {
        return Parsed::Refused(Refusal::new(431, "request header fields too large"));
    }
    let method = request.method.unwrap_or_default().to_owned();
    let target = request.path.unwrap_or_default();
    let http11 = request.version == Some(1);
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
    };
    let all_of = |name: &str| {
        let values: Vec<String> = request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    };
    let has_token = |name: &str, token: &str| {
        request
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };

    if request
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Parsed::Refused(if has_token("transfer-encoding", "chunked") {
            Refusal::new(411, "chunked bodies are not supported: send Content-Length")
        } else {
            Refusal::new(400, "unsupported Transfer-Encoding")
        });
    }
    let content_length = match content_length(request.headers) {
        Ok(n) => n,
        Err(refusal) => return Parsed::Refused(refusal),
    };
    if content_length > limits.max_body_bytes {
        return Parsed::Refused(Refusal::new(413, "request body too large"));
    }

    let keep_alive = if http11 {
        !has_token("connection", "close")
    } else {
        has_token("connection", "keep-alive")
    };

    let upgrade = if has_token("upgrade", "websocket") {
        match check_upgrade(&method, http11, has_token("connection", "upgrade"), &header) {
            Ok(mut upgrade) => {
                upgrade.extensions = all_of("sec-websocket-extensions");
                Some(upgrade)
            }
            Err(refusal) => return Parsed::Refused(refusal),
        }
    } else {
        None
    };

    Parsed::Head(RequestHead {
        head_len,
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        keep_alive,
        http11,
        content_length,
        expect_continue: has_token("expect", "100-continue"),
        origin: header("origin"),
        cors_request_headers: header("access-control-request-headers"),
        forwarded_for: all_of("x-forwarded-for"),
        forwarded_proto: header("x-forwarded-proto"),
        upgrade,
    })
}

fn content_length(headers: &[httparse::Header<'_>]) -> Result<usize, Refusal> {
    let mut found: Option<usize> = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        let text = std::str::from_utf8(h.value).unwrap_or("").trim();
        let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
        // Too many digits to fit is simply too large.
        let n = if valid {
            text.parse::<usize>().unwrap_or(usize::MAX)
        } else {
            return Err(Refusal::new(400, "invalid Content-Length"));
        };
        if found.is_some_and(|f| f != n) {
            return Err(Refusal::new(400, "conflicting Content-Length headers"));
        }
        found = Some(n);
    }
    Ok(found.unwrap_or(0))
}

fn check_upgrade(
    method: &str,
    http11: bool,
    connection_upgrade: bool,
    header: &dyn Fn(&str) -> Option<String>,
) -> Result<Upgrade, Refusal> {
    if method != "GET" || !http11 {
        return Err(Refusal::new(
            400,
            "a WebSocket upgrade must be an HTTP/1.1 GET",
        ));
    }
    if !connection_upgrade {
        return Err(Refusal::new(400, "missing Connection: Upgrade"));
    }
    if header("sec-websocket-version").as_deref() != Some("13") {
        let mut refusal = Refusal::new(426, "unsupported WebSocket version: use 13");
        refusal
            .headers
            .push(("Sec-WebSocket-Version", "13".to_owned()));
        return Err(refusal);
    }
    let key = header("sec-websocket-key").unwrap_or_default();
    // A valid key is 16 random bytes in base64: 24 characters ending in "==".
    let plausible = key.len() == 24
        && key.ends_with("==")
        && key.as_bytes()[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !plausible {
        return Err(Refusal::new(400, "missing or invalid Sec-WebSocket-Key"));
    }
    Ok(Upgrade {
        accept: tungstenite::handshake::derive_accept_key(key.as_bytes()),
        extensions: None,
    })
}

/// The reason phrase of a status code (only those this server sends are named).
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// How a response should treat the connection and which extras it carries.
#[derive(Clone, Debug, Default)]
pub(crate) struct ResponseOptions<'a> {
    /// Keep the connection open for another request.
    pub keep_alive: bool,
    /// Answer in HTTP/1.0 style (explicit `Connection: keep-alive`).
    pub http10: bool,
    /// Leave the body out (a `HEAD` request) while still announcing its length.
    pub omit_body: bool,
    /// Extra headers.
    pub headers: &'a [(&'static str, String)],
}

/// Encodes a complete JSON response with CORS and connection headers.
pub(crate) fn response(status: u16, body: &[u8], options: &ResponseOptions<'_>) -> Vec<u8> {
    let mut head = String::with_capacity(160 + body.len());
    head.push_str(if options.http10 {
        "HTTP/1.0 "
    } else {
        "HTTP/1.1 "
    });
    push_decimal(&mut head, usize::from(status));
    head.push(' ');
    head.push_str(reason_phrase(status));
    head.push_str("\r\nContent-Type: application/json\r\nContent-Length: ");
    push_decimal(&mut head, body.len());
    head.push_str("\r\nAccess-Control-Allow-Origin: *\r\n");
    match (options.keep_alive, options.http10) {
        (true, true) => head.push_str("Connection: keep-alive\r\n"),
        (true, false) => {}
        (false, _) => head.push_str("Connection: close\r\n"),
    }
    for (name, value) in options.headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !options.omit_body {
        out.extend_from_slice(body);
    }
    out
}

/// Appends `n` in decimal (what `write!` does, without the formatting machinery).
fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// The JSON body of an error the shell answers itself; the engine owns its shape.
pub(crate) fn error_body(reason: &str) -> Vec<u8> {
    ferrocast_engine::http_response::error_body(reason)
}

/// The headers of an answer to a CORS preflight (`OPTIONS`).
pub(crate) fn preflight_headers(request_headers: Option<&str>) -> Vec<(&'static str, String)> {
    vec![
        ("Access-Control-Allow-Methods", "GET, POST, OPTIONS".into()),
        (
            "Access-Control-Allow-Headers",
            request_headers
                .filter(|h| h.bytes().all(|b| b.is_ascii_graphic() || b == b' '))
                .unwrap_or("Content-Type, Authorization")
                .to_owned(),
        ),
        ("Access-Control-Max-Age", "86400".into()),
    ]
}

/// The `101 Switching Protocols` answer completing a WebSocket handshake, with the
/// negotiated `Sec-WebSocket-Extensions`, if any.
pub(crate) fn switching_protocols(accept: &str, extensions: Option<&str>) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(extensions) = extensions {
        let _ = write!(head, "Sec-WebSocket-Extensions: {extensions}\r\n");
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// The interim answer to `Expect: 100-continue`.
pub(crate) const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_head_bytes: 8192,
        max_headers: 64,
        max_body_bytes: 1024,
    };

    fn head(text: &str) -> RequestHead {
        match parse_head(text.as_bytes(), &LIMITS) {
            Parsed::Head(head) => head,
            other => panic!("expected a head, got {other:?}"),
        }
    }

    fn refused(text: &[u8]) -> u16 {
        match parse_head(text, &LIMITS) {
            Parsed::Refused(r) => r.status,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn simple_post_is_framed() {
        let h = head(
            "POST /apps/1/events?auth_key=k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        );
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/apps/1/events");
        assert_eq!(h.query, "auth_key=k");
        assert_eq!(h.content_length, 5);
        assert!(h.keep_alive);
        assert!(h.upgrade.is_none());
        assert_eq!(
            h.head_len,
            "POST /apps/1/events?auth_key=k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n".len()
        );
    }

    #[test]
    fn partial_heads_wait_for_more() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost:", &LIMITS),
            Parsed::Partial
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection_header() {
        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn oversized_and_unsupported_requests_are_refused() {
        let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
        assert_eq!(refused(big.as_bytes()), 431);
        assert_eq!(refused(&big.as_bytes()[..8500]), 431);
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            refused(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()),
            431
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nContent-Length: 2000\r\n\r\n"),
            413
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            413
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            411
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            400
        );
        assert_eq!(
            refused(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(refused(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"), 400);
    }

    #[test]
    fn extension_offers_are_collected_and_the_answer_names_the_chosen_one() {
        let request = "GET /app/key HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\nsec-websocket-extensions: permessage-deflate\r\n\r\n";
        let upgrade = head(request).upgrade.unwrap();
        assert_eq!(
            upgrade.extensions.as_deref(),
            Some("permessage-deflate; server_max_window_bits=10,permessage-deflate")
        );
        let answer =
            String::from_utf8(switching_protocols("abc=", Some("permessage-deflate"))).unwrap();
        assert!(answer.ends_with(
            "Sec-WebSocket-Accept: abc=\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ));
        let plain = String::from_utf8(switching_protocols("abc=", None)).unwrap();
        assert!(!plain.contains("Extensions"));
        assert!(plain.ends_with("abc=\r\n\r\n"));
    }

    #[test]
    fn websocket_upgrade_is_validated() {
        let ok = "GET /app/key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://o\r\n\r\n";
        let h = head(ok);
        assert_eq!(h.upgrade.unwrap().accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(h.origin.as_deref(), Some("http://o"));
        assert_eq!(
            refused(ok.replace("Version: 13", "Version: 8").as_bytes()),
            426
        );
        assert_eq!(
            refused(ok.replace("dGhlIHNhbXBsZSBub25jZQ==", "short").as_bytes()),
            400
        );
        assert_eq!(
            refused(ok.replace("keep-alive, Upgrade", "keep-alive").as_bytes()),
            400
        );
        assert_eq!(refused(ok.replace("GET", "POST").as_bytes()), 400);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let alphabet = b"GET POST / HTTP/1.1\r\n:Content-Length: 12 Upgrade websocket Sec-WebSocket-Key==\xff\x00";
        for _ in 0..3000 {
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let _ = parse_head(&bytes, &LIMITS);
        }
    }

    #[test]
    fn decimals_are_written_as_format_writes_them() {
        for n in [0, 7, 10, 200, 431, 65_536, usize::MAX] {
            let mut out = String::from("x");
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}"));
        }
    }

    #[test]
    fn responses_carry_length_cors_and_connection() {
        let text = String::from_utf8(response(404, b"{}", &ResponseOptions::default())).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Content-Length: 2\r\n"));
        assert!(text.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\n{}"));
        let keep = ResponseOptions {
            keep_alive: true,
            ..Default::default()
        };
        let text = String::from_utf8(response(200, b"{}", &keep)).unwrap();
        assert!(!text.contains("Connection:"));
    }
}
