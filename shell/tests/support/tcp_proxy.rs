//! A loopback TCP proxy that can make an outage: `cut()` drops every connection and refuses new
//! ones (the port is closed, so connects fail at once), `restore()` listens again on the same
//! port. Placed between a client and a server, it looks to the client like the server going
//! away and coming back. `freeze()` makes a silent failure instead: connections stay open but
//! everything sent either way is discarded, as behind a black-holing network.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

struct State {
    /// `None` while cut.
    listener: Option<TcpListener>,
    /// Both ends of every forwarded connection, to shut them down on `cut`.
    streams: Vec<TcpStream>,
}

/// A running proxy; stops (and drops its connections) when dropped.
pub(crate) struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    closing: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpProxy {
    /// Forwards every connection to 127.0.0.1:`addr` from a fresh loopback port.
    pub(crate) fn start(target: SocketAddr) -> TcpProxy {
        let listener = listen(SocketAddr::from(([127, 0, 0, 1], 0)));
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State {
            listener: Some(listener),
            streams: Vec::new(),
        }));
        let closing = Arc::new(AtomicBool::new(false));
        let frozen = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let state = Arc::clone(&state);
            let closing = Arc::clone(&closing);
            let frozen = Arc::clone(&frozen);
            std::thread::spawn(move || accept_loop(target, state, closing, frozen))
        };
        TcpProxy {
            addr,
            state,
            closing,
            frozen,
            acceptor: Some(acceptor),
        }
    }

    /// `redis://` URL of the proxy.
    pub(crate) fn redis_url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Drops every connection and stops listening: new connects are refused.
    pub(crate) fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.listener = None;
        for stream in state.streams.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Keeps every connection open but discards all traffic, until `restore`.
    pub(crate) fn freeze(&self) {
        self.frozen.store(true, Ordering::Relaxed);
    }

    /// Listens again on the same port and forwards traffic again.
    pub(crate) fn restore(&self) {
        self.frozen.store(false, Ordering::Relaxed);
        let mut state = self.state.lock().unwrap();
        if state.listener.is_none() {
            state.listener = Some(listen(self.addr));
        }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Relaxed);
        self.cut();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn listen(addr: SocketAddr) -> TcpListener {
    // std sets SO_REUSEADDR on Unix, so the port can be taken again right after a cut.
    let listener =
        TcpListener::bind(addr).unwrap_or_else(|e| panic!("proxy cannot listen on {addr}: {e}"));
    listener
        .set_nonblocking(true)
        .expect("non-blocking proxy listener");
    listener
}

fn accept_loop(
    target: SocketAddr,
    state: Arc<Mutex<State>>,
    closing: Arc<AtomicBool>,
    frozen: Arc<AtomicBool>,
) {
    while !closing.load(Ordering::Relaxed) {
        let accepted = {
            let state = state.lock().unwrap();
            state.listener.as_ref().map(|listener| listener.accept())
        };
        match accepted {
            Some(Ok((client, _))) => forward(client, target, &state, &frozen),
            Some(Err(_)) | None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn forward(client: TcpStream, target: SocketAddr, state: &Mutex<State>, frozen: &Arc<AtomicBool>) {
    let _ = client.set_nonblocking(false);
    let Ok(server) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
        return; // dropping `client` closes it, as a dead upstream would
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let clones = (
        client.try_clone(),
        server.try_clone(),
        server.try_clone(),
        client.try_clone(),
    );
    let (Ok(client_read), Ok(server_write), Ok(server_read), Ok(client_write)) = clones else {
        return;
    };
    {
        let mut state = state.lock().unwrap();
        if state.listener.is_none() {
            return; // cut while this one was being set up
        }
        state.streams.push(client);
        state.streams.push(server);
    }
    let (up, down) = (Arc::clone(frozen), Arc::clone(frozen));
    std::thread::spawn(move || pump(client_read, server_write, &up));
    std::thread::spawn(move || pump(server_read, client_write, &down));
}

/// Copies one direction (discarding while frozen) until either side closes, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(_) if frozen.load(Ordering::Relaxed) => {}
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
