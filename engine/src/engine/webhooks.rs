//! Webhooks: what the app's backend is told, batched, with leave events held back.
//!
//! `channel_vacated` and `member_removed` wait `webhook_leave_delay_secs` and are cancelled
//! when the channel or member comes back, so a page reload tells the backend nothing; the
//! matching `channel_occupied` / `member_added` are then not sent again, so occupied/vacated
//! strictly alternate per channel.
//!
//! [`Webhooks`] is one app's sub-part: the engine feeds it what happened (`handle_*`), lends
//! it the timer table for its deadlines, and drains the signed POSTs (`poll_delivery`). An
//! event is built only when an endpoint of the app wants its kind, so an app without, say,
//! `client_event` webhooks spends nothing on them.

use super::{Due, Engine};
use crate::config::{AppConfig, WebhookFilter};
use crate::ids::{AppId, ChannelName, EventName, SocketId, UserId};
use crate::interface::{Output, WebhookDelivery};
use crate::signature::sign_hex;
use crate::timers::{TimerKey, Timers};
use crate::webhook_event::{KindSet, WebhookEvent, WebhookKind};
use crate::wire::pusher::RawJson;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

/// What a [`Webhooks`] call needs from its owner: the time and the engine's timer table.
pub(super) struct TimerCx<'a> {
    /// Monotonic now, for deadlines.
    pub now: Instant,
    /// Wall time in Unix milliseconds, for a batch's `time_ms`.
    pub unix_ms: u64,
    /// The app the sub-part belongs to, for the timers it schedules.
    pub app: &'a AppId,
    /// The engine's timers (shared, so webhook deadlines fire in order with every other).
    pub timers: &'a mut Timers<Due>,
}

/// One endpoint of the app, with the kinds it wants resolved once.
#[derive(Debug)]
struct Endpoint {
    url: String,
    wants: KindSet,
    /// Its channel filter, if any.
    filter: Option<WebhookFilter>,
    /// Its extra headers, as `(name, value)`.
    headers: Vec<(String, String)>,
}

impl Endpoint {
    /// Whether this endpoint is sent `event`.
    fn wants(&self, event: &WebhookEvent) -> bool {
        self.wants.contains(event.kind())
            && self
                .filter
                .as_ref()
                .is_none_or(|filter| filter.admits(event.channel().as_str()))
    }
}

/// One app's webhook bookkeeping; empty (and never filled) for apps without webhooks.
#[derive(Debug)]
pub(super) struct Webhooks {
    endpoints: Vec<Endpoint>,
    /// Every kind any endpoint wants.
    wanted: KindSet,
    key: String,
    secret: String,
    batch_window: Duration,
    leave_delay: Duration,
    /// Events gathered for the next batch.
    pending: Vec<WebhookEvent>,
    /// Channels the backend was last told are occupied.
    reported_occupied: BTreeSet<ChannelName>,
    /// Channels whose `channel_vacated` is waiting out the delay.
    pending_vacate: BTreeMap<ChannelName, TimerKey>,
    /// Presence members whose `member_removed` is waiting out the delay.
    pending_member_removed: BTreeMap<(ChannelName, UserId), TimerKey>,
    /// Signed POSTs ready for the shell.
    deliveries: VecDeque<WebhookDelivery>,
    /// Events built so far (kept for tests: unwanted kinds must cost nothing).
    events_built: u64,
}

impl Webhooks {
    /// The sub-part for `app`, batching for `batch_window`, holding leaves for `leave_delay`.
    pub(super) fn new(app: &AppConfig, batch_window: Duration, leave_delay: Duration) -> Self {
        let endpoints: Vec<Endpoint> = app
            .webhooks
            .iter()
            .map(|hook| Endpoint {
                url: hook.url.clone(),
                wants: KindSet::of_endpoint(hook),
                filter: hook.filter.clone(),
                headers: hook
                    .headers
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect(),
            })
            .collect();
        let wanted = endpoints
            .iter()
            .fold(KindSet::default(), |all, e| all.union(e.wants));
        Webhooks {
            endpoints,
            wanted,
            key: app.key.clone(),
            secret: app.secret.clone(),
            batch_window,
            leave_delay,
            pending: Vec::new(),
            reported_occupied: BTreeSet::new(),
            pending_vacate: BTreeMap::new(),
            pending_member_removed: BTreeMap::new(),
            deliveries: VecDeque::new(),
            events_built: 0,
        }
    }

