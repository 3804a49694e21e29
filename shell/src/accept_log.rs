//! What the acceptor logs while `accept` keeps failing (e.g. out of descriptors).
//!
//! At the descriptor limit `accept` fails on every retry, ten times a second: one WARN per
//! failure would flood the log exactly when an operator needs it. An episode of failures is
//! logged once when it starts and once, with its count and length, when accepting works again.

use std::time::{Duration, Instant};

/// An episode of failed accepts, from its first failure.
#[derive(Clone, Copy, Debug)]
struct Episode {
    since: Instant,
    failures: u64,
}

/// How an episode that just ended went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Failed accepts in the episode.
    pub failures: u64,
    /// From its first failure to the accept that worked.
    pub lasted: Duration,
}

/// Decides which accept failures and recoveries are worth a log line.
#[derive(Debug, Default)]
pub(crate) struct AcceptLog {
    episode: Option<Episode>,
}

impl AcceptLog {
    /// Records a failed accept; returns `true` when it starts an episode (log it then only).
    pub(crate) fn failed(&mut self, now: Instant) -> bool {
        match &mut self.episode {
            Some(episode) => {
                episode.failures += 1;
                false
            }
            None => {
                self.episode = Some(Episode {
                    since: now,
                    failures: 1,
                });
                true
            }
        }
    }

    /// Records that accepting works (the backlog is drained); returns the episode it ends, if
    /// one was going on.
    pub(crate) fn working(&mut self, now: Instant) -> Option<Recovered> {
        self.episode.take().map(|episode| Recovered {
            failures: episode.failures,
            lasted: now.saturating_duration_since(episode.since),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_is_reported_once_then_counted_at_recovery() {
        let start = Instant::now();
        let mut log = AcceptLog::default();
        assert_eq!(log.working(start), None);
        let warned = (0..50u64)
            .filter(|&i| log.failed(start + Duration::from_millis(100 * i)))
            .count();
        assert_eq!(warned, 1);
        assert_eq!(
            log.working(start + Duration::from_secs(5)),
            Some(Recovered {
                failures: 50,
                lasted: Duration::from_secs(5),
            })
        );
        assert_eq!(log.working(start + Duration::from_secs(6)), None);
        // The next episode is reported afresh.
        assert!(log.failed(start + Duration::from_secs(7)));
        assert!(!log.failed(start + Duration::from_secs(8)));
    }
}
