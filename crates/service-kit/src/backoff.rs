//! Capped exponential backoff between reconnection attempts, shared by every MQTT loop
//! (ingest, gateway, historian, simulator).
//!
//! rumqttc retries a failed connection on the very next `poll`, so each event loop pauses
//! itself: it asks [`Backoff::next_delay`] after an error, sleeps that long, and calls
//! [`Backoff::reset`] on a successful CONNACK. The type only does arithmetic on
//! [`Duration`]s; the caller owns the clock and the sleeping, which keeps it testable without
//! a runtime.

use std::time::Duration;

/// Pauses that start at `min`, double after every failure and stop growing at `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff whose first pause is `min` and whose later pauses never exceed `max` (with
    /// `max` below `min`, every pause after the first is `max`).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The pause before the next attempt; the one after it is twice as long, up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// The longest pause (the cap), for a second backoff that shares it.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Back to the first pause, after a successful connection.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(ms(100), ms(500));
        let delays: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        b.reset();
        assert_eq!(b.next_delay(), ms(100));
    }

    #[test]
    fn a_cap_below_the_start_applies_from_the_second_pause() {
        let mut b = Backoff::new(ms(300), ms(100));
        assert_eq!(b.next_delay(), ms(300));
        assert_eq!(b.next_delay(), ms(100));
        assert_eq!(b.next_delay(), ms(100));
    }

    #[test]
    fn huge_pauses_saturate_instead_of_overflowing() {
        let mut b = Backoff::new(Duration::MAX / 2 + ms(1), Duration::MAX);
        b.next_delay();
        assert_eq!(b.next_delay(), Duration::MAX);
        assert_eq!(b.next_delay(), Duration::MAX);
    }
}
