//! Scenario (a), fan-out: N subscribers on one channel, publishes through the HTTP API one at
//! a time and in bursts; and the write floor the server's per-delivery cost is compared with
//! (over TLS, the TLS floor: the same frames sealed by rustls, and the plain figures beside).

use super::client::{stamp, EVENT_NAME};
use super::figures::{FanoutPoint, LatencyCdf};
use super::histogram::Histogram;
use super::http_pub::Event;
use super::ipc::{ChannelSpec, FloorCommand, FloorReply};
use super::report::{self, median, Report};
use super::rig::Rig;
use super::spawn;
use std::time::Duration;

const CHANNEL: &str = "loadgen-fanout";

/// What the server run of one size measured (medians over repeats).
#[derive(Default)]
struct Ours {
    p50: f64,
    p99: f64,
    p999: f64,
    single_cpu_per_delivery: Option<f64>,
    burst_cpu_per_delivery: Option<f64>,
    burst_rate: f64,
    /// Bytes the clients read off their sockets per delivery in the bursts.
    wire_per_delivery: f64,
    /// The share of deliveries that arrived compressed.
    compressed_share: f64,
    payload: Option<String>,
    /// Every one-at-a-time delivery's latency, over all repeats.
    latency: Histogram,
    /// The TLS cipher suite the clients negotiated.
    suite: Option<String>,
}

/// What the write floor of one size measured.
pub(crate) struct Floor {
    /// Wall time of one sweep over every socket.
    pub sweep_wall: f64,
    /// The writing thread's CPU per `write`.
    pub cpu_per_delivery: f64,
    /// The TLS cipher suite its clients negotiated (none over plain TCP).
    pub suite: Option<String>,
}

/// Runs the fan-out scenario at every configured size.
pub(crate) fn run(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    for n in rig.plan.fanout_sizes.clone() {
        let mode = rig.mode();
        println!("{mode}fan-out: {n} subscribers on one channel");
        rig.fresh_server()?;
        let ours = measure_server(rig, report, n)?;
        rig.check_server()?;
        let floor = match (&ours.payload, rig.args.no_floors) {
            (Some(payload), false) => Some(measure_floor(rig, report, n, payload)?),
            _ => None,
        };
        let size = report::count(n);
        let size = if rig.args.deflate {
            format!("{size} (permessage-deflate)")
        } else {
            size
        };
        let floor_name = if rig.floor_tls().is_some() {
            "TLS floor "
        } else {
            ""
        };
        let sweep = floor.as_ref().map(|f| f.sweep_wall);
        report.measured.fanout.push(FanoutPoint {
            subscribers: n,
            deflate: rig.args.deflate,
            tls: rig.secure,
            burst_cpu_ns: ours.burst_cpu_per_delivery,
            single_cpu_ns: ours.single_cpu_per_delivery,
            floor_cpu_ns: floor.as_ref().map(|f| f.cpu_per_delivery),
        });
        report
            .measured
            .latency
            .push(LatencyCdf::of(n, rig.secure, &ours.latency));
        report.row(
            format!("{mode}fan-out {size}: latency p50 / p99 / p99.9, one publish at a time"),
            format!(
                "{} / {} / {}",
                report::ns(ours.p50),
                report::ns(ours.p99),
                report::ns(ours.p999)
            ),
            sweep.map(|s| format!("{floor_name}one write sweep {}", report::ns(s))),
            report::ratio(Some(ours.p99), sweep),
        );
        let floor_cpu = floor.as_ref().map(|f| f.cpu_per_delivery);
        report.row(
            format!("{mode}fan-out {size}: server CPU per delivery, burst"),
            ours.burst_cpu_per_delivery
                .map_or("n/a (no --server-pid)".into(), report::ns),
            floor_cpu.map(|f| format!("{floor_name}{}", report::ns(f))),
            report::ratio(ours.burst_cpu_per_delivery, floor_cpu),
        );
        report.row(
            format!("{mode}fan-out {size}: server CPU per delivery, one at a time"),
            ours.single_cpu_per_delivery
                .map_or("n/a".into(), report::ns),
            floor_cpu.map(|f| format!("{floor_name}{}", report::ns(f))),
            report::ratio(ours.single_cpu_per_delivery, floor_cpu),
        );
        report.row(
            format!("{mode}fan-out {size}: bytes read per delivery, burst"),
            format!(
                "{:.0} B ({:.0}% compressed)",
                ours.wire_per_delivery,
                ours.compressed_share * 100.0
            ),
            None,
            None,
        );
        report.row(
            format!("{mode}fan-out {size}: deliveries/s, burst (wall)"),
            report::rate(ours.burst_rate),
            None,
            None,
        );
        let key = |what: &str| format!("fan-out {n} {what}");
        if rig.secure {
            against_plain(
                report,
                &format!("{mode}fan-out {size}"),
                &ours,
                floor.as_ref(),
                key,
            );
        } else {
            report.keep(key("burst"), ours.burst_cpu_per_delivery);
            report.keep(key("single"), ours.single_cpu_per_delivery);
            report.keep(key("floor"), floor_cpu);
        }
    }
    Ok(())
}

