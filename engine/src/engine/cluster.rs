//! The engine as one node of a cluster: what it puts on the bus, and what arriving bus
//! messages do to its clients. See [`crate::cluster`] for the model.
//!
//! Every hook here is a no-op for a single-node engine (`cluster` is `None`), so a server
//! without a cluster behaves exactly as it did before clustering existed.

use super::cluster_presence::AwaitingEcho;
use super::cluster_webhooks::ClusterHooks;
use super::{Due, Engine};
use crate::channels::{member_added_data, member_removed_data, Roster};
use crate::close_code::CloseCode;
use crate::cluster::message::{self, Body, BusEvent, BusMessage, LeaveToken, Rejection};
use crate::cluster::view::{AppView, Change, Contribution, Transition};
use crate::cluster::{BusStats, ClusterConfig, NodeId};
use crate::config::Config;
use crate::ids::{AppId, ChannelName, ConnId, EventName, SocketId, UserId};
use crate::interface::Output;
use crate::timers::TimerKey;
use crate::wire::pusher::{self, RawJson};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Our messages whose echo is timed at once, at most (older ones are no longer timed).
const MAX_TIMED_ECHOES: usize = 1024;

/// A node's cluster bookkeeping.
pub(super) struct ClusterState {
    pub(super) node: NodeId,
    config: ClusterConfig,
    /// Our link to the bus works: changes go through it (local mode otherwise).
    pub(super) bus_up: bool,
    /// The sequence number of our next message.
    next_seq: u64,
    /// The sequence number of our last message heard back from the bus.
    echoed: u64,
    /// When each of our latest messages was published, oldest first, until its echo.
    sent_at: VecDeque<(u64, Instant)>,
    peers: BTreeMap<NodeId, Peer>,
    /// Which webhooks were sent and which leaves are pending, per app, alike on every node.
    pub(super) hooks: BTreeMap<AppId, ClusterHooks>,
    /// Numbers the changes applied in local mode (see [`Cause::Message`]).
    local_changes: u64,
    views: BTreeMap<AppId, AppView>,
    /// Our changes of this input, published as one delta per app when the input is done.
    pending: BTreeMap<AppId, Vec<Change>>,
    stats: BusStats,
    heartbeat: Option<TimerKey>,
    /// Presence joins not yet acknowledged, waiting for their echo (see `cluster_presence`).
    pub(super) awaiting: Vec<AwaitingEcho>,
}

impl ClusterState {
    /// A fresh name for a change applied at once, in local mode.
    fn local_cause(&mut self) -> Cause {
        self.local_changes += 1;
        Cause::Message(LeaveToken {
            node: self.node,
            seq: LOCAL_CHANGE | self.local_changes,
        })
    }

    /// The lowest node id this node counts as alive (itself included).
    pub(super) fn lowest_live(&self) -> NodeId {
        self.peers
            .keys()
            .next()
            .map_or(self.node, |&peer| peer.min(self.node))
    }
}

/// What we know of another node's stream.
struct Peer {
    last_seq: u64,
    last_heard: Instant,
    /// We asked it for a snapshot and none has come yet: asked again at each heartbeat, since
    /// the request itself may have been lost.
    snapshot_wanted: bool,
}

/// What caused a cluster-wide transition, which decides the node that reports it to the
/// backend (see [`crate::cluster`], "Webhooks").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    /// A delta of the named bus message (or a change applied at once in local mode, named
    /// by a sequence number with the top bit set): its sender reports it.
    Message(LeaveToken),
    /// A snapshot: a resynchronisation after a join or an outage, which nobody reports.
    Snapshot,
    /// The named node's death, noticed by its silence: the lowest live node reports it.
    Death(NodeId),
}

/// The top bit marks the names of changes applied in local mode, so they never equal the
/// sequence number of a bus message.
const LOCAL_CHANGE: u64 = 1 << 63;

