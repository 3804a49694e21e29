//! The measured numbers behind the charts, kept next to the report's text rows: what each
//! scenario and the soak found, in plain units (nanoseconds, bytes, counts), so the charts are
//! drawn from the run's own data and can be written out as JSON beside them.

use super::histogram::Histogram;
use serde::{Deserialize, Serialize};

/// Everything a run measured that a chart can show.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Figures {
    /// Fan-out CPU per delivery by subscriber count, with the write floor.
    pub fanout: Vec<FanoutPoint>,
    /// Publish-to-receive latency distributions of the fan-out, one per subscriber count.
    pub latency: Vec<LatencyCdf>,
    /// Server RSS at each idle connection count.
    pub idle: Vec<IdlePoint>,
    /// Cluster fan-out CPU per delivery by subscriber count.
    pub cluster: Vec<ClusterPoint>,
    /// The soak's samples, every 10 s.
    pub soak: Vec<SoakSample>,
}

/// One fan-out size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct FanoutPoint {
    /// Subscribers on the channel.
    pub subscribers: u32,
    /// Whether the clients negotiated permessage-deflate.
    pub deflate: bool,
    /// Whether the clients spoke TLS (the floor then seals its frames too).
    #[serde(default)]
    pub tls: bool,
    /// Server CPU per delivery in the bursts (ns).
    pub burst_cpu_ns: Option<f64>,
    /// Server CPU per delivery, one publish at a time (ns).
    pub single_cpu_ns: Option<f64>,
    /// The write floor's CPU per write (ns).
    pub floor_cpu_ns: Option<f64>,
}

/// A latency distribution as a cumulative curve.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LatencyCdf {
    /// Subscribers on the channel.
    pub subscribers: u32,
    /// Whether the clients spoke TLS.
    #[serde(default)]
    pub tls: bool,
    /// `(latency ns, fraction of deliveries at or below it)`, rising.
    pub points: Vec<(f64, f64)>,
}

impl LatencyCdf {
    /// The cumulative curve of `histogram`.
    pub(crate) fn of(subscribers: u32, tls: bool, histogram: &Histogram) -> Self {
        LatencyCdf {
            subscribers,
            tls,
            points: histogram
                .cdf()
                .into_iter()
                .map(|(ns, share)| (ns as f64, share))
                .collect(),
        }
    }
}

/// Server memory at one idle connection count.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct IdlePoint {
    /// Subscribed idle connections.
    pub connections: u32,
    /// Server RSS with them (bytes, median over repeats).
    pub rss_bytes: f64,
    /// Server RSS before the first connection (bytes).
    pub base_rss_bytes: f64,
    /// Whether the clients spoke TLS.
    #[serde(default)]
    pub tls: bool,
}

/// One cluster fan-out size.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ClusterPoint {
    /// Subscribers, spread over the nodes.
    pub subscribers: u32,
    /// Per node (the first publishes): CPU per delivery to its own subscribers, burst (ns).
    pub node_burst_cpu_ns: Vec<f64>,
    /// All nodes' CPU over all deliveries, burst (ns).
    pub all_nodes_burst_cpu_ns: f64,
    /// One node without Redis, the same fan-out, burst (ns).
    pub single_node_burst_cpu_ns: f64,
}

/// One sample of the soak.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct SoakSample {
    /// Seconds since the churn started (negative: the baseline before it).
    pub t_s: f64,
    /// Server RSS (bytes).
    pub rss_bytes: u64,
    /// Open descriptors of the server.
    pub fds: u64,
    /// The engine's open connections (`ferrocast_connected`).
    pub connections: u64,
    /// Occupied channels, every kind (`ferrocast_channels`).
    pub channels: u64,
    /// Subscriptions, every kind (`ferrocast_subscriptions`).
    pub subscriptions: u64,
    /// Presence members (`ferrocast_presence_members`).
    pub presence_members: u64,
}
