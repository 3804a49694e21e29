//! Identifiers parsed once at the boundary, so the rest of the engine never re-validates them.

use std::fmt;
use std::sync::Arc;

/// The shell's handle for one client connection (chosen by the shell, unique while open).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// The shell's handle for one HTTP request awaiting its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReqId(pub u64);

/// The Pusher socket id the engine assigns to a connection: two integers joined by a dot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SocketId {
    high: u32,
    low: u32,
}

impl SocketId {
    /// Builds a socket id from its two halves.
    pub fn new(high: u32, low: u32) -> Self {
        SocketId { high, low }
    }

    /// Parses `"123.456"`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let (high, low) = text.split_once('.')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 10 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(high) || !digits(low) {
            return None;
        }
        Some(SocketId {
            high: high.parse().ok()?,
            low: low.parse().ok()?,
        })
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.high, self.low)
    }
}

/// An app's stable id: its configured `id`, the one HTTP API paths name (`/apps/{id}/…`).
///
/// Apps are keyed by it everywhere (state, timers), never by a position in the configuration,
/// so an app can be added or removed without disturbing the others.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppId(Arc<str>);

impl AppId {
    /// Wraps a configured app id.
    pub fn new(id: &str) -> Self {
        AppId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Lookups by `&str` are sound: the derived ordering is the ordering of the text.
impl std::borrow::Borrow<str> for AppId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An app's public key: the one clients connect with (`/app/{key}`) and requests are signed for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AppKey(Arc<str>);

impl AppKey {
    /// Wraps a configured app key.
    pub fn new(key: &str) -> Self {
        AppKey(key.into())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Lookups by `&str` are sound: the derived ordering is the ordering of the text.
impl std::borrow::Borrow<str> for AppKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated event name (an app event or a `client-` event): non-empty, within the app's limit.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventName(Arc<str>);

/// Why an event name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventNameError {
    /// Empty name.
    Empty,
    /// Longer than the configured limit.
    TooLong,
}

impl EventName {
    /// Validates `name` against `max_len` (bytes).
    pub fn parse(name: &str, max_len: usize) -> Result<Self, EventNameError> {
        if name.is_empty() {
            Err(EventNameError::Empty)
        } else if name.len() > max_len {
            Err(EventNameError::TooLong)
        } else {
            Ok(EventName(name.into()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A presence / signed-in user id (always a string on the wire; numbers are stringified).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Wraps a non-empty user id.
    pub fn new(id: &str) -> Option<Self> {
        (!id.is_empty()).then(|| UserId(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The kind of a channel, decided by its name prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelKind {
    /// No reserved prefix: anyone may subscribe.
    Public,
    /// `private-`: signed with `socket_id:channel`.
    Private,
    /// `private-encrypted-`: signed like private; payloads opaque; no client events.
    PrivateEncrypted,
    /// `presence-`: signed with `socket_id:channel:channel_data`; a member roster.
    Presence,
    /// `#server-to-user-{id}`: only the connection signed in as `{id}`.
    ServerToUser,
}

impl ChannelKind {
    /// Whether clients may send `client-` events on it.
    pub fn allows_client_events(self) -> bool {
        matches!(self, ChannelKind::Private | ChannelKind::Presence)
    }
}

/// Prefix of the per-user channel a signed-in connection may join.
pub const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// A validated channel name with its kind and whether it is a cache channel.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChannelName(Arc<str>);

/// Why a channel name was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelNameError {
    /// Empty name.
    Empty,
    /// Longer than the configured limit.
    TooLong,
    /// A character outside `[A-Za-z0-9_\-=@,.;]` (or a misplaced `#`).
    BadCharacter,
}

impl fmt::Display for ChannelNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelNameError::Empty => "channel name is empty",
            ChannelNameError::TooLong => "channel name is too long",
            ChannelNameError::BadCharacter => {
                "channel name has a character outside [A-Za-z0-9_-=@,.;]"
            }
        })
    }
}

impl ChannelName {
    /// Validates `name` against the charset and `max_len`.
    pub fn parse(name: &str, max_len: usize) -> Result<Self, ChannelNameError> {
        if name.is_empty() {
            return Err(ChannelNameError::Empty);
        }
        if name.len() > max_len {
            return Err(ChannelNameError::TooLong);
        }
        let rest = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b);
        if rest.is_empty() || !rest.bytes().all(allowed) {
            return Err(ChannelNameError::BadCharacter);
        }
        Ok(ChannelName(name.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The channel's kind, from its prefix.
    pub fn kind(&self) -> ChannelKind {
        let name = self.as_str();
        if name.starts_with(SERVER_TO_USER_PREFIX) {
            ChannelKind::ServerToUser
        } else if name.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if name.starts_with("private-") {
            ChannelKind::Private
        } else if name.starts_with("presence-") {
            ChannelKind::Presence
        } else {
            ChannelKind::Public
        }
    }

    /// Whether the channel keeps its last event for new subscribers.
    pub fn is_cache(&self) -> bool {
        let name = self.as_str();
        [
            "cache-",
            "private-cache-",
            "private-encrypted-cache-",
            "presence-cache-",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
    }

    /// For `#server-to-user-{id}`, the `{id}`.
    pub fn server_to_user_id(&self) -> Option<&str> {
        self.as_str().strip_prefix(SERVER_TO_USER_PREFIX)
    }
}

// Lookups by `&str` are sound: the derived ordering is the ordering of the text.
impl std::borrow::Borrow<str> for ChannelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_id_round_trips_and_rejects_junk() {
        let id = SocketId::parse("123.456").unwrap();
        assert_eq!(id.to_string(), "123.456");
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "a.1",
            "1.2.3",
            "-1.2",
            "+1.2",
            "1.+2",
            "99999999999.1",
        ] {
            assert_eq!(SocketId::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn channel_kinds_follow_prefixes() {
        let kind = |n: &str| ChannelName::parse(n, 200).unwrap().kind();
        assert_eq!(kind("news"), ChannelKind::Public);
        assert_eq!(kind("private-a"), ChannelKind::Private);
        assert_eq!(kind("private-encrypted-a"), ChannelKind::PrivateEncrypted);
        assert_eq!(kind("presence-a"), ChannelKind::Presence);
        assert_eq!(kind("private-cache-a"), ChannelKind::Private);
        assert_eq!(kind("presence-cache-a"), ChannelKind::Presence);
        assert_eq!(kind("#server-to-user-42"), ChannelKind::ServerToUser);
        assert!(ChannelName::parse("private-encrypted-cache-x", 200)
            .unwrap()
            .is_cache());
        assert!(!ChannelName::parse("cachex", 200).unwrap().is_cache());
    }

    #[test]
    fn event_names_are_bounded_and_app_ids_look_up_by_text() {
        assert_eq!(EventName::parse("", 5), Err(EventNameError::Empty));
        assert_eq!(EventName::parse("abcdef", 5), Err(EventNameError::TooLong));
        assert_eq!(EventName::parse("abcde", 5).unwrap().as_str(), "abcde");
        let apps: std::collections::BTreeMap<AppId, u8> = [(AppId::new("a"), 1)].into();
        assert_eq!(apps.get("a"), Some(&1));
        assert_eq!(AppKey::new("k").to_string(), "k");
    }

    #[test]
    fn name_errors_say_what_is_wrong() {
        let text = |e: ChannelNameError| e.to_string();
        assert!(text(ChannelNameError::Empty).contains("empty"));
        assert!(text(ChannelNameError::TooLong).contains("too long"));
        assert!(text(ChannelNameError::BadCharacter).contains("character"));
    }

    #[test]
    fn channel_names_are_validated() {
        assert_eq!(ChannelName::parse("", 200), Err(ChannelNameError::Empty));
        assert_eq!(
            ChannelName::parse("a b", 200),
            Err(ChannelNameError::BadCharacter)
        );
        assert_eq!(
            ChannelName::parse("a#b", 200),
            Err(ChannelNameError::BadCharacter)
        );
        assert_eq!(
            ChannelName::parse("#server-to-user-", 200),
            Err(ChannelNameError::BadCharacter)
        );
        assert_eq!(
            ChannelName::parse(&"a".repeat(201), 200),
            Err(ChannelNameError::TooLong)
        );
        assert!(ChannelName::parse("A-z_0=@,.;", 200).is_ok());
    }
}
