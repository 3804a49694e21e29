//! The cluster scenarios: fan-out with subscribers spread over N nodes and publishes through
//! the first, next to the same fan-out against one node without Redis; and many subscribed
//! connections across the nodes reached by one publish.

use super::client::{stamp, EVENT_NAME};
use super::cluster::{self, Cluster, RedisProc};
use super::fanout::check_stats;
use super::figures::ClusterPoint;
use super::http_pub::{Event, Publisher};
use super::ipc::{ChannelSpec, WsTarget};
use super::report::{self, median, Report};
use super::rig::Rig;
use super::sys;
use std::time::Duration;

const FANOUT_CHANNEL: &str = "loadgen-cluster-fanout";
const WIDE_CHANNEL: &str = "loadgen-cluster-wide";
const FANOUT_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
/// Descriptors a node needs besides its clients (listener, poll, pipes, Redis links, logs).
const NODE_DESCRIPTOR_MARGIN: u64 = 200;

/// The servers one fan-out measurement runs against.
struct Servers<'a> {
    /// Where each node's clients connect.
    targets: &'a [WsTarget],
    /// Each node's process id, in the same order.
    pids: &'a [u32],
    /// Redis, in cluster mode.
    redis: Option<&'a RedisProc>,
}

/// What one fan-out measurement found (medians over repeats).
struct Spread {
    p50: f64,
    p99: f64,
    /// Per node: its CPU time per delivery to its own subscribers.
    single_cpu: Vec<f64>,
    burst_cpu: Vec<f64>,
    /// Every node's CPU time over every delivery.
    single_total: f64,
    burst_total: f64,
    /// Redis CPU time per publish.
    redis_single: Option<f64>,
    redis_burst: Option<f64>,
    /// Redis `PUBLISH` commands per HTTP publish (the nodes' heartbeats included).
    redis_publishes: Option<f64>,
}

/// CPU time of each process, or `None` for one that cannot be read.
fn cpu_of(pids: &[u32]) -> Vec<Option<u64>> {
    pids.iter()
        .map(|&p| sys::process_cpu_ns(p).map(|(ns, _)| ns))
        .collect()
}

fn delta(a: Option<u64>, b: Option<u64>) -> Option<f64> {
    Some(b?.checked_sub(a?)? as f64)
}

fn publish(publisher: &mut Publisher, rig: &Rig, channel: &str, seq: u64) -> Result<(), String> {
    let data = stamp(seq, rig.now_rel(), rig.args.payload_bytes);
    publisher.trigger(&Event {
        channel,
        name: EVENT_NAME,
        data: &data,
    })
}

/// Waits until every subscriber has event `seq`; a loss is a failure that stops the scenario.
fn await_seq(rig: &mut Rig, report: &mut Report, what: &str, seq: u64) -> Result<u64, String> {
    let awaited = rig.await_all(seq, FANOUT_TIMEOUT)?;
    if !awaited.complete {
        report.fail(format!(
            "{what}: after event {seq}, {} subscribers were short by {} events in total",
            awaited.short_clients, awaited.missing
        ));
        return Err("events lost; stopping this scenario".into());
    }
    Ok(awaited.done_ns)
}