/// The TLS rows that set a TLS figure beside the plain one of the same run, and the check that
/// the server and the TLS floor negotiated the same cipher suite.
fn against_plain(
    report: &mut Report,
    name: &str,
    ours: &Ours,
    floor: Option<&Floor>,
    key: impl Fn(&str) -> String,
) {
    let suites = format!(
        "server {}, TLS floor {}",
        ours.suite.as_deref().unwrap_or("none"),
        floor
            .and_then(|f| f.suite.as_deref())
            .unwrap_or("not measured")
    );
    println!("  cipher suites: {suites}");
    if ours.suite.is_none() {
        report.fail(format!(
            "{name}: the clients negotiated no TLS cipher suite"
        ));
    }
    if let Some(floor) = floor {
        if floor.suite != ours.suite {
            report.fail(format!("{name}: different cipher suites: {suites}"));
        }
    }
    report.row(format!("{name}: cipher suite"), suites, None, None);
    let pairs = [
        (
            "burst",
            "server CPU per delivery, burst",
            ours.burst_cpu_per_delivery,
        ),
        (
            "single",
            "server CPU per delivery, one at a time",
            ours.single_cpu_per_delivery,
        ),
        (
            "floor",
            "floor CPU per delivery",
            floor.map(|f| f.cpu_per_delivery),
        ),
    ];
    for (what, label, tls) in pairs {
        let plain = report.figure(&key(what));
        if tls.is_none() || plain.is_none() {
            continue;
        }
        report.row(
            format!("{name}: {label}, TLS against plain"),
            tls.map_or("n/a".into(), report::ns),
            plain.map(|p| format!("plain {}", report::ns(p))),
            report::ratio(tls, plain),
        );
    }
}

