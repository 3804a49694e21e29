//! A minimal non-blocking WebSocket client on a mio socket: the opening handshake, masked
//! text frames out, unmasked frames in (with fragment reassembly and automatic pongs).

use super::sys;
use mio::net::TcpStream;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use tungstenite::handshake::client::generate_key;
use tungstenite::handshake::derive_accept_key;

/// Largest message the client accepts before calling the connection broken.
const MAX_MESSAGE: usize = 16 << 20;
/// Largest handshake response head.
const MAX_HEAD: usize = 16 << 10;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What a client got from the server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    /// One complete text message.
    Text(Vec<u8>),
    /// A close frame, with its status code when it carried one.
    Close(Option<u16>),
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Connecting,
    Handshaking,
    Open,
}

/// One client connection.
pub(crate) struct WsConn {
    stream: TcpStream,
    state: State,
    request: Vec<u8>,
    accept: String,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    fragments: Option<Vec<u8>>,
    rng: u64,
}

impl WsConn {
    /// Starts a non-blocking connect to `addr`; the handshake for `host` and `target` (path and
    /// query) goes out once the socket is writable.
    pub(crate) fn connect(
        addr: SocketAddr,
        host: &str,
        target: &str,
        seed: u64,
    ) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        let key = generate_key();
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        Ok(WsConn {
            stream,
            state: State::Connecting,
            request: request.into_bytes(),
            accept: derive_accept_key(key.as_bytes()),
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            fragments: None,
            rng: seed | 1,
        })
    }

    /// The socket, to register with a poll.
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// On writability: finishes the TCP connect (sending the handshake) and flushes queued bytes.
    pub(crate) fn on_writable(&mut self) -> io::Result<()> {
        if self.state == State::Connecting {
            if let Some(e) = self.stream.take_error()? {
                return Err(e);
            }
            match self.stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e),
            }
            let _ = self.stream.set_nodelay(true);
            self.state = State::Handshaking;
            let request = std::mem::take(&mut self.request);
            self.wbuf.extend_from_slice(&request);
        }
        self.flush()
    }

    /// Reads everything available into the buffer; `Ok(false)` when the peer closed.
    pub(crate) fn on_readable(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.rbuf.extend_from_slice(&scratch[..n]);
                    if self.rbuf.len() - self.rpos > MAX_MESSAGE + 16 {
                        return Err(io::Error::other("server sent too much unread data"));
                    }
                    // A short read emptied the socket; data arriving later raises a new
                    // edge, so the extra read that would only say WouldBlock is skipped.
                    if n < scratch.len() {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next complete message in the buffer, answering pings on the way.
    pub(crate) fn next_message(&mut self) -> Result<Option<Incoming>, String> {
        if self.state == State::Handshaking && !self.read_handshake()? {
            return Ok(None);
        }
        if self.state != State::Open {
            return Ok(None);
        }
        loop {
            let Some((fin, opcode, payload)) = self.take_frame()? else {
                self.compact();
                return Ok(None);
            };
            match opcode {
                OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                    if opcode == OP_BINARY {
                        return Err("binary frame from the server".into());
                    }
                    let message = match (opcode, self.fragments.take()) {
                        (OP_CONTINUATION, Some(mut parts)) => {
                            parts.extend_from_slice(&payload);
                            parts
                        }
                        (OP_CONTINUATION, None) => {
                            return Err("continuation without a start".into())
                        }
                        (_, Some(_)) => return Err("new message inside a fragmented one".into()),
                        (_, None) => payload,
                    };
                    if message.len() > MAX_MESSAGE {
                        return Err("message too large".into());
                    }
                    if fin {
                        return Ok(Some(Incoming::Text(message)));
                    }
                    self.fragments = Some(message);
                }
                OP_PING => self.queue_frame(OP_PONG, &payload),
                OP_PONG => {}
                OP_CLOSE => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Some(Incoming::Close(code)));
                }
                other => return Err(format!("unknown opcode {other:#x}")),
            }
        }
    }

    /// Queues one masked text frame and tries to send it at once.
    pub(crate) fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.queue_frame(OP_TEXT, payload);
        self.flush()
    }

    /// Writes queued bytes until done or the socket would block.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.state == State::Connecting {
            return Ok(());
        }
        let mut written = 0;
        while written < self.wbuf.len() {
            match self.stream.write(&self.wbuf[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.drain(..written);
        Ok(())
    }

    /// Closes with a reset (no TIME_WAIT left behind); used when a scenario is over.
    pub(crate) fn abort(self) {
        sys::set_linger_zero(&self.stream);
    }

    fn read_handshake(&mut self) -> Result<bool, String> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&self.rbuf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if self.rbuf.len() > MAX_HEAD => {
                return Err("handshake response head too large".into())
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(e) => return Err(format!("bad handshake response: {e}")),
        };
        if response.code != Some(101) {
            return Err(format!("handshake answered {:?}", response.code));
        }
        let accept = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|h| h.value);
        if accept != Some(self.accept.as_bytes()) {
            return Err("wrong Sec-WebSocket-Accept".into());
        }
        self.rbuf.drain(..head_len);
        self.state = State::Open;
        Ok(true)
    }

    fn take_frame(&mut self) -> Result<Option<(bool, u8, Vec<u8>)>, String> {
        let buf = &self.rbuf[self.rpos..];
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x70 != 0 {
            return Err("reserved bits set (no extension was negotiated)".into());
        }
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7F {
            126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 if buf.len() >= 10 => {
                let bytes: [u8; 8] = buf[2..10].try_into().expect("eight bytes");
                (u64::from_be_bytes(bytes), 10)
            }
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        if len > MAX_MESSAGE as u64 {
            return Err("frame too large".into());
        }
        let mask = if masked {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            at += 4;
            Some([buf[at - 4], buf[at - 3], buf[at - 2], buf[at - 1]])
        } else {
            None
        };
        let end = at + len as usize;
        if buf.len() < end {
            return Ok(None);
        }
        let mut payload = buf[at..end].to_vec();
        if let Some(mask) = mask {
            apply_mask(&mut payload, mask);
        }
        self.rpos += end;
        Ok(Some((b0 & 0x80 != 0, b0 & 0x0F, payload)))
    }

    fn compact(&mut self) {
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
            if self.rbuf.capacity() > 64 << 10 {
                self.rbuf.shrink_to(4 << 10);
            }
        } else if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
    }

    fn queue_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.wbuf.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            self.wbuf.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            self.wbuf.push(0x80 | 126);
            self.wbuf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.wbuf.push(0x80 | 127);
            self.wbuf.extend_from_slice(&(len as u64).to_be_bytes());
        }
        // xorshift: masks only need to vary, not to be secret, in a load generator.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let mask = (self.rng as u32).to_be_bytes();
        self.wbuf.extend_from_slice(&mask);
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(payload);
        apply_mask(&mut self.wbuf[start..], mask);
    }
}

