//! A client worker process: thousands of clients on one mio poll, driven by commands read
//! from stdin (JSON lines) and answering on stdout. Every goal carries its own deadline.

use super::client::{Change, Client, Phase, Shared, Tally};
use super::histogram::Histogram;
use super::ipc::{self, ChannelSpec, Command, ConnectSpec, LineReader, Reply, Stats, Targets};
use super::sys;
use super::ws_client::WsConn;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io;
use std::time::Duration;

const STDIN: Token = Token(usize::MAX);
/// Longest sleep in the poll, so deadlines are noticed.
const TICK: Duration = Duration::from_millis(50);

struct ConnectGoal {
    spec: ConnectSpec,
    next: u32,
    inflight: u32,
    subscribed: u32,
    failed: u32,
    start_ns: u64,
    end_ns: u64,
    deadline: u64,
    errors: Vec<String>,
}

struct AwaitGoal {
    awaiting: usize,
    done_ns: u64,
    deadline: u64,
}

struct ChurnGoal {
    rounds: u32,
    done: u32,
    /// Slot of the member rejoining in this round, once the members have settled.
    churner: Option<usize>,
    round_start: u64,
    added_at_start: u64,
    removed_at_start: u64,
    start_ns: u64,
    deadline: u64,
    latency: Histogram,
}

enum Goal {
    Connect(ConnectGoal),
    Await(AwaitGoal),
    Churn(ChurnGoal),
}

/// The worker: its clients, counters and current goal.
pub(crate) struct Worker {
    shared: Shared,
    poll: Poll,
    clients: Vec<Option<Client>>,
    free: Vec<usize>,
    tally: Tally,
    unexpected_closes: u64,
    goal: Option<Goal>,
    queue: VecDeque<Command>,
    scratch: Vec<u8>,
    seed: u64,
    /// The cipher suite the first TLS client negotiated since the last `CloseAll`.
    tls_suite: Option<String>,
}

impl Worker {
    /// A worker with no clients yet.
    pub(crate) fn new(shared: Shared) -> io::Result<Self> {
        Ok(Worker {
            shared,
            poll: Poll::new()?,
            clients: Vec::new(),
            free: Vec::new(),
            tally: Tally::default(),
            unexpected_closes: 0,
            goal: None,
            queue: VecDeque::new(),
            scratch: vec![0; 64 << 10],
            seed: u64::from(std::process::id()) << 32 | 0x9E37,
            tls_suite: None,
        })
    }

