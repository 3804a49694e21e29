//! A multi-node simulator: N engines over a simulated Redis pub/sub bus, with a fake clock.
//!
//! The bus keeps Redis's promise and nothing more: every message published by a node whose
//! link is up goes, in one global order, to every node whose link is up (the sender too),
//! each after its own delivery delay. The world can be made hostile: per-delivery loss, a
//! node's link cut ([`ClusterSim::partition`]: the node is told `BusDown`, and what it or the
//! others publish meanwhile never reaches it), a node killed outright and restarted with an
//! empty state. Everything is driven by one seed, so a run replays exactly.
//!
//! ```
//! use ferrocast_engine::{cluster::sim::ClusterSim, Config};
//! use serde_json::json;
//! use std::time::Duration;
//!
//! let mut cluster = ClusterSim::new(Config::default(), 2, 7);
//! let bob = cluster.node(1).connect("app-key");
//! cluster.node(1).send_json(bob, json!({"event": "pusher:subscribe", "data": {"channel": "news"}}));
//! cluster.node(0).trigger("news", "update", "{}");
//! cluster.run_for(Duration::from_millis(50));
//! assert!(cluster.node(1).take_events(bob).contains(&"update".to_string()));
//! ```

use super::NodeId;
use crate::interface::{Input, WebhookDelivery};
use crate::rng::SplitMix64;
use crate::sim::Simulator;
use crate::Config;
use std::collections::VecDeque;
use std::time::Duration;

/// The longest the simulator lets time pass in one go, so timers fire close to their instant.
const STEP: Duration = Duration::from_millis(10);

struct SimNode {
    sim: Simulator,
    alive: bool,
    link_up: bool,
    /// Messages on their way to this node, with the instant each arrives.
    inbox: VecDeque<(Duration, Vec<u8>)>,
}

/// N engines, a simulated bus and one fake clock.
pub struct ClusterSim {
    config: Config,
    nodes: Vec<SimNode>,
    elapsed: Duration,
    rng: SplitMix64,
    seed: u64,
    delay: Duration,
    jitter_ms: u64,
    loss_percent: u64,
    published: u64,
}

impl ClusterSim {
    /// `count` nodes (ids 1..=count, index 0..count) sharing `config`, all with their link up.
    pub fn new(config: Config, count: usize, seed: u64) -> Self {
        let mut cluster = ClusterSim {
            nodes: Vec::new(),
            elapsed: Duration::ZERO,
            rng: SplitMix64::new(seed),
            seed,
            delay: Duration::from_millis(2),
            jitter_ms: 3,
            loss_percent: 0,
            published: 0,
            config,
        };
        for index in 0..count {
            let sim = cluster.fresh_node(index, 0);
            cluster.nodes.push(SimNode {
                sim,
                alive: true,
                link_up: true,
                inbox: VecDeque::new(),
            });
        }
        for index in 0..count {
            cluster.nodes[index]
                .sim
                .input(Input::BusUp)
                .expect("bus input");
        }
        cluster.run_for(Duration::from_millis(50));
        cluster
    }

    fn fresh_node(&self, index: usize, incarnation: u64) -> Simulator {
        let seed = self.seed ^ ((index as u64 + 1) << 32) ^ incarnation;
        Simulator::new_node(self.config.clone(), seed, Self::id(index))
    }

    /// The node id of node `index`.
    pub fn id(index: usize) -> NodeId {
        NodeId(index as u64 + 1)
    }

    /// Node `index`'s simulator, to drive its clients and HTTP API.
    pub fn node(&mut self, index: usize) -> &mut Simulator {
        let node = &mut self.nodes[index];
        assert!(node.alive, "node {index} is dead");
        &mut node.sim
    }

    /// Sets each delivery's delay: `base` plus up to `jitter_ms` (order is always kept).
    pub fn set_delay(&mut self, base: Duration, jitter_ms: u64) {
        self.delay = base;
        self.jitter_ms = jitter_ms;
    }

    /// Drops each delivery with this probability, in percent.
    pub fn set_loss(&mut self, percent: u64) {
        self.loss_percent = percent;
    }

