//! Two scenarios of steady traffic rather than bursts from idle:
//!
//! - *sustained publishing*: subscribers on one channel, a pipelined publisher (several
//!   keep-alive connections, several requests in flight on each) sending single triggers or
//!   `batch_events`; the server's frames per `writev` (from its metrics) and its CPU per
//!   delivery against the single-write floor;
//! - *sequential connections*: clients that connect one at a time (one handshake in flight),
//!   against the accept floor doing the same sequence.

use super::client::{stamp, EVENT_NAME};
use super::fanout::{check_stats, measure_floor};
use super::ipc::{ChannelSpec, FloorCommand};
use super::pipeline_pub::{PipelinePublisher, Request};
use super::report::{self, median, Report};
use super::rig::Rig;
use super::spawn;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const CHANNEL: &str = "loadgen-sustained";
const TIMEOUT: Duration = Duration::from_secs(120);
/// Requests sent before measuring, so that buffers and queues have grown.
const WARM_UP: u32 = 8;

/// How the sustained publisher packs events.
#[derive(Clone, Copy, Debug)]
enum Mode {
    /// `POST /events`, one event a request.
    Trigger,
    /// `POST /batch_events` with this many events to the channel.
    Batch(u32),
}

impl Mode {
    fn label(self) -> String {
        match self {
            Mode::Trigger => "triggers".into(),
            Mode::Batch(k) => format!("batch_events of {k}"),
        }
    }
}

/// What one mode measured (medians over repeats).
struct Sustained {
    cpu_per_delivery: Option<f64>,
    frames_per_write: Option<f64>,
    rate: f64,
}

/// Sustained publishing, in trigger and batch mode, and the write floor of the same size.
pub(crate) fn run(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    let n = rig.plan.sustained_subscribers;
    let batch = rig.args.batch_size.clamp(1, 10);
    let (lanes, depth) = (rig.args.pipeline_connections, rig.args.pipeline_depth);
    println!(
        "sustained publishing: {n} subscribers on one channel, {lanes} connections with {depth} \
         requests in flight each"
    );
    let mut payload = None;
    let mut results = Vec::new();
    for mode in [Mode::Trigger, Mode::Batch(batch)] {
        let (result, sample) = measure(rig, report, n, mode)?;
        payload = payload.or(sample);
        results.push((mode, result));
        rig.check_server()?;
    }
    let floor = match (payload, rig.args.no_floors) {
        (Some(payload), false) => Some(measure_floor(rig, report, n, &payload)?.cpu_per_delivery),
        _ => None,
    };
    let size = report::count(n);
    for (mode, result) in results {
        let what = format!(
            "sustained {size}, {lanes}×{depth} pipelined {}",
            mode.label()
        );
        report.row(
            format!("{what}: server CPU per delivery"),
            result
                .cpu_per_delivery
                .map_or("n/a (no --server-pid)".into(), report::ns),
            floor.map(|f| format!("single-write floor {}", report::ns(f))),
            report::ratio(result.cpu_per_delivery, floor),
        );
        report.row(
            format!("{what}: frames per writev, deliveries/s (wall)"),
            format!(
                "{}, {}",
                result
                    .frames_per_write
                    .map_or("n/a (no metrics)".into(), |f| format!("{f:.2}")),
                report::rate(result.rate)
            ),
            None,
            None,
        );
    }
    Ok(())
}