fn measure_server(rig: &mut Rig, report: &mut Report, n: u32) -> Result<Ours, String> {
    let plan = rig.plan.clone();
    let timeout = Duration::from_secs(60);
    let target = rig.ws.clone();
    let connected = rig.connect(
        &target,
        0,
        n,
        ChannelSpec::Shared(CHANNEL.into()),
        false,
        true,
        timeout,
    )?;
    println!(
        "  {} subscribed in {}",
        connected.subscribed,
        report::ns((connected.end_ns - connected.start_ns) as f64)
    );
    if connected.subscribed != n {
        report.fail(format!(
            "fan-out {n}: {} of {n} clients failed to subscribe: {:?}",
            connected.failed, connected.errors
        ));
    }
    let pad = rig.args.payload_bytes;
    let mut seq = 0u64;
    // Warm-up publishes, not measured.
    for _ in 0..3 {
        seq += 1;
        publish(rig, seq, pad)?;
        check_await(rig, report, n, seq, timeout)?;
    }
    rig.stats(true)?;
    let (mut p50, mut p99, mut p999) = (Vec::new(), Vec::new(), Vec::new());
    let (mut single_cpu, mut burst_cpu, mut burst_rate) = (Vec::new(), Vec::new(), Vec::new());
    let (mut wire, mut compressed) = (Vec::new(), Vec::new());
    let mut sent_measured = 0u64;
    let mut latency = Histogram::new();
    for repeat in 0..plan.repeats {
        let cpu0 = rig.server_cpu_ns();
        let mut last_delivery = Vec::new();
        for _ in 0..plan.single_publishes {
            seq += 1;
            let sent = rig.now_rel();
            publish(rig, seq, pad)?;
            let awaited = check_await(rig, report, n, seq, timeout)?;
            last_delivery.push(awaited.saturating_sub(sent + rig.epoch_ns) as f64);
        }
        let cpu1 = rig.server_cpu_ns();
        let single = rig.stats(true)?;
        latency.merge(&single.latency.to_sparse());
        p50.push(single.latency.quantile(0.5) as f64);
        p99.push(single.latency.quantile(0.99) as f64);
        p999.push(single.latency.quantile(0.999) as f64);
        let deliveries = f64::from(plan.single_publishes) * f64::from(n);
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            single_cpu.push((b - a) as f64 / deliveries);
        }

        let cpu0 = rig.server_cpu_ns();
        let generator0 = rig.workers_cpu_ns();
        let start = rig.now_rel() + rig.epoch_ns;
        for _ in 0..plan.burst {
            seq += 1;
            publish(rig, seq, pad)?;
        }
        let done = check_await(rig, report, n, seq, timeout)?;
        let cpu1 = rig.server_cpu_ns();
        let generator_cpu = (rig.workers_cpu_ns() - generator0) as f64;
        let burst = rig.stats(true)?;
        let deliveries = f64::from(plan.burst) * f64::from(n);
        wire.push(burst.stats.wire_bytes as f64 / deliveries);
        compressed.push(burst.stats.compressed as f64 / deliveries);
        burst_rate.push(deliveries / ((done.saturating_sub(start)).max(1) as f64 / 1e9));
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            burst_cpu.push((b - a) as f64 / deliveries);
        }
        sent_measured += u64::from(plan.single_publishes + plan.burst);
        println!(
            "  repeat {}: one at a time p50 {} p99 {} p99.9 {} (last delivery p50 {}); burst of {} at {} \
             (p99 {}; server CPU {} and clients' CPU {} per delivery; {:.0} bytes read per delivery)",
            repeat + 1,
            report::ns(*p50.last().unwrap_or(&0.0)),
            report::ns(*p99.last().unwrap_or(&0.0)),
            report::ns(*p999.last().unwrap_or(&0.0)),
            report::ns(median(&last_delivery)),
            plan.burst,
            report::rate(*burst_rate.last().unwrap_or(&0.0)),
            report::ns(burst.latency.quantile(0.99) as f64),
            burst_cpu.last().map_or("n/a".into(), |&c| report::ns(c)),
            report::ns(generator_cpu / deliveries),
            wire.last().copied().unwrap_or(0.0),
        );
        check_stats(
            report,
            &format!("fan-out {n}"),
            &single.stats,
            u64::from(plan.single_publishes) * u64::from(n),
        );
        check_stats(
            report,
            &format!("fan-out {n} burst"),
            &burst.stats,
            u64::from(plan.burst) * u64::from(n),
        );
    }
    let last = rig.stats(false)?.stats;
    let (payload, suite) = (last.sample_payload, last.tls_suite);
    println!(
        "  {} publishes measured per subscriber, all in order",
        sent_measured
    );
    rig.close_all()?;
    let opt = |v: &Vec<f64>| (!v.is_empty()).then(|| median(v));
    Ok(Ours {
        p50: median(&p50),
        p99: median(&p99),
        p999: median(&p999),
        single_cpu_per_delivery: opt(&single_cpu),
        burst_cpu_per_delivery: opt(&burst_cpu),
        burst_rate: median(&burst_rate),
        wire_per_delivery: median(&wire),
        compressed_share: median(&compressed),
        payload,
        latency,
        suite,
    })
}

fn publish(rig: &mut Rig, seq: u64, pad: usize) -> Result<(), String> {
    let data = stamp(seq, rig.now_rel(), pad);
    rig.publisher.trigger(&Event {
        channel: CHANNEL,
        name: EVENT_NAME,
        data: &data,
    })
}

