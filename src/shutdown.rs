//! The signal that tells the server to stop, shared by the accept loop,
//! every session and whoever triggers it (a signal handler, or a test).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A one-way latch: once triggered, it stays triggered.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// The flag and the condition variable its waiters sleep on.
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl Shutdown {
    /// A latch that has not been triggered.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks everything watching this latch to stop. Idempotent.
    pub fn trigger(&self) {
        let (flag, wake) = &*self.inner;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
    }

    /// Whether [`Shutdown::trigger`] was called.
    pub fn is_triggered(&self) -> bool {
        *self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until triggered.
    pub fn wait(&self) {
        let (flag, wake) = &*self.inner;
        let mut triggered = flag.lock().unwrap_or_else(|p| p.into_inner());
        while !*triggered {
            triggered = wake.wait(triggered).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Blocks until triggered or `timeout` passes; returns whether it was
    /// triggered.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let (flag, wake) = &*self.inner;
        let triggered = flag.lock().unwrap_or_else(|p| p.into_inner());
        let (triggered, _) = wake
            .wait_timeout_while(triggered, timeout, |t| !*t)
            .unwrap_or_else(|p| p.into_inner());
        *triggered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_wakes_waiters_and_stays_set() {
        let shutdown = Shutdown::new();
        assert!(!shutdown.wait_timeout(Duration::from_millis(1)));
        let waiter = {
            let shutdown = shutdown.clone();
            std::thread::spawn(move || shutdown.wait())
        };
        shutdown.trigger();
        waiter.join().unwrap();
        assert!(shutdown.is_triggered());
        assert!(shutdown.wait_timeout(Duration::ZERO));
    }
}
