//! Scenarios (b) to (e): many channels with random triggers and batches, the connection storm
//! with its accept floor, idle memory per connection, and presence churn. The storm and idle
//! memory also run over TLS (`--tls`), against the TLS accept floor and the plain figures.

use super::client::{stamp, EVENT_NAME};
use super::fanout::check_stats;
use super::figures::IdlePoint;
use super::histogram::Histogram;
use super::http_pub::{Event, Publisher};
use super::ipc::{ChannelSpec, Command, FloorCommand, Reply, Targets};
use super::report::{self, median, Report};
use super::rig::Rig;
use super::spawn;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);
/// The RSS target per idle connection the table compares with.
const RSS_TARGET: f64 = 4096.0;

/// A small deterministic generator for the random publishes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// (b) Every connection on its own channel; random single triggers and batches of up to ten.
pub(crate) fn many_channels(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    let n = rig.plan.channels;
    println!("many channels: {n} connections, one channel each");
    rig.fresh_server()?;
    let target = rig.ws.clone();
    let connected = rig.connect(
        &target,
        0,
        n,
        ChannelSpec::PerClient("loadgen-ch-".into()),
        false,
        true,
        TIMEOUT,
    )?;
    if connected.subscribed != n {
        report.fail(format!(
            "many channels: {} of {n} failed to subscribe: {:?}",
            connected.failed, connected.errors
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("loadgen-ch-{i}")).collect();
    // Names of the same length that nobody subscribes to: the same requests, no deliveries.
    let unheard: Vec<String> = (0..n).map(|i| format!("loadgen-no-{i}")).collect();
    let mut seqs = vec![0u64; n as usize];
    let mut unheard_seqs = vec![0u64; n as usize];
    let mut rng = Rng(0x5EED_1234_ABCD);
    let mut unheard_rng = Rng(0x5EED_1234_ABCD);
    let pad = rig.args.payload_bytes;
    let (mut cpu_per_event, mut cpu_per_request) = (Vec::new(), Vec::new());
    let mut cpu_per_unheard = Vec::new();
    let (mut rates, mut p99s) = (Vec::new(), Vec::new());
    for repeat in 0..rig.plan.repeats {
        let cpu0 = rig.server_cpu_ns();
        let start = rig.now_rel();
        let epoch = rig.epoch_ns;
        let requests = rig.plan.channel_requests;
        let events = publish_random(
            &mut rig.publisher,
            &mut rng,
            &names,
            &mut seqs,
            pad,
            requests,
            epoch,
        )?;
        let shares = rig.shares(0, n);
        let awaited = rig.await_targets(
            |w| match shares.get(w) {
                Some(&(_, first, count)) => Targets::Each {
                    first,
                    values: seqs[first as usize..(first + u64::from(count)) as usize].to_vec(),
                },
                None => Targets::All(0),
            },
            TIMEOUT,
        )?;
        let cpu1 = rig.server_cpu_ns();
        if !awaited.complete {
            report.fail(format!(
                "many channels: {} clients short by {} events",
                awaited.short_clients, awaited.missing
            ));
        }
        let merged = rig.stats(true)?;
        check_stats(report, "many channels", &merged.stats, events);
        let wall = (awaited.done_ns - rig.epoch_ns)
            .saturating_sub(start)
            .max(1) as f64;
        rates.push(events as f64 / (wall / 1e9));
        p99s.push(merged.latency.quantile(0.99) as f64);
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            cpu_per_event.push((b - a) as f64 / events as f64);
            cpu_per_request.push((b - a) as f64 / f64::from(rig.plan.channel_requests));
        }
        // The same request mix again to channels with no subscribers (each request is
        // answered before the next is sent, so the CPU read afterwards has it all).
        let cpu2 = rig.server_cpu_ns();
        publish_random(
            &mut rig.publisher,
            &mut unheard_rng,
            &unheard,
            &mut unheard_seqs,
            pad,
            requests,
            epoch,
        )?;
        let cpu3 = rig.server_cpu_ns();
        if let (Some(a), Some(b)) = (cpu2, cpu3) {
            cpu_per_unheard.push((b - a) as f64 / f64::from(requests));
        }
        println!(
            "  repeat {}: {} requests, {events} events at {} (latency p50 {} p99 {}); \
             with no subscribers {} per request",
            repeat + 1,
            rig.plan.channel_requests,
            report::rate(*rates.last().unwrap_or(&0.0)),
            report::ns(merged.latency.quantile(0.5) as f64),
            report::ns(*p99s.last().unwrap_or(&0.0)),
            cpu_per_unheard
                .last()
                .map_or("n/a".into(), |&c| report::ns(c)),
        );
    }
    rig.close_all()?;
    rig.check_server()?;
    let floor_cpus = if rig.args.no_floors {
        Vec::new()
    } else {
        http_floor(rig, &names, pad)?
    };
    let size = report::count(n);
    let ours = (!cpu_per_request.is_empty()).then(|| median(&cpu_per_request));
    let floor = (!floor_cpus.is_empty()).then(|| median(&floor_cpus));
    report.row(
        format!("many channels {size}: server CPU per HTTP request, with its deliveries"),
        ours.map_or("n/a".into(), report::ns),
        floor.map(|f| format!("HTTP floor {}", report::ns(f))),
        report::ratio(ours, floor),
    );
    let unheard = (!cpu_per_unheard.is_empty()).then(|| median(&cpu_per_unheard));
    report.row(
        format!(
            "many channels {size}: server CPU per HTTP request, to channels with no subscribers"
        ),
        unheard.map_or("n/a".into(), report::ns),
        floor.map(|f| format!("HTTP floor {}", report::ns(f))),
        report::ratio(unheard, floor),
    );
    report.row(
        format!("many channels {size}: server CPU per event / per HTTP request (1–10 events)"),
        if cpu_per_event.is_empty() {
            "n/a".into()
        } else {
            format!(
                "{} / {}",
                report::ns(median(&cpu_per_event)),
                report::ns(median(&cpu_per_request))
            )
        },
        None,
        None,
    );
    report.row(
        format!("many channels {size}: events/s (wall), latency p99"),
        format!(
            "{}, {}",
            report::rate(median(&rates)),
            report::ns(median(&p99s))
        ),
        None,
        None,
    );
    Ok(())
}

/// Sends `requests` random publishes (half single events, the rest batches of 1–10 channels;
/// a single event goes out as a trigger three times in four) and returns the events sent.
fn publish_random(
    publisher: &mut Publisher,
    rng: &mut Rng,
    names: &[String],
    seqs: &mut [u64],
    pad: usize,
    requests: u32,
    epoch_ns: u64,
) -> Result<u64, String> {
    let n = names.len();
    let mut events = 0u64;
    for _ in 0..requests {
        let size = if rng.below(2) == 0 {
            1
        } else {
            1 + rng.below(10) as usize
        };
        let mut picked: Vec<usize> = Vec::with_capacity(size);
        while picked.len() < size.min(n) {
            let c = rng.below(n as u64) as usize;
            if !picked.contains(&c) {
                picked.push(c);
            }
        }
        let now = super::sys::mono_ns() - epoch_ns;
        let datas: Vec<String> = picked
            .iter()
            .map(|&c| {
                seqs[c] += 1;
                stamp(seqs[c], now, pad)
            })
            .collect();
        let batch: Vec<Event> = picked
            .iter()
            .zip(&datas)
            .map(|(&c, data)| Event {
                channel: &names[c],
                name: EVENT_NAME,
                data,
            })
            .collect();
        if batch.len() == 1 && rng.below(4) != 0 {
            publisher.trigger(&batch[0])?;
        } else {
            publisher.batch(&batch)?;
        }
        events += batch.len() as u64;
    }
    Ok(events)
}

/// The HTTP floor's CPU per request, once per repeat: the same request mix over one
/// keep-alive connection to a process that only reads, hashes, signs and answers.
fn http_floor(rig: &mut Rig, names: &[String], pad: usize) -> Result<Vec<f64>, String> {
    let mut cpus = Vec::new();
    let mut seqs = vec![0u64; names.len()];
    let mut rng = Rng(0x5EED_1234_ABCD);
    let requests = rig.plan.channel_requests;
    for _ in 0..rig.plan.repeats {
        let cpu = rig.pinned.then_some(rig.args.server_cpu());
        let (floor, addr) = spawn::spawn_http_floor(cpu, &rig.creds.secret)?;
        let mut publisher =
            Publisher::new(addr, addr.to_string(), String::new(), rig.creds.clone());
        let cpu0 = super::sys::process_cpu_ns(floor.pid()).map(|c| c.0);
        publish_random(
            &mut publisher,
            &mut rng,
            names,
            &mut seqs,
            pad,
            requests,
            rig.epoch_ns,
        )?;
        let cpu1 = super::sys::process_cpu_ns(floor.pid()).map(|c| c.0);
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            cpus.push((b - a) as f64 / f64::from(requests));
        }
        floor.shutdown(&FloorCommand::Exit);
    }
    println!(
        "  HTTP floor: CPU per request {}",
        if cpus.is_empty() {
            "n/a".to_string()
        } else {
            report::ns(median(&cpus))
        }
    );
    Ok(cpus)
}

