//! Opening a connection: path, protocol version, app checks, socket id, the welcome frame.

use super::app_lookup::{NotFound, Waiter};
use super::{Connection, Due, Engine};
use crate::close_code::CloseCode;
use crate::cluster::view::Change;
use crate::ids::{AppId, ConnId, SocketId};
use crate::interface::{ApiMisuse, AppLookup, Notice, Output, WsRequest};
use crate::token_bucket::TokenBucket;
use crate::wire::pusher::{self, RawJson};
use core::net::IpAddr;
use std::collections::BTreeMap;
use std::time::Duration;

/// Why a handshake is not admitted (yet).
enum Refusal {
    /// Refused: the close code and reason.
    Close(CloseCode, String),
    /// Its key is unknown here: ask the app store.
    LookUp(AppLookup),
}

impl From<(CloseCode, String)> for Refusal {
    fn from((code, message): (CloseCode, String)) -> Self {
        Refusal::Close(code, message)
    }
}

/// Protocol versions this server speaks (pusher-js 8 sends 7).
const SUPPORTED_PROTOCOLS: std::ops::RangeInclusive<u32> = 5..=7;

impl Engine {
    pub(super) fn open(&mut self, conn: ConnId, request: &WsRequest) -> Result<(), ApiMisuse> {
        if self.conns.contains_key(&conn) || self.store.is_waiting(conn) {
            return Err(ApiMisuse::DuplicateConnection(conn));
        }
        let admitted = if self.shutting_down {
            Err(Refusal::Close(
                super::SHUTDOWN_CODE,
                super::SHUTDOWN_MESSAGE.to_owned(),
            ))
        } else {
            self.admit(request, None)
        };
        match admitted {
            Ok(app) => self.establish(conn, app, request.peer),
            Err(Refusal::LookUp(lookup)) => {
                self.wait_for_app(lookup, Waiter::Conn(conn, request.clone()))
            }
            Err(Refusal::Close(code, message)) => {
                self.refuse_handshake(conn, request, code, message)
            }
        }
        Ok(())
    }

    /// Admits or refuses a handshake that waited for its app's lookup, refused as `why` says
    /// if the app is still unknown.
    pub(super) fn open_after_lookup(&mut self, conn: ConnId, request: &WsRequest, why: NotFound) {
        let admitted = if self.shutting_down {
            Err(Refusal::Close(
                super::SHUTDOWN_CODE,
                super::SHUTDOWN_MESSAGE.to_owned(),
            ))
        } else {
            self.admit(request, Some(why))
        };
        match admitted {
            Ok(app) => self.establish(conn, app, request.peer),
            Err(Refusal::Close(code, message)) => {
                self.refuse_handshake(conn, request, code, message)
            }
            Err(Refusal::LookUp(_)) => unreachable!("an answered lookup is not asked again"),
        }
    }

    /// Refuses a handshake: the connection never existed for the engine, but is told why
    /// before it is closed.
    pub(super) fn refuse_handshake(
        &mut self,
        conn: ConnId,
        request: &WsRequest,
        code: CloseCode,
        message: String,
    ) {
        self.count_refused(code);
        self.send(conn, super::error_frame(Some(code), &message));
        let notice = Notice {
            app: None,
            socket_id: None,
            peer: request.peer,
            message: format!(
                "connection to {} refused with {}: {message}",
                request.path,
                code.get()
            ),
        };
        self.outputs.push_back(Output::Close {
            conn,
            code,
            reason: message,
        });
        self.outputs.push_back(Output::Notice(notice));
    }

    /// Decides whether a handshake may become a connection, and for which app. An unknown key
    /// is looked up unless `looked_up` says how the store answered it already.
    fn admit(&self, request: &WsRequest, looked_up: Option<NotFound>) -> Result<AppId, Refusal> {
        let key = request
            .path
            .strip_prefix(self.config.path_prefix.as_str())
            .and_then(|rest| rest.strip_prefix("/app/"))
            .filter(|key| !key.is_empty() && !key.contains('/'))
            .ok_or_else(|| {
                (
                    CloseCode::PATH_NOT_FOUND,
                    format!(
                        "path {:?} not found; connect to {}/app/{{key}}",
                        request.path, self.config.path_prefix
                    ),
                )
            })?;
        check_protocol(&request.query)?;
        self.check_capacity(request.peer)?;
        let Some(id) = self.app_by_key.get(key) else {
            let lookup = AppLookup::Key(key.to_owned());
            let why = match looked_up {
                Some(why) => why,
                None => match self.should_look_up(&lookup) {
                    Ok(()) => return Err(Refusal::LookUp(lookup)),
                    Err(why) => why,
                },
            };
            let (code, message) = why.refusal(key);
            return Err(Refusal::Close(code, message));
        };
        let app = &self.apps[id];
        if !app.config.enabled {
            return Err(Refusal::Close(
                CloseCode::APP_DISABLED,
                "app is disabled".into(),
            ));
        }
        // 4009 "connection unauthorized": a page the app does not trust must not reconnect
        // in a loop, which a 41xx/42xx code would ask pusher-js to do.
        app.origins
            .check(request.origin.as_deref())
            .map_err(|why| (CloseCode::UNAUTHORIZED, why))?;
        if app.config.require_tls && !request.secure {
            return Err(Refusal::Close(
                CloseCode::TLS_REQUIRED,
                "app only accepts TLS connections: reconnect with wss://".into(),
            ));
        }
        // In a cluster the other nodes' counts are as last announced: simultaneous admissions
        // on several nodes can overshoot by what each admits within one bus delay.
        let connections = app.connections + self.cluster_connections_elsewhere(id);
        if app
            .config
            .max_connections
            .is_some_and(|max| connections >= max as usize)
        {
            return Err(Refusal::Close(
                CloseCode::OVER_CONNECTION_QUOTA,
                "app is over its connection quota".into(),
            ));
        }
        Ok(id.clone())
    }

