//! Waking a thread that sleeps somewhere the hand-off queues cannot see: an I/O worker blocks
//! in `mio::Poll::poll`, not on a condition variable, so the queues that feed it take a
//! [`Wake`] and call it. Production uses `mio::Waker`; the loom models use a loom `Notify`.

/// Makes a sleeping thread return from its wait (at least once after the call).
pub trait Wake: Send + Sync {
    /// Wakes the thread; a wake while it is awake makes its next wait return at once.
    fn wake(&self);
}

impl Wake for mio::Waker {
    fn wake(&self) {
        if let Err(e) = mio::Waker::wake(self) {
            // The eventfd/pipe write failing leaves a worker asleep: say so loudly.
            tracing::error!(error = %e, "cannot wake an I/O worker");
        }
    }
}

impl<W: Wake + ?Sized> Wake for std::sync::Arc<W> {
    fn wake(&self) {
        (**self).wake();
    }
}
