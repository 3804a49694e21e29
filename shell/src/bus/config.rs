//! What a bus link needs to know, checked before any thread starts.

use std::fmt;
use std::time::Duration;

/// How to reach the cluster's Redis, and the link's timings and bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusConfig {
    /// `redis://[[user]:password@]host[:port][/db]`, `rediss://…` for TLS (verified against the
    /// system's root certificates), or `unix:///path/to/socket`.
    pub redis_url: String,
    /// The cluster's namespace on this Redis: its channel is `{prefix}:bus`, so two clusters with
    /// different prefixes on one Redis never see each other's messages.
    pub prefix: String,
    /// Most outgoing messages held while the link is down (or Redis is slow); past it the oldest
    /// are dropped and counted.
    pub outgoing_max_messages: usize,
    /// Most bytes of outgoing messages held; past it the oldest are dropped and counted.
    pub outgoing_max_bytes: usize,
    /// The first wait before reconnecting after a failure; doubles on each failure in a row.
    pub backoff_initial: Duration,
    /// The longest wait between reconnection attempts: Redis is found again at most this long
    /// (plus a connect) after it returns.
    pub backoff_max: Duration,
    /// How long opening one Redis connection may take.
    pub connect_timeout: Duration,
    /// How long one command (`PUBLISH`, `PING`) may wait for its reply before the connection
    /// counts as lost.
    pub command_timeout: Duration,
    /// After this long without traffic a connection is checked with a `PING`, so a silent
    /// network failure is noticed even when nothing is published.
    pub idle_ping: Duration,
    /// How often the subscriber, blocked on its socket, looks up to notice a stop or a failure of
    /// the publishing side; bounds how long `stop` takes.
    pub poll_interval: Duration,
}

/// Why a [`BusConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusConfigError {
    /// The Redis URL does not parse (shown with its password hidden).
    BadUrl {
        /// The URL as given, password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The prefix cannot name a channel.
    BadPrefix {
        /// The prefix as given.
        prefix: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A bound or timing is zero or out of order.
    BadLimit(&'static str),
}

impl fmt::Display for BusConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusConfigError::BadUrl { url, reason } => write!(
                f,
                "invalid Redis URL {url:?}: {reason} (expected redis://[[user]:password@]host[:port][/db], \
                 rediss://… for TLS, or unix:///path)"
            ),
            BusConfigError::BadPrefix { prefix, reason } => {
                write!(f, "invalid cluster prefix {prefix:?}: {reason}")
            }
            BusConfigError::BadLimit(what) => write!(f, "invalid cluster bus setting: {what}"),
        }
    }
}

impl std::error::Error for BusConfigError {}