    /// 4100 when this node, or this client address on it, holds as many connections as it
    /// may: the client backs off and reconnects, maybe to another node.
    fn check_capacity(&self, peer: Option<IpAddr>) -> Result<(), (CloseCode, String)> {
        let node_max = self.config.max_node_connections as usize;
        let held = self.conns.len() + self.store.waiting_connections();
        if node_max > 0 && held >= node_max {
            return Err((
                CloseCode::OVER_CAPACITY,
                "server is over capacity: reconnect later".into(),
            ));
        }
        let address_max = self.config.max_connections_per_address;
        let held = peer.and_then(|peer| self.per_address.get(&peer).copied());
        if address_max > 0 && held.is_some_and(|held| held >= address_max) {
            return Err((
                CloseCode::OVER_CAPACITY,
                "too many connections from this address".into(),
            ));
        }
        Ok(())
    }

    fn establish(&mut self, conn: ConnId, app: AppId, peer: Option<IpAddr>) {
        let now = self.moment().now;
        let socket_id = self.fresh_socket_id();
        let app_config = &self.apps[&app].config;
        let client_events = TokenBucket::new(
            app_config.client_event_rate_per_sec,
            app_config.client_event_burst,
            now,
        );
        let signin_timer = app_config.user_auth_required.then(|| {
            let deadline = now + Duration::from_secs(app_config.user_auth_timeout_secs);
            self.timers.schedule(deadline, Due::SigninDeadline(conn))
        });
        let activity_timeout = self.config.activity_timeout_secs;
        let liveness_timer = self.timers.schedule(
            now + Duration::from_secs(activity_timeout),
            Due::Liveness(conn),
        );
        let connections = {
            let state = self.app_mut(&app);
            state.connections += 1;
            state.counters.new_connections += 1;
            state.connections as u64
        };
        self.cluster_record(&app, Change::Connections(connections));
        if self.watching() {
            let detail = super::debug::Detail {
                socket_id: Some(socket_id),
                data: peer.map(|p| format!("from {p}")),
                ..Default::default()
            };
            self.debug(&app, super::DebugKind::Connected, detail);
        }
        self.socket_ids.insert(socket_id, conn);
        if let Some(peer) = peer {
            *self.per_address.entry(peer).or_default() += 1;
        }
        self.conns.insert(
            conn,
            Connection {
                app,
                socket_id,
                peer,
                channels: BTreeMap::new(),
                user: None,
                last_activity: now,
                awaiting_pong_since: None,
                liveness_timer,
                signin_timer,
                client_events,
            },
        );
        let data =
            format!("{{\"socket_id\":\"{socket_id}\",\"activity_timeout\":{activity_timeout}}}");
        self.send(
            conn,
            pusher::message(
                "pusher:connection_established",
                None,
                &RawJson::string(&data),
                None,
            ),
        );
    }

    fn fresh_socket_id(&mut self) -> SocketId {
        loop {
            let bits = self.rng.next_u64();
            // Keep both halves below 10^9 so ids look like Pusher's and never collide on width.
            let id = SocketId::new(
                (bits >> 32) as u32 % 1_000_000_000,
                bits as u32 % 1_000_000_000,
            );
            if !self.socket_ids.contains_key(&id) {
                return id;
            }
        }
    }
}

/// Checks the `protocol` query parameter: absent is accepted as 7.
fn check_protocol(query: &str) -> Result<(), (CloseCode, String)> {
    let Some(value) = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("protocol="))
    else {
        return Ok(());
    };
    if value.is_empty() {
        return Err((
            CloseCode::NO_PROTOCOL_VERSION,
            "no protocol version given".into(),
        ));
    }
    let version: u32 = value.parse().map_err(|_| {
        (
            CloseCode::INVALID_VERSION,
            format!("invalid protocol version {value:?}"),
        )
    })?;
    if !SUPPORTED_PROTOCOLS.contains(&version) {
        return Err((
            CloseCode::UNSUPPORTED_PROTOCOL,
            format!("unsupported protocol version {version}; this server speaks 5 to 7"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_protocol;
    use crate::close_code::CloseCode;

    #[test]
    fn protocol_versions() {
        assert!(check_protocol("").is_ok());
        assert!(check_protocol("client=js&protocol=7").is_ok());
        let code = |query: &str| check_protocol(query).unwrap_err().0;
        assert_eq!(code("protocol="), CloseCode::NO_PROTOCOL_VERSION);
        assert_eq!(code("protocol=x"), CloseCode::INVALID_VERSION);
        assert_eq!(code("protocol=8"), CloseCode::UNSUPPORTED_PROTOCOL);
        assert_eq!(code("protocol=4"), CloseCode::UNSUPPORTED_PROTOCOL);
    }
}