/// (c) Every client connects and subscribes with a bounded number in flight.
pub(crate) fn storm(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    let n = rig.plan.storm;
    let mode = rig.mode();
    println!(
        "{mode}connection storm: {n} clients, {} in flight",
        rig.args.inflight
    );
    let (mut times, mut cpus) = (Vec::new(), Vec::new());
    for repeat in 0..rig.plan.repeats {
        rig.fresh_server()?;
        let target = rig.ws.clone();
        let cpu0 = rig.server_cpu_ns();
        let c = rig.connect(
            &target,
            0,
            n,
            ChannelSpec::PerClient("loadgen-storm-".into()),
            false,
            true,
            TIMEOUT,
        )?;
        let cpu1 = rig.server_cpu_ns();
        if c.subscribed != n {
            report.fail(format!("storm: {} of {n} failed: {:?}", c.failed, c.errors));
        }
        times.push((c.end_ns - c.start_ns) as f64);
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            cpus.push((b - a) as f64 / f64::from(n));
        }
        println!(
            "  repeat {}: all subscribed in {}, server CPU per connection {}",
            repeat + 1,
            report::ns(*times.last().unwrap_or(&0.0)),
            cpus.last().map_or("n/a".into(), |&c| report::ns(c))
        );
        let merged = rig.stats(true)?;
        check_stats(report, "storm", &merged.stats, 0);
        check_suite(report, rig.secure, "storm", &merged.stats);
        rig.close_all()?;
        rig.check_server()?;
    }
    let mut floor_cpus = Vec::new();
    if !rig.args.no_floors {
        for _ in 0..rig.plan.repeats {
            let (floor, addr) =
                spawn::spawn_floor(rig.pinned.then_some(rig.args.server_cpu()), rig.floor_tls())?;
            let mut target = rig.ws.clone();
            target.addr = addr;
            target.tls = rig.floor_tls().is_some();
            let cpu0 = super::sys::process_cpu_ns(floor.pid()).map(|c| c.0);
            let c = rig.connect(
                &target,
                0,
                n,
                ChannelSpec::PerClient("loadgen-storm-".into()),
                false,
                false,
                TIMEOUT,
            )?;
            let cpu1 = super::sys::process_cpu_ns(floor.pid()).map(|c| c.0);
            if c.subscribed != n {
                report.fail(format!(
                    "accept floor: {} of {n} failed: {:?}",
                    c.failed, c.errors
                ));
            }
            if let (Some(a), Some(b)) = (cpu0, cpu1) {
                floor_cpus.push((b - a) as f64 / f64::from(n));
            }
            check_suite(report, rig.secure, "accept floor", &rig.stats(true)?.stats);
            rig.close_all()?;
            floor.shutdown(&FloorCommand::Exit);
        }
        println!(
            "  {mode}accept floor: CPU per connection {}",
            report::ns(median(&floor_cpus))
        );
    }
    let size = report::count(n);
    report.row(
        format!(
            "{mode}storm {size} ({} in flight): time until all subscribed",
            rig.args.inflight
        ),
        report::ns(median(&times)),
        None,
        None,
    );
    let ours = (!cpus.is_empty()).then(|| median(&cpus));
    let floor = (!floor_cpus.is_empty()).then(|| median(&floor_cpus));
    report.row(
        format!("{mode}storm {size}: server CPU per connection"),
        ours.map_or("n/a".into(), report::ns),
        floor.map(|f| format!("{mode}accept floor {}", report::ns(f))),
        report::ratio(ours, floor),
    );
    let (key, floor_key) = (format!("storm {n}"), format!("storm {n} floor"));
    if rig.secure {
        for (label, tls, key) in [
            ("server CPU per connection", ours, key),
            ("accept floor CPU per connection", floor, floor_key),
        ] {
            if let (Some(tls), Some(plain)) = (tls, report.figure(&key)) {
                report.row(
                    format!("TLS storm {size}: {label}, TLS against plain"),
                    report::ns(tls),
                    Some(format!("plain {}", report::ns(plain))),
                    report::ratio(Some(tls), Some(plain)),
                );
            }
        }
    } else {
        report.keep(key, ours);
        report.keep(floor_key, floor);
    }
    Ok(())
}

