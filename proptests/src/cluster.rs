//! The reference model extended to a cluster: random operations over the three nodes of a
//! [`ClusterSim`], with partitions, node deaths, restarts and bus delays, checked after every
//! step and, once the bus is quiet, against what the cluster as a whole must show.
//!
//! Checked after every step (these hold at every instant, whatever the bus does):
//! - no connection receives an app event twice (each publish and client event carries a
//!   unique `id`), nor one for a channel it is not subscribed to, nor one it was excluded
//!   from (`socket_id`) or sent itself;
//! - nothing reaches a closed connection (the simulator panics if it does) and the engine
//!   closes or refuses nobody (every operation is valid);
//! - every presence observer's story is balanced: a user is never removed before it was
//!   added, never added while present.
//!
//! Checked once the bus is quiet ([`ClusterOp::Settle`] and at the end: every partition healed,
//! time advanced past the bus delays and `node_timeout`):
//! - every publish and client event reached every eligible subscriber exactly once: the
//!   subscribers of the origin node always (local fan-out goes on during an outage), those of
//!   other nodes when the cluster was whole from the publish until it was delivered;
//!   eligible means subscribed when it was sent and continuously since (a presence
//!   subscription counts from its `subscription_succeeded`, which a cluster node sends when
//!   the join's bus echo is back);
//! - every presence observer's view, and `GET /channels/{ch}/users` on every live node, equal
//!   the model's roster: the distinct users of the channel's live subscribers cluster-wide,
//!   so no ghost is left by a dead node's members once `node_timeout` has passed;
//! - `GET /channels/news` counts every live subscriber on every node.

use ferrocast_engine::cluster::sim::ClusterSim;
use ferrocast_engine::sim::Message;
use ferrocast_engine::{Config, ConnId};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Nodes in the simulated cluster.
pub const NODES: usize = 3;
/// How often a node says it is alive (short, so a death is noticed in short runs).
pub const HEARTBEAT_MS: u64 = 100;
/// Silence after which a node is dropped.
pub const NODE_TIMEOUT_MS: u64 = 500;
/// Most live connections kept; further connects are skipped.
pub const MAX_LIVE: usize = 12;
/// User ids for presence members (few, so tabs of one user meet on several nodes).
pub const USERS: [&str; 3] = ["ua", "ub", "uc"];

/// The channels operations meet on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterChannel {
    /// `news`.
    Public,
    /// `private-a` (client events allowed).
    Private,
    /// `presence-a`.
    Presence,
}

impl ClusterChannel {
    /// The channel's name.
    pub fn name(self) -> &'static str {
        match self {
            ClusterChannel::Public => "news",
            ClusterChannel::Private => "private-a",
            ClusterChannel::Presence => "presence-a",
        }
    }
}

/// One step of a cluster scenario; indexes wrap around what is live when the step runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterOp {
    /// Open a connection on a node.
    Connect {
        /// Node index (wraps).
        node: u8,
    },
    /// Subscribe a live connection (presence: as `USERS[user]`).
    Subscribe {
        /// Index into the live connections.
        conn: u8,
        /// The channel.
        channel: ClusterChannel,
        /// Index into [`USERS`].
        user: u8,
    },
    /// Unsubscribe a live connection from a channel it is on.
    Unsubscribe {
        /// Index into the live connections.
        conn: u8,
        /// The channel.
        channel: ClusterChannel,
    },
    /// The client closes the connection.
    Disconnect {
        /// Index into the live connections.
        conn: u8,
    },
    /// `POST /events` through a node, optionally excluding a live connection's socket.
    Publish {
        /// Node index (wraps around the live nodes).
        node: u8,
        /// The channel.
        channel: ClusterChannel,
        /// Index into the live connections of the one to exclude.
        exclude: Option<u8>,
    },
    /// A `client-` event from a live connection on a channel it is subscribed to.
    ClientEvent {
        /// Index into the live connections.
        conn: u8,
        /// The channel (private or presence).
        channel: ClusterChannel,
    },
    /// Time passes.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// Every delivery from now on takes `base_ms` plus up to `jitter_ms`.
    SetDelay {
        /// The fixed part.
        base_ms: u8,
        /// The random part.
        jitter_ms: u8,
    },
    /// Every delivery from now on is lost with this probability (Redis dropping a slow
    /// subscriber's messages); a settle ends it.
    SetLoss {
        /// Percent.
        percent: u8,
    },
    /// Cut a live node's bus link (`BusDown`).
    Partition {
        /// Node index (wraps).
        node: u8,
    },
    /// Restore a cut link (`BusUp`).
    Heal {
        /// Node index (wraps).
        node: u8,
    },
    /// `kill -9` a node: its connections vanish with it.
    Kill {
        /// Node index (wraps).
        node: u8,
    },
    /// Start a dead node again, empty.
    Restart {
        /// Node index (wraps).
        node: u8,
    },
    /// Heal every link, let the bus go quiet, and check the cluster-wide properties.
    Settle,
}

