//! Webhook events: what an app's backend can be told, typed, and which endpoints want what.

use crate::config::WebhookConfig;
use crate::ids::{ChannelName, EventName, SocketId, UserId};
use serde_json::{json, Value};

/// The kinds of webhook event, as named on the wire and in `event_types`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum WebhookKind {
    /// A channel got its first subscriber.
    ChannelOccupied,
    /// A channel lost its last subscriber (and stayed empty for the leave delay).
    ChannelVacated,
    /// A user joined a presence channel with its first socket.
    MemberAdded,
    /// A user left a presence channel with its last socket (and stayed away for the delay).
    MemberRemoved,
    /// A client sent a `client-` event.
    ClientEvent,
    /// A connection joined a cache channel that had no cached event.
    CacheMiss,
    /// A non-presence channel's subscriber count changed.
    SubscriptionCount,
}

impl WebhookKind {
    /// Every kind, in the order the documentation lists them.
    pub(crate) const ALL: [WebhookKind; 7] = [
        WebhookKind::ChannelOccupied,
        WebhookKind::ChannelVacated,
        WebhookKind::MemberAdded,
        WebhookKind::MemberRemoved,
        WebhookKind::ClientEvent,
        WebhookKind::CacheMiss,
        WebhookKind::SubscriptionCount,
    ];

    /// The wire name (`"channel_occupied"`, …).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WebhookKind::ChannelOccupied => "channel_occupied",
            WebhookKind::ChannelVacated => "channel_vacated",
            WebhookKind::MemberAdded => "member_added",
            WebhookKind::MemberRemoved => "member_removed",
            WebhookKind::ClientEvent => "client_event",
            WebhookKind::CacheMiss => "cache_miss",
            WebhookKind::SubscriptionCount => "subscription_count",
        }
    }

    /// The kind named `name`, if any.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// A set of webhook kinds: what one endpoint, or any endpoint of an app, wants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KindSet(u8);

impl KindSet {
    /// The kinds `endpoint` asks for: its `event_types`, or when empty every kind but the
    /// chatty `subscription_count`, which must be asked for by name.
    pub(crate) fn of_endpoint(endpoint: &WebhookConfig) -> Self {
        let mut set = KindSet::default();
        if endpoint.event_types.is_empty() {
            for kind in WebhookKind::ALL {
                if kind != WebhookKind::SubscriptionCount {
                    set.insert(kind);
                }
            }
        } else {
            // Unknown names were refused when the configuration was validated.
            for kind in endpoint
                .event_types
                .iter()
                .filter_map(|t| WebhookKind::parse(t))
            {
                set.insert(kind);
            }
        }
        set
    }

    /// Adds `kind`.
    pub(crate) fn insert(&mut self, kind: WebhookKind) {
        self.0 |= kind.bit();
    }

    /// Every kind in `self` or `other`.
    pub(crate) fn union(self, other: KindSet) -> Self {
        KindSet(self.0 | other.0)
    }

    /// Whether `kind` is in the set.
    pub(crate) fn contains(self, kind: WebhookKind) -> bool {
        self.0 & kind.bit() != 0
    }
}

/// One event for an app's backend, with everything its JSON needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WebhookEvent {
    /// `channel_occupied`.
    ChannelOccupied {
        /// The channel.
        channel: ChannelName,
    },
    /// `channel_vacated`.
    ChannelVacated {
        /// The channel.
        channel: ChannelName,
    },
    /// `member_added`.
    MemberAdded {
        /// The presence channel.
        channel: ChannelName,
        /// The member.
        user: UserId,
    },
    /// `member_removed`.
    MemberRemoved {
        /// The presence channel.
        channel: ChannelName,
        /// The member.
        user: UserId,
    },
    /// `client_event`.
    ClientEvent {
        /// The channel it was sent on.
        channel: ChannelName,
        /// The `client-` event name.
        event: EventName,
        /// The event's data as the backend gets it: the relayed JSON string, decoded.
        data: String,
        /// The sender.
        socket_id: SocketId,
        /// The sender's presence member id, on presence channels.
        user: Option<UserId>,
    },
    /// `cache_miss`.
    CacheMiss {
        /// The cache channel.
        channel: ChannelName,
    },
    /// `subscription_count`.
    SubscriptionCount {
        /// The channel.
        channel: ChannelName,
        /// Its subscribers now.
        count: usize,
    },
}