    /// Serves commands from stdin until `Exit` or the coordinator goes away.
    pub(crate) fn run(mut self) -> Result<(), String> {
        let stdin = io::stdin();
        ipc::set_nonblocking(&stdin);
        let mut lines = LineReader::new();
        self.poll
            .registry()
            .register(&mut SourceFd(&0), STDIN, Interest::READABLE)
            .map_err(|e| format!("cannot poll stdin: {e}"))?;
        let mut out = io::stdout();
        let mut events = Events::with_capacity(4096);
        loop {
            while self.goal.is_none() {
                let Some(command) = self.queue.pop_front() else {
                    break;
                };
                if let Command::Exit = command {
                    return Ok(());
                }
                if let Some(reply) = self.start(command) {
                    ipc::send_line(&mut out, &reply).map_err(|e| e.to_string())?;
                }
            }
            if let Some(reply) = self.advance(sys::mono_ns()) {
                self.goal = None;
                ipc::send_line(&mut out, &reply).map_err(|e| e.to_string())?;
                continue;
            }
            self.poll
                .poll(&mut events, Some(TICK))
                .or_else(|e| {
                    if e.kind() == io::ErrorKind::Interrupted {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| format!("poll failed: {e}"))?;
            let now = sys::mono_ns();
            for event in events.iter() {
                if event.token() == STDIN {
                    self.queue.extend(lines.read::<Command>(0)?);
                    if lines.eof() {
                        self.queue.push_back(Command::Exit);
                    }
                    continue;
                }
                let slot = event.token().0;
                let outcome = self.on_socket(slot, event.is_readable(), event.is_writable(), now);
                if let Err(problem) = outcome {
                    self.drop_client(slot, problem);
                }
            }
        }
    }

    fn start(&mut self, command: Command) -> Option<Reply> {
        let now = sys::mono_ns();
        match command {
            Command::Connect(spec) => {
                let deadline = now + spec.timeout_ms * 1_000_000;
                self.goal = Some(Goal::Connect(ConnectGoal {
                    spec,
                    next: 0,
                    inflight: 0,
                    subscribed: 0,
                    failed: 0,
                    start_ns: now,
                    end_ns: now,
                    deadline,
                    errors: Vec::new(),
                }));
                None
            }
            Command::Await {
                targets,
                timeout_ms,
            } => {
                let mut awaiting = 0;
                for client in self.clients.iter_mut().flatten() {
                    let target = match &targets {
                        Targets::All(t) => *t,
                        Targets::Each { first, values } => {
                            let i = client.index.wrapping_sub(*first);
                            values.get(i as usize).copied().unwrap_or(0)
                        }
                    };
                    if !client.set_target(target) {
                        awaiting += 1;
                    }
                }
                self.tally.newly_satisfied = 0;
                self.goal = Some(Goal::Await(AwaitGoal {
                    awaiting,
                    done_ns: now,
                    deadline: now + timeout_ms * 1_000_000,
                }));
                None
            }
            Command::Churn { rounds, timeout_ms } => {
                self.goal = Some(Goal::Churn(ChurnGoal {
                    rounds,
                    done: 0,
                    churner: None,
                    round_start: now,
                    added_at_start: 0,
                    removed_at_start: 0,
                    start_ns: now,
                    deadline: now + timeout_ms * 1_000_000,
                    latency: Histogram::new(),
                }));
                None
            }
            Command::Stats { reset } => {
                let stats = self.stats();
                if reset {
                    let sample = self.tally.sample_payload.take();
                    self.tally = Tally {
                        sample_payload: sample,
                        ..Tally::default()
                    };
                    self.unexpected_closes = 0;
                }
                Some(Reply::Stats(stats))
            }
            Command::CloseAll => {
                for slot in 0..self.clients.len() {
                    if let Some(client) = self.clients[slot].take() {
                        client.ws.abort();
                        self.free.push(slot);
                    }
                }
                // The next scenario starts with fresh counters.
                self.tally = Tally::default();
                self.unexpected_closes = 0;
                self.tls_suite = None;
                Some(Reply::Closed)
            }
            Command::Exit => None,
        }
    }

    fn stats(&self) -> Stats {
        let clients = self
            .clients
            .iter()
            .flatten()
            .filter(|c| c.phase == Phase::Subscribed)
            .count() as u32;
        Stats {
            clients,
            deliveries: self.tally.deliveries,
            wire_bytes: self.tally.wire_bytes,
            compressed: self.tally.compressed,
            order_errors: self.tally.order_errors + self.tally.member_errors,
            unexpected_closes: self.unexpected_closes,
            pusher_errors: self.tally.pusher_errors,
            latency: self.tally.latency.to_sparse(),
            sample_payload: self.tally.sample_payload.clone(),
            tls_suite: self.tls_suite.clone(),
            notes: self.tally.notes.clone(),
        }
    }

    /// Moves the current goal on; returns its reply once it is over.
    fn advance(&mut self, now: u64) -> Option<Reply> {
        match self.goal.as_mut()? {
            Goal::Connect(_) => self.advance_connect(now),
            Goal::Await(goal) => {
                goal.awaiting = goal.awaiting.saturating_sub(self.tally.newly_satisfied);
                self.tally.newly_satisfied = 0;
                if goal.awaiting > 0 && now < goal.deadline {
                    return None;
                }
                let done_ns = if goal.awaiting == 0 {
                    now
                } else {
                    goal.done_ns
                };
                let (mut short_clients, mut missing) = (0, 0);
                for client in self.clients.iter().flatten() {
                    if client.progress < client.target {
                        short_clients += 1;
                        missing += client.target - client.progress;
                    }
                }
                let complete = short_clients == 0;
                for client in self.clients.iter_mut().flatten() {
                    client.target = u64::MAX;
                }
                Some(Reply::Awaited {
                    complete,
                    done_ns,
                    short_clients,
                    missing,
                })
            }
            Goal::Churn(_) => self.advance_churn(now),
        }
    }

    fn advance_connect(&mut self, now: u64) -> Option<Reply> {
        let Some(Goal::Connect(goal)) = self.goal.as_mut() else {
            return None;
        };
        let mut to_open = Vec::new();
        while goal.next < goal.spec.count
            && goal.inflight < goal.spec.inflight.max(1)
            && now < goal.deadline
        {
            to_open.push(goal.spec.first_index + u64::from(goal.next));
            goal.next += 1;
            goal.inflight += 1;
        }
        let spec = goal.spec.clone();
        for index in to_open {
            if let Err(e) = self.open(&spec, index) {
                self.connect_finished(false, Some(format!("connect: {e}")));
            }
        }
        let Some(Goal::Connect(goal)) = self.goal.as_mut() else {
            return None;
        };
        let all_done = goal.subscribed + goal.failed == goal.spec.count;
        if !all_done && now < goal.deadline {
            return None;
        }
        let mut failed = goal.failed;
        if !all_done {
            failed = goal.spec.count - goal.subscribed;
            goal.errors
                .push(format!("{} not subscribed before the deadline", failed));
            // Clients still on their way are dropped so later phases see a clean set.
            for slot in 0..self.clients.len() {
                if self.clients[slot]
                    .as_ref()
                    .is_some_and(|c| c.phase != Phase::Subscribed)
                {
                    if let Some(client) = self.clients[slot].take() {
                        client.ws.abort();
                        self.free.push(slot);
                    }
                }
            }
        }
        let Some(Goal::Connect(goal)) = self.goal.as_mut() else {
            return None;
        };
        Some(Reply::Connected {
            subscribed: goal.subscribed,
            failed,
            start_ns: goal.start_ns,
            end_ns: goal.end_ns,
            errors: std::mem::take(&mut goal.errors),
        })
    }

    fn connect_finished(&mut self, ok: bool, error: Option<String>) {
        if let Some(Goal::Connect(goal)) = self.goal.as_mut() {
            goal.inflight = goal.inflight.saturating_sub(1);
            if ok {
                goal.subscribed += 1;
                goal.end_ns = sys::mono_ns();
            } else {
                goal.failed += 1;
            }
            if let Some(e) = error {
                if goal.errors.len() < 8 {
                    goal.errors.push(e);
                }
            }
        }
    }

    fn open(&mut self, spec: &ConnectSpec, index: u64) -> io::Result<()> {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(index);
        let target = spec.target_of(index);
        let tls = match (target.tls, &self.shared.tls) {
            (false, _) => None,
            (true, Some(config)) => Some(config),
            (true, None) => {
                return Err(io::Error::other(
                    "a wss:// target, but no certificate to trust (--tls-ca)",
                ))
            }
        };
        let mut ws = WsConn::connect(
            target.addr,
            &target.host,
            &target.path,
            self.seed,
            self.shared.deflate,
            tls,
        )?;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.clients.push(None);
            self.clients.len() - 1
        });
        if let Err(e) = self.poll.registry().register(
            ws.stream_mut(),
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.free.push(slot);
            return Err(e);
        }
        let channel = match &spec.channel {
            ChannelSpec::Shared(name) => name.clone(),
            ChannelSpec::PerClient(prefix) => format!("{prefix}{index}"),
        };
        self.clients[slot] = Some(Client::new(ws, index, channel, spec.presence, spec.verify));
        Ok(())
    }

