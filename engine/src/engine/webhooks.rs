//! Webhooks: what the app's backend is told, batched, with leave events held back.
//!
//! `channel_vacated` and `member_removed` wait `webhook_leave_delay_secs` and are cancelled
//! when the channel or member comes back, so a page reload tells the backend nothing; the
//! matching `channel_occupied` / `member_added` are then not sent again, so occupied/vacated
//! strictly alternate per channel.

use super::{App, Due, Engine};
use crate::ids::{AppId, ChannelName, UserId};
use crate::interface::{Output, WebhookDelivery};
use crate::signature::sign_hex;
use crate::timers::TimerKey;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Per-app webhook bookkeeping; empty (and never filled) for apps without webhooks.
#[derive(Debug, Default)]
pub(super) struct WebhookState {
    /// Events gathered for the next batch.
    pending: Vec<Value>,
    /// Channels the backend was last told are occupied.
    reported_occupied: BTreeSet<ChannelName>,
    /// Channels whose `channel_vacated` is waiting out the delay.
    pending_vacate: BTreeMap<ChannelName, TimerKey>,
    /// Presence members whose `member_removed` is waiting out the delay.
    pending_member_removed: BTreeMap<(ChannelName, UserId), TimerKey>,
}

impl WebhookState {
    /// Bookkeeping entries still held (for leak checks).
    pub(super) fn len(&self) -> usize {
        self.pending.len()
            + self.reported_occupied.len()
            + self.pending_vacate.len()
            + self.pending_member_removed.len()
    }
}

impl Engine {
    /// Whether any endpoint of `app` wants events named `name`.
    fn wants_webhook(&self, app: &AppId, name: &str) -> bool {
        self.apps[app]
            .config
            .webhooks
            .iter()
            .any(|hook| hook.wants(name))
    }

    /// Queues one event for the next batch, starting the batch window if needed.
    pub(super) fn queue_webhook(&mut self, app: &AppId, event: Value) {
        let name = event["name"].as_str().unwrap_or_default();
        if !self.wants_webhook(app, name) {
            return;
        }
        let at = self.moment().now + Duration::from_millis(self.config.webhook_batch_ms);
        let Some(state) = self.apps.get_mut(app).map(|a| &mut a.webhooks) else {
            return;
        };
        if state.pending.is_empty() {
            self.timers.schedule(at, Due::WebhookFlush(app.clone()));
        }
        state.pending.push(event);
    }

    pub(super) fn webhook_channel_occupied(&mut self, app: &AppId, channel: &ChannelName) {
        if !self.wants_webhook(app, "channel_occupied")
            && !self.wants_webhook(app, "channel_vacated")
        {
            return;
        }
        let state = &mut self.app_mut(app).webhooks;
        if let Some(timer) = state.pending_vacate.remove(channel) {
            self.timers.cancel(timer);
        } else if state.reported_occupied.insert(channel.clone()) {
            self.queue_webhook(
                app,
                json!({ "name": "channel_occupied", "channel": channel.as_str() }),
            );
        }
    }

    pub(super) fn webhook_channel_emptied(&mut self, app: &AppId, channel: &ChannelName) {
        if !self.apps[app].webhooks.reported_occupied.contains(channel) {
            return;
        }
        let at = self.moment().now + Duration::from_secs(self.config.webhook_leave_delay_secs);
        let timer = self
            .timers
            .schedule(at, Due::ChannelVacated(app.clone(), channel.clone()));
        self.app_mut(app)
            .webhooks
            .pending_vacate
            .insert(channel.clone(), timer);
    }

    pub(super) fn channel_vacated_due(&mut self, app: &AppId, channel: ChannelName) {
        let Some(state) = self.apps.get_mut(app).map(|a| &mut a.webhooks) else {
            return;
        };
        state.pending_vacate.remove(&channel);
        state.reported_occupied.remove(&channel);
        self.queue_webhook(
            app,
            json!({ "name": "channel_vacated", "channel": channel.as_str() }),
        );
    }

    pub(super) fn webhook_member_added(
        &mut self,
        app: &AppId,
        channel: &ChannelName,
        user: &UserId,
    ) {
        let key = (channel.clone(), user.clone());
        if let Some(timer) = self
            .app_mut(app)
            .webhooks
            .pending_member_removed
            .remove(&key)
        {
            self.timers.cancel(timer);
            return;
        }
        self.queue_webhook(app, json!({ "name": "member_added", "channel": channel.as_str(), "user_id": user.as_str() }));
    }

    pub(super) fn webhook_member_removed(
        &mut self,
        app: &AppId,
        channel: &ChannelName,
        user: &UserId,
    ) {
        // Held back even for endpoints that want only `member_added`: a quick return must
        // cancel it, or the return would be announced as a second `member_added`.
        if !self.wants_webhook(app, "member_removed") && !self.wants_webhook(app, "member_added") {
            return;
        }
        let at = self.moment().now + Duration::from_secs(self.config.webhook_leave_delay_secs);
        let timer = self.timers.schedule(
            at,
            Due::MemberRemoved(app.clone(), channel.clone(), user.clone()),
        );
        self.app_mut(app)
            .webhooks
            .pending_member_removed
            .insert((channel.clone(), user.clone()), timer);
    }

    pub(super) fn member_removed_due(&mut self, app: &AppId, channel: ChannelName, user: UserId) {
        let Some(state) = self.apps.get_mut(app).map(|a| &mut a.webhooks) else {
            return;
        };
        state
            .pending_member_removed
            .remove(&(channel.clone(), user.clone()));
        self.queue_webhook(app, json!({ "name": "member_removed", "channel": channel.as_str(), "user_id": user.as_str() }));
    }

    /// Sends the gathered batch: one signed POST per endpoint that wants any of its events.
    pub(super) fn flush_webhooks(&mut self, app: &AppId) {
        let unix_ms = self.moment().unix_ms;
        let Some(App {
            config, webhooks, ..
        }) = self.apps.get_mut(app)
        else {
            return;
        };
        let events = std::mem::take(&mut webhooks.pending);
        for hook in &config.webhooks {
            let wanted: Vec<&Value> = events
                .iter()
                .filter(|e| hook.wants(e["name"].as_str().unwrap_or_default()))
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let body = json!({ "time_ms": unix_ms, "events": wanted }).to_string();
            let signature = sign_hex(&config.secret, body.as_bytes());
            self.outputs.push_back(Output::Webhook(WebhookDelivery {
                url: hook.url.clone(),
                body: body.into_bytes().into(),
                headers: vec![
                    ("Content-Type".into(), "application/json".into()),
                    ("X-Pusher-Key".into(), config.key.clone()),
                    ("X-Pusher-Signature".into(), signature),
                ],
            }));
        }
    }
}
