//! A cluster node's presence joins waiting for their bus echo before they are acknowledged.
//!
//! With the bus up, a presence subscriber is told `subscription_succeeded` only when the
//! node's own message carrying the join comes back from the bus: the join then has its place
//! in the one global order, and the roster it is given (the cluster roster as applied up to
//! that message) holds every join acknowledged before it anywhere, since each of those was
//! acknowledged only after its own message had been ordered. Until then the subscriber is
//! counted but *held*: no frame of the channel reaches it, so its story starts with that
//! roster. See [`crate::cluster`], "Presence joins".

use super::Engine;
use crate::cluster::view::Change;
use crate::ids::{AppId, ChannelName, ConnId, UserId};
use std::time::{Duration, Instant};

/// A presence subscriber waiting for the echo of its join.
#[derive(Debug)]
pub(super) struct AwaitingEcho {
    app: AppId,
    channel: ChannelName,
    conn: ConnId,
    user: UserId,
    info: Option<String>,
    /// Our message whose echo answers it: the delta carrying the join once it is published,
    /// or the snapshot repairing that delta's loss.
    answered_by: Option<u64>,
    since: Instant,
}

impl Engine {
    /// Whether presence joins wait for their echo: a cluster node with its bus up.
    pub(super) fn holds_presence_joins(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.bus_up)
    }

    /// Holds `conn`'s join of `channel` as `user` until the echo of the delta carrying it.
    pub(super) fn await_echo(
        &mut self,
        app: &AppId,
        channel: &ChannelName,
        conn: ConnId,
        user: UserId,
        info: Option<String>,
    ) {
        let since = self.moment().now;
        let Some(cluster) = self.cluster.as_mut() else {
            return;
        };
        cluster
            .awaiting
            .retain(|a| a.conn != conn || a.channel != *channel);
        cluster.awaiting.push(AwaitingEcho {
            app: app.clone(),
            channel: channel.clone(),
            conn,
            user,
            info,
            answered_by: None,
            since,
        });
    }

    /// `conn` left `channel` (or closed) before its join was answered: nothing to answer.
    pub(super) fn forget_awaiting(&mut self, conn: ConnId, channel: &ChannelName) {
        if let Some(cluster) = self.cluster.as_mut() {
            cluster
                .awaiting
                .retain(|a| a.conn != conn || a.channel != *channel);
        }
    }

    /// Our delta for `app` went out as message `seq`: it carries every join not yet published.
    pub(super) fn awaiting_published(&mut self, app: &AppId, seq: u64) {
        if let Some(cluster) = self.cluster.as_mut() {
            for awaiting in cluster.awaiting.iter_mut() {
                if awaiting.answered_by.is_none() && awaiting.app == *app {
                    awaiting.answered_by = Some(seq);
                }
            }
        }
    }

    /// Some of our messages never came back; the snapshot `repair` (our live state) answers
    /// every join already published instead: a join carried by a later message may rest on
    /// a lost one (a second tab on the first tab's join), so none is answered before it.
    pub(super) fn awaiting_lost(&mut self, repair: u64) {
        if let Some(cluster) = self.cluster.as_mut() {
            for awaiting in cluster.awaiting.iter_mut() {
                if awaiting.answered_by.is_some() {
                    awaiting.answered_by = Some(repair);
                }
            }
        }
    }

    /// Our message `seq` came back and was applied: answers the joins it (or an earlier
    /// message) carried. The member limit is decided here, in bus order.
    pub(super) fn answer_echoed(&mut self, seq: u64) {
        let due = self.take_awaiting(|a| a.answered_by.is_some_and(|s| s <= seq));
        for awaiting in due {
            self.answer(awaiting, true);
        }
    }

    /// Answers every waiting join with the roster as it stands (the bus went down: local
    /// mode answers at once).
    pub(super) fn answer_all_awaiting(&mut self) {
        for awaiting in self.take_awaiting(|_| true) {
            self.answer(awaiting, false);
        }
    }

    /// Answers the joins that waited `limit` or longer (their echoes keep being lost): a
    /// client is never left waiting for good, at the price of a roster that may lag.
    pub(super) fn answer_overdue(&mut self, limit: Duration) {
        let now = self.moment().now;
        let due = self.take_awaiting(|a| now.saturating_duration_since(a.since) >= limit);
        for awaiting in due {
            self.answer(awaiting, false);
        }
    }

    fn take_awaiting(&mut self, due: impl Fn(&AwaitingEcho) -> bool) -> Vec<AwaitingEcho> {
        let Some(cluster) = self.cluster.as_mut() else {
            return Vec::new();
        };
        let (taken, kept) = std::mem::take(&mut cluster.awaiting)
            .into_iter()
            .partition(|a| due(a));
        cluster.awaiting = kept;
        taken
    }

    /// Tells a held subscriber it joined (with the cluster roster as applied now), or, when
    /// `decide_limit` and its join was void because the roster was full, that it did not.
    fn answer(&mut self, awaiting: AwaitingEcho, decide_limit: bool) {
        let AwaitingEcho {
            app,
            channel,
            conn,
            user,
            info,
            ..
        } = awaiting;
        let held = self.apps[&app]
            .channels
            .get(&channel)
            .is_some_and(|c| c.is_held(conn));
        if !held {
            return;
        }
        if decide_limit && !self.cluster_view_has_member(&app, &channel, &user) {
            // Every node voided the join at the same bus message: the roster was full.
            if let Some(connection) = self.conns.get_mut(&conn) {
                connection.channels.remove(&channel);
            }
            self.leave_channel(&app, conn, &channel, Some(&user));
            let max = self.apps[&app].config.max_presence_members;
            self.refuse_full(conn, &channel, max);
            return;
        }
        if let Some(entry) = self
            .apps
            .get_mut(&app)
            .and_then(|a| a.channels.get_mut(&channel))
        {
            entry.release(conn);
        }
        let data = self
            .cluster_roster_data(&app, &channel, (&user, info.as_deref()))
            .expect("only a cluster node holds joins");
        self.acknowledge_subscription(conn, &app, &channel, &data);
    }

    /// Whether a member change from the bus is a join into a full roster: every node applies
    /// the same messages in the same order, so every node voids the same joins.
    pub(super) fn void_join(&self, app: &AppId, change: &Change) -> bool {
        let Change::Member {
            channel,
            user,
            present: true,
            ..
        } = change
        else {
            return false;
        };
        let Some((view, _)) = self.view_of(app) else {
            return false;
        };
        !view.has_member(channel, user)
            && view.roster(channel).len() >= self.apps[app].config.max_presence_members
    }
}