/// The config every node runs: one app with client events, no rate limits in the way, and no
/// server pings within a run (the fake clients never answer them).
pub fn config() -> Config {
    let mut config = Config {
        activity_timeout_secs: 3_600,
        ..Config::default()
    };
    config.cluster.heartbeat_ms = HEARTBEAT_MS;
    config.cluster.node_timeout_ms = NODE_TIMEOUT_MS;
    let app = &mut config.apps[0];
    app.client_events = true;
    app.client_event_rate_per_sec = 10_000;
    app.client_event_burst = 10_000;
    config
}

/// Runs `ops` on a fresh three-node cluster seeded with `seed`, then settles and checks.
pub fn run(seed: u64, ops: &[ClusterOp]) -> Result<(), String> {
    let mut harness = ClusterHarness::new(seed);
    for (i, op) in ops.iter().enumerate() {
        harness
            .step(op)
            .map_err(|e| format!("step {i} ({op:?}) broke an invariant:\n{e}"))?;
    }
    harness
        .settle()
        .map_err(|e| format!("once the bus was quiet after the ops:\n{e}"))
}

/// One subscription: its serial (a resubscription is a new one) and presence user.
#[derive(Clone, Debug)]
struct Subscription {
    serial: u64,
    user: Option<String>,
    /// Told `subscription_succeeded` (at once but for presence, whose answer may wait).
    acknowledged: bool,
}

/// One live connection as the model sees it.
#[derive(Debug)]
struct LiveConn {
    node: usize,
    conn: ConnId,
    socket_id: String,
    channels: BTreeMap<String, Subscription>,
    /// Ids of the app events received.
    seen: BTreeSet<u64>,
    /// Presence channel → the roster as told to this connection.
    views: BTreeMap<String, BTreeSet<String>>,
}

/// An app event sent, and who must or must not get it.
#[derive(Debug)]
struct Sent {
    channel: String,
    origin: usize,
    at: Duration,
    /// Whether every live node had its link up, and nothing was being lost, when it was sent.
    whole: bool,
    /// Who must never receive it (the excluded socket or the client event's sender).
    never: Option<u64>,
    /// Who was subscribed when it was sent, with the subscription's serial.
    eligible: Vec<(u64, u64)>,
}

/// A [`ClusterSim`] and the model beside it.
pub struct ClusterHarness {
    cluster: ClusterSim,
    alive: [bool; NODES],
    partitioned: [bool; NODES],
    /// Harness handle → connection.
    conns: BTreeMap<u64, LiveConn>,
    next_handle: u64,
    next_serial: u64,
    next_id: u64,
    sent: BTreeMap<u64, Sent>,
    elapsed: Duration,
    /// The longest a delivery may have taken with any delay set so far.
    max_delay: Duration,
    /// Instants at which a link was cut, a node killed, or loss began or ended.
    disruptions: Vec<Duration>,
    /// Whether deliveries are being lost.
    lossy: bool,
}

