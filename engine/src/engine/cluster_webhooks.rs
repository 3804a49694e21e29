//! A cluster node's share of the webhooks: every node keeps the same ledger of what the
//! backend was told and which leaves are pending, and exactly one node sends each webhook.
//! See [`crate::cluster`], "Webhooks", for the rules and their limits.
//!
//! The ledger changes only with cluster-wide transitions applied in bus order and with
//! [`Body::LeaveDue`] messages, so every node holds the same one. A pending leave is named
//! by the bus message that caused it ([`LeaveToken`]) and resolved by the `LeaveDue` its
//! owner publishes when the delay has passed: a return ordered before that message on the
//! bus cancels it everywhere, one ordered after it is a new arrival everywhere.

use super::cluster::Cause;
use super::webhooks::Webhooks;
use super::{Due, Engine};
use crate::cluster::message::{Body, LeaveKey, LeaveToken};
use crate::cluster::view::Transition;
use crate::cluster::NodeId;
use crate::ids::{AppId, ChannelKind, ChannelName};
use crate::timers::TimerKey;
use crate::webhook_event::{WebhookEvent, WebhookKind};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// One app's webhook ledger on a cluster node.
#[derive(Debug, Default)]
pub(super) struct ClusterHooks {
    /// Channels the backend was last told are occupied.
    reported_occupied: BTreeSet<ChannelName>,
    /// Leaves waiting out the delay.
    pending: BTreeMap<LeaveKey, PendingLeave>,
}

/// A `channel_vacated` or `member_removed` waiting out the leave delay.
#[derive(Debug)]
struct PendingLeave {
    token: LeaveToken,
    /// The node that times the delay and reports the leave.
    owner: NodeId,
    /// When this node applied the leave (an adopter counts the delay from here).
    since: Instant,
    /// The owner's deadline; `None` on other nodes, and at the owner once its `LeaveDue`
    /// is on the bus.
    timer: Option<TimerKey>,
}

impl Engine {
    /// Feeds one cluster-wide transition to the ledger; sends what this node must report.
    pub(super) fn cluster_webhooks_on(
        &mut self,
        app: &AppId,
        transition: &Transition,
        cause: Cause,
    ) {
        match transition {
            Transition::Subscribers { channel, was, now } => {
                if *was == 0 {
                    self.cluster_occupied(app, channel, cause);
                } else if *now == 0 {
                    self.cluster_leave(app, LeaveKey::Vacated(channel.clone()), cause);
                }
                if *now > 0 && channel.kind() != ChannelKind::Presence && self.reports(cause) {
                    let count = *now as usize;
                    self.with_webhooks(app, |hooks, cx| {
                        hooks.handle_subscription_count(channel, count, cx)
                    });
                }
            }
            Transition::MemberAdded { channel, user, .. } => {
                let key = LeaveKey::MemberRemoved(channel.clone(), user.clone());
                if !self.cancel_leave(app, &key) && self.reports(cause) {
                    let event = WebhookEvent::MemberAdded {
                        channel: channel.clone(),
                        user: user.clone(),
                    };
                    self.queue_hook(app, WebhookKind::MemberAdded, event);
                }
            }
            Transition::MemberRemoved { channel, user } => {
                let key = LeaveKey::MemberRemoved(channel.clone(), user.clone());
                self.cluster_leave(app, key, cause);
            }
            Transition::UserOnline(_) | Transition::UserOffline(_) => {}
        }
    }

    /// Whether this node reports transitions of `cause` (a snapshot's are reported by none).
    fn reports(&self, cause: Cause) -> bool {
        self.reporter(cause) == self.node_id()
    }

    fn reporter(&self, cause: Cause) -> Option<NodeId> {
        let cluster = self.cluster.as_ref()?;
        match cause {
            Cause::Message(token) => Some(token.node),
            Cause::Death(_) => Some(cluster.lowest_live()),
            Cause::Snapshot => None,
        }
    }