    /// Bookkeeping entries still held (for leak checks).
    pub(super) fn len(&self) -> usize {
        self.pending.len()
            + self.reported_occupied.len()
            + self.pending_vacate.len()
            + self.pending_member_removed.len()
    }

    /// Whether any endpoint wants events of `kind`.
    pub(super) fn wants(&self, kind: WebhookKind) -> bool {
        self.wanted.contains(kind)
    }

    /// A channel got its first subscriber.
    pub(super) fn handle_channel_occupied(&mut self, channel: &ChannelName, cx: &mut TimerCx<'_>) {
        if !self.wants(WebhookKind::ChannelOccupied) && !self.wants(WebhookKind::ChannelVacated) {
            return;
        }
        if let Some(timer) = self.pending_vacate.remove(channel) {
            cx.timers.cancel(timer);
        } else if self.reported_occupied.insert(channel.clone()) {
            self.queue(
                WebhookKind::ChannelOccupied,
                || WebhookEvent::ChannelOccupied {
                    channel: channel.clone(),
                },
                cx,
            );
        }
    }

    /// A channel lost its last subscriber: `channel_vacated` after the leave delay.
    pub(super) fn handle_channel_emptied(&mut self, channel: &ChannelName, cx: &mut TimerCx<'_>) {
        if !self.reported_occupied.contains(channel) {
            return;
        }
        let due = Due::ChannelVacated(cx.app.clone(), channel.clone());
        let timer = cx.timers.schedule(cx.now + self.leave_delay, due);
        self.pending_vacate.insert(channel.clone(), timer);
    }

    /// The leave delay of an emptied channel passed with nobody back.
    pub(super) fn handle_vacate_due(&mut self, channel: ChannelName, cx: &mut TimerCx<'_>) {
        self.pending_vacate.remove(&channel);
        self.reported_occupied.remove(&channel);
        self.queue(
            WebhookKind::ChannelVacated,
            || WebhookEvent::ChannelVacated { channel },
            cx,
        );
    }

    /// A user joined a presence channel with its first socket.
    pub(super) fn handle_member_added(
        &mut self,
        channel: &ChannelName,
        user: &UserId,
        cx: &mut TimerCx<'_>,
    ) {
        let key = (channel.clone(), user.clone());
        if let Some(timer) = self.pending_member_removed.remove(&key) {
            cx.timers.cancel(timer);
            return;
        }
        let (channel, user) = key;
        self.queue(
            WebhookKind::MemberAdded,
            || WebhookEvent::MemberAdded { channel, user },
            cx,
        );
    }

    /// A user left a presence channel with its last socket: `member_removed` after the delay.
    pub(super) fn handle_member_left(
        &mut self,
        channel: &ChannelName,
        user: &UserId,
        cx: &mut TimerCx<'_>,
    ) {
        // Held back even for endpoints that want only `member_added`: a quick return must
        // cancel it, or the return would be announced as a second `member_added`.
        if !self.wants(WebhookKind::MemberRemoved) && !self.wants(WebhookKind::MemberAdded) {
            return;
        }
        let due = Due::MemberRemoved(cx.app.clone(), channel.clone(), user.clone());
        let timer = cx.timers.schedule(cx.now + self.leave_delay, due);
        self.pending_member_removed
            .insert((channel.clone(), user.clone()), timer);
    }