/// The simulator's initial delivery delay (base 2 ms plus up to 3 ms).
const INITIAL_MAX_DELAY: Duration = Duration::from_millis(5);

impl ClusterHarness {
    /// A fresh cluster of [`NODES`] nodes on [`config`].
    pub fn new(seed: u64) -> Self {
        ClusterHarness {
            cluster: ClusterSim::new(config(), NODES, seed),
            alive: [true; NODES],
            partitioned: [false; NODES],
            conns: BTreeMap::new(),
            next_handle: 1,
            next_serial: 1,
            next_id: 1,
            sent: BTreeMap::new(),
            elapsed: Duration::ZERO,
            max_delay: INITIAL_MAX_DELAY,
            disruptions: Vec::new(),
            lossy: false,
        }
    }

    /// Applies one operation and checks the invariants that hold at every instant.
    pub fn step(&mut self, op: &ClusterOp) -> Result<(), String> {
        match *op {
            ClusterOp::Connect { node } => self.connect(node as usize % NODES),
            ClusterOp::Subscribe {
                conn,
                channel,
                user,
            } => {
                if let Some(handle) = self.pick(conn) {
                    self.subscribe(handle, channel, USERS[user as usize % USERS.len()]);
                }
            }
            ClusterOp::Unsubscribe { conn, channel } => {
                if let Some(handle) = self.pick(conn) {
                    self.unsubscribe(handle, channel.name());
                }
            }
            ClusterOp::Disconnect { conn } => {
                if let Some(handle) = self.pick(conn) {
                    let live = self.conns.remove(&handle).expect("picked");
                    self.cluster.node(live.node).disconnect(live.conn);
                }
            }
            ClusterOp::Publish {
                node,
                channel,
                exclude,
            } => {
                let exclude = exclude.and_then(|i| self.pick(i));
                if let Some(node) = self.pick_node(node) {
                    self.publish(node, channel.name(), exclude)?;
                }
            }
            ClusterOp::ClientEvent { conn, channel } => {
                if let Some(handle) = self.pick(conn) {
                    self.client_event(handle, channel.name());
                }
            }
            ClusterOp::Advance { ms } => self.run_for(Duration::from_millis(u64::from(ms))),
            ClusterOp::SetDelay { base_ms, jitter_ms } => {
                let base = Duration::from_millis(u64::from(base_ms));
                self.cluster.set_delay(base, u64::from(jitter_ms));
                let longest = base + Duration::from_millis(u64::from(jitter_ms));
                self.max_delay = self.max_delay.max(longest);
            }
            ClusterOp::SetLoss { percent } => self.set_loss(percent.min(50)),
            ClusterOp::Partition { node } => {
                let node = node as usize % NODES;
                if self.alive[node] && !self.partitioned[node] {
                    self.partitioned[node] = true;
                    self.disruptions.push(self.elapsed);
                    self.cluster.partition(node);
                }
            }
            ClusterOp::Heal { node } => {
                let node = node as usize % NODES;
                if self.alive[node] && self.partitioned[node] {
                    self.partitioned[node] = false;
                    self.cluster.heal(node);
                }
            }
            ClusterOp::Kill { node } => {
                let node = node as usize % NODES;
                if self.alive[node] {
                    self.alive[node] = false;
                    self.partitioned[node] = false;
                    self.disruptions.push(self.elapsed);
                    self.cluster.kill(node);
                    self.conns.retain(|_, c| c.node != node);
                }
            }
            ClusterOp::Restart { node } => {
                let node = node as usize % NODES;
                if !self.alive[node] {
                    self.alive[node] = true;
                    self.cluster.restart(node);
                }
            }
            ClusterOp::Settle => return self.settle(),
        }
        self.drain()
    }

