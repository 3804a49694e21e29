//! Publishing app events to channels, and cache channels' memory of their last event.

use super::{Due, Engine};
use crate::cluster::view::Change;
use crate::ids::{AppId, ChannelKind, ChannelName, ConnId, EventName};
use crate::timers::TimerKey;
use crate::wire::pusher::{self, RawJson};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The last event published to a cache channel, replayed to each new subscriber.
#[derive(Debug)]
pub(super) struct CachedEvent {
    event: EventName,
    data: String,
    expiry: TimerKey,
}

/// Per-app cache of the last event of each cache channel.
pub(super) type Cache = BTreeMap<ChannelName, CachedEvent>;

impl Engine {
    /// Sends `event` to every subscriber of `channel` but `except`; one encoding for all.
    pub(super) fn publish(
        &mut self,
        app: &AppId,
        channel: &ChannelName,
        event: &EventName,
        data: &str,
        except: Option<ConnId>,
    ) {
        if channel.is_cache() {
            self.remember(app, channel, event, data);
        }
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
            &RawJson::string(data),
            None,
        );
        let conns = entry.recipients();
        self.broadcast(app, conns, except, frame);
    }

    fn remember(&mut self, app: &AppId, channel: &ChannelName, event: &EventName, data: &str) {
        let ttl = Duration::from_secs(self.apps[app].config.cache_ttl_secs);
        let expiry = self.timers.schedule(
            self.moment().now + ttl,
            Due::CacheExpiry(app.clone(), channel.clone()),
        );
        let cached = CachedEvent {
            event: event.clone(),
            data: data.to_owned(),
            expiry,
        };
        if let Some(previous) = self.app_mut(app).cache.insert(channel.clone(), cached) {
            self.timers.cancel(previous.expiry);
        }
    }

    pub(super) fn cache_expired(&mut self, app: &AppId, channel: &ChannelName) {
        if let Some(app) = self.apps.get_mut(app) {
            app.cache.remove(channel);
        }
    }

    /// On joining a cache channel: replay its last event, or say there is none.
    pub(super) fn replay_cache(&mut self, app: &AppId, conn: ConnId, channel: &ChannelName) {
        let frame = match self.apps[app].cache.get(channel) {
            Some(cached) => pusher::message(
                cached.event.as_str(),
                Some(channel.as_str()),
                &RawJson::string(&cached.data),
                None,
            ),
            None => {
                self.with_webhooks(app, |hooks, cx| hooks.handle_cache_miss(channel, cx));
                pusher::message(
                    "pusher:cache_miss",
                    Some(channel.as_str()),
                    &RawJson::string("{}"),
                    None,
                )
            }
        };
        self.send(conn, frame);
    }

    /// After a subscriber count change: tell the subscribers (when enabled) and the backend.
    /// A cluster node only records its new count: both follow the cluster-wide total as it
    /// is applied in bus order (see `on_transition`).
    pub(super) fn subscription_count_changed(&mut self, app: &AppId, channel: &ChannelName) {
        let count = self.apps[app]
            .channels
            .get(channel)
            .map_or(0, |c| c.subscriber_count());
        self.cluster_record(app, Change::Subscribers(channel.clone(), count as u64));
        if self.clustered() || channel.kind() == ChannelKind::Presence {
            return;
        }
        self.with_webhooks(app, |hooks, cx| {
            hooks.handle_subscription_count(channel, count, cx)
        });
        self.tell_subscription_count(app, channel, count);
    }

    /// `pusher_internal:subscription_count` to the local subscribers of a non-presence
    /// channel, when the app enables it.
    pub(super) fn tell_subscription_count(
        &mut self,
        app: &AppId,
        channel: &ChannelName,
        count: usize,
    ) {
        if channel.kind() == ChannelKind::Presence
            || !self.apps[app].config.subscription_count_events
        {
            return;
        }
        let Some(entry) = self
            .apps
            .get_mut(app)
            .and_then(|a| a.channels.get_mut(channel))
        else {
            return;
        };
        let data = RawJson::stringified(&json!({ "subscription_count": count }));
        let frame = pusher::message(
            "pusher_internal:subscription_count",
            Some(channel.as_str()),
            &data,
            None,
        );
        let conns = entry.recipients();
        self.broadcast(app, conns, None, frame);
    }
}