    /// The leave delay of a member passed without its return.
    pub(super) fn handle_member_removed_due(
        &mut self,
        channel: ChannelName,
        user: UserId,
        cx: &mut TimerCx<'_>,
    ) {
        let key = (channel, user);
        self.pending_member_removed.remove(&key);
        let (channel, user) = key;
        self.queue(
            WebhookKind::MemberRemoved,
            || WebhookEvent::MemberRemoved { channel, user },
            cx,
        );
    }

    /// A client event was relayed; `data` is the relayed JSON string, decoded only if wanted.
    pub(super) fn handle_client_event(
        &mut self,
        channel: &ChannelName,
        event: &EventName,
        data: &RawJson,
        sender: (SocketId, Option<&UserId>),
        cx: &mut TimerCx<'_>,
    ) {
        let (socket_id, user) = sender;
        self.queue(
            WebhookKind::ClientEvent,
            || WebhookEvent::ClientEvent {
                channel: channel.clone(),
                event: event.clone(),
                data: serde_json::from_str::<String>(&data.0).unwrap_or_default(),
                socket_id,
                user: user.cloned(),
            },
            cx,
        );
    }

    /// A connection joined a cache channel with nothing cached.
    pub(super) fn handle_cache_miss(&mut self, channel: &ChannelName, cx: &mut TimerCx<'_>) {
        self.queue(
            WebhookKind::CacheMiss,
            || WebhookEvent::CacheMiss {
                channel: channel.clone(),
            },
            cx,
        );
    }

    /// A non-presence channel's subscriber count changed.
    pub(super) fn handle_subscription_count(
        &mut self,
        channel: &ChannelName,
        count: usize,
        cx: &mut TimerCx<'_>,
    ) {
        self.queue(
            WebhookKind::SubscriptionCount,
            || WebhookEvent::SubscriptionCount {
                channel: channel.clone(),
                count,
            },
            cx,
        );
    }

    /// How long `channel_vacated` and `member_removed` are held back.
    pub(super) fn leave_delay(&self) -> Duration {
        self.leave_delay
    }

    /// Builds and gathers an event of `kind` for the next batch, when anyone wants that kind.
    pub(super) fn queue(
        &mut self,
        kind: WebhookKind,
        build: impl FnOnce() -> WebhookEvent,
        cx: &mut TimerCx<'_>,
    ) {
        if !self.wants(kind) {
            return;
        }
        let batching = !self.batch_window.is_zero();
        if batching && self.pending.is_empty() {
            let due = Due::WebhookFlush(cx.app.clone());
            cx.timers.schedule(cx.now + self.batch_window, due);
        }
        let event = build();
        debug_assert_eq!(event.kind(), kind);
        self.events_built += 1;
        self.pending.push(event);
        if !batching {
            // Batching off: each event is its own POST, sent as it happens.
            self.handle_flush_due(cx);
        }
    }