fn measure(
    rig: &mut Rig,
    report: &mut Report,
    n: u32,
    mode: Mode,
) -> Result<(Sustained, Option<String>), String> {
    rig.fresh_server()?;
    let target = rig.ws.clone();
    let connected = rig.connect(
        &target,
        0,
        n,
        ChannelSpec::Shared(CHANNEL.into()),
        false,
        false,
        TIMEOUT,
    )?;
    if connected.subscribed != n {
        report.fail(format!(
            "sustained {n}: {} of {n} failed to subscribe: {:?}",
            connected.failed, connected.errors
        ));
    }
    let (addr, host) = rig.publisher.target();
    let mut publisher = PipelinePublisher::new(addr, host.to_string(), rig.creds.clone());
    publisher.connections = rig.args.pipeline_connections.max(1);
    publisher.depth = rig.args.pipeline_depth.max(1);
    let pad = rig.args.payload_bytes;
    let metrics = rig.metrics_addr();
    let mut seq = 0u64;
    let mut delivered = 0u64;
    let mut send = |rig: &mut Rig, requests: u32| -> Result<u64, String> {
        let epoch = rig.epoch_ns;
        let before = seq;
        publisher.run(u64::from(requests), TIMEOUT, |_| {
            let now = super::sys::mono_ns() - epoch;
            let event = |seq: &mut u64| {
                *seq += 1;
                serde_json::json!({"name": EVENT_NAME, "channel": CHANNEL, "data": stamp(*seq, now, pad)})
            };
            match mode {
                Mode::Trigger => Request {
                    endpoint: "events",
                    body: event(&mut seq).to_string(),
                },
                Mode::Batch(k) => Request {
                    endpoint: "batch_events",
                    body: serde_json::json!({"batch": (0..k).map(|_| event(&mut seq)).collect::<Vec<_>>()})
                        .to_string(),
                },
            }
        })?;
        let events = seq - before;
        delivered += events;
        let awaited = rig.await_all(delivered, TIMEOUT)?;
        if !awaited.complete {
            return Err(format!(
                "{} subscribers short by {} events",
                awaited.short_clients, awaited.missing
            ));
        }
        Ok(events)
    };
    send(rig, WARM_UP)?;
    rig.stats(true)?;
    let (mut cpus, mut ratios, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for repeat in 0..rig.plan.repeats {
        let counts0 = metrics.and_then(|m| write_counts(m).ok());
        let cpu0 = rig.server_cpu_ns();
        let start = rig.now_rel();
        let events = send(rig, rig.plan.sustained_requests)?;
        let wall = rig.now_rel().saturating_sub(start).max(1) as f64;
        let cpu1 = rig.server_cpu_ns();
        let counts1 = metrics.and_then(|m| write_counts(m).ok());
        let deliveries = events * u64::from(n);
        let merged = rig.stats(true)?;
        check_stats(
            report,
            &format!("sustained {n} {mode:?}"),
            &merged.stats,
            deliveries,
        );
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            cpus.push((b - a) as f64 / deliveries as f64);
        }
        if let (Some((w0, f0)), Some((w1, f1))) = (counts0, counts1) {
            ratios.push((f1 - f0) as f64 / (w1 - w0).max(1) as f64);
        }
        rates.push(deliveries as f64 / (wall / 1e9));
        println!(
            "  {} repeat {}: {} requests, {events} events, {deliveries} deliveries at {}; server CPU {} \
             per delivery; {} frames per writev",
            mode.label(),
            repeat + 1,
            rig.plan.sustained_requests,
            report::rate(*rates.last().unwrap_or(&0.0)),
            cpus.last().map_or("n/a".into(), |&c| report::ns(c)),
            ratios.last().map_or("n/a".into(), |r| format!("{r:.2}")),
        );
    }
    let sample = rig.stats(false)?.stats.sample_payload;
    rig.close_all()?;
    let opt = |v: &Vec<f64>| (!v.is_empty()).then(|| median(v));
    Ok((
        Sustained {
            cpu_per_delivery: opt(&cpus),
            frames_per_write: opt(&ratios),
            rate: median(&rates),
        },
        sample,
    ))
}

/// `(ferrocast_ws_writes_total, ferrocast_ws_frames_written_total)` scraped from `addr`.
fn write_counts(addr: SocketAddr) -> Result<(u64, u64), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: loadgen\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .ok_or_else(|| format!("no {name} in the metrics"))
    };
    Ok((
        value("ferrocast_ws_writes_total")?,
        value("ferrocast_ws_frames_written_total")?,
    ))
}