    /// Heals every link, lets the bus go quiet, and checks the cluster-wide properties.
    pub fn settle(&mut self) -> Result<(), String> {
        self.set_loss(0);
        for node in 0..NODES {
            if self.alive[node] && self.partitioned[node] {
                self.partitioned[node] = false;
                self.cluster.heal(node);
            }
        }
        self.drain()?;
        // Past every delivery, a node's death (node_timeout plus the heartbeat that notices
        // it) and the snapshots exchanged after a heal.
        let quiet = self.max_delay * 4 + Duration::from_millis(NODE_TIMEOUT_MS + 3 * HEARTBEAT_MS);
        self.run_for(quiet);
        self.drain()?;
        self.check_exactly_once()?;
        self.check_rosters()
    }

    /// Loss starting or ending is a disruption: what was in flight may be lost.
    fn set_loss(&mut self, percent: u8) {
        if percent > 0 || self.lossy {
            self.disruptions.push(self.elapsed);
        }
        self.lossy = percent > 0;
        self.cluster.set_loss(u64::from(percent));
    }

    fn pick(&self, index: u8) -> Option<u64> {
        if self.conns.is_empty() {
            return None;
        }
        let at = index as usize % self.conns.len();
        self.conns.keys().nth(at).copied()
    }

    fn pick_node(&self, index: u8) -> Option<usize> {
        let start = index as usize % NODES;
        (0..NODES)
            .map(|i| (start + i) % NODES)
            .find(|&n| self.alive[n])
    }

    fn run_for(&mut self, by: Duration) {
        self.cluster.run_for(by);
        self.elapsed += by;
    }

    fn connect(&mut self, node: usize) {
        if !self.alive[node] || self.conns.len() >= MAX_LIVE {
            return;
        }
        let sim = self.cluster.node(node);
        let conn = sim.connect("app-key");
        let socket_id = sim.socket_id(conn);
        let handle = self.next_handle;
        self.next_handle += 1;
        self.conns.insert(
            handle,
            LiveConn {
                node,
                conn,
                socket_id,
                channels: BTreeMap::new(),
                seen: BTreeSet::new(),
                views: BTreeMap::new(),
            },
        );
    }

    fn subscribe(&mut self, handle: u64, channel: ClusterChannel, user: &str) {
        let serial = self.next_serial;
        let live = self.conns.get_mut(&handle).expect("picked");
        let name = channel.name();
        if live.channels.contains_key(name) {
            return;
        }
        self.next_serial += 1;
        let sim = self.cluster.node(live.node);
        let (data, user) = match channel {
            ClusterChannel::Public => (json!({ "channel": name }), None),
            ClusterChannel::Private => {
                let auth = sim.private_auth(live.conn, name);
                (json!({ "channel": name, "auth": auth }), None)
            }
            ClusterChannel::Presence => {
                let channel_data =
                    json!({ "user_id": user, "user_info": { "name": user } }).to_string();
                let auth = sim.presence_auth(live.conn, name, &channel_data);
                let data = json!({ "channel": name, "auth": auth, "channel_data": channel_data });
                (data, Some(user.to_owned()))
            }
        };
        live.channels.insert(
            name.to_owned(),
            Subscription {
                serial,
                acknowledged: user.is_none(),
                user,
            },
        );
        sim.send_json(
            live.conn,
            json!({ "event": "pusher:subscribe", "data": data }),
        );
    }

    fn unsubscribe(&mut self, handle: u64, name: &str) {
        let live = self.conns.get_mut(&handle).expect("picked");
        if live.channels.remove(name).is_none() {
            return;
        }
        live.views.remove(name);
        let text = json!({ "event": "pusher:unsubscribe", "data": { "channel": name } });
        self.cluster.node(live.node).send_json(live.conn, text);
    }