    /// The batch window closed: one signed POST per endpoint that wants any gathered event.
    pub(super) fn handle_flush_due(&mut self, cx: &mut TimerCx<'_>) {
        let events = std::mem::take(&mut self.pending);
        for endpoint in &self.endpoints {
            let wanted: Vec<Value> = events
                .iter()
                .filter(|e| endpoint.wants(e))
                .map(WebhookEvent::to_json)
                .collect();
            if wanted.is_empty() {
                continue;
            }
            let body = json!({ "time_ms": cx.unix_ms, "events": wanted }).to_string();
            let signature = sign_hex(&self.secret, body.as_bytes());
            let mut headers = vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Pusher-Key".into(), self.key.clone()),
                ("X-Pusher-Signature".into(), signature),
            ];
            headers.extend(endpoint.headers.iter().cloned());
            self.deliveries.push_back(WebhookDelivery {
                url: endpoint.url.clone(),
                body: body.into_bytes().into(),
                headers,
            });
        }
    }

    /// Takes `app`'s new endpoints and credentials, keeping what is pending (the batch being
    /// gathered, the leaves held back, what the backend was told is occupied).
    pub(super) fn reconfigure(&mut self, app: &AppConfig) {
        let fresh = Webhooks::new(app, self.batch_window, self.leave_delay);
        self.endpoints = fresh.endpoints;
        self.wanted = fresh.wanted;
        self.key = fresh.key;
        self.secret = fresh.secret;
    }

    /// Nobody can come back (the server is shutting down, or the app was removed, its
    /// connections closed): the held-back `member_removed` and `channel_vacated` are due now,
    /// and the batch goes out at once instead of after its window.
    pub(super) fn release_held_back(&mut self, cx: &mut TimerCx<'_>) {
        for ((channel, user), timer) in std::mem::take(&mut self.pending_member_removed) {
            cx.timers.cancel(timer);
            self.queue(
                WebhookKind::MemberRemoved,
                || WebhookEvent::MemberRemoved { channel, user },
                cx,
            );
        }
        for (channel, timer) in std::mem::take(&mut self.pending_vacate) {
            cx.timers.cancel(timer);
            self.reported_occupied.remove(&channel);
            self.queue(
                WebhookKind::ChannelVacated,
                || WebhookEvent::ChannelVacated { channel },
                cx,
            );
        }
        if !self.pending.is_empty() {
            self.handle_flush_due(cx);
        }
    }

    /// The next signed POST to hand to the shell.
    #[must_use]
    pub(super) fn poll_delivery(&mut self) -> Option<WebhookDelivery> {
        self.deliveries.pop_front()
    }

    /// How many events were built so far.
    #[cfg(test)]
    fn events_built(&self) -> u64 {
        self.events_built
    }
}

impl Engine {
    /// Runs `f` on `app`'s webhook sub-part, then moves its deliveries to the outputs.
    /// An app that is gone (a timer outliving it) is ignored.
    pub(super) fn with_webhooks(
        &mut self,
        app: &AppId,
        f: impl FnOnce(&mut Webhooks, &mut TimerCx<'_>),
    ) {
        let moment = self.moment();
        let Some(state) = self.apps.get_mut(app) else {
            return;
        };
        let mut cx = TimerCx {
            now: moment.now,
            unix_ms: moment.unix_ms,
            app,
            timers: &mut self.timers,
        };
        f(&mut state.webhooks, &mut cx);
        while let Some(delivery) = state.webhooks.poll_delivery() {
            if self.watching {
                self.outputs.push_back(Output::Debug(super::DebugEvent {
                    app: app.clone(),
                    kind: super::DebugKind::WebhookQueued,
                    channel: None,
                    event: None,
                    socket_id: None,
                    data: Some(super::debug::preview(&format!(
                        "{} {}",
                        delivery.url,
                        String::from_utf8_lossy(&delivery.body)
                    ))),
                    unix_ms: moment.unix_ms,
                }));
            }
            self.outputs.push_back(Output::Webhook(delivery));
        }
    }
}

#[cfg(test)]
// Tests need some instant to start from; its value does not matter.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use crate::config::WebhookConfig;

    fn app_with_endpoint(types: &[&str]) -> AppConfig {
        AppConfig {
            webhooks: vec![WebhookConfig {
                url: "http://hooks.test/".into(),
                event_types: types.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            }],
            ..AppConfig::default()
        }
    }

    fn client_event(hooks: &mut Webhooks, timers: &mut Timers<Due>, data: &RawJson) {
        let app = AppId::new("app-id");
        let mut cx = TimerCx {
            now: Instant::now(),
            unix_ms: 0,
            app: &app,
            timers,
        };
        let channel = ChannelName::parse("private-a", 200).unwrap();
        let event = EventName::parse("client-x", 200).unwrap();
        hooks.handle_client_event(&channel, &event, data, (SocketId::new(1, 2), None), &mut cx);
    }

    #[test]
    fn client_events_nobody_wants_cost_nothing() {
        let second = Duration::from_secs(1);
        let mut hooks = Webhooks::new(&app_with_endpoint(&["channel_occupied"]), second, second);
        let mut timers = Timers::default();

        client_event(&mut hooks, &mut timers, &RawJson::string("{\"a\":1}"));

        assert_eq!(hooks.events_built(), 0, "the data was not even decoded");
        assert_eq!(hooks.len(), 0);
        assert_eq!(timers.len(), 0, "no batch window was opened");
    }

