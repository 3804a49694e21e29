//! Joining and leaving channels, with each kind's authorization rule and presence rosters.

use super::Engine;
use crate::channels::member_removed_data;
use crate::cluster::view::Change;
use crate::ids::{AppId, ChannelKind, ChannelName, ConnId, UserId};
use crate::signature::verify_client_auth;
use crate::wire::pusher::{self, user_id_of, Malformed, RawJson, Subscribe, Unsubscribe};
use serde_json::value::RawValue;

/// Why a subscription was refused, in the shape pusher-js reports as `pusher:subscription_error`.
struct Refusal {
    kind: &'static str,
    status: u16,
    message: String,
}

impl Refusal {
    fn auth(message: impl Into<String>) -> Self {
        Refusal {
            kind: "AuthError",
            status: 401,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Refusal {
            kind: "BadRequest",
            status: 400,
            message: message.into(),
        }
    }

    fn forbidden(message: impl Into<String>) -> Self {
        Refusal {
            kind: "Forbidden",
            status: 403,
            message: message.into(),
        }
    }
}

/// A presence member as proven by its signed `channel_data`.
struct Member {
    user: UserId,
    info: Option<String>,
}

impl Engine {
    pub(super) fn on_subscribe(&mut self, conn: ConnId, data: Option<&RawValue>) {
        let request: Subscribe = match pusher::parse_data(data) {
            Ok(request) => request,
            Err(Malformed(why)) => {
                return self.send_error(conn, None, &format!("pusher:subscribe: {why}"))
            }
        };
        match self.authorize(conn, &request) {
            Ok((channel, member)) => self.join(conn, channel, member),
            Err(refusal) => self.send_refusal(conn, &request.channel, &refusal),
        }
    }

    /// Validates the name and checks the channel kind's rule; returns the presence member if any.
    fn authorize(
        &self,
        conn: ConnId,
        request: &Subscribe,
    ) -> Result<(ChannelName, Option<Member>), Refusal> {
        let connection = &self.conns[&conn];
        let app = &self.apps[&connection.app].config;
        let channel =
            ChannelName::parse(&request.channel, app.max_channel_name_len).map_err(|e| {
                Refusal::bad_request(format!("invalid channel {:?}: {e}", request.channel))
            })?;
        let socket_id = connection.socket_id.to_string();
        let auth = request.auth.as_deref().unwrap_or("");
        match channel.kind() {
            ChannelKind::Public => Ok((channel, None)),
            ChannelKind::Private | ChannelKind::PrivateEncrypted => {
                let signed = format!("{socket_id}:{channel}");
                if !verify_client_auth(&app.key, &app.secret, signed.as_bytes(), auth) {
                    return Err(Refusal::auth(format!("invalid signature for {channel}")));
                }
                Ok((channel, None))
            }
            ChannelKind::Presence => {
                let channel_data = request.channel_data.as_deref().ok_or_else(|| {
                    Refusal::bad_request(format!("presence channel {channel} needs channel_data"))
                })?;
                let signed = format!("{socket_id}:{channel}:{channel_data}");
                if !verify_client_auth(&app.key, &app.secret, signed.as_bytes(), auth) {
                    return Err(Refusal::auth(format!("invalid signature for {channel}")));
                }
                let member = parse_member(channel_data, app.max_presence_user_info_bytes)?;
                let roster_full = if self.clustered() {
                    let (is_member, members) =
                        self.cluster_member_count(&connection.app, &channel, &member.user);
                    !is_member && members >= app.max_presence_members
                } else {
                    self.apps[&connection.app]
                        .channels
                        .get(&channel)
                        .is_some_and(|c| {
                            !c.roster.contains(&member.user)
                                && c.roster.len() >= app.max_presence_members
                        })
                };
                if roster_full {
                    return Err(Refusal::forbidden(format!(
                        "presence channel {channel} is full ({} members)",
                        app.max_presence_members
                    )));
                }
                Ok((channel, Some(member)))
            }
            ChannelKind::ServerToUser => {
                let signed_in_as = connection.user.as_ref().map(|u| u.id.as_str());
                if signed_in_as != channel.server_to_user_id() {
                    return Err(Refusal::forbidden(format!(
                        "{channel} is only for the connection signed in as that user"
                    )));
                }
                Ok((channel, None))
            }
        }
    }

