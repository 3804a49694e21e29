//! A minimal non-blocking WebSocket client on a mio socket, over plain TCP or rustls: the
//! opening handshake, masked text frames out, unmasked frames in (with fragment reassembly and
//! automatic pongs).

use super::sys;
use super::tls::ClientTransport;
use flate2::{Decompress, FlushDecompress, Status};
use mio::net::TcpStream;
use rustls::ClientConfig;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
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
    transport: ClientTransport,
    state: State,
    request: Vec<u8>,
    accept: String,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    fragments: Option<Vec<u8>>,
    rng: u64,
    /// Whether the handshake offered permessage-deflate.
    offered: bool,
    /// Whether the server accepted it.
    deflate: bool,
    /// Whether the server compresses each message on its own (`server_no_context_takeover`).
    reset_per_message: bool,
    /// Made at the first compressed message.
    inflater: Option<Box<Decompress>>,
    /// Whether the message being reassembled is compressed.
    compressed: bool,
    /// Bytes read off the socket since [`WsConn::take_counts`].
    read_bytes: u64,
    /// Compressed messages since [`WsConn::take_counts`].
    compressed_messages: u64,
}

impl WsConn {
    /// Starts a non-blocking connect to `addr` (through TLS when `tls` is given); the
    /// handshake for `host` and `target` (path and query) goes out once the socket is writable.
    pub(crate) fn connect(
        addr: SocketAddr,
        host: &str,
        target: &str,
        seed: u64,
        deflate: bool,
        tls: Option<&Arc<ClientConfig>>,
    ) -> io::Result<Self> {
        let transport = ClientTransport::client(tls, host)?;
        let stream = TcpStream::connect(addr)?;
        let key = generate_key();
        // What Chrome and Firefox offer.
        let offer = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        Ok(WsConn {
            stream,
            transport,
            state: State::Connecting,
            request: request.into_bytes(),
            accept: derive_accept_key(key.as_bytes()),
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            fragments: None,
            rng: seed | 1,
            offered: deflate,
            deflate: false,
            reset_per_message: false,
            inflater: None,
            compressed: false,
            read_bytes: 0,
            compressed_messages: 0,
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
        let limit = self.rpos + MAX_MESSAGE + 16;
        let outcome = self
            .transport
            .read(&mut self.stream, scratch, &mut self.rbuf, limit)?;
        self.read_bytes += outcome.wire;
        Ok(outcome.open)
    }

    /// The cipher suite negotiated, once a TLS handshake is done.
    pub(crate) fn tls_suite(&self) -> Option<String> {
        self.transport.suite()
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
            let Some((fin, rsv1, opcode, payload)) = self.take_frame()? else {
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
                        (_, None) => {
                            self.compressed = rsv1;
                            payload
                        }
                    };
                    if message.len() > MAX_MESSAGE {
                        return Err("message too large".into());
                    }
                    if fin {
                        if std::mem::take(&mut self.compressed) {
                            self.compressed_messages += 1;
                            return self.inflate(&message).map(|m| Some(Incoming::Text(m)));
                        }
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

    /// Bytes read and compressed messages received since the last call.
    pub(crate) fn take_counts(&mut self) -> (u64, u64) {
        let counts = (self.read_bytes, self.compressed_messages);
        self.read_bytes = 0;
        self.compressed_messages = 0;
        counts
    }

    /// Inflates one compressed message (RFC 7692 §7.2.2: the `00 00 FF FF` tail appended).
    fn inflate(&mut self, message: &[u8]) -> Result<Vec<u8>, String> {
        let reset = self.reset_per_message;
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Decompress::new(false)));
        if reset {
            inflater.reset(false);
        }
        let mut out = Vec::with_capacity(message.len() * 4 + 64);
        for part in [message, &[0x00, 0x00, 0xFF, 0xFF][..]] {
            let mut input = part;
            loop {
                if out.len() == out.capacity() {
                    out.reserve(out.capacity());
                }
                let before = inflater.total_in();
                let status = inflater
                    .decompress_vec(input, &mut out, FlushDecompress::Sync)
                    .map_err(|e| format!("bad compressed message: {e}"))?;
                input = &input[(inflater.total_in() - before) as usize..];
                if out.len() > MAX_MESSAGE {
                    return Err("inflated message too large".into());
                }
                if status == Status::StreamEnd || (input.is_empty() && out.len() < out.capacity()) {
                    break;
                }
            }
        }
        Ok(out)
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
        self.transport.write(&mut self.stream, &mut self.wbuf)
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
        let extensions = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase());
        if let Some(extensions) = extensions {
            if !self.offered || !extensions.starts_with("permessage-deflate") {
                return Err(format!("unexpected extension answer {extensions:?}"));
            }
            self.deflate = true;
            self.reset_per_message = extensions.contains("server_no_context_takeover");
        }
        self.rbuf.drain(..head_len);
        self.state = State::Open;
        Ok(true)
    }

    /// The next frame, if complete.
    fn take_frame(&mut self) -> Result<Option<InFrame>, String> {
        let buf = &self.rbuf[self.rpos..];
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let rsv1 = b0 & 0x40 != 0;
        let first_data = matches!(b0 & 0x0F, OP_TEXT | OP_BINARY);
        if b0 & 0x30 != 0 || (rsv1 && !(self.deflate && first_data)) {
            return Err("reserved bits set without an extension that allows them".into());
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
        Ok(Some((b0 & 0x80 != 0, rsv1, b0 & 0x0F, payload)))
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

/// One frame read: FIN, RSV1, opcode and the unmasked payload.
type InFrame = (bool, bool, u8, Vec<u8>);

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
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    fn open_pair() -> (WsConn, std::net::TcpStream) {
        open_pair_with(None)
    }

    /// A client and the server end of its socket, the handshake answered with `extensions`.
    fn open_pair_with(extensions: Option<&str>) -> (WsConn, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let offer = extensions.is_some();
        let mut client =
            WsConn::connect(addr, "localhost", "/app/k?protocol=7", 7, offer, None).unwrap();
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
        let extensions = extensions
            .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
            .unwrap_or_default();
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n{extensions}\r\n",
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

    #[test]
    fn compressed_messages_are_inflated_where_deflate_was_accepted() {
        use flate2::{Compress, Compression, FlushCompress};
        let compress = |text: &[u8]| {
            let mut c = Compress::new(Compression::fast(), false);
            let mut out = Vec::with_capacity(text.len() + 64);
            c.compress_vec(text, &mut out, FlushCompress::Sync).unwrap();
            out.truncate(out.len() - 4);
            out
        };
        let answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        let (mut client, mut server) = open_pair_with(Some(answer));
        let text = "{\"event\":\"e\",\"data\":\"".to_string() + &"abc".repeat(200) + "\"}";
        let compressed = compress(text.as_bytes());
        let mut frame = server_text_frame(&compressed);
        frame[0] |= 0x40;
        // Twice: each message stands alone.
        server.write_all(&frame).unwrap();
        server.write_all(&frame).unwrap();
        server.write_all(&server_text_frame(b"plain")).unwrap();
        for expected in [text.as_bytes(), text.as_bytes(), b"plain"] {
            assert_eq!(
                read_until_message(&mut client),
                Incoming::Text(expected.to_vec())
            );
        }
        let (read, compressed_messages) = client.take_counts();
        assert_eq!(compressed_messages, 2);
        assert!(read as usize >= 2 * frame.len() + 7, "{read}");

        // Without the offer accepted, RSV1 is an error.
        let (mut client, mut server) = open_pair();
        read_nothing(&mut client);
        server.write_all(&frame).unwrap();
        let mut scratch = [0u8; 4096];
        let mut failed = false;
        for _ in 0..1000 {
            client.on_readable(&mut scratch).unwrap();
            if client.next_message().is_err() {
                failed = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(failed);
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