    fn cluster_occupied(&mut self, app: &AppId, channel: &ChannelName, cause: Cause) {
        if !self.wants_any(
            app,
            &[WebhookKind::ChannelOccupied, WebhookKind::ChannelVacated],
        ) {
            return;
        }
        let key = LeaveKey::Vacated(channel.clone());
        let cancelled = self.cancel_leave(app, &key);
        let newly = self.ledger(app).reported_occupied.insert(channel.clone());
        if !cancelled && newly && self.reports(cause) {
            let event = WebhookEvent::ChannelOccupied {
                channel: channel.clone(),
            };
            self.queue_hook(app, WebhookKind::ChannelOccupied, event);
        }
    }

    /// A channel emptied or a member left cluster-wide: hold its webhook for the delay.
    fn cluster_leave(&mut self, app: &AppId, key: LeaveKey, cause: Cause) {
        let wanted = match &key {
            LeaveKey::Vacated(channel) => {
                if !self.ledger(app).reported_occupied.contains(channel) {
                    return;
                }
                [WebhookKind::ChannelOccupied, WebhookKind::ChannelVacated]
            }
            // Held back even when only `member_added` is wanted, so a quick return is not
            // announced as a second `member_added`.
            LeaveKey::MemberRemoved(..) => [WebhookKind::MemberAdded, WebhookKind::MemberRemoved],
        };
        if !self.wants_any(app, &wanted) {
            return;
        }
        let (token, owner) = match (cause, self.reporter(cause)) {
            (Cause::Message(token), Some(owner)) => (token, owner),
            (Cause::Death(dead), Some(owner)) => {
                let token = LeaveToken {
                    node: dead,
                    seq: LeaveToken::DEATH,
                };
                (token, owner)
            }
            // A resynchronisation: the backend was told by the sender in local mode, or
            // (a node joining) has nothing to be told.
            _ => {
                self.cancel_leave(app, &key);
                if let LeaveKey::Vacated(channel) = &key {
                    self.ledger(app).reported_occupied.remove(channel);
                }
                return;
            }
        };
        let now = self.moment().now;
        let timer =
            (Some(owner) == self.node_id()).then(|| self.leave_timer(app, &key, token, now));
        let pending = PendingLeave {
            token,
            owner,
            since: now,
            timer,
        };
        if let Some(old) = self.ledger(app).pending.insert(key, pending) {
            if let Some(timer) = old.timer {
                self.timers.cancel(timer);
            }
        }
    }

    fn leave_timer(
        &mut self,
        app: &AppId,
        key: &LeaveKey,
        token: LeaveToken,
        since: Instant,
    ) -> TimerKey {
        let delay = self.apps[app].webhooks.leave_delay();
        let at = (since + delay).max(self.moment().now);
        let due = Due::ClusterLeave(app.clone(), key.clone(), token);
        self.timers.schedule(at, due)
    }

    /// Cancels a pending leave (its subject came back); whether there was one.
    fn cancel_leave(&mut self, app: &AppId, key: &LeaveKey) -> bool {
        match self.ledger(app).pending.remove(key) {
            Some(pending) => {
                if let Some(timer) = pending.timer {
                    self.timers.cancel(timer);
                }
                true
            }
            None => false,
        }
    }

    /// The owner's delay passed: put the resolution on the bus (or resolve at once, cut off).
    pub(super) fn cluster_leave_due(&mut self, app: &AppId, key: LeaveKey, token: LeaveToken) {
        let Some(node) = self.node_id() else {
            return;
        };
        if !self.apps.contains_key(app) {
            return;
        }
        let Some(pending) = self.ledger(app).pending.get_mut(&key) else {
            return;
        };
        if pending.token != token {
            return;
        }
        pending.timer = None;
        if self.cluster.as_ref().is_some_and(|c| c.bus_up) {
            self.bus_publish(Some(app.clone()), Body::LeaveDue { key, token });
        } else {
            self.resolve_leave(app, key, token, node);
        }
    }