/// XORs `data` with the four-byte mask, as both directions of masking require.
pub(crate) fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in data.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// The bytes of one unmasked server text frame carrying `payload`, as a server sends it.
pub(crate) fn server_text_frame(payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut frame = Vec::with_capacity(len + 10);
    frame.push(0x80 | OP_TEXT);
    if len < 126 {
        frame.push(len as u8);
    } else if len <= usize::from(u16::MAX) {
        frame.push(126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        frame.push(127);
        frame.extend_from_slice(&(len as u64).to_be_bytes());
    }
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;

    fn open_pair() -> (WsConn, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = WsConn::connect(addr, "localhost", "/app/k?protocol=7", 7).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        for _ in 0..1000 {
            client.on_writable().unwrap();
            if client.state == State::Handshaking {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut reader = BufReader::new(server.try_clone().unwrap());
        let mut key = String::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.strip_prefix("Sec-WebSocket-Key: ") {
                key = v.trim().to_string();
            }
            if line == "\r\n" {
                break;
            }
        }
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.as_bytes())
        );
        server.write_all(answer.as_bytes()).unwrap();
        (client, server)
    }

    fn read_until_message(client: &mut WsConn) -> Incoming {
        let mut scratch = [0u8; 4096];
        for _ in 0..1000 {
            client.on_readable(&mut scratch).unwrap();
            if let Some(m) = client.next_message().unwrap() {
                return m;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("no message");
    }

    #[test]
    fn handshake_then_fragmented_and_long_frames_and_auto_pong() {
        let (mut client, mut server) = open_pair();
        let long = vec![b'x'; 300];
        let mut bytes = vec![
            0x01, 3, b'a', b'b', b'c', 0x89, 1, b'p', 0x80, 2, b'd', b'e',
        ];
        bytes.extend(server_text_frame(&long));
        server.write_all(&bytes).unwrap();
        assert_eq!(
            read_until_message(&mut client),
            Incoming::Text(b"abcde".to_vec())
        );
        assert_eq!(read_until_message(&mut client), Incoming::Text(long));
        client.flush().unwrap();
        let mut pong = [0u8; 7];
        server.read_exact(&mut pong).unwrap();
        assert_eq!(pong[0], 0x8A);
        assert_eq!(pong[1], 0x81);
        assert_eq!(pong[6] ^ pong[2], b'p');
    }

    #[test]
    fn text_out_is_masked_and_close_codes_are_read() {
        let (mut client, mut server) = open_pair();
        read_nothing(&mut client);
        client.send_text(b"hello").unwrap();
        let mut frame = [0u8; 11];
        server.read_exact(&mut frame).unwrap();
        let mask = [frame[2], frame[3], frame[4], frame[5]];
        let mut payload = frame[6..].to_vec();
        apply_mask(&mut payload, mask);
        assert_eq!(
            (frame[0], frame[1], &payload[..]),
            (0x81, 0x85, &b"hello"[..])
        );
        server.write_all(&[0x88, 2, 0x10, 0x04]).unwrap();
        assert_eq!(read_until_message(&mut client), Incoming::Close(Some(4100)));
    }

    fn read_nothing(client: &mut WsConn) {
        let mut scratch = [0u8; 4096];
        for _ in 0..1000 {
            client.on_readable(&mut scratch).unwrap();
            assert_eq!(client.next_message().unwrap(), None);
            if client.state == State::Open {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("handshake never completed");
    }
}
