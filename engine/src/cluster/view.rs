//! The cluster view of one app: every node's latest contributions, and what each change does
//! to the union of them.
//!
//! Pure bookkeeping: [`AppView::apply`] takes one node's absolute announcement and returns the
//! cluster-wide transition it caused, if any (a user's first node joining a presence channel,
//! a channel's last subscriber anywhere leaving, …). The engine turns those into frames and
//! webhooks. Because every value is absolute, applying the same change twice changes nothing.

use super::NodeId;
use crate::ids::{ChannelName, UserId};
use std::collections::{BTreeMap, BTreeSet};

/// Everything one node contributes to one app.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Contribution {
    /// Its open connections.
    pub connections: u64,
    /// Its subscribers per channel (channels with none are absent).
    pub subscribers: BTreeMap<ChannelName, u64>,
    /// Its presence members per channel, with their `user_info` JSON text.
    pub members: BTreeMap<ChannelName, BTreeMap<UserId, Option<String>>>,
    /// Users signed in on it.
    pub users: BTreeSet<UserId>,
}

/// One absolute announcement about a node's contribution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// The node now has this many connections.
    Connections(u64),
    /// The channel now has this many subscribers on the node.
    Subscribers(ChannelName, u64),
    /// The user is (or is no longer) a member of the presence channel on the node.
    Member {
        channel: ChannelName,
        user: UserId,
        info: Option<String>,
        present: bool,
    },
    /// The user is (or is no longer) signed in on the node.
    User(UserId, bool),
}

/// A cluster-wide transition caused by one change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The user's first node joined the presence channel.
    MemberAdded {
        channel: ChannelName,
        user: UserId,
        info: Option<String>,
    },
    /// The user's last node left the presence channel.
    MemberRemoved { channel: ChannelName, user: UserId },
    /// The channel's subscriber total over every node went from `was` to `now` (from or to
    /// zero is the channel becoming occupied or vacated).
    Subscribers {
        channel: ChannelName,
        was: u64,
        now: u64,
    },
    /// The user signed in on its first node.
    UserOnline(UserId),
    /// The user signed out of its last node.
    UserOffline(UserId),
}

/// One app's view of the cluster: the contributions of every node heard from.
#[derive(Debug, Default)]
pub(crate) struct AppView {
    nodes: BTreeMap<NodeId, Contribution>,
}

impl AppView {
    /// Applies `node`'s announcement; returns the cluster-wide transition it caused.
    pub(crate) fn apply(&mut self, node: NodeId, change: Change) -> Option<Transition> {
        match change {
            Change::Connections(n) => {
                self.nodes.entry(node).or_default().connections = n;
                None
            }
            Change::Subscribers(channel, n) => {
                let was = self.subscriber_total(&channel);
                let subscribers = &mut self.nodes.entry(node).or_default().subscribers;
                if n == 0 {
                    subscribers.remove(&channel);
                } else {
                    subscribers.insert(channel.clone(), n);
                }
                let now = self.subscriber_total(&channel);
                (was != now).then_some(Transition::Subscribers { channel, was, now })
            }
            Change::Member {
                channel,
                user,
                info,
                present,
            } => {
                let before = self.has_member(&channel, &user);
                let contribution = self.nodes.entry(node).or_default();
                if present {
                    contribution
                        .members
                        .entry(channel.clone())
                        .or_default()
                        .insert(user.clone(), info.clone());
                } else if let Some(members) = contribution.members.get_mut(&channel) {
                    members.remove(&user);
                    if members.is_empty() {
                        contribution.members.remove(&channel);
                    }
                }
                match (before, present) {
                    (false, true) => Some(Transition::MemberAdded {
                        channel,
                        user,
                        info,
                    }),
                    (true, false) if !self.has_member(&channel, &user) => {
                        Some(Transition::MemberRemoved { channel, user })
                    }
                    _ => None,
                }
            }
            Change::User(user, present) => {
                let before = self.user_online(&user);
                let users = &mut self.nodes.entry(node).or_default().users;
                if present {
                    users.insert(user.clone());
                } else {
                    users.remove(&user);
                }
                match (before, present) {
                    (false, true) => Some(Transition::UserOnline(user)),
                    (true, false) if !self.user_online(&user) => {
                        Some(Transition::UserOffline(user))
                    }
                    _ => None,
                }
            }
        }
    }

    /// Replaces everything `node` contributed with `new`; returns the transitions, in the
    /// order a client should hear them (arrivals of the new state before departures of the
    /// old, so a member present in both never flaps).
    pub(crate) fn replace(&mut self, node: NodeId, new: Contribution) -> Vec<Transition> {
        let old = self.nodes.get(&node).cloned().unwrap_or_default();
        let mut changes = Vec::new();
        changes.push(Change::Connections(new.connections));
        for (channel, members) in &new.members {
            for (user, info) in members {
                let known = old.members.get(channel).and_then(|m| m.get(user));
                if known != Some(info) {
                    changes.push(Change::Member {
                        channel: channel.clone(),
                        user: user.clone(),
                        info: info.clone(),
                        present: true,
                    });
                }
            }
        }
        for (channel, members) in &old.members {
            for user in members.keys() {
                if !new
                    .members
                    .get(channel)
                    .is_some_and(|m| m.contains_key(user))
                {
                    changes.push(Change::Member {
                        channel: channel.clone(),
                        user: user.clone(),
                        info: None,
                        present: false,
                    });
                }
            }
        }
        for (channel, n) in &new.subscribers {
            if old.subscribers.get(channel) != Some(n) {
                changes.push(Change::Subscribers(channel.clone(), *n));
            }
        }
        for channel in old.subscribers.keys() {
            if !new.subscribers.contains_key(channel) {
                changes.push(Change::Subscribers(channel.clone(), 0));
            }
        }
        for user in new.users.difference(&old.users) {
            changes.push(Change::User(user.clone(), true));
        }
        for user in old.users.difference(&new.users) {
            changes.push(Change::User(user.clone(), false));
        }
        let transitions = changes
            .into_iter()
            .filter_map(|change| self.apply(node, change))
            .collect();
        if self
            .nodes
            .get(&node)
            .is_some_and(|c| *c == Contribution::default())
        {
            self.nodes.remove(&node);
        }
        transitions
    }

