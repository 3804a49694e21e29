//! One app's channels: who is subscribed, and for presence channels, the member roster.

use crate::ids::{ChannelName, ConnId, UserId};
use crate::wire::pusher::RawJson;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The subscribers of one channel, with a cached recipient list for fan-out.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    subscribers: BTreeSet<ConnId>,
    /// Subscribers not yet told they joined (a cluster node's presence joins waiting for
    /// their bus echo): counted, but no recipients of the channel's frames until released.
    held: BTreeSet<ConnId>,
    /// Rebuilt lazily after a change, so a publish to an unchanged channel allocates nothing.
    recipients: Option<Arc<[ConnId]>>,
    /// The members of a presence channel; stays empty for every other kind.
    pub(crate) roster: Roster,
}

impl Channel {
    /// Adds a subscriber; `false` if it was already there.
    pub(crate) fn add(&mut self, conn: ConnId) -> bool {
        let added = self.subscribers.insert(conn);
        if added {
            self.recipients = None;
        }
        added
    }

    /// Adds a subscriber held back from the channel's frames until [`Channel::release`];
    /// `false` if it was already there.
    pub(crate) fn add_held(&mut self, conn: ConnId) -> bool {
        let added = self.add(conn);
        if added {
            self.held.insert(conn);
        }
        added
    }

    /// Whether `conn` is a subscriber still held back.
    pub(crate) fn is_held(&self, conn: ConnId) -> bool {
        self.held.contains(&conn)
    }

    /// Makes a held subscriber a recipient; `false` if it was not held.
    pub(crate) fn release(&mut self, conn: ConnId) -> bool {
        let released = self.held.remove(&conn);
        if released {
            self.recipients = None;
        }
        released
    }

    /// Removes a subscriber; `false` if it was not there.
    pub(crate) fn remove(&mut self, conn: ConnId) -> bool {
        let removed = self.subscribers.remove(&conn);
        if removed {
            self.held.remove(&conn);
            self.recipients = None;
        }
        removed
    }

    /// How many connections are subscribed.
    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Whether nobody is subscribed.
    pub(crate) fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    /// Every subscriber but the held ones, shared so a broadcast costs one reference count.
    pub(crate) fn recipients(&mut self) -> Arc<[ConnId]> {
        let held = &self.held;
        self.recipients
            .get_or_insert_with(|| {
                self.subscribers
                    .iter()
                    .copied()
                    .filter(|c| !held.contains(c))
                    .collect()
            })
            .clone()
    }
}

/// Presence members: one entry per user id however many sockets it has joined with.
#[derive(Debug, Default)]
pub(crate) struct Roster {
    members: BTreeMap<UserId, Member>,
}

#[derive(Debug)]
struct Member {
    /// The member's `user_info` as JSON text (from its first socket).
    info: Option<String>,
    sockets: u32,
}

impl Roster {
    /// Adds one socket of `user`; `true` if the user was not a member before.
    pub(crate) fn join(&mut self, user: &UserId, info: Option<String>) -> bool {
        match self.members.get_mut(user) {
            Some(member) => {
                member.sockets += 1;
                false
            }
            None => {
                self.members
                    .insert(user.clone(), Member { info, sockets: 1 });
                true
            }
        }
    }

    /// Removes one socket of `user`; `true` if that was the user's last one.
    pub(crate) fn leave(&mut self, user: &UserId) -> bool {
        let Some(member) = self.members.get_mut(user) else {
            return false;
        };
        member.sockets -= 1;
        if member.sockets == 0 {
            self.members.remove(user);
            true
        } else {
            false
        }
    }

    /// Whether `user` is a member.
    pub(crate) fn contains(&self, user: &UserId) -> bool {
        self.members.contains_key(user)
    }

    /// Distinct members.
    pub(crate) fn len(&self) -> usize {
        self.members.len()
    }

    /// Member ids in order.
    pub(crate) fn user_ids(&self) -> impl Iterator<Item = &UserId> {
        self.members.keys()
    }