/// Clients connect and subscribe one at a time; the accept floor serves the same sequence.
pub(crate) fn sequential(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    let n = rig.plan.sequential;
    println!("sequential connections: {n} clients, one handshake in flight");
    let (inflight, per_worker) = (rig.args.inflight, rig.args.per_worker);
    // One worker and one handshake in flight: the next client starts once one is subscribed.
    rig.args.inflight = 1;
    rig.args.per_worker = u32::MAX;
    let outcome = sequential_runs(rig, report, n);
    rig.args.inflight = inflight;
    rig.args.per_worker = per_worker;
    let (ours, walls, floors) = outcome?;
    let size = report::count(n);
    let ours = (!ours.is_empty()).then(|| median(&ours));
    let floor = (!floors.is_empty()).then(|| median(&floors));
    report.row(
        format!("sequential {size} (one handshake in flight): server CPU per connection"),
        ours.map_or("n/a".into(), report::ns),
        floor.map(|f| format!("accept floor {}", report::ns(f))),
        report::ratio(ours, floor),
    );
    report.row(
        format!("sequential {size}: wall time per connection (connect to subscribed)"),
        report::ns(median(&walls)),
        None,
        None,
    );
    Ok(())
}

type Runs = (Vec<f64>, Vec<f64>, Vec<f64>);

fn sequential_runs(rig: &mut Rig, report: &mut Report, n: u32) -> Result<Runs, String> {
    let (mut cpus, mut walls, mut floor_cpus) = (Vec::new(), Vec::new(), Vec::new());
    for repeat in 0..rig.plan.repeats {
        rig.fresh_server()?;
        let target = rig.ws.clone();
        let cpu0 = rig.server_cpu_ns();
        let c = rig.connect(
            &target,
            0,
            n,
            ChannelSpec::PerClient("loadgen-seq-".into()),
            false,
            true,
            TIMEOUT,
        )?;
        let cpu1 = rig.server_cpu_ns();
        if c.subscribed != n {
            report.fail(format!(
                "sequential: {} of {n} failed: {:?}",
                c.failed, c.errors
            ));
        }
        walls.push((c.end_ns - c.start_ns) as f64 / f64::from(n));
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            cpus.push((b - a) as f64 / f64::from(n));
        }
        println!(
            "  repeat {}: {} per connection (wall), server CPU per connection {}",
            repeat + 1,
            report::ns(*walls.last().unwrap_or(&0.0)),
            cpus.last().map_or("n/a".into(), |&c| report::ns(c))
        );
        let merged = rig.stats(true)?;
        check_stats(report, "sequential", &merged.stats, 0);
        rig.close_all()?;
        rig.check_server()?;
    }
    if rig.args.no_floors {
        return Ok((cpus, walls, floor_cpus));
    }
    for _ in 0..rig.plan.repeats {
        let (floor, addr) = spawn::spawn_floor(rig.pinned.then_some(rig.args.server_cpu()), None)?;
        let mut target = rig.ws.clone();
        target.addr = addr;
        target.tls = false;
        let cpu0 = super::sys::process_cpu_ns(floor.pid()).map(|c| c.0);
        let c = rig.connect(
            &target,
            0,
            n,
            ChannelSpec::PerClient("loadgen-seq-".into()),
            false,
            false,
            TIMEOUT,
        )?;
        let cpu1 = super::sys::process_cpu_ns(floor.pid()).map(|c| c.0);
        if c.subscribed != n {
            report.fail(format!(
                "sequential accept floor: {} of {n} failed: {:?}",
                c.failed, c.errors
            ));
        }
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            floor_cpus.push((b - a) as f64 / f64::from(n));
        }
        rig.close_all()?;
        floor.shutdown(&FloorCommand::Exit);
    }
    println!(
        "  accept floor: CPU per connection {}",
        report::ns(median(&floor_cpus))
    );
    Ok((cpus, walls, floor_cpus))
}
