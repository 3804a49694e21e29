//! The soak (`loadgen --soak SECS`): minutes of churn against the real server binary —
//! clients that connect, subscribe to every channel kind, join and leave presence channels,
//! send client events and leave cleanly or abruptly, and publishes through the HTTP API — with
//! the server's RSS, descriptors and its engine's own counts sampled every 10 s. At the end,
//! once every client has left and the leave delay has passed, everything must be back at its
//! baseline and RSS must not have grown across the run; otherwise the exit status is non-zero.

use super::args::Args;
use super::figures::{Figures, SoakSample};
use super::http_pub::{Credentials, Event, Publisher};
use super::report::{self, median};
use super::spawn::ServerProc;
use super::sys;
use ferrocast_engine::signature::client_auth;
use serde_json::{json, Value};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// How often the server is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// The server's leave delay (`webhook_leave_delay_secs`, default 3 s) with a margin.
const LEAVE_DELAY: Duration = Duration::from_secs(4);
/// How long the state may take to return to its baseline after the leave delay.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// RSS growth allowed between the first and the last third of the run (median against median).
pub(crate) const RSS_TOLERANCE: f64 = 0.05;
/// Longest wait for one answer of the server to a client.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Failures kept word for word (the rest are only counted).
const KEPT_FAILURES: usize = 20;

/// Channel names of each kind: about as many as the subscriptions the clients hold at once, so
/// channels fill and empty again all the time; the cache channels' last events stay bounded.
const KINDS: [(&str, u64); 5] = [
    ("soak-public-", 40),
    ("private-soak-", 40),
    ("presence-soak-", 20),
    ("private-encrypted-soak-", 20),
    ("cache-soak-", 20),
];

/// A small deterministic generator: each client thread has its own.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// What the clients did, counted across threads.
#[derive(Default)]
struct Tally {
    sessions: AtomicU64,
    subscriptions: AtomicU64,
    unsubscriptions: AtomicU64,
    client_events: AtomicU64,
    received: AtomicU64,
    publishes: AtomicU64,
    clean_closes: AtomicU64,
    abrupt_closes: AtomicU64,
    failures: AtomicU64,
    kept: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut kept = self.kept.lock().expect("not poisoned");
        if kept.len() < KEPT_FAILURES {
            kept.push(what);
        }
    }
}

/// What the client threads share.
struct Ctx {
    addr: SocketAddr,
    creds: Credentials,
    stop: AtomicBool,
    tally: Tally,
}

/// The figures of one scrape of the metrics listener.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct EngineCounts {
    /// `ferrocast_connected`.
    pub connections: u64,
    /// `ferrocast_channels`, every kind.
    pub channels: u64,
    /// `ferrocast_subscriptions`, every kind.
    pub subscriptions: u64,
    /// `ferrocast_presence_members`.
    pub presence_members: u64,
    /// `ferrocast_new_connections_total`.
    pub new_connections: u64,
    /// `ferrocast_client_events_relayed_total`.
    pub client_events_relayed: u64,
}

/// The sum of every sample of metric `name` in an OpenMetrics text (`None` if it has none).
pub(crate) fn metric_sum(text: &str, name: &str) -> Option<u64> {
    let mut sum = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = match rest.as_bytes().first() {
            Some(b'{') => rest.rsplit_once('}').map(|(_, v)| v),
            Some(b' ') => Some(rest),
            _ => None,
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *sum.get_or_insert(0) += v as u64;
        }
    }
    sum
}

/// Parses the engine's counts from a scrape.
pub(crate) fn parse_counts(text: &str) -> Result<EngineCounts, String> {
    let get =
        |name: &str| metric_sum(text, name).ok_or_else(|| format!("the metrics have no {name}"));
    Ok(EngineCounts {
        connections: get("ferrocast_connected")?,
        channels: get("ferrocast_channels")?,
        subscriptions: get("ferrocast_subscriptions")?,
        presence_members: get("ferrocast_presence_members")?,
        new_connections: get("ferrocast_new_connections_total")?,
        client_events_relayed: get("ferrocast_client_events_relayed_total")?,
    })
}