    /// Who is subscribed to `channel` now, with their subscriptions' serials.
    fn subscribers(&self, channel: &str) -> Vec<(u64, u64)> {
        self.conns
            .iter()
            .filter_map(|(handle, c)| {
                c.channels
                    .get(channel)
                    .filter(|s| s.acknowledged)
                    .map(|s| (*handle, s.serial))
            })
            .collect()
    }

    fn whole(&self) -> bool {
        !self.lossy && (0..NODES).all(|n| !self.alive[n] || !self.partitioned[n])
    }

    fn record(&mut self, channel: &str, origin: usize, never: Option<u64>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let sent = Sent {
            channel: channel.to_owned(),
            origin,
            at: self.elapsed,
            whole: self.whole(),
            never,
            eligible: self.subscribers(channel),
        };
        self.sent.insert(id, sent);
        id
    }

    fn publish(&mut self, node: usize, channel: &str, exclude: Option<u64>) -> Result<(), String> {
        let id = self.record(channel, node, exclude);
        let mut body = json!({
            "name": "e",
            "channel": channel,
            "data": json!({ "id": id }).to_string(),
        });
        if let Some(excluded) = exclude {
            body["socket_id"] = self.conns[&excluded].socket_id.clone().into();
        }
        let (status, answer) = self.cluster.node(node).signed_http(
            "POST",
            "/apps/app-id/events",
            &[],
            &body.to_string(),
        );
        if status != 200 {
            return Err(format!(
                "publish through node {node} answered {status}: {answer}"
            ));
        }
        Ok(())
    }

    fn client_event(&mut self, handle: u64, channel: &str) {
        let live = &self.conns[&handle];
        if channel == "news" || !live.channels.contains_key(channel) {
            return;
        }
        let (node, conn) = (live.node, live.conn);
        let id = self.record(channel, node, Some(handle));
        let text = json!({ "event": "client-e", "channel": channel, "data": { "id": id } });
        self.cluster.node(node).send_json(conn, text);
    }

    /// Takes what every live connection received and checks it against the model.
    fn drain(&mut self) -> Result<(), String> {
        let handles: Vec<u64> = self.conns.keys().copied().collect();
        for handle in handles {
            let (node, conn) = (self.conns[&handle].node, self.conns[&handle].conn);
            let sim = self.cluster.node(node);
            if let Some(closed) = sim.closed(conn) {
                return Err(format!("node {node} closed {conn:?}: {closed:?}"));
            }
            for message in sim.take(conn) {
                self.receive(handle, &message)
                    .map_err(|e| format!("{conn:?} on node {node}: {e}\n({message:?})"))?;
            }
        }
        Ok(())
    }