/// The fan-out of `n` subscribers spread over `servers`, publishing through `publisher`:
/// warm-up, then per repeat publishes one at a time and a burst, as the single-node fan-out.
fn measure(
    rig: &mut Rig,
    report: &mut Report,
    what: &str,
    n: u32,
    servers: &Servers,
    publisher: &mut Publisher,
) -> Result<Spread, String> {
    let plan = rig.plan.clone();
    let nodes = servers.targets.len();
    let connected = rig.connect_spread(
        servers.targets,
        0,
        n,
        ChannelSpec::Shared(FANOUT_CHANNEL.into()),
        false,
        true,
        FANOUT_TIMEOUT,
    )?;
    if connected.subscribed != n {
        report.fail(format!(
            "{what}: {} of {n} clients failed to subscribe: {:?}",
            connected.failed, connected.errors
        ));
        rig.close_all()?;
        return Err("not every client subscribed".into());
    }
    let mut seq = 0u64;
    for _ in 0..3 {
        seq += 1;
        publish(publisher, rig, FANOUT_CHANNEL, seq)?;
        await_seq(rig, report, what, seq)?;
    }
    rig.stats(true)?;
    let mut with_redis: Vec<u32> = servers.pids.to_vec();
    with_redis.extend(servers.redis.map(|r| r.pid));
    let publish_calls = || servers.redis.and_then(RedisProc::publish_calls);
    let mut publishes_per_publish = Vec::new();
    let on_node = |i: usize| f64::from(cluster::share_of(n, nodes, i));
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    let (mut single, mut burst) = (vec![Vec::new(); nodes], vec![Vec::new(); nodes]);
    let (mut single_total, mut burst_total) = (Vec::new(), Vec::new());
    let (mut redis_single, mut redis_burst) = (Vec::new(), Vec::new());
    for repeat in 0..plan.repeats {
        for (count, is_burst) in [(plan.single_publishes, false), (plan.burst, true)] {
            let calls_before = publish_calls();
            let before = cpu_of(&with_redis);
            let first = seq + 1;
            for _ in 0..count {
                seq += 1;
                publish(publisher, rig, FANOUT_CHANNEL, seq)?;
                if !is_burst {
                    await_seq(rig, report, what, seq)?;
                }
            }
            await_seq(rig, report, what, seq)?;
            let after = cpu_of(&with_redis);
            if let (Some(a), Some(b)) = (calls_before, publish_calls()) {
                publishes_per_publish.push(b.saturating_sub(a) as f64 / f64::from(count));
            }
            let merged = rig.stats(true)?;
            check_stats(
                report,
                &format!("{what}, events {first}..={seq}"),
                &merged.stats,
                u64::from(count) * u64::from(n),
            );
            let (per_node, total, redis) = if is_burst {
                (&mut burst, &mut burst_total, &mut redis_burst)
            } else {
                p50.push(merged.latency.quantile(0.5) as f64);
                p99.push(merged.latency.quantile(0.99) as f64);
                (&mut single, &mut single_total, &mut redis_single)
            };
            let mut sum = 0.0;
            for i in 0..nodes {
                if let Some(d) = delta(before[i], after[i]) {
                    per_node[i].push(d / (f64::from(count) * on_node(i)).max(1.0));
                    sum += d;
                }
            }
            total.push(sum / (f64::from(count) * f64::from(n)));
            if servers.redis.is_some() {
                if let Some(d) = delta(before[nodes], after[nodes]) {
                    redis.push(d / f64::from(count));
                }
            }
        }
        println!(
            "  repeat {}: one at a time p50 {} p99 {}; CPU per delivery, all nodes: one at a time {}, burst {}{}",
            repeat + 1,
            report::ns(*p50.last().unwrap_or(&0.0)),
            report::ns(*p99.last().unwrap_or(&0.0)),
            report::ns(*single_total.last().unwrap_or(&0.0)),
            report::ns(*burst_total.last().unwrap_or(&0.0)),
            redis_burst
                .last()
                .map(|r| format!("; Redis per publish, burst {}", report::ns(*r)))
                .unwrap_or_default(),
        );
    }
    rig.close_all()?;
    let opt = |v: &Vec<f64>| (!v.is_empty()).then(|| median(v));
    Ok(Spread {
        p50: median(&p50),
        p99: median(&p99),
        single_cpu: single.iter().map(|v| median(v)).collect(),
        burst_cpu: burst.iter().map(|v| median(v)).collect(),
        single_total: median(&single_total),
        burst_total: median(&burst_total),
        redis_single: opt(&redis_single),
        redis_burst: opt(&redis_burst),
        redis_publishes: opt(&publishes_per_publish),
    })
}

fn start_cluster(rig: &Rig) -> Result<Cluster, String> {
    let bin = rig
        .args
        .spawn_server
        .clone()
        .ok_or("the cluster mode needs --spawn-server PATH")?;
    let nodes = rig.plan.cluster_nodes;
    if nodes == 0 {
        return Err("the cluster scenarios need --cluster N".into());
    }
    let cpus = cluster::node_cpus(rig.args.server_cpus.as_deref(), rig.cpus);
    let cpus = (!rig.args.no_pin).then_some(cpus.as_slice());
    Cluster::start(&bin, &rig.creds, nodes, cpus, rig.args.cluster_heartbeat_ms)
}