/// `GET /metrics` over a connection of its own, closed after the answer.
fn scrape(addr: SocketAddr) -> Result<EngineCounts, String> {
    let mut stream = TcpStream::connect_timeout(&addr, ANSWER_TIMEOUT)
        .map_err(|e| format!("cannot reach the metrics on {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(ANSWER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("metrics request: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("metrics answer: {e}"))?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or("the metrics answer has no head")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "the metrics answered {}",
            head.lines().next().unwrap_or("")
        ));
    }
    parse_counts(body)
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> Option<u64> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64)
}

/// One sample: descriptors and RSS first, so the scrape's own connection is not counted.
fn sample(pid: u32, metrics: SocketAddr, t_s: f64) -> Result<(SoakSample, EngineCounts), String> {
    let fds = descriptors(pid).ok_or("cannot read the server's descriptors")?;
    let rss_bytes = sys::rss_bytes(pid).ok_or("cannot read the server's RSS")?;
    let counts = scrape(metrics)?;
    Ok((
        SoakSample {
            t_s,
            rss_bytes,
            fds,
            connections: counts.connections,
            channels: counts.channels,
            subscriptions: counts.subscriptions,
            presence_members: counts.presence_members,
        },
        counts,
    ))
}

/// How the run ended, judged from its samples.
#[derive(Debug, PartialEq)]
pub(crate) struct Verdict {
    /// Median RSS of the first third after warm-up, and of the last third (bytes).
    pub rss_first: f64,
    /// See `rss_first`.
    pub rss_last: f64,
    /// What failed (empty: the soak passed).
    pub failures: Vec<String>,
}

/// Judges a run: `base` before any client, `churn` the samples while clients came and went,
/// `end` after they all left. RSS is compared over `churn` samples from `warmup_s` on.
pub(crate) fn judge(
    base: &SoakSample,
    churn: &[SoakSample],
    end: &SoakSample,
    warmup_s: f64,
) -> Verdict {
    let mut failures = Vec::new();
    for (what, was, is) in [
        ("connections", base.connections, end.connections),
        ("channels", base.channels, end.channels),
        ("subscriptions", base.subscriptions, end.subscriptions),
        (
            "presence members",
            base.presence_members,
            end.presence_members,
        ),
        ("open descriptors", base.fds, end.fds),
    ] {
        if was != is {
            failures.push(format!("{what}: {is} at the end, {was} at the start"));
        }
    }
    let rss: Vec<f64> = churn
        .iter()
        .filter(|s| s.t_s >= warmup_s)
        .map(|s| s.rss_bytes as f64)
        .collect();
    let third = rss.len() / 3;
    let (rss_first, rss_last) = if third == 0 {
        failures.push(format!(
            "too few samples after the warm-up to compare RSS ({})",
            rss.len()
        ));
        (0.0, 0.0)
    } else {
        (median(&rss[..third]), median(&rss[rss.len() - third..]))
    };
    if third > 0 && rss_last > rss_first * (1.0 + RSS_TOLERANCE) {
        failures.push(format!(
            "RSS grew from {} (median of the first third) to {} (of the last), over {:.0}%",
            report::bytes(rss_first),
            report::bytes(rss_last),
            RSS_TOLERANCE * 100.0
        ));
    }
    Verdict {
        rss_first,
        rss_last,
        failures,
    }
}

