//! User sign-in, `#server-to-user-` eligibility and watchlists.

use super::{Engine, SignedInUser};
use crate::close_code::CloseCode;
use crate::cluster::view::Change;
use crate::ids::{AppId, ConnId, UserId};
use crate::signature::verify_client_auth;
use crate::wire::pusher::{self, user_id_of, Malformed, RawJson, Signin};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

impl Engine {
    pub(super) fn on_signin(&mut self, conn: ConnId, data: Option<&RawValue>) {
        match self.verify_signin(conn, data) {
            Ok((user, user_data)) => self.sign_in(conn, user, &user_data),
            Err(why) => {
                if self.app_of(conn).config.user_auth_required {
                    self.close_with_error(conn, CloseCode::UNAUTHORIZED, &why);
                } else {
                    self.send_error(conn, None, &why);
                }
            }
        }
    }

    fn verify_signin(
        &self,
        conn: ConnId,
        data: Option<&RawValue>,
    ) -> Result<(SignedInUser, String), String> {
        let request: Signin =
            pusher::parse_data(data).map_err(|Malformed(why)| format!("pusher:signin: {why}"))?;
        let connection = &self.conns[&conn];
        if connection.user.is_some() {
            return Err("this connection is already signed in".into());
        }
        let app = &self.apps[&connection.app].config;
        let signed = format!("{}::user::{}", connection.socket_id, request.user_data);
        if !verify_client_auth(&app.key, &app.secret, signed.as_bytes(), &request.auth) {
            return Err("invalid sign-in signature".into());
        }
        let fields = pusher::raw_fields(&request.user_data)
            .map_err(|e| format!("user_data is not a JSON object: {e}"))?;
        let user_id = |raw: &RawValue| {
            user_id_of(raw).and_then(|id| UserId::new(&id).ok_or_else(|| "is empty".to_owned()))
        };
        let id = fields
            .get("id")
            .ok_or_else(|| "user_data needs an id".to_owned())
            .and_then(|raw| user_id(raw).map_err(|why| format!("user_data id {why}")))?;
        let mut watchlist = match fields.get("watchlist").map(|raw| raw.get()) {
            None | Some("null") => Vec::new(),
            Some(text) => {
                let ids: Vec<&RawValue> = serde_json::from_str(text)
                    .map_err(|_| "watchlist must be an array of user ids".to_owned())?;
                if ids.len() > app.max_watchlist_len {
                    return Err(format!(
                        "watchlist has more than {} user ids",
                        app.max_watchlist_len
                    ));
                }
                ids.into_iter()
                    .map(|raw| user_id(raw).map_err(|why| format!("a watchlist user id {why}")))
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        // A user named twice is watched once: reported once, announced once.
        let mut seen = BTreeSet::new();
        watchlist.retain(|watched| seen.insert(watched.clone()));
        Ok((SignedInUser { id, watchlist }, request.user_data))
    }

    fn sign_in(&mut self, conn: ConnId, user: SignedInUser, user_data: &str) {
        let connection = self.conns.get_mut(&conn).expect("caller checked");
        if let Some(timer) = connection.signin_timer.take() {
            self.timers.cancel(timer);
        }
        let app_id = connection.app.clone();
        let clustered = self.clustered();
        // Online anywhere in the cluster (for a single node: here).
        let online_elsewhere: BTreeSet<UserId> = user
            .watchlist
            .iter()
            .filter(|w| self.cluster_user_online(&app_id, w))
            .cloned()
            .collect();
        let app = self.app_mut(&app_id);
        let sockets = app.users.entry(user.id.clone()).or_default();
        let came_online = sockets.is_empty();
        sockets.insert(conn);
        for watched in &user.watchlist {
            app.watchers
                .entry(watched.clone())
                .or_default()
                .insert(conn);
        }
        let (online, offline): (Vec<&UserId>, Vec<&UserId>) = user
            .watchlist
            .iter()
            .partition(|w| app.users.contains_key(*w) || online_elsewhere.contains(*w));
        let watch_report =
            (!user.watchlist.is_empty()).then(|| watchlist_events(&online, &offline));
        let data = RawJson::stringified(&serde_json::json!({ "user_data": user_data }));
        self.send(
            conn,
            pusher::message("pusher:signin_success", None, &data, None),
        );
        if let Some(report) = watch_report {
            self.send(
                conn,
                pusher::message("pusher_internal:watchlist_events", None, &report, None),
            );
        }
        if came_online && clustered {
            // Watchers everywhere hear it when the cluster view changes, in bus order.
            self.cluster_record(&app_id, Change::User(user.id.clone(), true));
        } else if came_online {
            self.notify_watchers(&app_id, &user.id, "online", Some(conn));
        }
        self.conns.get_mut(&conn).expect("caller checked").user = Some(user);
    }

    /// Undoes a sign-in when its connection goes away.
    pub(super) fn sign_out(&mut self, app_id: &AppId, conn: ConnId, user: &SignedInUser) {
        let app = self.app_mut(app_id);
        for watched in &user.watchlist {
            if let Some(watchers) = app.watchers.get_mut(watched) {
                watchers.remove(&conn);
                if watchers.is_empty() {
                    app.watchers.remove(watched);
                }
            }
        }
        let Some(sockets) = app.users.get_mut(&user.id) else {
            return;
        };
        sockets.remove(&conn);
        if sockets.is_empty() {
            app.users.remove(&user.id);
            if self.clustered() {
                self.cluster_record(app_id, Change::User(user.id.clone(), false));
            } else {
                self.notify_watchers(app_id, &user.id, "offline", None);
            }
        }
    }

    /// Tells every connection watching `user` that it went `online` or `offline`.
    pub(super) fn notify_watchers(
        &mut self,
        app: &AppId,
        user: &UserId,
        name: &str,
        except: Option<ConnId>,
    ) {
        let Some(watchers) = self.apps[app].watchers.get(user) else {
            return;
        };
        let conns: Arc<[ConnId]> = watchers
            .iter()
            .copied()
            .filter(|c| Some(*c) != except)
            .collect();
        if conns.is_empty() {
            return;
        }
        let (online, offline) = if name == "online" {
            (vec![user], vec![])
        } else {
            (vec![], vec![user])
        };
        let frame = pusher::message(
            "pusher_internal:watchlist_events",
            None,
            &watchlist_events(&online, &offline),
            None,
        );
        self.broadcast(app, conns, None, frame);
    }
}

/// `{"events":[{"name":"online","user_ids":[..]},{"name":"offline","user_ids":[..]}]}`, empty lists left out.
fn watchlist_events(online: &[&UserId], offline: &[&UserId]) -> RawJson {
    let events: Vec<Value> = [("online", online), ("offline", offline)]
        .into_iter()
        .filter(|(_, ids)| !ids.is_empty())
        .map(|(name, ids)| serde_json::json!({ "name": name, "user_ids": ids.iter().map(|u| u.as_str()).collect::<Vec<_>>() }))
        .collect();
    RawJson::stringified(&serde_json::json!({ "events": events }))
}
