//! One engine on a fake clock, driven the way a shell drives a real one.
//!
//! The simulator, the property-test harness, the fuzz targets and the benchmarks all drive
//! the engine through a [`Driver`]: feed an input at the current fake moment, drain the
//! outputs until [`Output::Timeout`] (remembering that instant), and move time forward by
//! firing every due timer at its own instant. What each of them does with the outputs is
//! its own business, so the driver hands them over one by one.
//!
//! ```
//! use ferrocast_engine::driver::Driver;
//! use ferrocast_engine::{Config, ConnId, Input, Output, WsRequest};
//! use std::time::Duration;
//!
//! let mut driver = Driver::new(Config::default(), 7);
//! let request = WsRequest { path: "/app/app-key".into(), query: "protocol=7".into(), origin: None, peer: None, secure: false };
//! let mut sent = 0;
//! driver.feed(Input::Opened { conn: ConnId(1), request }, |_| sent += 1).unwrap();
//! assert_eq!(sent, 1); // pusher:connection_established
//!
//! // Quiet for the activity timeout (120 s): the server pings.
//! let mut pings = Vec::new();
//! driver.advance(Duration::from_secs(120), |output| {
//!     if let Output::Send { frame, .. } = output { pings.push(frame.payload_text()) }
//! });
//! assert!(pings[0].contains("pusher:ping"));
//! ```

use crate::interface::{ApiMisuse, Input, Moment, Output};
use crate::{Config, Engine};
use std::time::{Duration, Instant};

/// The wall clock every fake clock starts at (2023-11-14T22:13:20Z), in Unix milliseconds.
pub const FAKE_EPOCH_UNIX_MS: u64 = 1_700_000_000_000;

/// A clock that moves only when told: an anchor instant plus the time elapsed since.
///
/// Both clocks of a [`Moment`] advance together from the anchor and [`FAKE_EPOCH_UNIX_MS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FakeClock {
    start: Instant,
    elapsed: Duration,
}

impl FakeClock {
    /// A clock at zero elapsed time.
    pub fn new() -> Self {
        // The one real clock read: an anchor for `Instant`, which has no constructor of its
        // own; nothing depends on its value, only on differences from it.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        FakeClock {
            start,
            elapsed: Duration::ZERO,
        }
    }

    /// The current moment.
    pub fn now(&self) -> Moment {
        self.at(self.elapsed)
    }

    /// The moment `elapsed` after the start, wherever the clock is now.
    pub fn at(&self, elapsed: Duration) -> Moment {
        Moment::new(
            self.start + elapsed,
            FAKE_EPOCH_UNIX_MS + elapsed.as_millis() as u64,
        )
    }

    /// Time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// How long after the start `instant` is (zero if before it).
    pub fn since_start(&self, instant: Instant) -> Duration {
        instant.saturating_duration_since(self.start)
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&mut self, by: Duration) {
        self.elapsed += by;
    }

    /// Sets the elapsed time to `elapsed`, unless the clock is already past it.
    fn advance_to(&mut self, elapsed: Duration) {
        self.elapsed = self.elapsed.max(elapsed);
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        Self::new()
    }
}

/// An engine, a fake clock, and the instant of the engine's next timer.
pub struct Driver {
    engine: Engine,
    clock: FakeClock,
    next_timer: Option<Instant>,
}

impl Driver {
    /// A fresh engine built from `config` and `seed`, on a new fake clock.
    pub fn new(config: Config, seed: u64) -> Self {
        Self::with_clock(config, seed, FakeClock::new())
    }

    /// A fresh engine on a given clock (two drivers on one clock see identical instants).
    pub fn with_clock(config: Config, seed: u64, clock: FakeClock) -> Self {
        Driver {
            engine: Engine::new(config, seed),
            clock,
            next_timer: None,
        }
    }

    /// Drives an engine built by the caller (a cluster node, say), on a new fake clock.
    pub fn around(engine: Engine) -> Self {
        Driver {
            engine,
            clock: FakeClock::new(),
            next_timer: None,
        }
    }

    /// The engine being driven.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The fake clock.
    pub fn clock(&self) -> &FakeClock {
        &self.clock
    }

    /// The current fake moment.
    pub fn moment(&self) -> Moment {
        self.clock.now()
    }

    /// When the engine last asked to be woken (`None`: no timer pending).
    pub fn next_timer(&self) -> Option<Instant> {
        self.next_timer
    }

    /// Feeds `input` at the current moment and hands every output before the
    /// [`Output::Timeout`] to `each`, in order; returns the engine's verdict on the input.
    pub fn feed(&mut self, input: Input, mut each: impl FnMut(Output)) -> Result<(), ApiMisuse> {
        let verdict = self.engine.handle_input(self.clock.now(), input);
        loop {
            match self.engine.poll_output() {
                Output::Timeout(at) => {
                    self.next_timer = at;
                    return verdict;
                }
                output => each(output),
            }
        }
    }

    /// Moves the clock forward by `by`, feeding [`Input::Tick`] at each due timer's own
    /// instant on the way and once at the end; every output goes to `each`, in order.
    pub fn advance(&mut self, by: Duration, mut each: impl FnMut(Output)) {
        let target = self.clock.elapsed() + by;
        while let Some(at) = self.next_timer {
            let due = self.clock.since_start(at);
            if due > target {
                break;
            }
            self.clock.advance_to(due);
            self.tick(&mut each);
        }
        self.clock.advance_to(target);
        self.tick(&mut each);
    }

    fn tick(&mut self, each: &mut impl FnMut(Output)) {
        self.feed(Input::Tick, each)
            .expect("a tick is never misuse");
    }
}