impl WebhookEvent {
    /// The channel it is about (every kind has one).
    pub(crate) fn channel(&self) -> &ChannelName {
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::MemberAdded { channel, .. }
            | WebhookEvent::MemberRemoved { channel, .. }
            | WebhookEvent::ClientEvent { channel, .. }
            | WebhookEvent::CacheMiss { channel }
            | WebhookEvent::SubscriptionCount { channel, .. } => channel,
        }
    }

    /// Which kind it is.
    pub(crate) fn kind(&self) -> WebhookKind {
        match self {
            WebhookEvent::ChannelOccupied { .. } => WebhookKind::ChannelOccupied,
            WebhookEvent::ChannelVacated { .. } => WebhookKind::ChannelVacated,
            WebhookEvent::MemberAdded { .. } => WebhookKind::MemberAdded,
            WebhookEvent::MemberRemoved { .. } => WebhookKind::MemberRemoved,
            WebhookEvent::ClientEvent { .. } => WebhookKind::ClientEvent,
            WebhookEvent::CacheMiss { .. } => WebhookKind::CacheMiss,
            WebhookEvent::SubscriptionCount { .. } => WebhookKind::SubscriptionCount,
        }
    }

    /// The event's JSON object in a webhook body's `events` list.
    pub(crate) fn to_json(&self) -> Value {
        let name = self.kind().as_str();
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::CacheMiss { channel } => {
                json!({ "name": name, "channel": channel.as_str() })
            }
            WebhookEvent::MemberAdded { channel, user }
            | WebhookEvent::MemberRemoved { channel, user } => {
                json!({ "name": name, "channel": channel.as_str(), "user_id": user.as_str() })
            }
            WebhookEvent::ClientEvent {
                channel,
                event,
                data,
                socket_id,
                user,
            } => {
                let mut value = json!({
                    "name": name,
                    "channel": channel.as_str(),
                    "event": event.as_str(),
                    "data": data,
                    "socket_id": socket_id.to_string(),
                });
                if let Some(user) = user {
                    value["user_id"] = user.as_str().into();
                }
                value
            }
            WebhookEvent::SubscriptionCount { channel, count } => {
                json!({ "name": name, "channel": channel.as_str(), "subscription_count": count })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::WEBHOOK_EVENT_TYPES;

    fn endpoint(types: &[&str]) -> WebhookConfig {
        WebhookConfig {
            url: "http://hooks.test/".into(),
            event_types: types.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn kinds_are_the_configurable_names() {
        let names: Vec<&str> = WebhookKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, WEBHOOK_EVENT_TYPES);
        assert_eq!(
            WebhookKind::parse("member_added"),
            Some(WebhookKind::MemberAdded)
        );
        assert_eq!(WebhookKind::parse("member_joined"), None);
    }

    #[test]
    fn endpoints_want_what_they_name_or_all_but_subscription_count() {
        let all = KindSet::of_endpoint(&endpoint(&[]));
        assert!(all.contains(WebhookKind::ClientEvent));
        assert!(!all.contains(WebhookKind::SubscriptionCount));
        let some = KindSet::of_endpoint(&endpoint(&["subscription_count", "cache_miss"]));
        assert!(some.contains(WebhookKind::SubscriptionCount));
        assert!(some.contains(WebhookKind::CacheMiss));
        assert!(!some.contains(WebhookKind::ClientEvent));
        assert!(all.union(some).contains(WebhookKind::SubscriptionCount));
        assert!(!KindSet::default().contains(WebhookKind::ChannelOccupied));
    }

    #[test]
    fn client_events_name_their_member_only_when_there_is_one() {
        let channel = ChannelName::parse("presence-a", 200).unwrap();
        let event = WebhookEvent::ClientEvent {
            channel,
            event: EventName::parse("client-x", 200).unwrap(),
            data: "{}".into(),
            socket_id: SocketId::new(1, 2),
            user: None,
        };
        let value = event.to_json();
        assert_eq!(value["name"], "client_event");
        assert_eq!(value["socket_id"], "1.2");
        assert!(value.get("user_id").is_none());
    }
}
