//! Close and error codes: the WebSocket close codes the engine uses and Pusher's 4000–4399.
//!
//! One type serves both the Close frame's status and the `code` of a `pusher:error`, because
//! the protocol ties them: before closing for a 40xx–42xx reason the server sends the error
//! with the same code. The ranges tell a client what to do next (see [`CloseCode::reconnect`]).

use std::fmt;

/// A WebSocket close code, or the code of a `pusher:error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(u16);

/// What a Pusher client does after a close, by code range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reconnect {
    /// 4000–4099: the problem will not go away; do not reconnect.
    Never,
    /// 4100–4199: reconnect after backing off.
    AfterBackoff,
    /// 4200–4299: reconnect at once.
    Immediately,
    /// Not a Pusher close code (WebSocket codes, 4300–4399 errors that do not close).
    NotPusher,
}

impl CloseCode {
    /// 1000: normal closure.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the server is going away (an echo server shutting down).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a kind of data the endpoint does not accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1009: a message larger than the server accepts.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);

    /// 4000: the app only accepts TLS connections.
    pub const TLS_REQUIRED: CloseCode = CloseCode(4000);
    /// 4001: no app has the key in the path.
    pub const APP_NOT_FOUND: CloseCode = CloseCode(4001);
    /// 4003: the app is disabled.
    pub const APP_DISABLED: CloseCode = CloseCode(4003);
    /// 4004: the app is over its connection quota.
    pub const OVER_CONNECTION_QUOTA: CloseCode = CloseCode(4004);
    /// 4005: the path is not `{prefix}/app/{key}`.
    pub const PATH_NOT_FOUND: CloseCode = CloseCode(4005);
    /// 4006: the `protocol` query parameter is not a number.
    pub const INVALID_VERSION: CloseCode = CloseCode(4006);
    /// 4007: a protocol version this server does not speak.
    pub const UNSUPPORTED_PROTOCOL: CloseCode = CloseCode(4007);
    /// 4008: the `protocol` query parameter is empty.
    pub const NO_PROTOCOL_VERSION: CloseCode = CloseCode(4008);
    /// 4009: the connection is not authorized (sign-in failed or missing, terminated, or an
    /// origin the app does not allow).
    pub const UNAUTHORIZED: CloseCode = CloseCode(4009);
    /// 4100: over capacity; also a slow consumer closed for reading too slowly.
    pub const OVER_CAPACITY: CloseCode = CloseCode(4100);
    /// 4200: generic reconnect-now close (graceful shutdown).
    pub const GENERIC_RECONNECT: CloseCode = CloseCode(4200);
    /// 4201: a ping went unanswered.
    pub const PONG_NOT_RECEIVED: CloseCode = CloseCode(4201);
    /// 4202: closed after inactivity.
    pub const CLOSED_AFTER_INACTIVITY: CloseCode = CloseCode(4202);
    /// 4301: a client event refused for its rate (an error only: the connection stays open).
    pub const CLIENT_EVENT_RATE_LIMITED: CloseCode = CloseCode(4301);

    /// A code by number, for codes without a name here (e.g. one a peer sent).
    pub const fn new(code: u16) -> Self {
        CloseCode(code)
    }

    /// The code's number, as it goes on the wire.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// What a Pusher client does after this close.
    pub fn reconnect(self) -> Reconnect {
        match self.0 {
            4000..=4099 => Reconnect::Never,
            4100..=4199 => Reconnect::AfterBackoff,
            4200..=4299 => Reconnect::Immediately,
            _ => Reconnect::NotPusher,
        }
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_say_how_clients_reconnect() {
        assert_eq!(CloseCode::APP_NOT_FOUND.reconnect(), Reconnect::Never);
        assert_eq!(CloseCode::UNAUTHORIZED.reconnect(), Reconnect::Never);
        assert_eq!(
            CloseCode::OVER_CAPACITY.reconnect(),
            Reconnect::AfterBackoff
        );
        assert_eq!(
            CloseCode::PONG_NOT_RECEIVED.reconnect(),
            Reconnect::Immediately
        );
        assert_eq!(
            CloseCode::CLIENT_EVENT_RATE_LIMITED.reconnect(),
            Reconnect::NotPusher
        );
        assert_eq!(CloseCode::MESSAGE_TOO_BIG.reconnect(), Reconnect::NotPusher);
        assert_eq!(u16::from(CloseCode::new(4321)), 4321);
        assert_eq!(CloseCode::GENERIC_RECONNECT.to_string(), "4200");
    }
}
