//! The pipelined publisher: several keep-alive HTTP/1.1 connections, each with several signed
//! requests in flight (HTTP pipelining), so that a server sees publishes faster than one
//! round trip each, and frames for one subscriber can queue up within one loop turn.

use super::http_pub::Credentials;
use ferrocast_engine::http_auth::signed_query;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest response head the publisher accepts.
const MAX_HEAD: usize = 16 << 10;

/// One request to send: the endpoint after `/apps/{id}/` and its JSON body.
pub(crate) struct Request {
    /// `events` or `batch_events`.
    pub endpoint: &'static str,
    /// The JSON body.
    pub body: String,
}

/// What one pipelined run did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Pipelined {
    /// Requests answered 200.
    pub answered: u64,
    /// The most requests that were in flight on one connection at once.
    pub deepest: u32,
}

struct Lane {
    stream: TcpStream,
    wbuf: Vec<u8>,
    wpos: usize,
    rbuf: Vec<u8>,
    sent: u64,
    answered: u64,
    /// Requests this lane still has to send.
    left: u64,
}

/// Keep-alive connections with `depth` requests in flight on each.
pub(crate) struct PipelinePublisher {
    addr: SocketAddr,
    host: String,
    creds: Credentials,
    /// Connections to open.
    pub connections: u32,
    /// Requests in flight per connection.
    pub depth: u32,
}

impl PipelinePublisher {
    /// A publisher for the server at `addr` (`host` for the Host header).
    pub(crate) fn new(addr: SocketAddr, host: String, creds: Credentials) -> Self {
        PipelinePublisher {
            addr,
            host,
            creds,
            connections: 1,
            depth: 1,
        }
    }

    /// Sends `total` requests spread evenly over the connections, `next(lane)` making each
    /// in the order it is sent on its connection; returns once every one is answered 200.
    pub(crate) fn run(
        &self,
        total: u64,
        timeout: Duration,
        mut next: impl FnMut(usize) -> Request,
    ) -> Result<Pipelined, String> {
        let lanes_n = u64::from(self.connections.max(1));
        let mut poll = Poll::new().map_err(|e| e.to_string())?;
        let mut lanes = Vec::with_capacity(lanes_n as usize);
        for i in 0..lanes_n {
            let std_stream = std::net::TcpStream::connect_timeout(&self.addr, timeout)
                .map_err(|e| format!("cannot connect to the HTTP API: {e}"))?;
            std_stream.set_nodelay(true).map_err(|e| e.to_string())?;
            std_stream
                .set_nonblocking(true)
                .map_err(|e| e.to_string())?;
            let mut stream = TcpStream::from_std(std_stream);
            poll.registry()
                .register(
                    &mut stream,
                    Token(i as usize),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| e.to_string())?;
            lanes.push(Lane {
                stream,
                wbuf: Vec::new(),
                wpos: 0,
                rbuf: Vec::new(),
                sent: 0,
                answered: 0,
                left: total / lanes_n + u64::from(i < total % lanes_n),
            });
        }
        let deadline = Instant::now() + timeout;
        let mut events = Events::with_capacity(64);
        let mut scratch = vec![0u8; 64 << 10];
        let mut done = Pipelined::default();
        let depth = u64::from(self.depth.max(1));
        loop {
            for (i, lane) in lanes.iter_mut().enumerate() {
                while lane.left > 0 && lane.sent - lane.answered < depth {
                    let request = next(i);
                    self.encode(&request, &mut lane.wbuf);
                    lane.sent += 1;
                    lane.left -= 1;
                }
                done.deepest = done.deepest.max((lane.sent - lane.answered) as u32);
                flush(lane).map_err(|e| format!("HTTP API write failed: {e}"))?;
                let answered = read_answers(lane, &mut scratch)?;
                done.answered += answered;
            }
            if lanes.iter().all(|l| l.left == 0 && l.answered == l.sent) {
                return Ok(done);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "pipelined publish: {} of {total} requests answered within {timeout:?}",
                    done.answered
                ));
            }
            poll.poll(&mut events, Some(deadline - now))
                .or_else(|e| {
                    if e.kind() == io::ErrorKind::Interrupted {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| e.to_string())?;
        }
    }

