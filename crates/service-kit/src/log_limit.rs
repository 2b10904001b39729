//! At most one log line of a kind per interval, so that the same trouble repeated (a broker
//! that stays away, a stream of unusable messages) cannot flood the logs. The type only
//! decides; the caller writes the line, with the number left out since the previous one.

use std::time::Duration;

use tokio::time::Instant;

/// Decides which occurrences of one kind of trouble get a log line, at instants the caller
/// passes (tokio's, so that a test with paused time drives them).
#[derive(Debug, Clone)]
pub struct LogLimit {
    interval: Duration,
    /// When the last line was admitted.
    last: Option<Instant>,
    /// Occurrences not admitted since that line.
    suppressed: u64,
}

impl LogLimit {
    /// At most one line per `interval`; the first occurrence is always admitted.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// Records one occurrence at `now`; `Some(left out since the last line)` when it gets one.
    pub fn admit_at(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.interval)
        {
            self.suppressed += 1;
            return None;
        }
        Some(self.force_at(now))
    }

    /// Records one occurrence at `now` that is logged whatever the interval says (news such as
    /// a different reason); returns the number left out. The interval starts again here.
    pub fn force_at(&mut self, now: Instant) -> u64 {
        self.last = Some(now);
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_left_out() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut log = LogLimit::new(Duration::from_secs(10));
        assert_eq!(log.admit_at(at(0)), Some(0));
        for t in 1..10 {
            assert_eq!(log.admit_at(at(t)), None, "at {t} s");
        }
        assert_eq!(
            log.admit_at(at(10)),
            Some(9),
            "due again after the interval"
        );
        assert_eq!(log.admit_at(at(11)), None);
        assert_eq!(log.admit_at(at(25)), Some(1));
    }

    #[test]
    fn a_forced_line_reports_what_was_left_out_and_restarts_the_interval() {
        let start = Instant::now();
        let at = |secs| start + Duration::from_secs(secs);
        let mut log = LogLimit::new(Duration::from_secs(10));
        assert_eq!(log.admit_at(at(0)), Some(0));
        assert_eq!(log.admit_at(at(1)), None);
        assert_eq!(log.admit_at(at(2)), None);
        assert_eq!(log.force_at(at(3)), 2);
        assert_eq!(
            log.admit_at(at(12)),
            None,
            "the interval runs from the forced line"
        );
        assert_eq!(log.admit_at(at(13)), Some(1));
    }

    #[test]
    fn an_earlier_instant_than_the_last_line_is_within_the_interval() {
        let start = Instant::now() + Duration::from_secs(60);
        let mut log = LogLimit::new(Duration::from_secs(10));
        assert_eq!(log.admit_at(start), Some(0));
        assert_eq!(log.admit_at(start - Duration::from_secs(30)), None);
    }
}