    fn receive(&mut self, handle: u64, message: &Message) -> Result<(), String> {
        let live = self.conns.get_mut(&handle).expect("live");
        let channel = message.channel.clone().unwrap_or_default();
        match message.event.as_str() {
            "e" | "client-e" => {
                let id = message.data["id"]
                    .as_u64()
                    .ok_or("an app event without its id")?;
                let sent = self.sent.get(&id).ok_or("an event nobody sent")?;
                if sent.channel != channel {
                    return Err(format!("event {id} came on the wrong channel"));
                }
                if !live.channels.contains_key(&channel) {
                    return Err(format!("event {id} on {channel}, which it is not on"));
                }
                if sent.never == Some(handle) {
                    return Err(format!("event {id} reached its sender or excluded socket"));
                }
                if !live.seen.insert(id) {
                    return Err(format!("event {id} delivered twice"));
                }
            }
            "pusher_internal:subscription_succeeded" if channel.starts_with("presence-") => {
                let ids = message.data["presence"]["ids"]
                    .as_array()
                    .ok_or("presence ids missing")?;
                let view = ids
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or("a non-string id"))
                    .collect::<Result<BTreeSet<String>, _>>()?;
                if live.views.insert(channel.clone(), view).is_some() {
                    return Err(format!("subscription_succeeded twice on {channel}"));
                }
                if let Some(subscription) = live.channels.get_mut(&channel) {
                    subscription.acknowledged = true;
                }
            }
            "pusher_internal:member_added" | "pusher_internal:member_removed" => {
                let user = message.data["user_id"]
                    .as_str()
                    .ok_or("a member event without user_id")?
                    .to_owned();
                let view = live
                    .views
                    .get_mut(&channel)
                    .ok_or_else(|| format!("a member event on {channel} before its roster"))?;
                if message.event.ends_with("added") {
                    if !view.insert(user.clone()) {
                        return Err(format!("{user} added twice on {channel}"));
                    }
                } else if !view.remove(&user) {
                    return Err(format!("{user} removed from {channel} before being added"));
                }
            }
            "pusher:error" | "pusher_internal:subscription_error" | "pusher:subscription_error" => {
                return Err(format!("refused: {}", message.raw))
            }
            _ => {}
        }
        Ok(())
    }

    /// Every event reached every eligible subscriber exactly once (duplicates are caught as
    /// they arrive); forgets the events checked.
    fn check_exactly_once(&mut self) -> Result<(), String> {
        for (id, sent) in std::mem::take(&mut self.sent) {
            let undisturbed = sent.whole
                && !self
                    .disruptions
                    .iter()
                    .any(|&d| d >= sent.at && d <= sent.at + self.max_delay);
            for (handle, serial) in &sent.eligible {
                if sent.never == Some(*handle) {
                    continue;
                }
                let Some(live) = self.conns.get(handle) else {
                    continue;
                };
                let continuous = live
                    .channels
                    .get(&sent.channel)
                    .is_some_and(|s| s.serial == *serial);
                let reachable = live.node == sent.origin || undisturbed;
                if continuous && reachable && !live.seen.contains(&id) {
                    return Err(format!(
                        "event {id} on {} from node {} (at {:?}, whole: {}) never reached {:?} on node {}",
                        sent.channel, sent.origin, sent.at, sent.whole, live.conn, live.node
                    ));
                }
            }
        }
        self.disruptions.clear();
        Ok(())
    }

    fn roster(&self, channel: &str) -> BTreeSet<String> {
        self.conns
            .values()
            .filter_map(|c| c.channels.get(channel).and_then(|s| s.user.clone()))
            .collect()
    }

    /// Every observer's view and every live node's answer equal the model's roster.
    fn check_rosters(&mut self) -> Result<(), String> {
        let presence = ClusterChannel::Presence.name();
        let roster = self.roster(presence);
        for live in self.conns.values() {
            if let Some(view) = live.views.get(presence) {
                if *view != roster {
                    return Err(format!(
                        "{:?} on node {} sees {view:?}, the roster is {roster:?}",
                        live.conn, live.node
                    ));
                }
            }
        }
        let subscribers = self.subscribers("news").len() as u64;
        for node in (0..NODES).filter(|&n| self.alive[n]) {
            let sim = self.cluster.node(node);
            let path = format!("/apps/app-id/channels/{presence}/users");
            let (status, body) = sim.signed_http("GET", &path, &[], "");
            let users: BTreeSet<String> = body["users"]
                .as_array()
                .map(|users| {
                    users
                        .iter()
                        .filter_map(|u| u["id"].as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if status != 200 || users != roster {
                return Err(format!(
                    "node {node} lists {status} {body}, the roster is {roster:?}"
                ));
            }
            let params = [("info", "subscription_count")];
            let (status, body) = sim.signed_http("GET", "/apps/app-id/channels/news", &params, "");
            let counted = body["subscription_count"].as_u64().unwrap_or(0);
            if status != 200
                || counted != subscribers
                || body["occupied"] != Value::Bool(subscribers > 0)
            {
                return Err(format!(
                    "node {node} answers {status} {body} for news, which has {subscribers} subscribers"
                ));
            }
        }
        Ok(())
    }
}