    fn on_socket(
        &mut self,
        slot: usize,
        readable: bool,
        writable: bool,
        now: u64,
    ) -> Result<(), String> {
        let Some(client) = self.clients.get_mut(slot).and_then(Option::as_mut) else {
            return Ok(());
        };
        if writable {
            client.ws.on_writable().map_err(|e| format!("write: {e}"))?;
        }
        if !readable {
            return Ok(());
        }
        let open = client
            .ws
            .on_readable(&mut self.scratch)
            .map_err(|e| format!("read: {e}"))?;
        let (read, compressed) = client.ws.take_counts();
        self.tally.wire_bytes += read;
        self.tally.compressed += compressed;
        let relative = now.saturating_sub(self.shared.epoch_ns);
        if self.tls_suite.is_none() {
            self.tls_suite = client.ws.tls_suite();
        }
        let changes = client.drain(&self.shared, relative, &mut self.tally)?;
        // Pongs and subscriptions written while handling messages may still be queued.
        client.ws.flush().map_err(|e| format!("write: {e}"))?;
        for change in changes {
            match change {
                Change::Subscribed => self.on_subscribed(slot),
                Change::Refused(why) => return Err(why),
                Change::Closed(code) => return Err(format!("closed by the server with {code:?}")),
            }
        }
        if !open {
            return Err("connection closed by the server".into());
        }
        Ok(())
    }

