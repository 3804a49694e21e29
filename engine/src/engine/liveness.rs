//! Keeping connections honest: ping the quiet ones, close those that never answer.
//!
//! Activity only stamps `last_activity`; one timer per connection re-arms itself lazily, so a
//! busy connection costs no timer work per frame.

use super::{Due, Engine};
use crate::close_code::CloseCode;
use crate::ids::ConnId;
use crate::wire::pusher::{self, RawJson};
use std::time::Duration;

impl Engine {
    pub(super) fn check_liveness(&mut self, conn: ConnId) {
        let now = self.moment().now;
        let activity_timeout = Duration::from_secs(self.config.activity_timeout_secs);
        let pong_timeout = Duration::from_secs(self.config.pong_timeout_secs);
        let Some(connection) = self.conns.get_mut(&conn) else {
            return;
        };
        let next_check = match connection.awaiting_pong_since {
            // The ping went out at least `activity_timeout` after the last activity, so any
            // activity stamped at the ping's own instant (a fast reply) came after it.
            Some(pinged_at) if connection.last_activity < pinged_at => {
                self.close_with_error(
                    conn,
                    CloseCode::PONG_NOT_RECEIVED,
                    "pong not received in time",
                );
                return;
            }
            Some(_) => {
                connection.awaiting_pong_since = None;
                connection.last_activity + activity_timeout
            }
            None if now >= connection.last_activity + activity_timeout => {
                connection.awaiting_pong_since = Some(now);
                self.send(
                    conn,
                    pusher::message("pusher:ping", None, &RawJson("{}".into()), None),
                );
                now + pong_timeout
            }
            None => connection.last_activity + activity_timeout,
        };
        let at = next_check.max(now);
        let key = self.timers.schedule(at, Due::Liveness(conn));
        if let Some(connection) = self.conns.get_mut(&conn) {
            connection.liveness_timer = key;
        }
    }
}
