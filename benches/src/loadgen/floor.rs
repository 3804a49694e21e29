//! The physical floors: a server that does only what the kernel makes unavoidable.
//!
//! Accept floor: accept, read the upgrade request, answer 101 together with a
//! `connection_established` frame, read the subscribe frame, answer one frame. No JSON, no
//! channels, no signatures. Write floor: on command, write the same frame bytes to every
//! subscribed socket in one sequential sweep, timing the writing thread's CPU and the wall
//! time of each sweep.
//!
//! With a certificate (`--floor-cert`, `--floor-key`) both floors speak TLS through rustls,
//! configured as the server configures it: the TLS floor. Each write of a sweep is then one
//! frame sealed into one record, as the server seals a frame queued alone.

use super::ipc::{self, FloorCommand, FloorReply, LineReader};
use super::sys;
use super::tls::ServerTransport;
use super::ws_client::{apply_mask, server_text_frame};
use mio::net::{TcpListener, TcpStream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use rustls::ServerConfig;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;
use tungstenite::handshake::derive_accept_key;

const LISTENER: Token = Token(usize::MAX - 1);
const STDIN: Token = Token(usize::MAX);

#[derive(PartialEq, Eq)]
enum Stage {
    Upgrade,
    Subscribe,
    Ready,
}

/// Most unread plaintext a connection may hold before the floor drops it.
const MAX_UNREAD: usize = 64 << 10;

struct Conn {
    stream: TcpStream,
    transport: ServerTransport,
    stage: Stage,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
}

/// Runs the floor server (over TLS when `tls` is given) until `Exit` or the coordinator goes
/// away.
pub(crate) fn run(host: &str, tls: Option<Arc<ServerConfig>>) -> Result<(), String> {
    let addr = format!("{host}:0")
        .parse()
        .map_err(|e| format!("bad host: {e}"))?;
    let mut listener = TcpListener::bind(addr).map_err(|e| format!("cannot listen: {e}"))?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    let stdin = io::stdin();
    ipc::set_nonblocking(&stdin);
    poll.registry()
        .register(&mut SourceFd(&0), STDIN, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    let mut out = io::stdout();
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    writeln!(out, "floor listening on {local}").map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;

    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut lines = LineReader::new();
    let mut scratch = vec![0u8; 16 << 10];
    let mut events = Events::with_capacity(4096);
    let mut socket_ids = 0u64;
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(100)))
            .or_else(|e| {
                if e.kind() == io::ErrorKind::Interrupted {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(|e| e.to_string())?;
        for event in events.iter() {
            match event.token() {
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let slot = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            poll.registry()
                                .register(
                                    &mut stream,
                                    Token(slot),
                                    Interest::READABLE | Interest::WRITABLE,
                                )
                                .map_err(|e| e.to_string())?;
                            let transport = ServerTransport::server(tls.as_ref())
                                .map_err(|e| format!("TLS: {e}"))?;
                            conns[slot] = Some(Conn {
                                stream,
                                transport,
                                stage: Stage::Upgrade,
                                rbuf: Vec::new(),
                                wbuf: Vec::new(),
                            });
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            eprintln!("floor: accept failed: {e}");
                            break;
                        }
                    }
                },
                STDIN => {
                    for command in lines.read::<FloorCommand>(0)? {
                        match command {
                            FloorCommand::Exit => return Ok(()),
                            FloorCommand::Sweep { payload, sweeps } => {
                                let reply = sweep(
                                    &mut conns,
                                    &server_text_frame(payload.as_bytes()),
                                    sweeps,
                                );
                                ipc::send_line(&mut out, &reply).map_err(|e| e.to_string())?;
                            }
                        }
                    }
                    if lines.eof() {
                        return Ok(());
                    }
                }
                Token(slot) => {
                    let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                        continue;
                    };
                    let alive = serve(conn, &mut scratch, &mut socket_ids, event.is_writable());
                    if !alive {
                        conns[slot] = None;
                        free.push(slot);
                    }
                }
            }
        }
    }
}