/// Node `i`'s figure with its ratio to the single node's.
fn per_node(values: &[f64], single: f64) -> String {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ratio = report::ratio(Some(v), Some(single))
                .map_or(String::new(), |r| format!(" ({r:.1}×)"));
            let role = if i == 0 { " (publishes)" } else { "" };
            format!("node {}{role} {}{ratio}", i + 1, report::ns(v))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Cluster fan-out at every configured size: the same fan-out against one node without Redis,
/// then against the cluster.
pub(crate) fn fanout(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    let nodes = rig.plan.cluster_nodes;
    for n in rig.plan.fanout_sizes.clone() {
        let size = report::count(n);
        let label = format!("cluster fan-out {size} over {nodes} nodes");
        println!("{label}: first one node without Redis");
        rig.fresh_server()?;
        let single_pid = rig.server_pid.ok_or("no single server to measure")?;
        let target = rig.ws.clone();
        let mut publisher = Publisher::new(
            target.addr,
            target.addr.to_string(),
            String::new(),
            rig.creds.clone(),
        );
        let alone = measure(
            rig,
            report,
            &format!("fan-out {size}, one node"),
            n,
            &Servers {
                targets: std::slice::from_ref(&target),
                pids: &[single_pid],
                redis: None,
            },
            &mut publisher,
        )?;
        rig.check_server()?;
        rig.stop_server();
        println!("{label}: Redis and {nodes} nodes, publishes through node 1");
        let mut cluster = start_cluster(rig)?;
        // Redis's own background work (cron, the nodes' heartbeats and pings), for context.
        let idle0 = sys::process_cpu_ns(cluster.redis.pid).map(|(ns, _)| ns);
        std::thread::sleep(Duration::from_secs(1));
        let idle1 = sys::process_cpu_ns(cluster.redis.pid).map(|(ns, _)| ns);
        let redis_idle = delta(idle0, idle1);
        let mut publisher = cluster.publisher(&rig.creds);
        let pids = cluster.node_pids();
        let targets = cluster.targets.clone();
        let spread = measure(
            rig,
            report,
            &label,
            n,
            &Servers {
                targets: &targets,
                pids: &pids,
                redis: Some(&cluster.redis),
            },
            &mut publisher,
        );
        let alive = cluster.check();
        cluster.stop();
        let spread = spread?;
        alive?;
        report.measured.cluster.push(ClusterPoint {
            subscribers: n,
            node_burst_cpu_ns: spread.burst_cpu.clone(),
            all_nodes_burst_cpu_ns: spread.burst_total,
            single_node_burst_cpu_ns: alone.burst_total,
        });
        report.row(
            format!("{label}: latency p50 / p99, one publish at a time"),
            format!("{} / {}", report::ns(spread.p50), report::ns(spread.p99)),
            Some(format!(
                "one node {} / {}",
                report::ns(alone.p50),
                report::ns(alone.p99)
            )),
            report::ratio(Some(spread.p99), Some(alone.p99)),
        );
        for (kind, cluster_nodes, total, single) in [
            (
                "burst",
                &spread.burst_cpu,
                spread.burst_total,
                alone.burst_total,
            ),
            (
                "one at a time",
                &spread.single_cpu,
                spread.single_total,
                alone.single_total,
            ),
        ] {
            report.row(
                format!("{label}: server CPU per delivery on each node, {kind}"),
                per_node(cluster_nodes, single),
                Some(format!("one node {}", report::ns(single))),
                None,
            );
            report.row(
                format!("{label}: all nodes' CPU per delivery, {kind}"),
                report::ns(total),
                Some(format!("one node {}", report::ns(single))),
                report::ratio(Some(total), Some(single)),
            );
        }
        report.row(
            format!("{label}: Redis CPU per publish, burst / one at a time"),
            format!(
                "{} / {}",
                spread.redis_burst.map_or("n/a".into(), report::ns),
                spread.redis_single.map_or("n/a".into(), report::ns)
            ),
            None,
            None,
        );
        report.row(
            format!("{label}: Redis PUBLISH commands per HTTP publish (heartbeats included)"),
            spread
                .redis_publishes
                .map_or("n/a".into(), |p| format!("{p:.2}")),
            None,
            None,
        );
        report.row(
            format!("{label}: Redis CPU while idle (cron, heartbeats), per second"),
            redis_idle.map_or("n/a".into(), report::ns),
            None,
            None,
        );
    }
    Ok(())
}

/// Many subscribed connections spread over the nodes (each node within its descriptor
/// limit), then publishes through node 1 that must reach every one of them exactly once.
pub(crate) fn connections(rig: &mut Rig, report: &mut Report) -> Result<(), String> {
    let total = rig.plan.cluster_connections;
    let nodes = rig.plan.cluster_nodes as usize;
    let label = format!(
        "cluster {} connections over {nodes} nodes",
        report::count(total)
    );
    println!("{label}: one channel, spread evenly, publishes through node 1");
    let limit = sys::raise_nofile_limit();
    let busiest = u64::from(cluster::share_of(total, nodes, 0));
    if busiest + NODE_DESCRIPTOR_MARGIN > limit {
        return Err(format!(
            "{label}: each node would hold up to {busiest} connections, but a process may \
             open only {limit} descriptors here; use more nodes"
        ));
    }
    rig.stop_server();
    let mut cluster = start_cluster(rig)?;
    let outcome = connections_on(rig, report, &label, total, &cluster);
    let alive = cluster.check();
    cluster.stop();
    outcome.and(alive)
}

fn connections_on(
    rig: &mut Rig,
    report: &mut Report,
    label: &str,
    total: u32,
    cluster: &Cluster,
) -> Result<(), String> {
    let nodes = cluster.nodes.len();
    let pids = cluster.node_pids();
    let rss = |pids: &[u32]| -> Vec<f64> {
        pids.iter()
            .map(|&p| sys::rss_bytes(p).unwrap_or(0) as f64)
            .collect()
    };
    let base = rss(&pids);
    let connected = rig.connect_spread(
        &cluster.targets,
        0,
        total,
        ChannelSpec::Shared(WIDE_CHANNEL.into()),
        false,
        true,
        CONNECT_TIMEOUT,
    )?;
    let took = connected.end_ns.saturating_sub(connected.start_ns) as f64;
    println!(
        "  {} of {total} subscribed in {} ({} failed)",
        connected.subscribed,
        report::ns(took),
        connected.failed
    );
    if connected.subscribed != total {
        report.fail(format!(
            "{label}: only {} of {total} subscribed ({} failed): {:?}",
            connected.subscribed, connected.failed, connected.errors
        ));
        rig.close_all()?;
        return Err("not every connection subscribed".into());
    }
    std::thread::sleep(Duration::from_secs(1));
    let grown = rss(&pids);
    let per_conn: Vec<f64> = (0..nodes)
        .map(|i| (grown[i] - base[i]) / f64::from(cluster::share_of(total, nodes, i)).max(1.0))
        .collect();
    for i in 0..nodes {
        println!(
            "  node {}: {} connections, RSS {} (+{}), {} per connection",
            i + 1,
            cluster::share_of(total, nodes, i),
            report::bytes(grown[i]),
            report::bytes(grown[i] - base[i]),
            report::bytes(per_conn[i])
        );
    }
    rig.stats(true)?;
    let mut publisher = cluster.publisher(&rig.creds);
    let (mut reach, mut p50, mut p99) = (Vec::new(), Vec::new(), Vec::new());
    let mut cpu = vec![Vec::new(); nodes];
    let publishes = rig.plan.repeats;
    for seq in 1..=u64::from(publishes) {
        let before = cpu_of(&pids);
        let sent = sys::mono_ns();
        publish(&mut publisher, rig, WIDE_CHANNEL, seq)?;
        let done = await_seq(rig, report, label, seq)?;
        let after = cpu_of(&pids);
        let merged = rig.stats(true)?;
        check_stats(
            report,
            &format!("{label}, publish {seq}"),
            &merged.stats,
            u64::from(total),
        );
        reach.push(done.saturating_sub(sent) as f64);
        p50.push(merged.latency.quantile(0.5) as f64);
        p99.push(merged.latency.quantile(0.99) as f64);
        for i in 0..nodes {
            if let Some(d) = delta(before[i], after[i]) {
                cpu[i].push(d / f64::from(cluster::share_of(total, nodes, i)).max(1.0));
            }
        }
        println!(
            "  publish {seq}: all {total} had it after {} (p50 {}, p99 {}), {} deliveries",
            report::ns(*reach.last().unwrap_or(&0.0)),
            report::ns(*p50.last().unwrap_or(&0.0)),
            report::ns(*p99.last().unwrap_or(&0.0)),
            merged.stats.deliveries
        );
    }
    rig.close_all()?;
    let each = |values: &[f64], unit: fn(f64) -> String| -> String {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| format!("node {} {}", i + 1, unit(v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.row(
        format!("{label}: time until all subscribed"),
        report::ns(took),
        None,
        None,
    );
    report.row(
        format!("{label}: server RSS per subscribed connection"),
        each(&per_conn, report::bytes),
        None,
        None,
    );
    report.row(
        format!("{label}: one publish, until all had it (latency p50 / p99)"),
        format!(
            "{} ({} / {})",
            report::ns(median(&reach)),
            report::ns(median(&p50)),
            report::ns(median(&p99))
        ),
        None,
        None,
    );
    let cpu_medians: Vec<f64> = cpu.iter().map(|v| median(v)).collect();
    report.row(
        format!("{label}: server CPU per delivery on each node, one publish"),
        each(&cpu_medians, report::ns),
        None,
        None,
    );
    Ok(())
}