impl Engine {
    /// An engine that is node `node` of a cluster configured by `config.cluster`. It starts
    /// in local mode and joins the cluster at the first [`crate::Input::BusUp`].
    pub fn new_node(config: Config, seed: u64, node: NodeId) -> Self {
        let cluster = config.cluster.clone();
        let apps = config.apps.iter().map(|a| AppId::new(&a.id));
        let views = apps.map(|a| (a, AppView::default())).collect();
        // Mix the node id into the seed so two nodes given the same seed never share ids.
        let mut engine = Engine::new(config, seed ^ node.0.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        engine.cluster = Some(Box::new(ClusterState {
            node,
            config: cluster,
            bus_up: false,
            next_seq: 1,
            echoed: 0,
            sent_at: VecDeque::new(),
            peers: BTreeMap::new(),
            views,
            hooks: BTreeMap::new(),
            local_changes: 0,
            pending: BTreeMap::new(),
            stats: BusStats::default(),
            heartbeat: None,
            awaiting: Vec::new(),
        }));
        engine
    }

    /// Starts keeping the cluster's view of an app added while running (from a reload or the
    /// app store), and asks the other nodes for their share of it: they may have served it
    /// all along, while this node ignored what they said of an app it did not know.
    pub(super) fn cluster_app_added(&mut self, app: &AppId) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.views.entry(app.clone()).or_default();
        if cluster.bus_up {
            self.publish_snapshot(true);
        }
    }

