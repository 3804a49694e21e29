//! One blocking WebSocket client with bounded waits, as a vector's named client.

use crate::runner::{Outgoing, Received};
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::header::{HeaderValue, ORIGIN};
use tungstenite::protocol::WebSocket;
use tungstenite::{Error, Message};

/// A connected client and what it knows about its connection's end.
pub struct WsClient {
    ws: WebSocket<TcpStream>,
    closed: Option<u16>,
    /// Frames already read (while provoking a slow consumer) that `receive` returns first.
    pending: VecDeque<Received>,
}

/// Pings the first flood round asks for; each round asks for twice as many as the last.
const FIRST_FLOOD: usize = 4096;
/// Flood rounds before giving up (the last asks for about 20 MB of answers).
const FLOOD_ROUNDS: usize = 8;

impl WsClient {
    /// Connects to `ws://{host}{path}?{query}` at `addr` within `timeout`, sending `origin`
    /// as the `Origin` header when given.
    pub fn connect(
        addr: SocketAddr,
        host: &str,
        path: &str,
        query: &str,
        origin: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let stream = TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream.set_nodelay(true).ok();
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| e.to_string())?;
        let url = if query.is_empty() {
            format!("ws://{host}{path}")
        } else {
            format!("ws://{host}{path}?{query}")
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("bad WebSocket URL {url}: {e}"))?;
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(origin)
                .map_err(|_| format!("{origin:?} cannot be an Origin header"))?;
            request.headers_mut().insert(ORIGIN, value);
        }
        let (ws, _response) = tungstenite::client(request, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(Error::Http(response)) => format!(
                "WebSocket handshake to {url} refused with HTTP {}",
                response.status()
            ),
            other => format!("WebSocket handshake to {url} failed: {other}"),
        })?;
        Ok(WsClient {
            ws,
            closed: None,
            pending: VecDeque::new(),
        })
    }

    /// Sends one frame.
    pub fn send(&mut self, frame: Outgoing) -> Result<(), String> {
        if let Some(code) = self.closed {
            return Err(format!(
                "the connection is closed (code {code}); it cannot send"
            ));
        }
        let message = match frame {
            Outgoing::Text(bytes) => Message::text(
                String::from_utf8(bytes)
                    .map_err(|_| "a live client cannot send invalid UTF-8 text".to_string())?,
            ),
            Outgoing::Binary(bytes) => Message::binary(bytes),
            Outgoing::Ping(payload) => Message::Ping(payload.into()),
        };
        self.ws
            .send(message)
            .map_err(|e| format!("sending failed: {e}"))
    }

    /// Makes the server see this client as a slow consumer, as a real one would: it asks for
    /// answers (`pusher:ping` events) and does not read them, so they pile up in the socket
    /// buffers and then in the server's output queue. After each round it reads the answers
    /// back; when something other than a `pusher:pong` comes (the server's verdict, e.g. a
    /// `pusher:error`, or a close) it is kept for the next [`WsClient::receive`]. Rounds double
    /// until then, as socket buffers grow with use; `quiet` is how long a read-back waits.
    pub fn provoke_slow_consumer(&mut self, quiet: Duration) -> Result<(), String> {
        let ping = r#"{"event":"pusher:ping","data":{}}"#;
        let mut round = FIRST_FLOOD;
        for _ in 0..FLOOD_ROUNDS {
            for i in 0..round {
                // A write failing means the server already closed: read what it said.
                if self.ws.write(Message::text(ping)).is_err() {
                    break;
                }
                if i % 256 == 255 && self.ws.flush().is_err() {
                    break;
                }
            }
            let _ = self.ws.flush();
            loop {
                match self.receive(quiet)? {
                    Received::Nothing => break,
                    Received::Text(text) if is_pong(&text) => {}
                    verdict => {
                        self.pending.push_back(verdict);
                        return Ok(());
                    }
                }
            }
            round *= 2;
        }
        Err(format!(
            "the server answered every one of {} pings: it never saw a slow consumer",
            FIRST_FLOOD * ((1 << FLOOD_ROUNDS) - 1)
        ))
    }

    /// The next frame, waiting at most `wait`.
    pub fn receive(&mut self, wait: Duration) -> Result<Received, String> {
        if let Some(received) = self.pending.pop_front() {
            return Ok(received);
        }
        if let Some(code) = self.closed {
            return Ok(Received::Closed(code));
        }
        let deadline = Instant::now() + wait;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(Received::Nothing);
            }
            self.ws
                .get_mut()
                .set_read_timeout(Some(remaining.max(Duration::from_millis(1))))
                .map_err(|e| e.to_string())?;
            match self.ws.read() {
                Ok(Message::Text(text)) => return Ok(Received::Text(text.as_str().to_owned())),
                Ok(Message::Binary(bytes)) => return Ok(Received::Binary(bytes.to_vec())),
                Ok(Message::Pong(_)) => return Ok(Received::Pong),
                Ok(Message::Ping(_)) | Ok(Message::Frame(_)) => {
                    // tungstenite queued the pong; push it out.
                    let _ = self.ws.flush();
                }
                Ok(Message::Close(frame)) => {
                    let code = frame.map(|f| u16::from(f.code)).unwrap_or(1005);
                    let _ = self.ws.flush();
                    self.closed = Some(code);
                    return Ok(Received::Closed(code));
                }
                Err(Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
                    let code = *self.closed.get_or_insert(1006);
                    return Ok(Received::Closed(code));
                }
                Err(Error::Protocol(_)) | Err(Error::Io(_)) => {
                    // Dropped without a Close frame.
                    self.closed = Some(1006);
                    return Ok(Received::Closed(1006));
                }
                Err(e) => return Err(format!("reading failed: {e}")),
            }
        }
    }

    /// Closes from the client side and waits (bounded) until the server has seen it.
    pub fn close(&mut self, wait: Duration) {
        if self.closed.is_some() {
            return;
        }
        let _ = self.ws.close(None);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let _ = self
                .ws
                .get_mut()
                .set_read_timeout(Some(Duration::from_millis(50)));
            match self.ws.read() {
                Ok(_) => {}
                Err(Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        self.closed = Some(1000);
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }
}

fn is_pong(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text)
        .is_ok_and(|value| value["event"] == "pusher:pong")
}