/// Waits for every subscriber to reach `target`; records a failure if some did not.
fn check_await(
    rig: &mut Rig,
    report: &mut Report,
    n: u32,
    target: u64,
    timeout: Duration,
) -> Result<u64, String> {
    let awaited = rig.await_all(target, timeout)?;
    if !awaited.complete {
        report.fail(format!(
            "fan-out {n}: after event {target}, {} subscribers were short by {} events in total",
            awaited.short_clients, awaited.missing
        ));
        return Err("events lost; stopping this scenario".into());
    }
    Ok(awaited.done_ns)
}

/// Records failures from merged counters: wrong delivery count, disorder, drops, errors.
pub(crate) fn check_stats(
    report: &mut Report,
    what: &str,
    stats: &super::ipc::Stats,
    expected: u64,
) {
    if stats.deliveries != expected {
        report.fail(format!(
            "{what}: {} deliveries, expected {expected}",
            stats.deliveries
        ));
    }
    if stats.order_errors > 0 {
        report.fail(format!(
            "{what}: {} events out of order or duplicated: {:?}",
            stats.order_errors, stats.notes
        ));
    }
    if stats.unexpected_closes > 0 {
        report.fail(format!(
            "{what}: {} clients dropped by the server: {:?}",
            stats.unexpected_closes, stats.notes
        ));
    }
    if stats.pusher_errors > 0 {
        report.fail(format!(
            "{what}: {} pusher:error messages: {:?}",
            stats.pusher_errors, stats.notes
        ));
    }
}

/// Measures the write floor for `n` sockets and frames carrying `payload`.
pub(crate) fn measure_floor(
    rig: &mut Rig,
    report: &mut Report,
    n: u32,
    payload: &str,
) -> Result<Floor, String> {
    let plan = rig.plan.clone();
    let timeout = Duration::from_secs(60);
    let (mut floor, addr) =
        spawn::spawn_floor(rig.pinned.then_some(rig.args.server_cpu()), rig.floor_tls())?;
    let mut target = rig.ws.clone();
    target.addr = addr;
    target.tls = rig.floor_tls().is_some();
    let connected = rig.connect(
        &target,
        0,
        n,
        ChannelSpec::Shared(CHANNEL.into()),
        false,
        false,
        timeout,
    )?;
    if connected.subscribed != n {
        report.fail(format!(
            "write floor {n}: only {} clients connected: {:?}",
            connected.subscribed, connected.errors
        ));
    }
    rig.stats(true)?;
    let mut sweeps = Vec::new();
    let mut cpu = Vec::new();
    let mut received = 0u64;
    let mut sweep = |rig: &mut Rig, count: u32| -> Result<(u64, Vec<u64>), String> {
        floor.send(&FloorCommand::Sweep {
            payload: payload.to_string(),
            sweeps: count,
        })?;
        let FloorReply::Swept {
            cpu_ns,
            sweep_wall_ns,
            ..
        } = floor.recv(timeout)?;
        received += u64::from(count);
        let awaited = rig.await_all(received, timeout)?;
        if !awaited.complete {
            return Err(format!(
                "write floor {n}: {} frames never arrived",
                awaited.missing
            ));
        }
        Ok((cpu_ns, sweep_wall_ns))
    };
    for _ in 0..plan.repeats {
        for _ in 0..plan.single_publishes {
            let (_, walls) = sweep(rig, 1)?;
            sweeps.extend(walls.iter().map(|&w| w as f64));
        }
        let (cpu_ns, _) = sweep(rig, plan.burst)?;
        cpu.push(cpu_ns as f64 / (f64::from(plan.burst) * f64::from(n)));
    }
    let suite = rig.stats(false)?.stats.tls_suite;
    rig.close_all()?;
    floor.shutdown(&FloorCommand::Exit);
    let result = Floor {
        sweep_wall: median(&sweeps),
        cpu_per_delivery: median(&cpu),
        suite,
    };
    println!(
        "  {}write floor: one sweep over {n} sockets {}, CPU per write {} ({}-byte frame)",
        if rig.floor_tls().is_some() {
            "TLS "
        } else {
            ""
        },
        report::ns(result.sweep_wall),
        report::ns(result.cpu_per_delivery),
        super::ws_client::server_text_frame(payload.as_bytes()).len()
    );
    Ok(result)
}
