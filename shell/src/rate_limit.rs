//! Per-client-address limits on WebSocket connection attempts and HTTP API requests, checked
//! as soon as a request head is parsed: an attempt over its limit costs one map lookup and a
//! short 429 answer, never an upgrade or a trip to the engine.
//!
//! Each limit is a fixed window per address: at most `max` attempts in each `window_secs`
//! starting at an address's first attempt. One table serves every I/O worker of the node, so a
//! limit is exact per node (in a cluster, each node counts on its own). IPv6 clients are
//! counted per /64, the block one host is usually given, so that walking through one's own
//! addresses is no way around a limit. The table holds at most [`MAX_TRACKED`] addresses:
//! expired windows are swept when it fills, and if it is still full the new address goes
//! uncounted rather than refused (a flood from that many addresses is not one client's).

use crate::forwarded::TrustedProxies;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses one limit tracks at a time.
pub(crate) const MAX_TRACKED: usize = 100_000;

/// A limit: at most `max` in each window of `window_secs` seconds; `max = 0` turns it off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Attempts allowed per window (0: unlimited).
    pub max: u32,
    /// The window's length in seconds.
    pub window_secs: u64,
}

impl FromStr for Window {
    type Err = String;

    /// `MAX/SECONDS`, e.g. `20/60`, the form flags and environment variables take.
    fn from_str(text: &str) -> Result<Self, String> {
        let parsed = text.split_once('/').and_then(|(max, secs)| {
            Some(Window {
                max: max.trim().parse().ok()?,
                window_secs: secs.trim().parse().ok()?,
            })
        });
        match parsed {
            Some(window) if window.window_secs > 0 => Ok(window),
            _ => Err(format!(
                "{text:?} is not a limit: give MAX/SECONDS, e.g. 20/60, with SECONDS at least 1"
            )),
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.max, self.window_secs)
    }
}

/// What a limit said of one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Let it through.
    Allowed,
    /// Over the limit: refuse, and say when to try again.
    Limited {
        /// Whole seconds until the address's window ends (at least 1), for `Retry-After`.
        retry_after_secs: u64,
    },
}

/// One address's current window.
#[derive(Clone, Copy, Debug)]
struct Count {
    started: Instant,
    attempts: u32,
}

/// One limit's counters, shared by the workers.
#[derive(Debug)]
pub(crate) struct Limiter {
    window: Window,
    counts: Mutex<HashMap<IpAddr, Count>>,
}

impl Limiter {
    /// A limiter for `window` (`None` when the limit is off).
    pub(crate) fn new(window: Window) -> Option<Self> {
        (window.max > 0).then(|| Limiter {
            window,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// Counts an attempt from `ip` at `now`.
    pub(crate) fn check(&self, ip: IpAddr, now: Instant) -> Verdict {
        let length = Duration::from_secs(self.window.window_secs);
        // A worker that panicked holding the lock left counts that are still counts.
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let key = client_key(ip);
        if !counts.contains_key(&key) && counts.len() >= MAX_TRACKED {
            counts.retain(|_, count| now.saturating_duration_since(count.started) < length);
            if counts.len() >= MAX_TRACKED {
                return Verdict::Allowed;
            }
        }
        let count = counts.entry(key).or_insert(Count {
            started: now,
            attempts: 0,
        });
        let elapsed = now.saturating_duration_since(count.started);
        if elapsed >= length {
            *count = Count {
                started: now,
                attempts: 0,
            };
        }
        if count.attempts >= self.window.max {
            let left = length.saturating_sub(now.saturating_duration_since(count.started));
            let retry_after_secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            return Verdict::Limited {
                retry_after_secs: retry_after_secs.max(1),
            };
        }
        count.attempts += 1;
        Verdict::Allowed
    }

    /// Addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.counts.lock().map(|c| c.len()).unwrap_or_default()
    }
}

/// The key an address is counted under: itself, or its /64 for IPv6.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            IpAddr::V6(Ipv6Addr::new(
                segments[0],
                segments[1],
                segments[2],
                segments[3],
                0,
                0,
                0,
                0,
            ))
        }
    }
}

/// The node's rate limits, shared by every I/O worker.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    /// WebSocket connection attempts per address.
    pub ws_connects: Option<Limiter>,
    /// HTTP API requests per address.
    pub api_requests: Option<Limiter>,
}

/// What decides who a client is and whether it may go on, shared by every I/O worker.
#[derive(Debug, Default)]
pub(crate) struct ClientGate {
    /// Whose forwarding headers are believed.
    pub proxies: TrustedProxies,
    /// The limits counted per client address.
    pub limits: RateLimits,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max: u32, secs: u64) -> Limiter {
        Limiter::new(Window {
            max,
            window_secs: secs,
        })
        .unwrap()
    }

    #[test]
    fn the_attempt_past_max_is_limited_until_the_window_ends() {
        let limit = limiter(3, 60);
        let t0 = Instant::now();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(limit.check(ip, t0), Verdict::Allowed);
        }
        assert_eq!(
            limit.check(ip, t0 + Duration::from_millis(500)),
            Verdict::Limited {
                retry_after_secs: 60
            }
        );
        assert_eq!(
            limit.check(ip, t0 + Duration::from_secs(59)),
            Verdict::Limited {
                retry_after_secs: 1
            }
        );
        assert_eq!(
            limit.check(ip, t0 + Duration::from_secs(60)),
            Verdict::Allowed
        );
    }

    #[test]
    fn addresses_are_counted_apart_and_ipv6_per_64() {
        let limit = limiter(1, 10);
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(limit.check(a, now), Verdict::Allowed);
        assert_eq!(limit.check(b, now), Verdict::Allowed);
        assert!(matches!(limit.check(a, now), Verdict::Limited { .. }));
        let host1: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let host1_other: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limit.check(host1, now), Verdict::Allowed);
        assert!(matches!(
            limit.check(host1_other, now),
            Verdict::Limited { .. }
        ));
        assert_eq!(limit.check(elsewhere, now), Verdict::Allowed);
    }

    #[test]
    fn the_table_stays_bounded_and_sweeps_expired_windows() {
        let limit = limiter(1, 1);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            limit.check(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert_eq!(limit.tracked(), MAX_TRACKED);
        let late: IpAddr = "198.51.100.1".parse().unwrap();
        // Full of live windows: a new address is let through uncounted.
        assert_eq!(limit.check(late, t0), Verdict::Allowed);
        assert_eq!(limit.tracked(), MAX_TRACKED);
        // Once they expire, the sweep makes room and the newcomer is counted.
        let later = t0 + Duration::from_secs(2);
        assert_eq!(limit.check(late, later), Verdict::Allowed);
        assert_eq!(limit.tracked(), 1);
        assert!(matches!(limit.check(late, later), Verdict::Limited { .. }));
    }

    #[test]
    fn windows_parse_from_flags_and_zero_turns_a_limit_off() {
        assert_eq!(
            "20/60".parse::<Window>(),
            Ok(Window {
                max: 20,
                window_secs: 60
            })
        );
        assert!("20".parse::<Window>().is_err());
        assert!("20/0".parse::<Window>().is_err());
        assert!(Limiter::new("0/60".parse().unwrap()).is_none());
    }
}
