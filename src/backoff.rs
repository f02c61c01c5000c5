//! The one waiting heuristic: a bounded stretch of trying again before a
//! thread sleeps, in the manner of crossbeam-utils' `Backoff`.
//!
//! Owns nothing but time; callers decide what "try again" means (look at a
//! queue, poll a socket). Every use names its limit: a constant, or the
//! user's `Client::busy_wait`.

use std::time::{Duration, Instant};

/// Spins between yields: a yield costs a syscall, a spin a few nanoseconds.
const SPINS_PER_YIELD: u32 = 16;

/// A window of `limit` (cut short by a caller's deadline) in which to try
/// again before sleeping.
#[derive(Debug)]
pub(crate) struct Backoff {
    limit: Duration,
    deadline: Option<Instant>,
    until: Option<Instant>,
    step: u32,
}

impl Backoff {
    /// The window opens at the first [`left`](Backoff::left).
    pub(crate) fn new(limit: Duration, deadline: Option<Instant>) -> Backoff {
        Backoff {
            limit,
            deadline,
            until: None,
            step: 0,
        }
    }

    /// What is left of the window, or `None` once it has closed.
    pub(crate) fn left(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let until = *self.until.get_or_insert_with(|| {
            let end = now + self.limit;
            self.deadline.map_or(end, |d| d.min(end))
        });
        until.checked_duration_since(now).filter(|d| !d.is_zero())
    }

    /// One step of waiting awake without a syscall: for a wait the caller
    /// chose to spend a core on (a yield costs a syscall, and under gVisor
    /// a 50 µs window of yields cost more than the spin it broke up).
    pub(crate) fn pause(&mut self) {
        std::hint::spin_loop();
    }

    /// One step of waiting awake: a spin, and every few steps a yield.
    pub(crate) fn spin(&mut self) {
        self.step = self.step.wrapping_add(1);
        if self.step % SPINS_PER_YIELD == 0 {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_closes_at_its_limit_or_the_deadline() {
        let mut b = Backoff::new(Duration::from_millis(5), None);
        let start = Instant::now();
        while b.left().is_some() {
            b.spin();
        }
        assert!(start.elapsed() >= Duration::from_millis(5));
        let mut b = Backoff::new(Duration::from_secs(10), Some(Instant::now()));
        assert!(b.left().is_none(), "a passed deadline closes it at once");
    }
}