    /// Subscribers of `channel` summed over every node.
    pub(crate) fn subscriber_total(&self, channel: &ChannelName) -> u64 {
        self.nodes
            .values()
            .filter_map(|c| c.subscribers.get(channel))
            .sum()
    }

    /// Subscribers of `channel` on every node but `node`.
    pub(crate) fn subscribers_elsewhere(&self, node: NodeId, channel: &ChannelName) -> u64 {
        self.others(node)
            .filter_map(|c| c.subscribers.get(channel))
            .sum()
    }

    /// Connections on every node but `node`.
    pub(crate) fn connections_elsewhere(&self, node: NodeId) -> u64 {
        self.others(node).map(|c| c.connections).sum()
    }

    /// Channels with subscribers on a node other than `node`.
    pub(crate) fn channels_elsewhere(&self, node: NodeId) -> BTreeSet<&ChannelName> {
        self.others(node)
            .flat_map(|c| c.subscribers.keys())
            .collect()
    }

    /// Members of `channel` on nodes other than `node`.
    pub(crate) fn members_elsewhere(
        &self,
        node: NodeId,
        channel: &ChannelName,
    ) -> BTreeSet<&UserId> {
        self.others(node)
            .filter_map(|c| c.members.get(channel))
            .flat_map(|m| m.keys())
            .collect()
    }

    /// The cluster roster of `channel` (every node, ours included as applied), with each
    /// member's `user_info` from the lowest node holding it.
    pub(crate) fn roster(&self, channel: &ChannelName) -> BTreeMap<&UserId, Option<&str>> {
        let mut roster = BTreeMap::new();
        for members in self.nodes.values().filter_map(|c| c.members.get(channel)) {
            for (user, info) in members {
                roster.entry(user).or_insert(info.as_deref());
            }
        }
        roster
    }

    /// Whether `user` is a member of `channel` on any node.
    pub(crate) fn has_member(&self, channel: &ChannelName, user: &UserId) -> bool {
        self.nodes
            .values()
            .any(|c| c.members.get(channel).is_some_and(|m| m.contains_key(user)))
    }

    /// Whether `user` is signed in on any node.
    pub(crate) fn user_online(&self, user: &UserId) -> bool {
        self.nodes.values().any(|c| c.users.contains(user))
    }

    fn others(&self, node: NodeId) -> impl Iterator<Item = &Contribution> {
        self.nodes
            .iter()
            .filter(move |(id, _)| **id != node)
            .map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> ChannelName {
        ChannelName::parse("presence-room", 200).unwrap()
    }

    fn member(user: &str, present: bool) -> Change {
        Change::Member {
            channel: room(),
            user: UserId::new(user).unwrap(),
            info: None,
            present,
        }
    }

    #[test]
    fn a_user_on_two_nodes_is_one_member_until_both_leave() {
        let mut view = AppView::default();
        let (a, b) = (NodeId(1), NodeId(2));
        assert!(matches!(
            view.apply(a, member("u", true)),
            Some(Transition::MemberAdded { .. })
        ));
        assert_eq!(view.apply(b, member("u", true)), None);
        assert_eq!(view.apply(b, member("u", true)), None, "idempotent");
        assert_eq!(view.apply(a, member("u", false)), None);
        assert!(matches!(
            view.apply(b, member("u", false)),
            Some(Transition::MemberRemoved { .. })
        ));
        assert_eq!(view.apply(b, member("u", false)), None, "idempotent");
    }

    #[test]
    fn occupancy_is_the_sum_over_nodes() {
        let mut view = AppView::default();
        let (a, b) = (NodeId(1), NodeId(2));
        let total = |was, now| {
            Some(Transition::Subscribers {
                channel: room(),
                was,
                now,
            })
        };
        assert_eq!(view.apply(a, Change::Subscribers(room(), 2)), total(0, 2));
        assert_eq!(view.apply(b, Change::Subscribers(room(), 1)), total(2, 3));
        assert_eq!(view.apply(b, Change::Subscribers(room(), 1)), None, "same");
        assert_eq!(view.apply(a, Change::Subscribers(room(), 0)), total(3, 1));
        assert_eq!(view.subscriber_total(&room()), 1);
        assert_eq!(view.apply(b, Change::Subscribers(room(), 0)), total(1, 0));
    }

    #[test]
    fn a_replacement_reports_only_the_differences() {
        let mut view = AppView::default();
        let a = NodeId(1);
        view.apply(a, member("stays", true));
        view.apply(a, member("goes", true));
        let mut new = Contribution::default();
        new.members.entry(room()).or_default().extend([
            (UserId::new("stays").unwrap(), None),
            (UserId::new("comes").unwrap(), None),
        ]);
        let transitions = view.replace(a, new);
        assert_eq!(
            transitions,
            vec![
                Transition::MemberAdded {
                    channel: room(),
                    user: UserId::new("comes").unwrap(),
                    info: None
                },
                Transition::MemberRemoved {
                    channel: room(),
                    user: UserId::new("goes").unwrap()
                },
            ]
        );
        assert_eq!(view.replace(a, Contribution::default()).len(), 2);
        assert!(view.nodes.is_empty(), "an empty node leaves nothing behind");
    }
}