/// Over TLS, a failure when the clients negotiated no cipher suite (they spoke plain TCP).
fn check_suite(report: &mut Report, secure: bool, what: &str, stats: &super::ipc::Stats) {
    if secure && stats.tls_suite.is_none() {
        report.fail(format!("{what}: no TLS cipher suite negotiated over --tls"));
    }
}

/// (d) Server memory per subscribed idle connection at increasing connection counts.
pub(crate) fn idle(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    let steps = rig.plan.idle_steps.clone();
    let mode = rig.mode();
    println!("{mode}idle memory at {steps:?} connections");
    let mut per_step: Vec<Vec<f64>> = vec![Vec::new(); steps.len()];
    let (mut rss_at, mut bases): (Vec<Vec<f64>>, Vec<f64>) =
        (vec![Vec::new(); steps.len()], Vec::new());
    for repeat in 0..rig.plan.repeats {
        rig.fresh_server()?;
        std::thread::sleep(Duration::from_millis(300));
        let Some(base) = rig.server_rss() else {
            println!("  no server process to measure (give --server-pid)");
            return Ok(());
        };
        bases.push(base as f64);
        let target = rig.ws.clone();
        let mut open = 0u32;
        for (i, &step) in steps.iter().enumerate() {
            let more = step.saturating_sub(open);
            let c = rig.connect(
                &target,
                u64::from(open),
                more,
                ChannelSpec::PerClient("loadgen-idle-".into()),
                false,
                true,
                TIMEOUT,
            )?;
            if c.subscribed != more {
                report.fail(format!(
                    "idle: {} of {more} failed at step {step}: {:?}",
                    c.failed, c.errors
                ));
            }
            open = step;
            std::thread::sleep(Duration::from_secs(1));
            let rss = rig.server_rss().unwrap_or(base);
            let per = (rss as f64 - base as f64) / f64::from(step);
            per_step[i].push(per);
            rss_at[i].push(rss as f64);
            println!(
                "  repeat {}: {step} idle connections, server RSS {} (+{}), {} per connection",
                repeat + 1,
                report::bytes(rss as f64),
                report::bytes(rss as f64 - base as f64),
                report::bytes(per)
            );
        }
        let merged = rig.stats(true)?;
        check_stats(report, "idle", &merged.stats, 0);
        check_suite(report, rig.secure, "idle", &merged.stats);
        rig.close_all()?;
        rig.check_server()?;
    }
    let figures: Vec<String> = steps
        .iter()
        .zip(&per_step)
        .map(|(&s, v)| format!("{} @{}", report::bytes(median(v)), report::count(s)))
        .collect();
    let largest = per_step.last().map(|v| median(v));
    report.measured.idle.extend(
        steps
            .iter()
            .zip(&rss_at)
            .map(|(&connections, rss)| IdlePoint {
                connections,
                rss_bytes: median(rss),
                base_rss_bytes: median(&bases),
                tls: rig.secure,
            }),
    );
    report.row(
        format!("{mode}idle: server RSS per subscribed connection"),
        figures.join(", "),
        Some(format!("target {}", report::bytes(RSS_TARGET))),
        report::ratio(largest, Some(RSS_TARGET)),
    );
    let key = |step: u32| format!("idle {step}");
    for (&step, values) in steps.iter().zip(&per_step) {
        let ours = (!values.is_empty()).then(|| median(values));
        if !rig.secure {
            report.keep(key(step), ours);
        } else if let (Some(tls), Some(plain)) = (ours, report.figure(&key(step))) {
            report.row(
                format!(
                    "TLS idle @{}: server RSS per subscribed connection, TLS against plain",
                    report::count(step)
                ),
                format!(
                    "{} (+{} for TLS)",
                    report::bytes(tls),
                    report::bytes(tls - plain)
                ),
                Some(format!("plain {}", report::bytes(plain))),
                report::ratio(Some(tls), Some(plain)),
            );
        }
    }
    Ok(())
}