/// Reads and answers what a connection sent; false once it is gone.
fn serve(conn: &mut Conn, scratch: &mut [u8], socket_ids: &mut u64, writable: bool) -> bool {
    if writable && (!conn.wbuf.is_empty() || conn.transport.has_sealed()) && !flush(conn) {
        return false;
    }
    match conn
        .transport
        .read(&mut conn.stream, scratch, &mut conn.rbuf, MAX_UNREAD)
    {
        Ok(outcome) if outcome.open => {}
        _ => return false,
    }
    if conn.stage == Stage::Ready {
        // Pongs and the like: read, never answered.
        conn.rbuf.clear();
    }
    if conn.stage == Stage::Upgrade {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        let head_len = match request.parse(&conn.rbuf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return conn.rbuf.len() < 16 << 10,
            Err(_) => return false,
        };
        let Some(key) = request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-key"))
        else {
            return false;
        };
        *socket_ids += 1;
        let established = format!(
            r#"{{"event":"pusher:connection_established","data":"{{\"socket_id\":\"{}.1\",\"activity_timeout\":120}}"}}"#,
            socket_ids
        );
        let mut answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            derive_accept_key(key.value)
        )
        .into_bytes();
        answer.extend(server_text_frame(established.as_bytes()));
        conn.rbuf.drain(..head_len);
        conn.stage = Stage::Subscribe;
        if !send(conn, &answer) {
            return false;
        }
    }
    if conn.stage == Stage::Subscribe {
        let Some(frame_len) = masked_frame(&mut conn.rbuf) else {
            return conn.rbuf.len() < 64 << 10;
        };
        conn.rbuf.drain(..frame_len);
        conn.stage = Stage::Ready;
        let ok =
            br#"{"event":"pusher_internal:subscription_succeeded","channel":"floor","data":"{}"}"#;
        return send(conn, &server_text_frame(ok));
    }
    true
}

/// Unmasks the first complete client frame in place; returns its length on the wire.
fn masked_frame(buf: &mut [u8]) -> Option<usize> {
    if buf.len() < 2 {
        return None;
    }
    let (len, at) = match buf[1] & 0x7F {
        126 if buf.len() >= 4 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        126 | 127 => return None,
        n => (usize::from(n), 2),
    };
    let end = at + 4 + len;
    if buf.len() < end {
        return None;
    }
    let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
    apply_mask(&mut buf[at + 4..end], mask);
    Some(end)
}

fn send(conn: &mut Conn, bytes: &[u8]) -> bool {
    conn.wbuf.extend_from_slice(bytes);
    flush(conn)
}

fn flush(conn: &mut Conn) -> bool {
    conn.transport
        .write(&mut conn.stream, &mut conn.wbuf)
        .is_ok()
}

/// One or more sequential write sweeps of `frame` over every ready connection.
fn sweep(conns: &mut [Option<Conn>], frame: &[u8], sweeps: u32) -> FloorReply {
    let mut sweep_wall_ns = Vec::with_capacity(sweeps as usize);
    let mut blocked = 0;
    let ready = conns
        .iter()
        .flatten()
        .filter(|c| c.stage == Stage::Ready)
        .count() as u32;
    let cpu_start = sys::thread_cpu_ns();
    for _ in 0..sweeps {
        let wall_start = sys::mono_ns();
        for conn in conns.iter_mut().flatten() {
            if conn.stage != Stage::Ready {
                continue;
            }
            if !conn.wbuf.is_empty() || conn.transport.has_sealed() {
                blocked += 1;
                conn.wbuf.extend_from_slice(frame);
                continue;
            }
            if let ServerTransport::Tls(_) = conn.transport {
                // rustls takes the plaintext, seals it into one record and writes that.
                conn.wbuf.extend_from_slice(frame);
                let _ = conn.transport.write(&mut conn.stream, &mut conn.wbuf);
                if !conn.wbuf.is_empty() || conn.transport.has_sealed() {
                    blocked += 1;
                }
                continue;
            }
            match conn.stream.write(frame) {
                Ok(n) if n == frame.len() => {}
                Ok(n) => {
                    blocked += 1;
                    conn.wbuf.extend_from_slice(&frame[n..]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    blocked += 1;
                    conn.wbuf.extend_from_slice(frame);
                }
                Err(_) => {}
            }
        }
        sweep_wall_ns.push(sys::mono_ns() - wall_start);
    }
    FloorReply::Swept {
        conns: ready,
        cpu_ns: sys::thread_cpu_ns() - cpu_start,
        sweep_wall_ns,
        blocked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_masked_frame_is_found_and_unmasked() {
        let mut frame = vec![0x81, 0x83, 1, 2, 3, 4];
        let mut payload = b"abc".to_vec();
        apply_mask(&mut payload, [1, 2, 3, 4]);
        frame.extend(payload);
        frame.push(0xFF);
        assert_eq!(masked_frame(&mut frame), Some(9));
        assert_eq!(&frame[6..9], b"abc");
        assert_eq!(masked_frame(&mut frame[..8].to_vec()), None);
    }
}
