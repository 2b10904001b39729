//! A round of messages spread evenly over a span of time, so that a round of 100 000 trends
//! does not sit in the outgoing queue ahead of the aggregates that follow it.

use std::time::Duration;

use aggregator_core::Timestamp;

/// How many of a round's `total` messages may have gone out by a given instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    start: Timestamp,
    span: Duration,
    total: usize,
    sent: usize,
}

impl Round {
    /// A round of `total` messages starting at `start`, the last one due `span` later.
    pub fn new(start: Timestamp, span: Duration, total: usize) -> Self {
        Round {
            start,
            span,
            total,
            sent: 0,
        }
    }

    /// How many more may go out at `now`: the first at once, then in proportion to the
    /// time gone by.
    pub fn allowance(&self, now: Timestamp) -> usize {
        let share = if self.span.is_zero() {
            1.0
        } else {
            now.duration_since(self.start).as_secs_f64() / self.span.as_secs_f64()
        };
        // Truncation is the intent: one message per 1/total of the span, plus the first.
        let due = ((self.total as f64 * share.min(1.0)) as usize + 1).min(self.total);
        due.saturating_sub(self.sent)
    }

    /// `n` more went out.
    pub fn sent(&mut self, n: usize) {
        self.sent += n;
    }

    /// When the next message may go out (`now` if it may already).
    pub fn next_at(&self, now: Timestamp) -> Timestamp {
        if self.allowance(now) > 0 || self.total == 0 {
            return now;
        }
        let share = self.sent as f64 / self.total as f64;
        // Just past the instant at which the next one falls due.
        let at = self
            .start
            .saturating_add(self.span.mul_f64(share))
            .saturating_add(Duration::from_millis(1));
        at.max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_goes_out_in_proportion_to_the_time_gone_by() {
        let start = Timestamp::EPOCH.saturating_add(Duration::from_secs(100));
        let span = Duration::from_secs(5);
        let mut round = Round::new(start, span, 1000);
        assert_eq!(round.allowance(start), 1, "the first at once");
        round.sent(1);
        assert_eq!(round.allowance(start), 0);
        let next = round.next_at(start);
        assert!(
            next > start && next <= start.saturating_add(Duration::from_millis(6)),
            "{next}"
        );
        assert_eq!(round.allowance(next), 1);
        let half = start.saturating_add(span / 2);
        assert_eq!(round.allowance(half), 500);
        round.sent(500);
        let end = start.saturating_add(span * 2);
        assert_eq!(round.allowance(end), 499, "never more than the round");
        round.sent(499);
        assert_eq!(round.allowance(end), 0);
    }

    #[test]
    fn a_round_without_a_span_goes_out_at_once() {
        let start = Timestamp::EPOCH;
        let round = Round::new(start, Duration::ZERO, 7);
        assert_eq!(round.allowance(start), 7);
        assert_eq!(
            Round::new(start, Duration::from_secs(1), 0).allowance(start),
            0
        );
    }
}