    fn join(&mut self, conn: ConnId, channel: ChannelName, member: Option<Member>) {
        let app = self.conns[&conn].app.clone();
        let clustered = self.clustered();
        // A cluster node with its bus up answers a presence join at its echo (see
        // `cluster_presence`); otherwise at once, a cluster node with the roster as applied
        // in bus order, plus the joiner.
        let hold = member.is_some() && self.holds_presence_joins();
        let cluster_roster = member
            .as_ref()
            .filter(|_| !hold)
            .and_then(|m| self.cluster_roster_data(&app, &channel, (&m.user, m.info.as_deref())));
        let entry = self.app_mut(&app).channels.entry(&channel);
        if entry.is_held(conn) {
            // Subscribing again while the first join awaits its echo: that echo answers.
            return;
        }
        let was_empty = entry.is_empty();
        let newly_joined = if hold {
            entry.add_held(conn)
        } else {
            entry.add(conn)
        };
        let first_socket_of_user = newly_joined
            && member
                .as_ref()
                .is_some_and(|m| entry.roster.join(&m.user, m.info.clone()));
        if !(hold && newly_joined) {
            let data = if channel.kind() == ChannelKind::Presence {
                cluster_roster.unwrap_or_else(|| entry.roster.subscription_data())
            } else {
                RawJson::string("{}")
            };
            self.acknowledge_subscription(conn, &app, &channel, &data);
        }
        if !newly_joined {
            return;
        }
        let (user, info) = member.map(|m| (m.user, m.info)).unzip();
        let connection = self.conns.get_mut(&conn).expect("caller checked");
        connection.channels.insert(channel.clone(), user.clone());
        if clustered {
            if hold {
                let user = user.clone().expect("only presence joins are held");
                self.await_echo(&app, &channel, conn, user, info.clone().flatten());
            }
            // Cluster-wide presence and occupancy follow from the bus, not from here.
            if let Some(user) = user.filter(|_| first_socket_of_user) {
                let change = Change::Member {
                    channel: channel.clone(),
                    user,
                    info: info.flatten(),
                    present: true,
                };
                self.cluster_record(&app, change);
            }
            self.subscription_count_changed(&app, &channel);
            return;
        }
        if was_empty {
            self.with_webhooks(&app, |hooks, cx| {
                hooks.handle_channel_occupied(&channel, cx)
            });
        }
        if let Some(user) = user.filter(|_| first_socket_of_user) {
            let entry = self.app_mut(&app).channels.entry(&channel);
            let data = entry.roster.member_added_data(&user);
            let frame = pusher::message(
                "pusher_internal:member_added",
                Some(channel.as_str()),
                &data,
                None,
            );
            let conns = entry.recipients();
            self.broadcast(&app, conns, Some(conn), frame);
            self.with_webhooks(&app, |hooks, cx| {
                hooks.handle_member_added(&channel, &user, cx)
            });
        }
        self.subscription_count_changed(&app, &channel);
    }

    /// `pusher_internal:subscription_succeeded` with `data`, and what a subscription entails:
    /// a private or presence one lifts the sign-in deadline, a cache channel replays its event.
    pub(super) fn acknowledge_subscription(
        &mut self,
        conn: ConnId,
        app: &AppId,
        channel: &ChannelName,
        data: &RawJson,
    ) {
        let succeeded = pusher::message(
            "pusher_internal:subscription_succeeded",
            Some(channel.as_str()),
            data,
            None,
        );
        self.send(conn, succeeded);
        if self.watching() {
            let detail = super::debug::Detail {
                channel: Some(channel.as_str().to_owned()),
                socket_id: self.socket_id(conn),
                ..Default::default()
            };
            self.debug(app, super::DebugKind::Subscribed, detail);
        }
        if matches!(
            channel.kind(),
            ChannelKind::Private | ChannelKind::PrivateEncrypted | ChannelKind::Presence
        ) {
            self.authorized_by_subscription(conn);
        }
        if channel.is_cache() {
            self.replay_cache(app, conn, channel);
        }
    }

    /// Refuses a presence subscription because the cluster roster is full.
    pub(super) fn refuse_full(&mut self, conn: ConnId, channel: &ChannelName, max: usize) {
        let refusal = Refusal::forbidden(format!(
            "presence channel {channel} is full ({max} members)"
        ));
        self.send_refusal(conn, channel.as_str(), &refusal);
    }

    fn send_refusal(&mut self, conn: ConnId, channel: &str, refusal: &Refusal) {
        let data = RawJson::stringified(&serde_json::json!({
            "type": refusal.kind,
            "error": refusal.message,
            "status": refusal.status,
        }));
        let frame = pusher::message("pusher:subscription_error", Some(channel), &data, None);
        self.notice(
            Some(conn),
            format!(
                "subscription to {channel} refused ({}): {}",
                refusal.status, refusal.message
            ),
        );
        self.send(conn, frame);
    }

