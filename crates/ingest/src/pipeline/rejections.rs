//! Rate-limited logging of rejected payloads: at most one line per reason per interval, with
//! the number of rejections suppressed since the previous line, so a flood of bad messages
//! cannot flood the logs. Each reason has its own [`LogLimit`], so a flood of one reason does
//! not hide the first line of another.

use std::time::Duration;

use aggregator_core::RejectionReason;
use service_kit::LogLimit;
use tokio::time::Instant;

/// Decides which rejections get a log line.
#[derive(Debug)]
pub struct RejectionLog {
    /// Per reason (index in [`RejectionReason::ALL`]).
    per_reason: [LogLimit; RejectionReason::COUNT],
}

/// The answer of [`RejectionLog::admit`] when a line is to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Rejections of the same reason that were not logged since the previous line.
    pub suppressed: u64,
}

impl RejectionLog {
    /// At most one line per reason per `interval`.
    pub fn new(interval: Duration) -> Self {
        RejectionLog {
            per_reason: std::array::from_fn(|_| LogLimit::new(interval)),
        }
    }

    /// Records one rejection now; `Some` when it is to be logged.
    pub fn admit(&mut self, reason: RejectionReason) -> Option<Admitted> {
        self.admit_at(reason, Instant::now())
    }

    /// As [`RejectionLog::admit`], at `now`.
    pub fn admit_at(&mut self, reason: RejectionReason, now: Instant) -> Option<Admitted> {
        self.per_reason[reason.index()]
            .admit_at(now)
            .map(|suppressed| Admitted { suppressed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_interval_with_the_suppressed_count() {
        let start = Instant::now();
        let secs = |n| start + Duration::from_secs(n);
        let mut log = RejectionLog::new(Duration::from_secs(10));
        assert_eq!(
            log.admit_at(RejectionReason::BadValue, secs(0)),
            Some(Admitted { suppressed: 0 })
        );
        for t in 1..10 {
            assert_eq!(log.admit_at(RejectionReason::BadValue, secs(t)), None);
        }
        assert_eq!(
            log.admit_at(RejectionReason::Late, secs(5)),
            Some(Admitted { suppressed: 0 }),
            "reasons are limited independently"
        );
        assert_eq!(
            log.admit_at(RejectionReason::BadValue, secs(10)),
            Some(Admitted { suppressed: 9 })
        );
        assert_eq!(log.admit_at(RejectionReason::BadValue, secs(11)), None);
    }
}
