//! Publishing app events to channels, and cache channels' memory of their last event.

use super::{Due, Engine};
use crate::ids::{AppIndex, ChannelKind, ChannelName, ConnId};
use crate::interface::Output;
use crate::timers::TimerKey;
use crate::wire::pusher::{self, RawJson};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

/// The last event published to a cache channel, replayed to each new subscriber.
#[derive(Debug)]
pub(super) struct CachedEvent {
    event: String,
    data: String,
    expiry: TimerKey,
}

/// Per-app cache of the last event of each cache channel.
pub(super) type Cache = BTreeMap<ChannelName, CachedEvent>;

impl Engine {
    /// Sends `event` to every subscriber of `channel` but `except`; one encoding for all.
    pub(super) fn publish(
        &mut self,
        app: AppIndex,
        channel: &ChannelName,
        event: &str,
        data: &str,
        except: Option<ConnId>,
    ) {
        if channel.is_cache() {
            self.remember(app, channel, event, data);
        }
        let Some(entry) = self.apps[app.0].channels.get_mut(channel) else {
            return;
        };
        let frame = pusher::message(event, Some(channel.as_str()), &RawJson::string(data), None);
        self.outputs.push_back(Output::Broadcast {
            conns: entry.recipients(),
            except,
            frame,
        });
    }

    fn remember(&mut self, app: AppIndex, channel: &ChannelName, event: &str, data: &str) {
        let ttl = Duration::from_secs(self.apps[app.0].config.cache_ttl_secs);
        let expiry = self.timers.schedule(
            self.moment().now + ttl,
            Due::CacheExpiry(app, channel.clone()),
        );
        let cached = CachedEvent {
            event: event.to_owned(),
            data: data.to_owned(),
            expiry,
        };
        if let Some(previous) = self.apps[app.0].cache.insert(channel.clone(), cached) {
            self.timers.cancel(previous.expiry);
        }
    }

    pub(super) fn cache_expired(&mut self, app: AppIndex, channel: &ChannelName) {
        self.apps[app.0].cache.remove(channel);
    }

    /// On joining a cache channel: replay its last event, or say there is none.
    pub(super) fn replay_cache(&mut self, app: AppIndex, conn: ConnId, channel: &ChannelName) {
        let frame = match self.apps[app.0].cache.get(channel) {
            Some(cached) => pusher::message(
                &cached.event,
                Some(channel.as_str()),
                &RawJson::string(&cached.data),
                None,
            ),
            None => {
                self.queue_webhook(
                    app,
                    json!({ "name": "cache_miss", "channel": channel.as_str() }),
                );
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
    pub(super) fn subscription_count_changed(&mut self, app: AppIndex, channel: &ChannelName) {
        if channel.kind() == ChannelKind::Presence {
            return;
        }
        let count = self.apps[app.0]
            .channels
            .get(channel)
            .map_or(0, |c| c.subscriber_count());
        self.queue_webhook(
            app,
            json!({ "name": "subscription_count", "channel": channel.as_str(), "subscription_count": count }),
        );
        if !self.apps[app.0].config.subscription_count_events {
            return;
        }
        let Some(entry) = self.apps[app.0].channels.get_mut(channel) else {
            return;
        };
        let data = RawJson::stringified(&json!({ "subscription_count": count }));
        let frame = pusher::message(
            "pusher_internal:subscription_count",
            Some(channel.as_str()),
            &data,
            None,
        );
        self.outputs.push_back(Output::Broadcast {
            conns: entry.recipients(),
            except: None,
            frame,
        });
    }
}