    /// Forgets the cluster's view of an app no longer served here.
    pub(super) fn cluster_app_removed(&mut self, app: &AppId) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.views.remove(app);
        }
    }

    /// This node's id, for a cluster node.
    pub fn node_id(&self) -> Option<NodeId> {
        self.cluster.as_ref().map(|c| c.node)
    }

    /// What the bus brought and what became of it (all zero for a single node).
    pub fn bus_stats(&self) -> BusStats {
        self.cluster.as_ref().map(|c| c.stats).unwrap_or_default()
    }

    /// The other nodes this one currently counts as alive.
    pub fn live_peers(&self) -> Vec<NodeId> {
        self.cluster
            .as_ref()
            .map(|c| c.peers.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Before each input: make sure the heartbeat runs.
    pub(super) fn cluster_before_input(&mut self) {
        let now = self.moment().now;
        if let Some(cluster) = self.cluster.as_mut() {
            if cluster.heartbeat.is_none() {
                let every = Duration::from_millis(cluster.config.heartbeat_ms.max(1));
                cluster.heartbeat = Some(self.timers.schedule(now + every, Due::ClusterHeartbeat));
            }
        }
    }

    /// After each input: publish the changes it made, one delta per app.
    pub(super) fn cluster_after_input(&mut self) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        for (app, changes) in std::mem::take(&mut cluster.pending) {
            self.bus_publish(Some(app), Body::Delta(changes));
        }
    }

    /// Records a change of our own contribution: published, or applied at once in local mode.
    pub(super) fn cluster_record(&mut self, app: &AppId, change: Change) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.bus_up {
            cluster.pending.entry(app.clone()).or_default().push(change);
        } else {
            let cause = cluster.local_cause();
            let node = cluster.node;
            self.apply_change(app, node, change, cause);
        }
    }

    /// Whether this engine is a cluster node (its presence and occupancy follow the bus).
    pub(super) fn clustered(&self) -> bool {
        self.cluster.is_some()
    }

    /// Puts one message on the bus (nothing while the link is down: it would be lost).
    pub(super) fn bus_publish(&mut self, app: Option<AppId>, body: Body) {
        let now = self.moment().now;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if !cluster.bus_up {
            return;
        }
        // Earlier changes of this input go first, so every node sees them in our order.
        if !matches!(body, Body::Delta(_)) {
            for (app, changes) in std::mem::take(&mut cluster.pending) {
                self.bus_publish(Some(app), Body::Delta(changes));
            }
        }
        let cluster = self.cluster.as_mut().expect("checked above");
        let delta_of = matches!(body, Body::Delta(_))
            .then(|| app.clone())
            .flatten();
        let seq = cluster.next_seq;
        let message = BusMessage {
            node: cluster.node,
            seq: cluster.next_seq,
            app,
            body,
        };
        cluster.next_seq += 1;
        cluster.stats.published += 1;
        if cluster.sent_at.len() == MAX_TIMED_ECHOES {
            cluster.sent_at.pop_front();
        }
        cluster.sent_at.push_back((seq, now));
        let bytes = message::encode(&cluster.config.prefix, &message);
        self.outputs.push_back(Output::Bus(bytes));
        if let Some(app) = delta_of {
            self.awaiting_published(&app, seq);
        }
    }

    /// One HTTP publish request, carried to the other nodes as one message.
    pub(super) fn cluster_publish(
        &mut self,
        app: &AppId,
        events: Vec<(EventName, String, Vec<ChannelName>, Option<SocketId>)>,
    ) {
        if !self.clustered() {
            return;
        }
        let events = events
            .into_iter()
            .map(|(name, data, channels, except)| BusEvent {
                name,
                data,
                channels,
                except,
            })
            .collect();
        self.bus_publish(Some(app.clone()), Body::Publish(events));
    }

    /// A client event relayed here, carried to the other nodes' subscribers.
    pub(super) fn cluster_client_event(
        &mut self,
        app: &AppId,
        channel: &ChannelName,
        event: &EventName,
        data: &RawJson,
        user: Option<&UserId>,
        socket: SocketId,
    ) {
        if !self.clustered() {
            return;
        }
        let body = Body::ClientEvent {
            channel: channel.clone(),
            event: event.clone(),
            data: data.clone(),
            user: user.cloned(),
            socket,
        };
        self.bus_publish(Some(app.clone()), body);
    }

    /// The backend terminated a user: the other nodes close its connections too.
    pub(super) fn cluster_terminate(&mut self, app: &AppId, user: &UserId) {
        if self.clustered() {
            self.bus_publish(Some(app.clone()), Body::TerminateUser(user.clone()));
        }
    }

    /// [`crate::Input::BusUp`]: join (or rejoin) the cluster with a snapshot asking for theirs.
    pub(super) fn on_bus_up(&mut self) {
        let now = self.moment().now;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if cluster.bus_up {
            return;
        }
        cluster.bus_up = true;
        // Nobody could be heard while we were cut off: their silence proves nothing yet.
        for peer in cluster.peers.values_mut() {
            peer.last_heard = now;
        }
        self.publish_snapshot(true);
    }

    /// [`crate::Input::BusDown`]: local mode, our applied contribution becomes our live state.
    pub(super) fn on_bus_down(&mut self) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        if !cluster.bus_up {
            return;
        }
        cluster.bus_up = false;
        cluster.stats.bus_downs += 1;
        cluster.pending.clear();
        let node = cluster.node;
        let cause = cluster.local_cause();
        let apps: Vec<AppId> = self.apps.keys().cloned().collect();
        for app in apps {
            let live = self.live_contribution(&app);
            self.replace_contribution(&app, node, live, cause);
        }
        self.resolve_unechoed_leaves();
        self.answer_all_awaiting();
    }

    /// [`crate::Input::Bus`]: one message from the bus (ours included).
    pub(super) fn on_bus(&mut self, bytes: &[u8]) {
        let now = self.moment().now;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster.stats.received += 1;
        let message = match message::decode(&cluster.config.prefix, bytes) {
            Ok(message) => message,
            Err(rejection) => {
                let stats = &mut cluster.stats;
                match rejection {
                    Rejection::Malformed => stats.malformed += 1,
                    Rejection::ForeignVersion => stats.foreign_version += 1,
                    Rejection::OtherCluster => stats.other_cluster += 1,
                }
                return;
            }
        };
        if let Some(app) = &message.app {
            if !self.apps.contains_key(app) {
                cluster.stats.unknown_app += 1;
                return;
            }
        }
        let own = message.node == cluster.node;
        if own {
            cluster.stats.own_echoes += 1;
            // An echo of what we sent before the link went down: our live state rules now.
            if !cluster.bus_up {
                return;
            }
            // Our own changes apply when they come back, so a lost echo would leave our view
            // of ourselves wrong for good; peers that saw no gap would never ask us to repair
            // it. A snapshot of ours, applied when it comes back, does.
            let lost = cluster.echoed + 1..message.seq;
            cluster.echoed = message.seq;
            // How long the bus took to carry our message back: the lag every node sees.
            while let Some(&(seq, at)) = cluster.sent_at.front() {
                if seq > message.seq {
                    break;
                }
                cluster.sent_at.pop_front();
                if seq == message.seq {
                    cluster.stats.echo_lag_micros =
                        u64::try_from(now.saturating_duration_since(at).as_micros())
                            .unwrap_or(u64::MAX);
                }
            }
            if !lost.is_empty() && !matches!(message.body, Body::Snapshot { .. }) {
                cluster.stats.gaps += 1;
                self.publish_snapshot(false);
                // The joins the lost messages carried are answered when the repair is back.
                let repair = self.cluster.as_ref().map_or(0, |c| c.next_seq - 1);
                self.awaiting_lost(repair);
            }
        } else {
            let snapshot = matches!(message.body, Body::Snapshot { .. });
            self.heard_from(message.node, message.seq, snapshot);
        }
        let node = message.node;
        let seq = message.seq;
        match (message.body, message.app) {
            (Body::Publish(events), Some(app)) if !own => {
                for event in events {
                    let except = event.except.and_then(|s| self.socket_ids.get(&s).copied());
                    for channel in &event.channels {
                        self.publish(&app, channel, &event.name, &event.data, except);
                    }
                }
            }
            (
                Body::ClientEvent {
                    channel,
                    event,
                    data,
                    user,
                    ..
                },
                Some(app),
            ) if !own => self.relay_remote_client_event(&app, &channel, &event, &data, user),
            (Body::Delta(changes), Some(app)) => {
                let cause = Cause::Message(LeaveToken {
                    node,
                    seq: message.seq,
                });
                for change in changes {
                    // A join into a full roster is void on every node (same order, same view).
                    if !self.void_join(&app, &change) {
                        self.apply_change(&app, node, change, cause);
                    }
                }
            }
            (Body::LeaveDue { key, token }, Some(app)) => {
                self.resolve_leave(&app, key, token, node);
            }
            (Body::Snapshot { reply_wanted, apps }, None) => {
                self.apply_snapshot(node, apps);
                if reply_wanted && !own {
                    self.publish_snapshot(false);
                }
            }
            (Body::SnapshotRequest { of }, None) if self.node_id() == Some(of) => {
                self.publish_snapshot(false);
            }
            (Body::TerminateUser(user), Some(app)) if !own => self.terminate_local(&app, &user),
            _ => {}
        }
        if own {
            self.answer_echoed(seq);
        }
    }

    /// Tracks `node`'s sequence; a gap (or a node new to us) asks it for a snapshot.
    fn heard_from(&mut self, node: NodeId, seq: u64, snapshot: bool) {
        let now = self.moment().now;
        let cluster = self.cluster.as_mut().expect("caller checked");
        let missed = match cluster.peers.get_mut(&node) {
            Some(peer) => {
                let gap = seq != peer.last_seq + 1;
                peer.last_seq = seq;
                peer.last_heard = now;
                peer.snapshot_wanted = (peer.snapshot_wanted || gap) && !snapshot;
                gap && !snapshot
            }
            None => {
                let peer = Peer {
                    last_seq: seq,
                    last_heard: now,
                    snapshot_wanted: !snapshot,
                };
                cluster.peers.insert(node, peer);
                !snapshot
            }
        };
        if missed {
            cluster.stats.gaps += 1;
            self.bus_publish(None, Body::SnapshotRequest { of: node });
        }
    }

    fn publish_snapshot(&mut self, reply_wanted: bool) {
        let apps = self
            .apps
            .keys()
            .map(|app| (app.clone(), self.live_contribution(app)))
            .collect();
        self.bus_publish(None, Body::Snapshot { reply_wanted, apps });
    }

    fn apply_snapshot(&mut self, node: NodeId, mut apps: BTreeMap<AppId, Contribution>) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.stats.snapshots_applied += 1;
        }
        let ours: Vec<AppId> = self.apps.keys().cloned().collect();
        for app in ours {
            let contribution = apps.remove(&app).unwrap_or_default();
            self.replace_contribution(&app, node, contribution, Cause::Snapshot);
        }
    }

    /// Our own contribution to `app` as it is right now.
    fn live_contribution(&self, app: &AppId) -> Contribution {
        let state = &self.apps[app];
        let mut contribution = Contribution {
            connections: state.connections as u64,
            users: state.users.keys().cloned().collect(),
            ..Contribution::default()
        };
        for (name, channel) in state.channels.iter() {
            contribution
                .subscribers
                .insert(name.clone(), channel.subscriber_count() as u64);
            let members: BTreeMap<UserId, Option<String>> = channel
                .roster
                .members()
                .map(|(u, i)| (u.clone(), i.map(str::to_owned)))
                .collect();
            if !members.is_empty() {
                contribution.members.insert(name.clone(), members);
            }
        }
        contribution
    }

    fn replace_contribution(
        &mut self,
        app: &AppId,
        node: NodeId,
        contribution: Contribution,
        cause: Cause,
    ) {
        let Some(view) = self.cluster.as_mut().and_then(|c| c.views.get_mut(app)) else {
            return;
        };
        for transition in view.replace(node, contribution) {
            self.on_transition(app, transition, cause);
        }
    }

    fn apply_change(&mut self, app: &AppId, node: NodeId, change: Change, cause: Cause) {
        let Some(view) = self.cluster.as_mut().and_then(|c| c.views.get_mut(app)) else {
            return;
        };
        if let Some(transition) = view.apply(node, change) {
            self.on_transition(app, transition, cause);
        }
    }

    /// Tells local clients (and, once per cluster, the backend) about a cluster-wide change.
    fn on_transition(&mut self, app: &AppId, transition: Transition, cause: Cause) {
        self.cluster_webhooks_on(app, &transition, cause);
        match transition {
            Transition::MemberAdded {
                channel,
                user,
                info,
            } => {
                let data = member_added_data(&user, info.as_deref());
                self.tell_members(app, &channel, &user, "pusher_internal:member_added", &data);
            }
            Transition::MemberRemoved { channel, user } => {
                let data = member_removed_data(&user);
                self.tell_members(
                    app,
                    &channel,
                    &user,
                    "pusher_internal:member_removed",
                    &data,
                );
            }
            Transition::UserOnline(user) => self.notify_watchers(app, &user, "online", None),
            Transition::UserOffline(user) => self.notify_watchers(app, &user, "offline", None),
            Transition::Subscribers { channel, now, .. } => {
                // Every node tells its own subscribers; the webhook went with the ledger.
                self.tell_subscription_count(app, &channel, now as usize);
            }
        }
    }

    /// A member event for every local subscriber of `channel` but `user`'s own sockets
    /// (they counted themselves in at their `subscription_succeeded`).
    fn tell_members(
        &mut self,
        app: &AppId,
        channel: &ChannelName,
        user: &UserId,
        event: &str,
        data: &RawJson,
    ) {
        let Some(entry) = self
            .apps
            .get_mut(app)
            .and_then(|a| a.channels.get_mut(channel))
        else {
            return;
        };
        let all = entry.recipients();
        let conns: Arc<[ConnId]> = all
            .iter()
            .copied()
            .filter(|c| {
                self.conns
                    .get(c)
                    .and_then(|conn| conn.channels.get(channel))
                    .is_none_or(|member| member.as_ref() != Some(user))
            })
            .collect();
        if conns.is_empty() {
            return;
        }
        let frame = pusher::message(event, Some(channel.as_str()), data, None);
        self.broadcast(app, conns, None, frame);
    }

    fn relay_remote_client_event(
        &mut self,
        app: &AppId,
        channel: &ChannelName,
        event: &EventName,
        data: &RawJson,
        user: Option<UserId>,
    ) {
        let Some(entry) = self
            .apps
            .get_mut(app)
            .and_then(|a| a.channels.get_mut(channel))
        else {
            return;
        };
        let frame = pusher::message(
            event.as_str(),
            Some(channel.as_str()),
            data,
            user.as_ref().map(|u| u.as_str()),
        );
        let conns = entry.recipients();
        self.broadcast(app, conns, None, frame);
    }

    fn terminate_local(&mut self, app: &AppId, user: &UserId) {
        let conns: Vec<ConnId> = self.apps[app]
            .users
            .get(user)
            .map(|c| c.iter().copied().collect())
            .unwrap_or_default();
        for conn in conns {
            self.close_with_error(
                conn,
                CloseCode::UNAUTHORIZED,
                "connection terminated by the app's backend",
            );
        }
    }

    /// The heartbeat timer: say we are alive, drop the nodes that are not.
    pub(super) fn cluster_heartbeat(&mut self) {
        let now = self.moment().now;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let every = Duration::from_millis(cluster.config.heartbeat_ms.max(1));
        cluster.heartbeat = Some(self.timers.schedule(now + every, Due::ClusterHeartbeat));
        if !cluster.bus_up {
            // Cut off from the bus we hear nobody: freeze their contributions, drop no one.
            return;
        }
        let timeout = Duration::from_millis(cluster.config.node_timeout_ms);
        let dead: Vec<NodeId> = cluster
            .peers
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.last_heard) >= timeout)
            .map(|(n, _)| *n)
            .collect();
        for node in &dead {
            cluster.peers.remove(node);
            cluster.stats.nodes_dropped += 1;
        }
        self.bus_publish(None, Body::Heartbeat);
        let unanswered: Vec<NodeId> = self
            .cluster
            .as_ref()
            .map(|c| c.peers.iter().filter(|(_, p)| p.snapshot_wanted))
            .into_iter()
            .flatten()
            .map(|(node, _)| *node)
            .collect();
        for of in unanswered {
            self.bus_publish(None, Body::SnapshotRequest { of });
        }
        self.answer_overdue(timeout);
        let apps: Vec<AppId> = self.apps.keys().cloned().collect();
        for node in dead {
            for app in &apps {
                self.replace_contribution(app, node, Contribution::default(), Cause::Death(node));
            }
            self.adopt_leaves_of(node);
        }
    }

    /// The `subscription_succeeded` roster for a new presence subscriber: the cluster roster
    /// as applied in bus order, plus the subscriber itself. `None` for a single node.
    pub(super) fn cluster_roster_data(
        &self,
        app: &AppId,
        channel: &ChannelName,
        joining: (&UserId, Option<&str>),
    ) -> Option<RawJson> {
        let view = self.cluster.as_ref()?.views.get(app)?;
        let mut roster = Roster::default();
        for (user, info) in view.roster(channel) {
            roster.join(user, info.map(str::to_owned));
        }
        if !roster.contains(joining.0) {
            roster.join(joining.0, joining.1.map(str::to_owned));
        }
        Some(roster.subscription_data())
    }

    /// Subscribers of `channel` in the cluster: ours now, the others' as last announced.
    pub(super) fn cluster_subscriber_count(&self, app: &AppId, channel: &ChannelName) -> usize {
        let local = self.apps[app]
            .channels
            .get(channel)
            .map_or(0, |c| c.subscriber_count());
        local
            + self.with_view(app, |v, node| {
                v.subscribers_elsewhere(node, channel) as usize
            })
    }

    /// Presence members of `channel` in the cluster: ours now, the others' as last announced.
    pub(super) fn cluster_members(&self, app: &AppId, channel: &ChannelName) -> Vec<UserId> {
        let mut members: BTreeSet<UserId> = self.apps[app]
            .channels
            .get(channel)
            .map(|c| c.roster.user_ids().cloned().collect())
            .unwrap_or_default();
        if let Some((view, node)) = self.view_of(app) {
            members.extend(view.members_elsewhere(node, channel).into_iter().cloned());
        }
        members.into_iter().collect()
    }

    /// Whether `user` counts against `channel`'s member limit, and how many members there are.
    pub(super) fn cluster_member_count(
        &self,
        app: &AppId,
        channel: &ChannelName,
        user: &UserId,
    ) -> (bool, usize) {
        let members = self.cluster_members(app, channel);
        (members.binary_search(user).is_ok(), members.len())
    }

    /// Occupied channels in the cluster, in name order.
    pub(super) fn cluster_channel_names(&self, app: &AppId) -> Vec<ChannelName> {
        let mut names: BTreeSet<ChannelName> = self.apps[app]
            .channels
            .iter()
            .map(|(n, _)| n.clone())
            .collect();
        if let Some((view, node)) = self.view_of(app) {
            names.extend(view.channels_elsewhere(node).into_iter().cloned());
        }
        names.into_iter().collect()
    }

    /// Connections of `app` on the other nodes, as last announced.
    pub(super) fn cluster_connections_elsewhere(&self, app: &AppId) -> usize {
        self.with_view(app, |v, node| v.connections_elsewhere(node) as usize)
    }

    /// Whether `user` is signed in anywhere in the cluster (here included).
    pub(super) fn cluster_user_online(&self, app: &AppId, user: &UserId) -> bool {
        self.apps[app].users.contains_key(user)
            || self.view_of(app).is_some_and(|(v, _)| v.user_online(user))
    }

    /// Whether `user` is a member of `channel` in the cluster view as applied in bus order.
    pub(super) fn cluster_view_has_member(
        &self,
        app: &AppId,
        channel: &ChannelName,
        user: &UserId,
    ) -> bool {
        self.view_of(app)
            .is_some_and(|(view, _)| view.has_member(channel, user))
    }

    pub(super) fn view_of(&self, app: &AppId) -> Option<(&AppView, NodeId)> {
        let cluster = self.cluster.as_ref()?;
        Some((cluster.views.get(app)?, cluster.node))
    }

    fn with_view(&self, app: &AppId, f: impl FnOnce(&AppView, NodeId) -> usize) -> usize {
        self.view_of(app).map_or(0, |(v, n)| f(v, n))
    }
}
