//! A token bucket driven by the caller's clock, for per-connection rate limits.

use std::time::Instant;

/// Allows `rate` events per second with bursts of up to `burst`.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub(crate) fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate_per_sec: f64::from(rate_per_sec),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refilled_at: now,
        }
    }

    /// Takes one token if there is one; `false` means the event is over the limit.
    pub(crate) fn try_take(&mut self, now: Instant) -> bool {
        self.try_take_n(1, now)
    }

    /// Takes `n` tokens if there are that many; otherwise takes none.
    pub(crate) fn try_take_n(&mut self, n: u32, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        self.refilled_at = self.refilled_at.max(now);
        if self.tokens >= f64::from(n) {
            self.tokens -= f64::from(n);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
// Tests need some instant to start from; its value does not matter.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 10, t0);
        assert_eq!((0..15).filter(|_| bucket.try_take(t0)).count(), 10);
        assert!(!bucket.try_take(t0 + Duration::from_millis(50)));
        assert!(bucket.try_take(t0 + Duration::from_millis(100)));
        assert_eq!(
            (0..20)
                .filter(|_| bucket.try_take(t0 + Duration::from_secs(5)))
                .count(),
            10
        );
    }
}
