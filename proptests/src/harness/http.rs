//! The HTTP API side of the harness: requests signed as a backend SDK signs them, answers and
//! fan-out checked against the model.

use super::Harness;
use crate::model::{kind_of, Delivery, Kind};
use crate::ops::*;
use ferrocast_engine::http_auth::signed_query;
use ferrocast_engine::{HttpRequest, Input, ReqId};
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// The event name HTTP publishes use.
const PUBLISHED_EVENT: &str = "ev-pub";

/// What the model says an HTTP request must be answered with.
enum Answer {
    /// 200 with exactly this body.
    Ok(Value),
    /// One of these error statuses, and no effect.
    Refused(Vec<u16>),
}

impl Harness {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish(
        &mut self,
        app: u8,
        channels: &[ChannelPick],
        exclude: ExcludePick,
        batch: bool,
        info: bool,
        data: HttpDataPick,
        signature: SignaturePick,
    ) -> Result<(), String> {
        let app = app as usize % 2;
        let mut names: Vec<String> = Vec::new();
        for name in channels.iter().take(4).map(|c| c.name()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        let batch = batch && !names.is_empty();
        let seq = self.next_seq;
        self.next_seq += 1;
        let (data_json, data_text) = match data {
            HttpDataPick::Text => (json!(format!("p{seq}")), format!("p{seq}")),
            HttpDataPick::Object => (json!({ "p": seq }), json!({ "p": seq }).to_string()),
            HttpDataPick::TooLarge => {
                let text =
                    "x".repeat(ferrocast_engine::AppConfig::default().max_event_payload_bytes + 1);
                (json!(text), text)
            }
        };
        let socket_id = match exclude {
            ExcludePick::Nobody => None,
            ExcludePick::Conn(i) => self.pick(i).map(|c| self.socket_id(c)),
            ExcludePick::Unknown => Some("1.1".to_owned()),
            ExcludePick::Malformed => Some("1-1".to_owned()),
        };
        let item = |channel: Option<&str>| {
            let mut item = json!({ "name": PUBLISHED_EVENT, "data": data_json });
            if let Some(channel) = channel {
                item["channel"] = channel.into();
            }
            if let Some(id) = &socket_id {
                item["socket_id"] = id.clone().into();
            }
            if info {
                item["info"] = "user_count,subscription_count".into();
            }
            item
        };
        let (path, body) = if batch {
            let items: Vec<Value> = names.iter().map(|n| item(Some(n))).collect();
            ("batch_events", json!({ "batch": items }))
        } else if names.len() == 1 {
            ("events", item(Some(&names[0])))
        } else {
            let mut body = item(None);
            body["channels"] = names.clone().into();
            ("events", body)
        };
        let mut refusals = Vec::new();
        if data == HttpDataPick::TooLarge {
            refusals.push(413);
        }
        let invalid_name = names.iter().any(|n| kind_of(n).0 == Kind::Invalid);
        if names.is_empty() || invalid_name || exclude == ExcludePick::Malformed {
            refusals.push(400);
        }
        let path = format!("/apps/{}/{path}", ops_app_id(app));
        let body = body.to_string();
        let (answer, deliveries) = if signature != SignaturePick::Valid {
            (Answer::Refused(vec![401]), Vec::new())
        } else if !refusals.is_empty() {
            (Answer::Refused(refusals), Vec::new())
        } else {
            let except = socket_id
                .as_deref()
                .and_then(|id| self.model.socket_owner(id));
            let mut deliveries = Vec::new();
            for name in &names {
                deliveries.extend(self.model.publish(
                    app,
                    name,
                    PUBLISHED_EVENT,
                    &data_text,
                    except,
                ));
            }
            let attrs: Vec<(String, Value)> = names
                .iter()
                .map(|n| (n.clone(), self.attributes(app, n, true)))
                .collect();
            let body = match (info, batch) {
                (false, _) => json!({}),
                (true, false) => json!({ "channels": attrs.into_iter().collect::<Map<_, _>>() }),
                (true, true) => {
                    json!({ "batch": attrs.into_iter().map(|(_, a)| a).collect::<Vec<_>>() })
                }
            };
            (Answer::Ok(body), deliveries)
        };
        self.http_step(
            app,
            "POST",
            &path,
            &[],
            &body,
            signature,
            answer,
            deliveries,
        )
    }

    pub(super) fn query(
        &mut self,
        app: u8,
        query: QueryPick,
        signature: SignaturePick,
    ) -> Result<(), String> {
        let app = app as usize % 2;
        let base = format!("/apps/{}/channels", ops_app_id(app));
        let occupied: Vec<String> = self
            .model
            .occupied_channels()
            .into_iter()
            .filter(|(a, _)| *a == app)
            .map(|(_, name)| name)
            .collect();
        let (path, params, answer): (String, Vec<(&str, &str)>, Answer) = match query {
            QueryPick::Channels => {
                let channels: Map<String, Value> =
                    occupied.iter().map(|n| (n.clone(), json!({}))).collect();
                (base, vec![], Answer::Ok(json!({ "channels": channels })))
            }
            QueryPick::PresenceChannels => {
                let channels: Map<String, Value> = occupied
                    .iter()
                    .filter(|n| n.starts_with("presence-"))
                    .map(|n| {
                        (
                            n.clone(),
                            json!({ "user_count": self.model.roster(app, n).len() }),
                        )
                    })
                    .collect();
                let params = vec![("filter_by_prefix", "presence-"), ("info", "user_count")];
                (base, params, Answer::Ok(json!({ "channels": channels })))
            }
            QueryPick::Channel(channel) => {
                let name = channel.name();
                let path = format!("{base}/{}", encode_segment(&name));
                let (kind, _) = kind_of(&name);
                let info = if kind == Kind::Presence {
                    "subscription_count,user_count"
                } else {
                    "subscription_count"
                };
                let answer = if kind == Kind::Invalid {
                    Answer::Refused(vec![400])
                } else {
                    let mut attrs = self.attributes(app, &name, kind == Kind::Presence);
                    attrs["occupied"] = occupied.contains(&name).into();
                    Answer::Ok(attrs)
                };
                (path, vec![("info", info)], answer)
            }
            QueryPick::Users(channel) => {
                let name = channel.name();
                let path = format!("{base}/{}/users", encode_segment(&name));
                let answer = if kind_of(&name).0 != Kind::Presence {
                    Answer::Refused(vec![400])
                } else {
                    let users: Vec<Value> = self
                        .model
                        .roster(app, &name)
                        .into_keys()
                        .map(|id| json!({ "id": id }))
                        .collect();
                    Answer::Ok(json!({ "users": users }))
                };
                (path, vec![], answer)
            }
        };
        let answer = if signature == SignaturePick::Valid {
            answer
        } else {
            Answer::Refused(vec![401])
        };
        self.http_step(
            app,
            "GET",
            &path,
            &params,
            "",
            signature,
            answer,
            Vec::new(),
        )
    }

    pub(super) fn terminate(&mut self, app: u8, user: u8) -> Result<(), String> {
        let app = app as usize % 2;
        let path = format!(
            "/apps/{}/users/{}/terminate_connections",
            ops_app_id(app),
            user_id(user)
        );
        let deliveries = self.model.terminate(app, user_id(user));
        let answer = Answer::Ok(json!({}));
        self.http_step(
            app,
            "POST",
            &path,
            &[],
            "{}",
            SignaturePick::Valid,
            answer,
            deliveries,
        )
    }

    /// `subscription_count`, and `user_count` on presence channels when `users` is asked.
    fn attributes(&self, app: usize, channel: &str, users: bool) -> Value {
        let mut attrs =
            json!({ "subscription_count": self.model.subscription_count(app, channel) });
        if users && kind_of(channel).0 == Kind::Presence {
            attrs["user_count"] = self.model.roster(app, channel).len().into();
        }
        attrs
    }

    #[allow(clippy::too_many_arguments)]
    fn http_step(
        &mut self,
        app: usize,
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        body: &str,
        signature: SignaturePick,
        answer: Answer,
        expected: Vec<Delivery>,
    ) -> Result<(), String> {
        let config = config();
        let (key, secret) = match signature {
            SignaturePick::Valid | SignaturePick::Stale => {
                (&config.apps[app].key, config.apps[app].secret.as_str())
            }
            SignaturePick::WrongSecret => (&config.apps[app].key, "not-the-secret"),
            SignaturePick::OtherApp => (
                &config.apps[1 - app].key,
                config.apps[1 - app].secret.as_str(),
            ),
        };
        let mut unix_secs = self.moment().unix_ms / 1000;
        if signature == SignaturePick::Stale {
            unix_secs -= 660;
        }
        let query = signed_query(
            key,
            secret,
            method,
            path,
            params,
            body.as_bytes(),
            unix_secs,
        );
        let req = ReqId(self.next_seq);
        self.next_seq += 1;
        let request = HttpRequest {
            method: method.into(),
            path: path.into(),
            query,
            body: body.as_bytes().to_vec(),
        };
        let actual = self.feed(Input::Http { req, request })?;
        let responses = std::mem::take(&mut self.responses);
        let [(got_req, status, got_body)] = responses.as_slice() else {
            return Err(format!(
                "{method} {path}: expected one HTTP response, got {responses:?}"
            ));
        };
        if *got_req != req {
            return Err(format!(
                "{method} {path}: answered {got_req:?} instead of {req:?}"
            ));
        }
        let got_body: Value = serde_json::from_slice(got_body)
            .map_err(|e| format!("{method} {path}: answer body is not JSON: {e}"))?;
        match answer {
            Answer::Ok(want) if *status != 200 || got_body != want => {
                return Err(format!(
                    "{method} {path} {body}: expected 200 {want}, got {status} {got_body}"
                ))
            }
            Answer::Refused(statuses) if !statuses.contains(status) => {
                return Err(format!(
                    "{method} {path} {body}: expected one of {statuses:?}, got {status} {got_body}"
                ))
            }
            Answer::Refused(_) if !got_body.get("error").is_some_and(Value::is_string) => {
                return Err(format!(
                    "{method} {path}: error without an error message: {got_body}"
                ))
            }
            _ => {}
        }
        self.compare(&expected, &actual, &BTreeSet::new())
    }
}

/// The id of app `i` of [`config`].
fn ops_app_id(i: usize) -> String {
    config().apps[i].id.clone()
}

/// Percent-encodes a path segment (`#`, spaces and the like).
fn encode_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