    fn on_subscribed(&mut self, slot: usize) {
        if let Some(Goal::Churn(goal)) = &self.goal {
            if goal.churner == Some(slot) {
                return;
            }
        }
        self.connect_finished(true, None);
    }

    fn drop_client(&mut self, slot: usize, problem: String) {
        let Some(client) = self.clients.get_mut(slot).and_then(Option::take) else {
            return;
        };
        self.free.push(slot);
        let connecting = matches!(self.goal, Some(Goal::Connect(_)));
        if client.phase == Phase::Subscribed || !connecting {
            self.unexpected_closes += 1;
            self.tally
                .note(format!("client {}: {problem}", client.index));
            if client.progress < client.target && client.target != u64::MAX {
                // It will never reach its target; the await reports it as short.
                if let Some(Goal::Await(goal)) = self.goal.as_mut() {
                    goal.awaiting = goal.awaiting.saturating_sub(1);
                }
            }
        } else {
            self.connect_finished(false, Some(format!("client {}: {problem}", client.index)));
        }
        drop(client);
    }

    fn advance_churn(&mut self, now: u64) -> Option<Reply> {
        let members: Vec<usize> = (0..self.clients.len())
            .filter(|&s| self.clients[s].as_ref().is_some_and(|c| c.presence))
            .collect();
        let n = members.len() as u64;
        let full = |w: &Worker| {
            members.iter().all(|&s| {
                w.clients[s]
                    .as_ref()
                    .is_some_and(|c| c.phase == Phase::Subscribed && c.members.len() as u64 == n)
            })
        };
        let settled = full(self);
        let Some(Goal::Churn(goal)) = self.goal.as_mut() else {
            return None;
        };
        let timed_out = now >= goal.deadline;
        if goal.churner.is_some() {
            let added = self.tally.added - goal.added_at_start;
            let removed = self.tally.removed - goal.removed_at_start;
            if added >= n - 1 && removed >= n - 1 && settled {
                goal.latency.record(now - goal.round_start);
                goal.done += 1;
                goal.churner = None;
            } else if !timed_out {
                return None;
            }
        } else if !settled && !timed_out {
            return None;
        }
        if goal.done < goal.rounds && !timed_out && n > 1 {
            let slot = members[goal.done as usize % members.len()];
            goal.churner = Some(slot);
            goal.round_start = sys::mono_ns();
            goal.added_at_start = self.tally.added;
            goal.removed_at_start = self.tally.removed;
            if goal.done == 0 {
                goal.start_ns = goal.round_start;
                self.tally.added = 0;
                self.tally.removed = 0;
                goal.added_at_start = 0;
                goal.removed_at_start = 0;
            }
            let client = self.clients[slot].as_mut().expect("a member");
            if let Err(e) = client.rejoin(&self.shared) {
                self.drop_client(slot, e);
            }
            return None;
        }
        let expected = u64::from(goal.done) * n.saturating_sub(1);
        Some(Reply::Churned {
            rounds: goal.done,
            added: self.tally.added,
            removed: self.tally.removed,
            expected,
            members_ok: settled,
            start_ns: goal.start_ns,
            end_ns: now,
            round_latency: goal.latency.to_sparse(),
        })
    }
}
