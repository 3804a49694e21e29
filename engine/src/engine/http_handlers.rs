//! The HTTP API endpoints: publish, batch publish, channel queries, user termination.

use super::http_api::HttpError;
use super::Engine;
use crate::close_code::CloseCode;
use crate::http_auth::Query;
use crate::ids::{AppId, ChannelKind, ChannelName, ConnId, EventName, SocketId, UserId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// One event as the HTTP API receives it (alone, or as a batch item).
#[derive(Debug, Deserialize)]
struct EventRequest {
    name: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BatchRequest {
    batch: Vec<EventRequest>,
}

/// An event that passed every check and may be published.
struct ValidEvent {
    name: EventName,
    data: String,
    channels: Vec<ChannelName>,
    except: Option<ConnId>,
    /// The `socket_id` to skip, which may be another node's.
    except_socket: Option<SocketId>,
    info: Vec<String>,
}

impl ValidEvent {
    /// The event as carried to the other nodes of a cluster.
    fn for_bus(&self) -> (EventName, String, Vec<ChannelName>, Option<SocketId>) {
        let (name, data) = (self.name.clone(), self.data.clone());
        (name, data, self.channels.clone(), self.except_socket)
    }
}

impl Engine {
    pub(super) fn http_publish(&mut self, app: &AppId, body: &[u8]) -> Result<Value, HttpError> {
        let request: EventRequest = parse_body(body)?;
        let event = self.validate_event(app, request, true)?;
        self.charge_rate(app, true, event.channels.len() as u32)?;
        // The copy for the bus is made only when there is a bus.
        if self.clustered() {
            self.cluster_publish(app, vec![event.for_bus()]);
        }
        Ok(match self.publish_valid(app, &event) {
            Some(channels) => json!({ "channels": channels }),
            None => json!({}),
        })
    }

    pub(super) fn http_publish_batch(
        &mut self,
        app: &AppId,
        body: &[u8],
    ) -> Result<Value, HttpError> {
        let request: BatchRequest = parse_body(body)?;
        let max = self.apps[app].config.max_batch_size;
        if request.batch.len() > max {
            return Err(HttpError::bad_request(format!(
                "batch has {} events; the limit is {max}",
                request.batch.len()
            )));
        }
        // Validate everything first: a batch is accepted whole or not at all.
        let events = request
            .batch
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                self.validate_event(app, item, false)
                    .map_err(|e| HttpError::new(e.status, format!("batch[{i}]: {}", e.message)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.charge_rate(app, true, events.len() as u32)?;
        if self.clustered() {
            self.cluster_publish(app, events.iter().map(ValidEvent::for_bus).collect());
        }
        let any_info = events.iter().any(|e| !e.info.is_empty());
        let answers: Vec<Value> = events
            .iter()
            .map(|event| {
                let channels = self.publish_valid(app, event);
                channels
                    .and_then(|mut c| c.values_mut().next().map(Value::take))
                    .unwrap_or_else(|| json!({}))
            })
            .collect();
        Ok(if any_info {
            json!({ "batch": answers })
        } else {
            json!({})
        })
    }

    fn validate_event(
        &self,
        app: &AppId,
        request: EventRequest,
        many_channels: bool,
    ) -> Result<ValidEvent, HttpError> {
        let config = &self.apps[app].config;
        let name = EventName::parse(&request.name, config.max_event_name_len).map_err(|_| {
            HttpError::bad_request(format!(
                "event name must be 1 to {} characters",
                config.max_event_name_len
            ))
        })?;
        let data = match request.data {
            Value::String(text) => text,
            Value::Null => return Err(HttpError::bad_request("data is required")),
            other => other.to_string(),
        };
        if data.len() > config.max_event_payload_bytes {
            return Err(HttpError::new(
                413,
                format!(
                    "data is {} bytes; the limit is {}",
                    data.len(),
                    config.max_event_payload_bytes
                ),
            ));
        }
        let names = match (request.channel, request.channels) {
            (Some(channel), None) => vec![channel],
            (None, Some(channels)) if many_channels => channels,
            (None, Some(_)) => {
                return Err(HttpError::bad_request("a batch item names one channel"))
            }
            (Some(_), Some(_)) => {
                return Err(HttpError::bad_request("give channel or channels, not both"))
            }
            (None, None) => return Err(HttpError::bad_request("channel or channels is required")),
        };
        if names.is_empty() || names.len() > config.max_event_channels {
            return Err(HttpError::bad_request(format!(
                "an event goes to 1 to {} channels, not {}",
                config.max_event_channels,
                names.len()
            )));
        }
        let mut channels = Vec::with_capacity(names.len());
        for name in &names {
            let channel = ChannelName::parse(name, config.max_channel_name_len)
                .map_err(|e| HttpError::bad_request(format!("invalid channel {name:?}: {e}")))?;
            // A channel named twice gets the event once (the list is at most 100 long).
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        let except_socket = match request.socket_id.as_deref() {
            None => None,
            Some(text) => Some(
                SocketId::parse(text)
                    .ok_or_else(|| HttpError::bad_request(format!("invalid socket_id {text:?}")))?,
            ),
        };
        let except = except_socket.and_then(|s| self.socket_ids.get(&s).copied());
        let info = parse_info(request.info.as_deref())?;
        Ok(ValidEvent {
            name,
            data,
            channels,
            except,
            except_socket,
            info,
        })
    }

    /// Publishes to each channel; returns the requested `info` per channel, if any was asked.
    fn publish_valid(&mut self, app: &AppId, event: &ValidEvent) -> Option<Map<String, Value>> {
        for channel in &event.channels {
            self.publish(app, channel, &event.name, &event.data, event.except);
            if self.watching() {
                let detail = super::debug::Detail {
                    channel: Some(channel.as_str().to_owned()),
                    event: Some(event.name.as_str().to_owned()),
                    socket_id: event.except_socket,
                    data: Some(super::debug::preview(&event.data)),
                };
                self.debug(app, super::DebugKind::ApiPublish, detail);
            }
        }
        if event.info.is_empty() {
            return None;
        }
        let answers = event.channels.iter().map(|c| {
            (
                c.as_str().to_owned(),
                self.channel_attributes(app, c, &event.info),
            )
        });
        Some(answers.collect())
    }

    /// `user_count` (presence only) and `subscription_count`, as asked.
    fn channel_attributes(&self, app: &AppId, channel: &ChannelName, info: &[String]) -> Value {
        let mut attributes = Map::new();
        if info.iter().any(|i| i == "user_count") && channel.kind() == ChannelKind::Presence {
            attributes.insert(
                "user_count".into(),
                self.cluster_members(app, channel).len().into(),
            );
        }
        if info.iter().any(|i| i == "subscription_count") {
            attributes.insert(
                "subscription_count".into(),
                self.cluster_subscriber_count(app, channel).into(),
            );
        }
        Value::Object(attributes)
    }

    pub(super) fn http_list_channels(
        &self,
        app: &AppId,
        query: &Query<'_>,
    ) -> Result<Value, HttpError> {
        let prefix = query.get("filter_by_prefix").unwrap_or("");
        let info = parse_info(query.get("info"))?;
        if info.iter().any(|i| i == "user_count") && !prefix.starts_with("presence-") {
            return Err(HttpError::bad_request(
                "info=user_count needs filter_by_prefix=presence-",
            ));
        }
        let channels: Map<String, Value> = self
            .cluster_channel_names(app)
            .iter()
            .filter(|name| name.as_str().starts_with(prefix))
            .map(|name| {
                (
                    name.as_str().to_owned(),
                    self.channel_attributes(app, name, &info),
                )
            })
            .collect();
        Ok(json!({ "channels": channels }))
    }

    pub(super) fn http_channel_info(
        &self,
        app: &AppId,
        name: &str,
        query: &Query<'_>,
    ) -> Result<Value, HttpError> {
        let channel = self.parse_channel(app, name)?;
        let info = parse_info(query.get("info"))?;
        if info.iter().any(|i| i == "user_count") && channel.kind() != ChannelKind::Presence {
            return Err(HttpError::bad_request(
                "info=user_count is only for presence channels",
            ));
        }
        let mut answer = self.channel_attributes(app, &channel, &info);
        answer["occupied"] = (self.cluster_subscriber_count(app, &channel) > 0).into();
        Ok(answer)
    }

    pub(super) fn http_channel_users(&self, app: &AppId, name: &str) -> Result<Value, HttpError> {
        let channel = self.parse_channel(app, name)?;
        if channel.kind() != ChannelKind::Presence {
            return Err(HttpError::bad_request(
                "users are only listed for presence channels",
            ));
        }
        let users: Vec<Value> = self
            .cluster_members(app, &channel)
            .iter()
            .map(|u| json!({ "id": u.as_str() }))
            .collect();
        Ok(json!({ "users": users }))
    }

    pub(super) fn http_terminate_user(
        &mut self,
        app: &AppId,
        user: &str,
    ) -> Result<Value, HttpError> {
        let user = UserId::new(user).ok_or_else(|| HttpError::bad_request("user id is empty"))?;
        self.cluster_terminate(app, &user);
        let conns: Vec<ConnId> = self.apps[app]
            .users
            .get(&user)
            .map(|c| c.iter().copied().collect())
            .unwrap_or_default();
        for conn in conns {
            self.close_with_error(
                conn,
                CloseCode::UNAUTHORIZED,
                "connection terminated by the app's backend",
            );
        }
        Ok(json!({}))
    }

    fn parse_channel(&self, app: &AppId, name: &str) -> Result<ChannelName, HttpError> {
        ChannelName::parse(name, self.apps[app].config.max_channel_name_len)
            .map_err(|e| HttpError::bad_request(format!("invalid channel {name:?}: {e}")))
    }
}

fn parse_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, HttpError> {
    serde_json::from_slice(body)
        .map_err(|e| HttpError::bad_request(format!("invalid JSON body: {e}")))
}

/// Parses `info=user_count,subscription_count`; unknown attributes are a 400.
fn parse_info(info: Option<&str>) -> Result<Vec<String>, HttpError> {
    let Some(info) = info else {
        return Ok(Vec::new());
    };
    info.split(',')
        .filter(|item| !item.is_empty())
        .map(|item| match item {
            "user_count" | "subscription_count" => Ok(item.to_owned()),
            other => Err(HttpError::bad_request(format!(
                "unknown info attribute {other:?}"
            ))),
        })
        .collect()
}
