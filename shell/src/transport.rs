//! What a connection's bytes travel over: the bare TCP socket, or a rustls session over it.
//!
//! A connection reads plaintext from its transport and hands its output queue to it; the
//! plain case is the socket itself (one `read`, one `writev` of the queued frames, as before),
//! the TLS case decrypts into the same framing and seals the queue into records.
//!
//! Sealing is bounded: queued frames are moved into rustls only once the records sealed
//! before have reached the socket, at most one rustls buffer (64 KiB) at a time. So a slow
//! reader's backlog stays in the output queue, where the slow-consumer limits see it, and not
//! in an unbounded TLS buffer.

use crate::out_queue::OutQueue;
use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

/// A connection's transport.
pub(crate) enum Transport {
    /// The TCP socket itself.
    Plain,
    /// TLS terminated here.
    Tls(Box<TlsSession>),
}

/// One TLS session and whether its close_notify was queued.
pub(crate) struct TlsSession {
    conn: ServerConnection,
    close_notify_sent: bool,
}

impl Transport {
    /// A TLS session that will handshake with `config`.
    pub(crate) fn tls(config: Arc<ServerConfig>) -> Result<Transport, rustls::Error> {
        Ok(Transport::Tls(Box::new(TlsSession {
            conn: ServerConnection::new(config)?,
            close_notify_sent: false,
        })))
    }

    /// Whether the connection came over TLS terminated by this server.
    pub(crate) fn is_secure(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// Sealed bytes (TLS handshake messages, records, alerts) wait for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Transport::Plain => false,
            Transport::Tls(tls) => tls.conn.wants_write(),
        }
    }

    /// Reads plaintext into `buf`: `Ok(0)` is the end of the stream, `WouldBlock` that the
    /// socket has nothing more for now. A TLS failure is an error (its alert is sent first).
    pub(crate) fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain => stream.read(buf),
            Transport::Tls(tls) => tls.read(stream, buf),
        }
    }

    /// Writes what `out` holds; `Ok(true)` once it and every sealed record are on the socket.
    pub(crate) fn write(&mut self, out: &mut OutQueue, stream: &mut TcpStream) -> io::Result<bool> {
        match self {
            Transport::Plain => out.write_to(stream),
            Transport::Tls(tls) => tls.write(out, stream),
        }
    }

    /// Ends the stream from our side once everything is written (TLS: a close_notify alert);
    /// `Ok(true)` when that is on the socket and the write half may be shut.
    pub(crate) fn finish(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        match self {
            Transport::Plain => Ok(true),
            Transport::Tls(tls) => {
                if !tls.close_notify_sent {
                    tls.close_notify_sent = true;
                    tls.conn.send_close_notify();
                }
                tls.write_records(stream)
            }
        }
    }
}

impl TlsSession {
    fn read(&mut self, stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // Plaintext already decrypted comes first (a record may hold more than `buf`).
            match self.conn.reader().read(buf) {
                // `Ok(0)` here is the peer's close_notify.
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without a close_notify: an end of stream all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.conn.read_tls(stream)? == 0 {
                return Ok(0);
            }
            if let Err(error) = self.conn.process_new_packets() {
                // rustls queued the alert that says why (e.g. to a client speaking plain
                // HTTP to a TLS port); the connection is dropped right after.
                let _ = self.conn.write_tls(stream);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        }
    }

    fn write(&mut self, out: &mut OutQueue, stream: &mut TcpStream) -> io::Result<bool> {
        loop {
            if !self.write_records(stream)? {
                return Ok(false);
            }
            if out.is_empty() || self.close_notify_sent {
                return Ok(out.is_empty());
            }
            let before = out.bytes();
            out.write_to(&mut Sealer {
                conn: &mut self.conn,
                sealed: false,
            })?;
            if out.bytes() == before {
                // rustls took nothing (still handshaking with its buffer full): wait.
                return Ok(false);
            }
        }
    }

    /// Writes the sealed records; `Ok(false)` when the socket would block first.
    fn write_records(&mut self, stream: &mut TcpStream) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Takes one batch of the queue into rustls (which seals as much as its buffer holds), then
/// says "would block", so that the records reach the socket before more is sealed.
struct Sealer<'a> {
    conn: &'a mut ServerConnection,
    sealed: bool,
}

impl Write for Sealer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.sealed {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.sealed = true;
        // rustls joins the slices into as few records as fit.
        match self.conn.writer().write_vectored(bufs)? {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