    /// The `pusher_internal:subscription_succeeded` data: `{"presence":{"ids","hash","count"}}`.
    pub(crate) fn subscription_data(&self) -> RawJson {
        let mut ids = Vec::with_capacity(self.members.len());
        let mut hash = String::from("{");
        for (i, (user, member)) in self.members.iter().enumerate() {
            let id = RawJson::string(user.as_str()).0;
            if i > 0 {
                hash.push(',');
            }
            hash.push_str(&id);
            hash.push(':');
            hash.push_str(member.info.as_deref().unwrap_or("null"));
            ids.push(id);
        }
        hash.push('}');
        let json = format!(
            "{{\"presence\":{{\"ids\":[{}],\"hash\":{},\"count\":{}}}}}",
            ids.join(","),
            hash,
            self.members.len()
        );
        RawJson::string(&json)
    }

    /// The `member_added` data for `user`.
    pub(crate) fn member_added_data(&self, user: &UserId) -> RawJson {
        member_added_data(user, self.members.get(user).and_then(|m| m.info.as_deref()))
    }

    /// Each member with its `user_info` JSON text.
    pub(crate) fn members(&self) -> impl Iterator<Item = (&UserId, Option<&str>)> {
        self.members.iter().map(|(u, m)| (u, m.info.as_deref()))
    }
}

/// The data of `member_added` for `user` with its `user_info` JSON text.
pub(crate) fn member_added_data(user: &UserId, info: Option<&str>) -> RawJson {
    RawJson::string(&format!(
        "{{\"user_id\":{},\"user_info\":{}}}",
        RawJson::string(user.as_str()).0,
        info.unwrap_or("null")
    ))
}

/// The data of `member_removed` for `user`.
pub(crate) fn member_removed_data(user: &UserId) -> RawJson {
    RawJson::string(&format!(
        "{{\"user_id\":{}}}",
        RawJson::string(user.as_str()).0
    ))
}

/// All channels of one app, created on first subscribe and dropped when empty.
#[derive(Debug, Default)]
pub(crate) struct ChannelRegistry {
    channels: BTreeMap<ChannelName, Channel>,
}

impl ChannelRegistry {
    /// The channel, created if needed.
    pub(crate) fn entry(&mut self, name: &ChannelName) -> &mut Channel {
        if !self.channels.contains_key(name) {
            self.channels.insert(name.clone(), Channel::default());
        }
        self.channels.get_mut(name).expect("inserted above")
    }

    /// The channel if it has subscribers.
    pub(crate) fn get(&self, name: &ChannelName) -> Option<&Channel> {
        self.channels.get(name)
    }

    /// The channel if it has subscribers, mutably.
    pub(crate) fn get_mut(&mut self, name: &ChannelName) -> Option<&mut Channel> {
        self.channels.get_mut(name)
    }

    /// Drops the channel if nobody is subscribed; `true` if it was dropped.
    pub(crate) fn drop_if_empty(&mut self, name: &ChannelName) -> bool {
        let empty = self.channels.get(name).is_some_and(Channel::is_empty);
        if empty {
            self.channels.remove(name);
        }
        empty
    }

    /// Occupied channels in name order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&ChannelName, &Channel)> {
        self.channels.iter()
    }

    /// How many channels are occupied.
    pub(crate) fn len(&self) -> usize {
        self.channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_cached_until_the_subscribers_change() {
        let mut channel = Channel::default();
        channel.add(ConnId(2));
        channel.add(ConnId(1));
        let first = channel.recipients();
        assert_eq!(&*first, &[ConnId(1), ConnId(2)]);
        assert!(Arc::ptr_eq(&first, &channel.recipients()));
        channel.remove(ConnId(1));
        assert_eq!(&*channel.recipients(), &[ConnId(2)]);
    }

    #[test]
    fn roster_counts_sockets_per_user() {
        let mut roster = Roster::default();
        let alice = UserId::new("alice").unwrap();
        assert!(roster.join(&alice, Some("{\"n\":1}".into())));
        assert!(!roster.join(&alice, None));
        assert!(!roster.leave(&alice));
        assert!(roster.leave(&alice));
        assert_eq!(roster.len(), 0);
    }

    #[test]
    fn subscription_data_is_a_json_string_of_the_roster() {
        let mut roster = Roster::default();
        roster.join(&UserId::new("b").unwrap(), None);
        roster.join(&UserId::new("a").unwrap(), Some("{\"name\":\"A\"}".into()));
        let outer: String = serde_json::from_str(&roster.subscription_data().0).unwrap();
        let inner: serde_json::Value = serde_json::from_str(&outer).unwrap();
        assert_eq!(
            inner,
            serde_json::json!({"presence":{"ids":["a","b"],"hash":{"a":{"name":"A"},"b":null},"count":2}})
        );
    }
}