/// (e) One presence channel with many members; one member at a time leaves and joins again.
pub(crate) fn presence(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    let n = rig.plan.presence_members;
    let rounds = rig.plan.presence_rounds;
    println!("presence churn: {n} members, {rounds} leave/join rounds");
    rig.fresh_server()?;
    let target = rig.ws.clone();
    // The whole channel lives in one worker, which drives the rounds.
    let per_worker = rig.args.per_worker;
    rig.args.per_worker = u32::MAX;
    let connected = rig.connect(
        &target,
        0,
        n,
        ChannelSpec::Shared("presence-loadgen".into()),
        true,
        true,
        TIMEOUT,
    );
    rig.args.per_worker = per_worker;
    let connected = connected?;
    if connected.subscribed != n {
        report.fail(format!(
            "presence: {} of {n} failed to join: {:?}",
            connected.failed, connected.errors
        ));
        rig.close_all()?;
        return Ok(());
    }
    let (mut cpu_per_op, mut round_p50) = (Vec::new(), Vec::new());
    for repeat in 0..rig.plan.repeats {
        let cpu0 = rig.server_cpu_ns();
        let reply = rig.ask(
            0,
            &Command::Churn {
                rounds,
                timeout_ms: TIMEOUT.as_millis() as u64,
            },
            TIMEOUT,
        )?;
        let cpu1 = rig.server_cpu_ns();
        let Reply::Churned {
            rounds: done,
            added,
            removed,
            expected,
            members_ok,
            round_latency,
            ..
        } = reply
        else {
            return Err(format!("worker 0: unexpected answer {reply:?}"));
        };
        let mut latency = Histogram::new();
        latency.merge(&round_latency);
        if done != rounds || added != expected || removed != expected || !members_ok {
            report.fail(format!(
                "presence: {done} of {rounds} rounds; member_added {added}, member_removed {removed}, \
                 expected {expected} each; member lists consistent: {members_ok}"
            ));
        }
        if let (Some(a), Some(b)) = (cpu0, cpu1) {
            cpu_per_op.push((b - a) as f64 / (2.0 * f64::from(done.max(1))));
        }
        round_p50.push(latency.quantile(0.5) as f64);
        println!(
            "  repeat {}: {done} rounds, member_added {added} = member_removed {removed} (expected {expected}), \
             round p50 {} p99 {}",
            repeat + 1,
            report::ns(latency.quantile(0.5) as f64),
            report::ns(latency.quantile(0.99) as f64)
        );
    }
    let merged = rig.stats(true)?;
    check_stats(report, "presence", &merged.stats, 0);
    rig.close_all()?;
    rig.check_server()?;
    report.row(
        format!(
            "presence {n} members: server CPU per leave or join (with its {} notifications)",
            n - 1
        ),
        if cpu_per_op.is_empty() {
            "n/a".into()
        } else {
            report::ns(median(&cpu_per_op))
        },
        None,
        None,
    );
    report.row(
        format!(
            "presence {n} members: leave+join round until all {} others saw both",
            n - 1
        ),
        report::ns(median(&round_p50)),
        None,
        None,
    );
    Ok(())
}