    /// Messages published on the bus so far.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Cuts node `index`'s link: it is told `BusDown`, and nothing reaches it or leaves it.
    pub fn partition(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.link_up = false;
        node.inbox.clear();
        node.sim.input(Input::BusDown).expect("bus input");
    }

    /// Restores node `index`'s link: it is told `BusUp`.
    pub fn heal(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.link_up = true;
        node.sim.input(Input::BusUp).expect("bus input");
    }

    /// Kills node `index` (`kill -9`): it says nothing more and hears nothing.
    pub fn kill(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        node.alive = false;
        node.inbox.clear();
    }

    /// Starts a killed node again, with an empty state and its link up.
    pub fn restart(&mut self, index: usize) {
        let incarnation = self.rng.next_u64();
        let sim = self.fresh_node(index, incarnation);
        self.nodes[index] = SimNode {
            sim,
            alive: true,
            link_up: true,
            inbox: VecDeque::new(),
        };
        self.nodes[index]
            .sim
            .input(Input::BusUp)
            .expect("bus input");
    }

    /// Takes the webhook POSTs every node sent so far (killed nodes' before their death
    /// included), with the index of the node that sent each.
    pub fn take_webhooks(&mut self) -> Vec<(usize, WebhookDelivery)> {
        let mut all = Vec::new();
        for (index, node) in self.nodes.iter_mut().enumerate() {
            all.extend(node.sim.take_webhooks().into_iter().map(|w| (index, w)));
        }
        all
    }

    /// Hands raw bytes to node `index` as if they came from the bus.
    pub fn inject(&mut self, index: usize, bytes: &[u8]) {
        self.node(index)
            .input(Input::Bus(bytes.to_vec()))
            .expect("bus input");
    }

    /// Lets `by` pass: timers fire on every live node and the bus delivers what is due.
    pub fn run_for(&mut self, by: Duration) {
        let end = self.elapsed + by;
        loop {
            self.carry_published();
            let next_arrival = self
                .nodes
                .iter()
                .filter_map(|n| n.inbox.front().map(|(at, _)| *at))
                .min();
            let mut next = (self.elapsed + STEP).min(end);
            if let Some(at) = next_arrival {
                next = next.min(at.max(self.elapsed));
            }
            let step = next - self.elapsed;
            self.elapsed = next;
            for node in self.nodes.iter_mut().filter(|n| n.alive) {
                node.sim.advance(step);
            }
            self.deliver_due();
            if self.elapsed >= end {
                self.carry_published();
                break;
            }
        }
    }

    /// Takes what each live node published and queues it for every node on the bus.
    fn carry_published(&mut self) {
        for sender in 0..self.nodes.len() {
            if !self.nodes[sender].alive {
                continue;
            }
            let messages = self.nodes[sender].sim.take_bus();
            if !self.nodes[sender].link_up {
                continue;
            }
            for message in messages {
                self.published += 1;
                for receiver in 0..self.nodes.len() {
                    let lost =
                        self.loss_percent > 0 && self.rng.next_u64() % 100 < self.loss_percent;
                    let jitter = match self.jitter_ms {
                        0 => 0,
                        j => self.rng.next_u64() % (j + 1),
                    };
                    let node = &mut self.nodes[receiver];
                    if !node.alive || !node.link_up || lost {
                        continue;
                    }
                    let mut at = self.elapsed + self.delay + Duration::from_millis(jitter);
                    // Redis delivers in one order: never overtake what is already queued.
                    if let Some((last, _)) = node.inbox.back() {
                        at = at.max(*last);
                    }
                    node.inbox.push_back((at, message.clone()));
                }
            }
        }
    }

    fn deliver_due(&mut self) {
        loop {
            let mut delivered = false;
            for node in self.nodes.iter_mut().filter(|n| n.alive && n.link_up) {
                while node
                    .inbox
                    .front()
                    .is_some_and(|(at, _)| *at <= self.elapsed)
                {
                    let (_, message) = node.inbox.pop_front().expect("checked");
                    node.sim.input(Input::Bus(message)).expect("bus input");
                    delivered = true;
                }
            }
            if !delivered {
                return;
            }
            self.carry_published();
        }
    }
}