    /// Pusher counts a connection as authorized once it has signed in *or* subscribed to a
    /// private or presence channel (the backend signed for it either way), so such a
    /// subscription lifts the sign-in deadline for good, even if the channel is left later.
    fn authorized_by_subscription(&mut self, conn: ConnId) {
        let connection = self.conns.get_mut(&conn).expect("caller checked");
        if let Some(timer) = connection.signin_timer.take() {
            self.timers.cancel(timer);
        }
    }

    pub(super) fn on_unsubscribe(&mut self, conn: ConnId, data: Option<&RawValue>) {
        let request: Unsubscribe = match pusher::parse_data(data) {
            Ok(request) => request,
            Err(Malformed(why)) => {
                return self.send_error(conn, None, &format!("pusher:unsubscribe: {why}"))
            }
        };
        let connection = self.conns.get_mut(&conn).expect("caller checked");
        // Leaving a channel one never joined is a no-op, as with Pusher.
        let Some((channel, member)) = connection.channels.remove_entry(request.channel.as_str())
        else {
            return;
        };
        let app = connection.app.clone();
        let socket_id = connection.socket_id;
        self.leave_channel(&app, conn, &channel, member.as_ref());
        if self.watching() {
            self.debug_unsubscribed(&app, &channel, socket_id);
        }
    }

    /// Removes `conn` from `channel`; on a presence channel, announces the member's last leave.
    pub(super) fn leave_channel(
        &mut self,
        app: &AppId,
        conn: ConnId,
        channel: &ChannelName,
        member: Option<&UserId>,
    ) {
        let clustered = self.clustered();
        let Some(entry) = self.app_mut(app).channels.get_mut(channel) else {
            return;
        };
        if !entry.remove(conn) {
            return;
        }
        if clustered {
            self.forget_awaiting(conn, channel);
            let entry = self
                .app_mut(app)
                .channels
                .get_mut(channel)
                .expect("checked above");
            // Cluster-wide presence and occupancy follow from the bus, not from here.
            if let Some(user) = member.filter(|user| entry.roster.leave(user)) {
                let change = Change::Member {
                    channel: channel.clone(),
                    user: user.clone(),
                    info: None,
                    present: false,
                };
                self.cluster_record(app, change);
            }
            self.app_mut(app).channels.drop_if_empty(channel);
            self.subscription_count_changed(app, channel);
            return;
        }
        if let Some(user) = member.filter(|user| entry.roster.leave(user)) {
            if !entry.is_empty() {
                let data = member_removed_data(user);
                let frame = pusher::message(
                    "pusher_internal:member_removed",
                    Some(channel.as_str()),
                    &data,
                    None,
                );
                let conns = entry.recipients();
                self.broadcast(app, conns, None, frame);
            }
            self.with_webhooks(app, |hooks, cx| hooks.handle_member_left(channel, user, cx));
        }
        if self.app_mut(app).channels.drop_if_empty(channel) {
            self.with_webhooks(app, |hooks, cx| hooks.handle_channel_emptied(channel, cx));
        } else {
            self.subscription_count_changed(app, channel);
        }
    }
}

/// Parses presence `channel_data`: `{"user_id": string|number, "user_info"?: any}`.
fn parse_member(channel_data: &str, max_info_bytes: usize) -> Result<Member, Refusal> {
    let value: serde_json::Value = serde_json::from_str(channel_data)
        .map_err(|e| Refusal::bad_request(format!("channel_data is not valid JSON: {e}")))?;
    let fields = pusher::raw_fields(channel_data)
        .map_err(|e| Refusal::bad_request(format!("channel_data is not a JSON object: {e}")))?;
    let user = fields
        .get("user_id")
        .ok_or_else(|| "is missing".to_owned())
        .and_then(|raw| user_id_of(raw))
        .and_then(|id| UserId::new(&id).ok_or_else(|| "is empty".to_owned()))
        .map_err(|why| {
            Refusal::bad_request(format!(
                "channel_data user_id {why} (a non-empty string or number is required)"
            ))
        })?;
    let info = match value.get("user_info") {
        None => None,
        Some(info) => {
            let text = info.to_string();
            if text.len() > max_info_bytes {
                return Err(Refusal::bad_request(format!(
                    "user_info is {} bytes; the limit is {max_info_bytes}",
                    text.len()
                )));
            }
            Some(text)
        }
    };
    Ok(Member { user, info })
}