    /// A `LeaveDue` in bus order: the pending leave it names happens; its sender reports it.
    pub(super) fn resolve_leave(
        &mut self,
        app: &AppId,
        key: LeaveKey,
        token: LeaveToken,
        sender: NodeId,
    ) {
        let ledger = self.ledger(app);
        if ledger.pending.get(&key).is_none_or(|p| p.token != token) {
            // Cancelled by a return ordered before it, or never known here.
            return;
        }
        let pending = ledger.pending.remove(&key).expect("checked");
        if let LeaveKey::Vacated(channel) = &key {
            ledger.reported_occupied.remove(channel);
        }
        if let Some(timer) = pending.timer {
            self.timers.cancel(timer);
        }
        if Some(sender) != self.node_id() {
            return;
        }
        let (kind, event) = match key {
            LeaveKey::Vacated(channel) => (
                WebhookKind::ChannelVacated,
                WebhookEvent::ChannelVacated { channel },
            ),
            LeaveKey::MemberRemoved(channel, user) => (
                WebhookKind::MemberRemoved,
                WebhookEvent::MemberRemoved { channel, user },
            ),
        };
        self.queue_hook(app, kind, event);
    }

    /// On losing the link: our `LeaveDue`s not yet echoed never will be; resolve them here.
    pub(super) fn resolve_unechoed_leaves(&mut self) {
        let Some(node) = self.node_id() else {
            return;
        };
        let unechoed = self.pending_leaves(|p| p.owner == node && p.timer.is_none());
        for (app, key, token) in unechoed {
            self.resolve_leave(&app, key, token, node);
        }
    }

    /// A node was dropped: the lowest live node takes over the leaves it was timing.
    pub(super) fn adopt_leaves_of(&mut self, dead: NodeId) {
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        let (heir, me) = (cluster.lowest_live(), cluster.node);
        let mut adopted = Vec::new();
        for (app, ledger) in cluster.hooks.iter_mut() {
            for (key, pending) in ledger.pending.iter_mut().filter(|(_, p)| p.owner == dead) {
                pending.owner = heir;
                if heir == me {
                    adopted.push((app.clone(), key.clone(), pending.token, pending.since));
                }
            }
        }
        for (app, key, token, since) in adopted {
            let timer = self.leave_timer(&app, &key, token, since);
            if let Some(pending) = self.ledger(&app).pending.get_mut(&key) {
                pending.timer = Some(timer);
            }
        }
    }

    fn pending_leaves(
        &self,
        filter: impl Fn(&PendingLeave) -> bool,
    ) -> Vec<(AppId, LeaveKey, LeaveToken)> {
        let Some(cluster) = self.cluster.as_ref() else {
            return Vec::new();
        };
        cluster
            .hooks
            .iter()
            .flat_map(|(app, ledger)| {
                ledger
                    .pending
                    .iter()
                    .filter(|(_, p)| filter(p))
                    .map(move |(key, p)| (app.clone(), key.clone(), p.token))
            })
            .collect()
    }

    /// Ledger entries held (for leak checks).
    pub(super) fn cluster_hooks_len(&self) -> usize {
        self.cluster.as_ref().map_or(0, |c| {
            c.hooks
                .values()
                .map(|l| l.reported_occupied.len() + l.pending.len())
                .sum()
        })
    }

    fn ledger(&mut self, app: &AppId) -> &mut ClusterHooks {
        let cluster = self.cluster.as_mut().expect("a cluster node");
        cluster.hooks.entry(app.clone()).or_default()
    }

    fn wants_any(&self, app: &AppId, kinds: &[WebhookKind]) -> bool {
        let hooks: &Webhooks = &self.apps[app].webhooks;
        kinds.iter().any(|&kind| hooks.wants(kind))
    }

    fn queue_hook(&mut self, app: &AppId, kind: WebhookKind, event: WebhookEvent) {
        self.with_webhooks(app, |hooks, cx| hooks.queue(kind, || event, cx));
    }
}