impl BusConfig {
    /// A checked configuration with the default timings and bounds.
    pub fn new(
        redis_url: impl Into<String>,
        prefix: impl Into<String>,
    ) -> Result<Self, BusConfigError> {
        let config = BusConfig {
            redis_url: redis_url.into(),
            prefix: prefix.into(),
            outgoing_max_messages: 16_384,
            outgoing_max_bytes: 64 << 20,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(2),
            idle_ping: Duration::from_secs(1),
            poll_interval: Duration::from_millis(100),
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; [`crate::bus::RedisLink::start`] does it again, so a configuration
    /// edited after `new` cannot slip through.
    pub fn validate(&self) -> Result<(), BusConfigError> {
        self.client()?;
        validate_prefix(&self.prefix)?;
        let limits = [
            (
                self.outgoing_max_messages == 0,
                "outgoing_max_messages is 0",
            ),
            (self.outgoing_max_bytes == 0, "outgoing_max_bytes is 0"),
            (self.backoff_initial.is_zero(), "backoff_initial is 0"),
            (
                self.backoff_max < self.backoff_initial,
                "backoff_max is below backoff_initial",
            ),
            (self.connect_timeout.is_zero(), "connect_timeout is 0"),
            (self.command_timeout.is_zero(), "command_timeout is 0"),
            (self.idle_ping.is_zero(), "idle_ping is 0"),
            (self.poll_interval.is_zero(), "poll_interval is 0"),
        ];
        match limits.iter().find(|(bad, _)| *bad) {
            Some((_, what)) => Err(BusConfigError::BadLimit(what)),
            None => Ok(()),
        }
    }

    /// The Redis channel every node of this cluster publishes on and subscribes to.
    pub fn channel(&self) -> String {
        format!("{}:bus", self.prefix)
    }

    /// The URL with its password replaced by `***`, fit for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.redis_url)
    }

    /// The Redis client for the URL (parsing only; no connection is made).
    pub(crate) fn client(&self) -> Result<redis::Client, BusConfigError> {
        let bad = |reason: String| BusConfigError::BadUrl {
            url: self.redacted_url(),
            reason,
        };
        if self.redis_url.trim().is_empty() {
            return Err(bad("it is empty".into()));
        }
        // The crate's own message for a URL it cannot parse says only that; name the cause.
        let lowercase = self.redis_url.to_ascii_lowercase();
        if !KNOWN_SCHEMES
            .iter()
            .any(|scheme| lowercase.starts_with(scheme))
        {
            return Err(bad(
                "its scheme is not redis://, rediss:// or unix://".into()
            ));
        }
        if redis::parse_redis_url(&self.redis_url).is_none() {
            return Err(bad(
                "it does not parse as a URL (check the host and port)".into()
            ));
        }
        redis::Client::open(self.redis_url.as_str()).map_err(|error| bad(error.to_string()))
    }
}

/// The schemes the redis crate accepts (`valkey` spellings included).
const KNOWN_SCHEMES: [&str; 7] = [
    "redis://",
    "rediss://",
    "unix://",
    "redis+unix://",
    "valkey://",
    "valkeys://",
    "valkey+unix://",
];

fn validate_prefix(prefix: &str) -> Result<(), BusConfigError> {
    let bad = |reason| BusConfigError::BadPrefix {
        prefix: prefix.to_string(),
        reason,
    };
    if prefix.is_empty() {
        return Err(bad("it is empty"));
    }
    if prefix.len() > 200 {
        return Err(bad("it is longer than 200 bytes"));
    }
    // Printable ASCII without spaces: the channel name shows up verbatim in logs and in
    // `PUBSUB CHANNELS`, where invisible or ambiguous characters would mislead an operator.
    if !prefix.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad("only printable ASCII without spaces is allowed"));
    }
    Ok(())
}

/// Hides the password part of `scheme://user:password@host…`; anything else is left as is.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let user_info = &authority[..at];
    let user = match user_info.find(':') {
        Some(colon) => &user_info[..colon],
        None => return url.to_string(),
    };
    format!("{}{}:***{}", &url[..scheme_end], user, &rest[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_url("redis://:s3cret@10.0.0.1:6379/2"),
            "redis://:***@10.0.0.1:6379/2"
        );
        assert_eq!(
            redact_url("rediss://app:p@ss:w@rd@host/0"),
            "rediss://app:***@host/0"
        );
        assert_eq!(redact_url("redis://host:6379/0"), "redis://host:6379/0");
        assert_eq!(redact_url("redis://user@host"), "redis://user@host");
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn the_channel_is_derived_from_the_prefix() {
        let config = BusConfig::new("redis://127.0.0.1:6379/0", "ferrocast").unwrap();
        assert_eq!(config.channel(), "ferrocast:bus");
    }

    #[test]
    fn prefixes_that_cannot_name_a_channel_are_refused() {
        for prefix in ["", "has space", "tab\there", "é", &"x".repeat(201)] {
            let error = BusConfig::new("redis://127.0.0.1", prefix).unwrap_err();
            assert!(
                matches!(error, BusConfigError::BadPrefix { .. }),
                "{prefix:?}: {error}"
            );
        }
    }

    #[test]
    fn zero_or_inverted_limits_are_refused() {
        let mut config = BusConfig::new("redis://127.0.0.1", "p").unwrap();
        config.backoff_max = Duration::from_millis(10);
        assert_eq!(
            config.validate(),
            Err(BusConfigError::BadLimit(
                "backoff_max is below backoff_initial"
            ))
        );
        let mut config = BusConfig::new("redis://127.0.0.1", "p").unwrap();
        config.outgoing_max_messages = 0;
        assert!(config.validate().is_err());
    }
}
