//! Reconnect delays: exponential from `initial` to `max`, each spread by a
//! random `jitter` fraction so a fleet does not reconnect in lockstep.

use std::time::Duration;

/// Exponential backoff with jitter. Jitter is zero in tests.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    jitter: f64,
    next: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, jitter: f64) -> Self {
        Self {
            initial,
            max,
            jitter: jitter.clamp(0.0, 1.0),
            next: initial,
        }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        if self.jitter == 0.0 {
            return base;
        }
        let spread = 1.0 + self.jitter * (rand::random::<f64>() * 2.0 - 1.0);
        base.mul_f64(spread).min(self.max)
    }

    /// Back to `initial` after a session that worked.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_max_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500), 0.0);
        let d: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10), 0.2);
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(10),
                "{d:?}"
            );
        }
    }
}
