//! The engine's timer table: deadlines keyed by instant, cancellable, fired in order.

use std::collections::BTreeMap;
use std::time::Instant;

/// Handle of one scheduled timer, used to cancel it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerKey {
    at: Instant,
    seq: u64,
}

/// Deadlines with a payload `T`, fired earliest first; ties fire in scheduling order.
#[derive(Debug)]
pub(crate) struct Timers<T> {
    queue: BTreeMap<TimerKey, T>,
    next_seq: u64,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            queue: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<T> Timers<T> {
    /// Schedules `what` at `at`.
    pub(crate) fn schedule(&mut self, at: Instant, what: T) -> TimerKey {
        let key = TimerKey {
            at,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        self.queue.insert(key, what);
        key
    }

    /// Cancels a timer; cancelling one that already fired is harmless.
    pub(crate) fn cancel(&mut self, key: TimerKey) {
        self.queue.remove(&key);
    }

    /// Removes and returns the earliest timer due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<T> {
        let entry = self.queue.first_entry()?;
        (entry.key().at <= now).then(|| entry.remove())
    }

    /// The earliest deadline, if any.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.queue.keys().next().map(|k| k.at)
    }

    /// How many timers are pending.
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
// Tests need some instant to start from; its value does not matter.
#[allow(clippy::disallowed_methods)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_then_scheduling_order_and_honours_cancel() {
        let t0 = Instant::now();
        let mut timers = Timers::default();
        timers.schedule(t0 + Duration::from_secs(2), "late");
        timers.schedule(t0 + Duration::from_secs(1), "first");
        let cancelled = timers.schedule(t0 + Duration::from_secs(1), "cancelled");
        timers.schedule(t0 + Duration::from_secs(1), "second");
        timers.cancel(cancelled);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(1)));
        let now = t0 + Duration::from_secs(1);
        assert_eq!(timers.pop_due(now), Some("first"));
        assert_eq!(timers.pop_due(now), Some("second"));
        assert_eq!(timers.pop_due(now), None);
        assert_eq!(timers.len(), 1);
    }
}