/// Runs the soak; the exit status says whether it passed.
pub(crate) fn run(args: &Args, secs: u64) -> Result<bool, String> {
    let bin = args
        .spawn_server
        .clone()
        .ok_or("--soak needs --spawn-server PATH (the real server binary is started here)")?;
    let creds = Credentials {
        app_id: args.app_id.clone(),
        key: args.app_key.clone(),
        secret: args.app_secret.clone(),
    };
    let server_cpu = args.server_cpu();
    let pinned = !args.no_pin
        && sys::cpus_allowed() > server_cpu.max(args.generator_cpu)
        && server_cpu != args.generator_cpu
        && sys::pin_to_cpu(args.generator_cpu);
    // Spawned servers serve their metrics on a free port of their own.
    let mut server = ServerProc::spawn(&bin, &creds, 100, pinned.then_some(server_cpu), &[])?;
    let metrics = server
        .metrics_addr()
        .ok_or("the server printed no `ferrocast metrics on` line")?;
    let pid = server.pid;
    let clients = args.soak_clients.max(1);
    let rate = args.soak_publish_rate.max(1);
    println!(
        "soak: {secs} s against {} (pid {pid}, metrics on {metrics}), {clients} client threads, \
         {rate} publishes/s, {}",
        server.addr,
        if pinned {
            format!(
                "server on CPU {server_cpu}, generator on CPU {}",
                args.generator_cpu
            )
        } else {
            "not pinned".into()
        }
    );
    std::thread::sleep(Duration::from_millis(500));
    let (base, base_counts) = sample(pid, metrics, 0.0)?;
    print_sample("baseline", &base);
    let ctx = Arc::new(Ctx {
        addr: server.addr,
        creds: creds.clone(),
        stop: AtomicBool::new(false),
        tally: Tally::default(),
    });
    let start = Instant::now();
    let mut threads = Vec::new();
    for t in 0..clients {
        let ctx = Arc::clone(&ctx);
        threads.push(std::thread::spawn(move || client_loop(&ctx, u64::from(t))));
    }
    let publisher = {
        let ctx = Arc::clone(&ctx);
        std::thread::spawn(move || publish_loop(&ctx, rate))
    };
    let mut churn = Vec::new();
    let deadline = start + Duration::from_secs(secs);
    let mut next = start + SAMPLE_EVERY;
    let mut died = None;
    while next <= deadline {
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        next += SAMPLE_EVERY;
        if !server.alive() {
            died = Some(server.stderr_tail());
            break;
        }
        match sample(pid, metrics, start.elapsed().as_secs_f64().round()) {
            Ok((s, _)) => {
                print_sample(&format!("{:>5.0} s", s.t_s), &s);
                churn.push(s);
            }
            Err(e) => ctx.tally.fail(format!("sample: {e}")),
        }
    }
    ctx.stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let _ = publisher.join();
    let churn_s = start.elapsed().as_secs_f64();
    if let Some(tail) = died {
        return Err(format!("the server exited during the soak; stderr: {tail}"));
    }
    println!("soak: every client has left after {churn_s:.0} s; waiting for the leave delay");
    std::thread::sleep(LEAVE_DELAY);
    let settle_start = Instant::now();
    let (end, end_counts) = loop {
        let (s, c) = sample(pid, metrics, start.elapsed().as_secs_f64().round())?;
        let settled = s.connections == base.connections
            && s.channels == base.channels
            && s.subscriptions == base.subscriptions
            && s.presence_members == base.presence_members
            && s.fds == base.fds;
        if settled || settle_start.elapsed() >= SETTLE_TIMEOUT {
            break (s, c);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    print_sample(&format!("{:>5.0} s (end)", end.t_s), &end);
    if !server.alive() {
        return Err(format!(
            "the server exited after the soak; stderr: {}",
            server.stderr_tail()
        ));
    }
    server.stop();
    let warmup = (secs as f64 / 10.0).clamp(10.0, 60.0);
    let mut verdict = judge(&base, &churn, &end, warmup);
    let tally = &ctx.tally;
    let failures = tally.failures.load(Ordering::Relaxed);
    if failures > 0 {
        let kept = tally.kept.lock().expect("not poisoned");
        verdict.failures.push(format!(
            "{failures} client or publish failures, the first: {kept:?}"
        ));
    }
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "soak: {} sessions ({} connections counted by the server), {} subscriptions, {} \
         unsubscriptions, {} client events sent ({} relayed), {} events received, {} HTTP \
         publishes, {} clean and {} abrupt disconnects",
        n(&tally.sessions),
        end_counts.new_connections - base_counts.new_connections,
        n(&tally.subscriptions),
        n(&tally.unsubscriptions),
        n(&tally.client_events),
        end_counts.client_events_relayed - base_counts.client_events_relayed,
        n(&tally.received),
        n(&tally.publishes),
        n(&tally.clean_closes),
        n(&tally.abrupt_closes),
    );
    println!(
        "soak: RSS median {} over the first third after a {warmup:.0} s warm-up, {} over the \
         last third (tolerance {:.0}%)",
        report::bytes(verdict.rss_first),
        report::bytes(verdict.rss_last),
        RSS_TOLERANCE * 100.0
    );
    if let Some(dir) = &args.plot {
        let mut samples = vec![base];
        samples.extend(churn);
        samples.push(end);
        let figures = Figures {
            soak: samples,
            ..Figures::default()
        };
        let files = super::plot::write(dir, "soak.json", &figures)?;
        println!("charts: {}", files.join(", "));
    }
    if verdict.failures.is_empty() {
        println!(
            "soak: PASSED — connections, channels, subscriptions, presence members and \
             descriptors back at their baseline; RSS did not grow"
        );
        Ok(true)
    } else {
        println!("soak: FAILED");
        for f in &verdict.failures {
            println!("  - {f}");
        }
        Ok(false)
    }
}

fn print_sample(when: &str, s: &SoakSample) {
    println!(
        "  {when:>14}: RSS {}, {} descriptors, {} connections, {} channels, {} subscriptions, \
         {} presence members",
        report::bytes(s.rss_bytes as f64),
        s.fds,
        s.connections,
        s.channels,
        s.subscriptions,
        s.presence_members
    );
}

/// Publishes to random channels of every kind at `rate` per second until told to stop;
/// one request in ten is a batch.
fn publish_loop(ctx: &Ctx, rate: u32) {
    let mut publisher = Publisher::new(
        ctx.addr,
        ctx.addr.to_string(),
        String::new(),
        ctx.creds.clone(),
    );
    let mut rng = Rng(0x50A6_0001);
    let every = Duration::from_secs(1) / rate;
    let mut next = Instant::now();
    let mut seq = 0u64;
    while !ctx.stop.load(Ordering::Relaxed) {
        let count = if rng.below(10) == 0 {
            2 + rng.below(4)
        } else {
            1
        };
        let picks: Vec<(String, String)> = (0..count)
            .map(|_| {
                seq += 1;
                let channel = random_channel(&mut rng);
                let data = if channel.starts_with("private-encrypted-") {
                    // What an SDK sends: the server relays it without reading it.
                    json!({"nonce": "c29hay1ub25jZQ==", "ciphertext": format!("c29hay0{seq}")})
                        .to_string()
                } else {
                    json!({"seq": seq}).to_string()
                };
                (channel, data)
            })
            .collect();
        let events: Vec<Event> = picks
            .iter()
            .map(|(channel, data)| Event {
                channel,
                name: "soak-event",
                data,
            })
            .collect();
        let sent = if events.len() == 1 {
            publisher.trigger(&events[0])
        } else {
            publisher.batch(&events)
        };
        match sent {
            Ok(()) => {
                ctx.tally
                    .publishes
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
            }
            Err(e) => ctx.tally.fail(format!("publish: {e}")),
        }
        next += every;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

fn random_channel(rng: &mut Rng) -> String {
    let (prefix, names) = KINDS[rng.below(KINDS.len() as u64) as usize];
    format!("{prefix}{}", rng.below(names))
}

/// One client thread: sessions one after another until told to stop.
fn client_loop(ctx: &Ctx, thread: u64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (thread + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut serial = 0u64;
    // Threads start spread over a second, not all at once.
    std::thread::sleep(Duration::from_millis(rng.below(1000)));
    while !ctx.stop.load(Ordering::Relaxed) {
        serial += 1;
        let user = format!("soak-{thread}-{serial}");
        ctx.tally.sessions.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = session(ctx, &mut rng, &user) {
            ctx.tally.fail(format!("{user}: {e}"));
            // A failing server is not hammered in a tight loop.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

type Ws = WebSocket<TcpStream>;

/// The next Pusher message within `deadline` (`None` when the read timed out first).
fn next_message(ws: &mut Ws) -> Result<Option<Value>, String> {
    match ws.read() {
        Ok(Message::Text(text)) => serde_json::from_str(text.as_str())
            .map(Some)
            .map_err(|e| format!("bad JSON from the server: {e}")),
        Ok(Message::Close(frame)) => Err(format!(
            "the server closed the connection: {:?}",
            frame.map(|f| u16::from(f.code))
        )),
        Ok(_) => Ok(None),
        Err(tungstenite::Error::Io(e))
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

fn send(ws: &mut Ws, message: &Value) -> Result<(), String> {
    ws.send(Message::text(message.to_string()))
        .map_err(|e| format!("send: {e}"))
}

/// The `data` of a Pusher message, decoded when it is a JSON string.
fn data_of(message: &Value) -> Value {
    match &message["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
        other => other.clone(),
    }
}

/// Handles what every state must: pings, errors, counting events. Returns the event name.
fn handle(ws: &mut Ws, ctx: &Ctx, message: &Value) -> Result<String, String> {
    let event = message["event"].as_str().unwrap_or_default().to_string();
    match event.as_str() {
        "pusher:ping" => send(ws, &json!({"event": "pusher:pong", "data": {}}))?,
        "pusher:error" | "pusher:subscription_error" => {
            return Err(format!("{event}: {}", message["data"]));
        }
        "soak-event" | "client-soak" | "pusher:cache_miss" => {
            ctx.tally.received.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    Ok(event)
}

/// Waits for a message named `want` on `channel` (any channel when `None`), handling the rest.
fn wait_for(ws: &mut Ws, ctx: &Ctx, want: &str, channel: Option<&str>) -> Result<Value, String> {
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(message) = next_message(ws)? {
            let event = handle(ws, ctx, &message)?;
            if event == want && channel.is_none_or(|c| message["channel"] == c) {
                return Ok(message);
            }
        }
    }
    Err(format!("no {want} within {ANSWER_TIMEOUT:?}"))
}

fn subscribe(
    ws: &mut Ws,
    ctx: &Ctx,
    socket_id: &str,
    channel: &str,
    user: &str,
) -> Result<(), String> {
    let creds = &ctx.creds;
    let mut data = json!({"channel": channel});
    if channel.starts_with("presence-") {
        let channel_data = json!({"user_id": user, "user_info": {"soak": true}}).to_string();
        let signed = format!("{socket_id}:{channel}:{channel_data}");
        data["auth"] = client_auth(&creds.key, &creds.secret, signed.as_bytes()).into();
        data["channel_data"] = channel_data.into();
    } else if channel.starts_with("private-") {
        let signed = format!("{socket_id}:{channel}");
        data["auth"] = client_auth(&creds.key, &creds.secret, signed.as_bytes()).into();
    }
    send(ws, &json!({"event": "pusher:subscribe", "data": data}))?;
    wait_for(
        ws,
        ctx,
        "pusher_internal:subscription_succeeded",
        Some(channel),
    )?;
    ctx.tally.subscriptions.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn unsubscribe(ws: &mut Ws, ctx: &Ctx, channel: &str) -> Result<(), String> {
    send(
        ws,
        &json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}),
    )?;
    ctx.tally.unsubscriptions.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// One connection's life: connect, subscribe to 1–4 channels of random kinds, hold 1–8 s
/// (client events on the private and presence ones, one channel left half-way in a third of
/// the sessions), then leave one of four ways: a close handshake, unsubscribing everything
/// first, a reset, or a bare FIN without a close frame.
fn session(ctx: &Ctx, rng: &mut Rng, user: &str) -> Result<(), String> {
    let stream = TcpStream::connect_timeout(&ctx.addr, ANSWER_TIMEOUT)
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let url = format!(
        "ws://{}/app/{}?protocol=7&client=loadgen-soak&version=1",
        ctx.addr, ctx.creds.key
    );
    // The short read timeout interrupts the handshake too: resume it until the deadline.
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut attempt = tungstenite::client(url.as_str(), stream);
    let mut ws = loop {
        match attempt {
            Ok((ws, _)) => break ws,
            Err(tungstenite::HandshakeError::Failure(e)) => return Err(format!("handshake: {e}")),
            Err(tungstenite::HandshakeError::Interrupted(mid)) => {
                if Instant::now() >= deadline {
                    return Err(format!("no handshake answer within {ANSWER_TIMEOUT:?}"));
                }
                attempt = mid.handshake();
            }
        }
    };
    let welcome = wait_for(&mut ws, ctx, "pusher:connection_established", None)?;
    let socket_id = data_of(&welcome)["socket_id"]
        .as_str()
        .ok_or("connection_established without a socket_id")?
        .to_string();
    let mut channels: Vec<String> = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let channel = random_channel(rng);
        if !channels.contains(&channel) {
            subscribe(&mut ws, ctx, &socket_id, &channel, user)?;
            channels.push(channel);
        }
    }
    let hold = Duration::from_millis(1000 + rng.below(7000));
    let leave_one_at = (rng.below(3) == 0).then(|| Instant::now() + hold / 2);
    let mut left_one = false;
    let held = Instant::now();
    let mut next_client_event = held + Duration::from_millis(300 + rng.below(700));
    while held.elapsed() < hold && !ctx.stop.load(Ordering::Relaxed) {
        if let Some(message) = next_message(&mut ws)? {
            handle(&mut ws, ctx, &message)?;
        }
        let now = Instant::now();
        if now >= next_client_event {
            // Client events go to private and presence channels (not encrypted ones).
            let targets: Vec<&String> = channels
                .iter()
                .filter(|c| {
                    (c.starts_with("private-") || c.starts_with("presence-"))
                        && !c.starts_with("private-encrypted-")
                })
                .collect();
            if !targets.is_empty() {
                let channel = targets[rng.below(targets.len() as u64) as usize].clone();
                send(
                    &mut ws,
                    &json!({"event": "client-soak", "channel": channel, "data": {"from": user}}),
                )?;
                ctx.tally.client_events.fetch_add(1, Ordering::Relaxed);
            }
            next_client_event = now + Duration::from_millis(500 + rng.below(1000));
        }
        if !left_one && leave_one_at.is_some_and(|at| now >= at) && !channels.is_empty() {
            left_one = true;
            let channel = channels.swap_remove(rng.below(channels.len() as u64) as usize);
            unsubscribe(&mut ws, ctx, &channel)?;
        }
    }
    match rng.below(4) {
        0 | 1 => {
            if rng.below(2) == 0 {
                for channel in std::mem::take(&mut channels) {
                    unsubscribe(&mut ws, ctx, &channel)?;
                }
            }
            close_cleanly(&mut ws)?;
            ctx.tally.clean_closes.fetch_add(1, Ordering::Relaxed);
        }
        2 => {
            // A reset: the peer vanishes mid-conversation.
            sys::set_linger_zero(ws.get_ref());
            drop(ws);
            ctx.tally.abrupt_closes.fetch_add(1, Ordering::Relaxed);
        }
        _ => {
            // A FIN with no close frame, as a killed tab's socket would end.
            let _ = ws.get_ref().shutdown(std::net::Shutdown::Both);
            drop(ws);
            ctx.tally.abrupt_closes.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// The close handshake: our close frame, then the server's, then the end of the stream.
fn close_cleanly(ws: &mut Ws) -> Result<(), String> {
    ws.close(None).map_err(|e| format!("close: {e}"))?;
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(format!("closing: {e}")),
        }
    }
    Err("the server did not finish the close handshake".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "\
# TYPE ferrocast_connected gauge
ferrocast_connected{app_id=\"app-id\"} 7
# TYPE ferrocast_channels gauge
ferrocast_channels{app_id=\"app-id\",kind=\"public\"} 3
ferrocast_channels{app_id=\"app-id\",kind=\"presence\"} 2
ferrocast_channels_other 100
ferrocast_subscriptions{app_id=\"app-id\",kind=\"public\"} 5
ferrocast_subscriptions{app_id=\"app-id\",kind=\"presence\"} 4
ferrocast_presence_members{app_id=\"app-id\"} 4
ferrocast_new_connections_total{app_id=\"app-id\"} 90
ferrocast_client_events_relayed_total{app_id=\"app-id\"} 12
# EOF
";

    #[test]
    fn counts_are_summed_over_labels_from_a_scrape() {
        assert_eq!(
            parse_counts(SCRAPE),
            Ok(EngineCounts {
                connections: 7,
                channels: 5,
                subscriptions: 9,
                presence_members: 4,
                new_connections: 90,
                client_events_relayed: 12,
            })
        );
        assert_eq!(
            metric_sum(
                "ferrocast_accepted_sockets_total 3\n",
                "ferrocast_accepted_sockets_total"
            ),
            Some(3)
        );
        let missing = parse_counts("ferrocast_connected 1\n").expect_err("incomplete");
        assert!(missing.contains("ferrocast_channels"), "{missing}");
    }

    fn at(t_s: f64, rss_mib: u64) -> SoakSample {
        SoakSample {
            t_s,
            rss_bytes: rss_mib << 20,
            fds: 12,
            ..SoakSample::default()
        }
    }

    #[test]
    fn a_flat_run_that_returns_to_its_baseline_passes() {
        let base = at(0.0, 8);
        let churn: Vec<SoakSample> = (1..=12).map(|i| at(f64::from(i) * 10.0, 10)).collect();
        let v = judge(&base, &churn, &at(130.0, 10), 20.0);
        assert_eq!(v.failures, Vec::<String>::new());
        assert_eq!(v.rss_first, 10.0 * 1048576.0);
    }

    #[test]
    fn growing_rss_or_leftover_state_fails() {
        let base = at(0.0, 8);
        // Warm-up samples (t < 20) are ignored, whatever they are.
        let churn: Vec<SoakSample> = (1..=12)
            .map(|i| at(f64::from(i) * 10.0, if i < 2 { 1 } else { 10 + i as u64 }))
            .collect();
        let mut end = at(130.0, 20);
        end.connections = 2;
        end.fds = 14;
        let v = judge(&base, &churn, &end, 20.0);
        assert_eq!(v.failures.len(), 3, "{:?}", v.failures);
        assert!(v.failures[0].starts_with("connections: 2 at the end, 0"));
        assert!(v.failures[1].starts_with("open descriptors: 14 at the end, 12"));
        assert!(v.failures[2].starts_with("RSS grew"), "{:?}", v.failures);
        // Growth within the tolerance passes.
        let churn: Vec<SoakSample> = (1..=9)
            .map(|i| SoakSample {
                rss_bytes: 100_000_000 + i * 400_000,
                ..at(f64::from(i as u32) * 10.0, 0)
            })
            .collect();
        assert!(judge(&base, &churn, &at(100.0, 0), 0.0)
            .failures
            .iter()
            .all(|f| !f.starts_with("RSS")));
        assert!(judge(&base, &[], &at(100.0, 0), 0.0).failures[0].starts_with("too few samples"));
    }
}
