//! The server: binds the listener, starts the engine thread and the I/O workers, wires the
//! hand-offs between them, and supervises them until a signal has shut everything down.
//! With one worker there is no engine thread: the worker runs the engine inline.
//!
//! ```text
//!  sockets ⇄ I/O worker 0 (accepts, deals sockets) ┐  batches of inputs   ┌──────────────┐
//!  sockets ⇄ I/O worker 1                          ├─────── inbox ──────▶ │ engine thread │
//!  sockets ⇄ I/O worker W-1                        ┘ ◀── one mailbox ──── └──────────────┘
//!                                                       per worker            │ webhooks
//! ```

use crate::engine_thread::{random_seed, EngineCore, EngineThread};
use crate::inbox::{self, InboxSender};
use crate::mailbox;
use crate::route::Router;
use crate::settings::Settings;
use crate::slots::MAX_WORKERS;
use crate::supervisor::{self, Crew, Notice, Role, Stop, StopLevel};
use crate::wake::Wake;
use crate::webhook::WebhookSink;
use crate::worker::{Acceptor, EngineLink, Worker, WorkerParts, WAKER};
use ferrocast_engine::{Engine, Input};
use mio::net::TcpListener;
use mio::{Poll, Waker};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{mpsc, Arc};

/// Inputs the engine's inbox holds before workers must wait (and stop reading).
const INBOX_CAPACITY: usize = 64 * 1024;
/// Items a worker's mailbox holds before the engine thread waits for it.
const MAILBOX_CAPACITY: usize = 64 * 1024;

/// The server: a bound listener and what it will run with.
pub struct Server {
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    settings: Settings,
    webhooks: Option<Box<dyn WebhookSink + Send>>,
    signals: Option<signal_hook::iterator::Signals>,
    inbox_capacity: usize,
    mailbox_capacity: usize,
}