    #[test]
    fn wanted_client_events_are_built_batched_and_signed() {
        let second = Duration::from_secs(1);
        let mut hooks = Webhooks::new(&app_with_endpoint(&["client_event"]), second, second);
        let mut timers = Timers::default();

        client_event(&mut hooks, &mut timers, &RawJson::string("{\"a\":1}"));
        let app = AppId::new("app-id");
        let mut cx = TimerCx {
            now: Instant::now(),
            unix_ms: 5,
            app: &app,
            timers: &mut timers,
        };
        hooks.handle_flush_due(&mut cx);

        assert_eq!(hooks.events_built(), 1);
        assert_eq!(timers.len(), 1, "the batch window");
        let delivery = hooks.poll_delivery().expect("one POST");
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert_eq!(body["time_ms"], 5);
        assert_eq!(body["events"][0]["data"], "{\"a\":1}");
        assert_eq!(hooks.poll_delivery(), None);
    }

    fn occupy(hooks: &mut Webhooks, timers: &mut Timers<Due>, channels: &[&str]) {
        let app = AppId::new("app-id");
        let mut cx = TimerCx {
            now: Instant::now(),
            unix_ms: 7,
            app: &app,
            timers,
        };
        for name in channels {
            let channel = ChannelName::parse(name, 200).unwrap();
            hooks.handle_channel_occupied(&channel, &mut cx);
        }
        hooks.handle_flush_due(&mut cx);
    }

    fn channels_of(delivery: &WebhookDelivery) -> Vec<String> {
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["channel"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn a_filter_keeps_only_the_channels_it_names() {
        let mut app = app_with_endpoint(&[]);
        app.webhooks[0].filter = Some(WebhookFilter {
            channel_name_starts_with: Some("private-".into()),
            channel_name_ends_with: Some("-room".into()),
        });
        let second = Duration::from_secs(1);
        let mut hooks = Webhooks::new(&app, second, second);
        let mut timers = Timers::default();

        occupy(
            &mut hooks,
            &mut timers,
            &["private-a-room", "private-b", "news-room", "private-c-room"],
        );

        let delivery = hooks.poll_delivery().expect("one POST");
        assert_eq!(channels_of(&delivery), ["private-a-room", "private-c-room"]);
        occupy(&mut hooks, &mut timers, &["news"]);
        assert_eq!(hooks.poll_delivery(), None, "nothing left after the filter");
    }

    #[test]
    fn an_endpoints_headers_go_with_each_post_after_the_signed_ones() {
        let mut app = app_with_endpoint(&[]);
        app.webhooks[0].headers = BTreeMap::from([("Authorization".into(), "Bearer t".into())]);
        let second = Duration::from_secs(1);
        let mut hooks = Webhooks::new(&app, second, second);
        let mut timers = Timers::default();

        occupy(&mut hooks, &mut timers, &["news"]);

        let delivery = hooks.poll_delivery().expect("one POST");
        let names: Vec<&str> = delivery.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(delivery.headers[3].1, "Bearer t");
        assert_eq!(
            names,
            [
                "Content-Type",
                "X-Pusher-Key",
                "X-Pusher-Signature",
                "Authorization"
            ]
        );
    }

    #[test]
    fn without_a_batch_window_each_event_is_its_own_post() {
        let mut hooks = Webhooks::new(
            &app_with_endpoint(&[]),
            Duration::ZERO,
            Duration::from_secs(1),
        );
        let mut timers = Timers::default();

        occupy(&mut hooks, &mut timers, &["a", "b", "c"]);

        let posts: Vec<Vec<String>> = std::iter::from_fn(|| hooks.poll_delivery())
            .map(|d| channels_of(&d))
            .collect();
        assert_eq!(posts, [["a"], ["b"], ["c"]]);
        assert_eq!(timers.len(), 0, "no batch window was opened");
    }
}