    /// Appends one signed request to `out`.
    fn encode(&self, request: &Request, out: &mut Vec<u8>) {
        let path = format!("/apps/{}/{}", self.creds.app_id, request.endpoint);
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let query = signed_query(
            &self.creds.key,
            &self.creds.secret,
            "POST",
            &path,
            &[],
            request.body.as_bytes(),
            unix,
        );
        out.extend_from_slice(
            format!(
                "POST {path}?{query} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n",
                self.host,
                request.body.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(request.body.as_bytes());
    }
}

fn flush(lane: &mut Lane) -> io::Result<()> {
    while lane.wpos < lane.wbuf.len() {
        match lane.stream.write(&lane.wbuf[lane.wpos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => lane.wpos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    lane.wbuf.drain(..lane.wpos);
    lane.wpos = 0;
    Ok(())
}

/// Reads what arrived and counts the complete answers, which must all be 200.
fn read_answers(lane: &mut Lane, scratch: &mut [u8]) -> Result<u64, String> {
    let mut closed = false;
    loop {
        match lane.stream.read(scratch) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => lane.rbuf.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("HTTP API read failed: {e}")),
        }
    }
    let mut answered = 0;
    while let Some((status, len)) = response_len(&lane.rbuf)? {
        if status != 200 {
            return Err(format!(
                "a pipelined publish answered {status}: {}",
                String::from_utf8_lossy(&lane.rbuf[..len])
            ));
        }
        lane.rbuf.drain(..len);
        lane.answered += 1;
        answered += 1;
    }
    if closed && (lane.answered < lane.sent || lane.left > 0) {
        return Err("the server closed a pipelined connection".into());
    }
    Ok(answered)
}

/// The status and length of the first complete response in `buf` (it must have a
/// `Content-Length`: a pipelined response needs to say where it ends).
fn response_len(buf: &[u8]) -> Result<Option<(u16, usize)>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err("response head too large".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("bad HTTP response: {e}")),
    };
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .ok_or("a pipelined response without Content-Length")?;
    if buf.len() < head + length {
        return Ok(None);
    }
    Ok(Some((response.code.unwrap_or(0), head + length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_to_back_responses_are_split_by_their_length() {
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        let mut both = one.to_vec();
        both.extend_from_slice(b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(response_len(&both), Ok(Some((200, one.len()))));
        assert_eq!(response_len(&both[one.len()..]), Ok(Some((400, 39))));
        assert_eq!(response_len(&one[..one.len() - 1]), Ok(None));
        assert!(response_len(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn requests_are_pipelined_and_every_answer_counted() {
        // A server that reads everything sent before answering, proving requests were in
        // flight together, then answers each one.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut chunk = [0u8; 4096];
            while got.windows(4).filter(|w| w == b"POST").count() < 3
                || !got.ends_with(b"{\"n\":2}")
            {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&chunk[..n]);
            }
            for _ in 0..3 {
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
                    .unwrap();
            }
            got
        });
        let creds = Credentials {
            app_id: "1".into(),
            key: "k".into(),
            secret: "s".into(),
        };
        let mut publisher = PipelinePublisher::new(addr, addr.to_string(), creds);
        publisher.depth = 3;
        let mut n = 0;
        let done = publisher
            .run(3, Duration::from_secs(20), |_| {
                let body = format!("{{\"n\":{n}}}");
                n += 1;
                Request {
                    endpoint: "events",
                    body,
                }
            })
            .unwrap();
        assert_eq!(done.answered, 3);
        assert_eq!(done.deepest, 3);
        let got = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(got.starts_with("POST /apps/1/events?auth_key=k"), "{got}");
    }
}