impl Server {
    /// Binds the listening socket; nothing is served until [`Server::run`].
    pub fn bind(settings: &Settings, webhooks: Box<dyn WebhookSink + Send>) -> io::Result<Server> {
        let host = settings.server.host.as_str();
        let addr = (host, settings.server.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("{host}: no address"))
            })?;
        let listener = listen(addr)?;
        let local_addr = listener.local_addr()?;
        Ok(Server {
            listener: Some(listener),
            local_addr,
            settings: settings.clone(),
            webhooks: Some(webhooks),
            signals: None,
            inbox_capacity: INBOX_CAPACITY,
            mailbox_capacity: MAILBOX_CAPACITY,
        })
    }

    /// The address actually bound (the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The number of I/O workers [`Server::run`] starts.
    pub fn workers(&self) -> usize {
        self.settings.server.workers.clamp(1, MAX_WORKERS)
    }

    /// Replaces the hand-off capacities: inputs the engine's inbox holds, and items each
    /// worker's mailbox holds (at least 1 each). Tests make them tiny to force backpressure.
    pub fn set_queue_capacities(&mut self, inbox: usize, mailbox: usize) {
        self.inbox_capacity = inbox.max(1);
        self.mailbox_capacity = mailbox.max(1);
    }

    /// Shuts down gracefully on SIGINT or SIGTERM (a second signal stops at once).
    pub fn handle_signals(&mut self) -> io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        self.signals = Some(signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?);
        Ok(())
    }

    /// Serves until shut down by a signal; an error when a thread failed or panicked.
    pub fn run(&mut self) -> io::Result<()> {
        let (Some(listener), Some(webhooks)) = (self.listener.take(), self.webhooks.take()) else {
            return Err(io::Error::other("the server has already run"));
        };
        let count = self.workers();
        let mut polls = Vec::with_capacity(count);
        let mut wakers = Vec::with_capacity(count);
        for _ in 0..count {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            polls.push(poll);
        }
        let boxed = |w: &Arc<Waker>| Box::new(w.clone()) as Box<dyn Wake>;
        let (inbox_senders, inbox) =
            inbox::inbox::<Input>(self.inbox_capacity, wakers.iter().map(boxed).collect());
        let (mail_senders, mail_receivers): (Vec<_>, Vec<_>) = wakers
            .iter()
            .map(|w| mailbox::mailbox(self.mailbox_capacity, boxed(w)))
            .unzip();
        let stop = Arc::new(Stop::default());
        let (notices_tx, notices) = mpsc::channel();
        let mut threads = Vec::with_capacity(count + 1);

        let engine = Engine::new(self.settings.engine.clone(), random_seed());
        let core = EngineCore::new(engine, Router::new(mail_senders.clone()), webhooks);
        let engine_thread = count > 1;
        let mut inline = None;
        if engine_thread {
            threads.push(supervisor::spawn(
                "engine".into(),
                Role::Engine,
                notices_tx.clone(),
                move || {
                    EngineThread::new(core, inbox).run();
                    Ok(())
                },
            )?);
        } else {
            inline = Some(Box::new(core));
        }
        let mut listener = Some(listener);
        let parts = polls.into_iter().zip(mail_receivers).zip(&inbox_senders);
        for (index, ((poll, mailbox), inbox)) in parts.enumerate() {
            let engine = match inline.take() {
                Some(core) => EngineLink::Inline(core),
                None => EngineLink::Inbox(inbox.clone()),
            };
            let parts = WorkerParts {
                index,
                poll,
                acceptor: listener
                    .take()
                    .map(|l| Acceptor::new(l, mail_senders.clone())),
                mailbox,
                engine,
                limits: self.settings.conn_limits(),
                stop: stop.clone(),
            };
            threads.push(supervisor::spawn(
                format!("io-{index}"),
                Role::Worker(index),
                notices_tx.clone(),
                move || Worker::new(parts).run(),
            )?);
        }
        let signals = self.forward_signals(notices_tx.clone())?;
        drop(notices_tx);

        let mut crew = Threads {
            stop,
            wakers,
            inbox: inbox_senders[0].clone(),
        };
        let outcome = supervisor::watch(&notices, count, engine_thread, &mut crew);
        if let Some((handle, thread)) = signals {
            handle.close();
            let _ = thread.join();
        }
        if outcome.is_ok() {
            for thread in threads {
                let _ = thread.join();
            }
        }
        outcome
    }

    /// Turns each signal into a notice for the supervisor, from a thread of its own.
    fn forward_signals(
        &mut self,
        notices: mpsc::Sender<Notice>,
    ) -> io::Result<Option<(signal_hook::iterator::Handle, std::thread::JoinHandle<()>)>> {
        let Some(mut signals) = self.signals.take() else {
            return Ok(None);
        };
        let handle = signals.handle();
        let thread = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if notices.send(Notice::Signal).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Some((handle, thread)))
    }
}

/// The supervisor's levers on the running threads.
struct Threads {
    stop: Arc<Stop>,
    wakers: Vec<Arc<Waker>>,
    inbox: InboxSender<Input>,
}

impl Crew for Threads {
    fn stop(&mut self, level: StopLevel) {
        self.stop.raise(level);
        for waker in &self.wakers {
            Wake::wake(waker);
        }
    }

    fn close_engine(&mut self) {
        self.inbox.close();
    }
}

/// Most handshakes the kernel queues before the server accepts them. mio's `bind` uses 128,
/// which a storm of clients overflows: the kernel drops SYNs and clients retry a second later.
const LISTEN_BACKLOG: i32 = 4096;

/// A non-blocking listener with address reuse and a deep accept queue.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Connections complete their handshake in the kernel's queue before any accept; a queue
    /// of 128 would leave the rest waiting for a SYN retry a second later.
    #[test]
    fn the_listener_queues_more_handshakes_than_the_default_backlog() {
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let connected = (0..400)
            .filter(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
            })
            .count();
        assert_eq!(connected, 400);
    }
}
