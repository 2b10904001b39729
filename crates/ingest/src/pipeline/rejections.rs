//! Rate-limited logging of rejected payloads: at most one line per reason per interval, with
//! the number of rejections suppressed since the previous line, so a flood of bad messages
//! cannot flood the logs.

use std::time::Duration;

use aggregator_core::{RejectionReason, Timestamp};

/// Decides which rejections get a log line.
#[derive(Debug)]
pub struct RejectionLog {
    interval: Duration,
    /// Per reason (index in [`RejectionReason::ALL`]): when the last line was written.
    last_logged: [Option<Timestamp>; RejectionReason::COUNT],
    /// Per reason: rejections not logged since that line.
    suppressed: [u64; RejectionReason::COUNT],
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
            interval,
            last_logged: [None; RejectionReason::COUNT],
            suppressed: [0; RejectionReason::COUNT],
        }
    }

    /// Records one rejection at `now`; `Some` when it is to be logged.
    pub fn admit(&mut self, reason: RejectionReason, now: Timestamp) -> Option<Admitted> {
        let i = reason.index();
        let due = match self.last_logged[i] {
            None => true,
            Some(last) => now.duration_since(last) >= self.interval,
        };
        if due {
            self.last_logged[i] = Some(now);
            Some(Admitted {
                suppressed: std::mem::take(&mut self.suppressed[i]),
            })
        } else {
            self.suppressed[i] += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: i64) -> Timestamp {
        Timestamp::from_unix_nanos(n * 1_000_000_000)
    }

    #[test]
    fn one_line_per_reason_per_interval_with_the_suppressed_count() {
        let mut log = RejectionLog::new(Duration::from_secs(10));
        assert_eq!(
            log.admit(RejectionReason::BadValue, secs(0)),
            Some(Admitted { suppressed: 0 })
        );
        for t in 1..10 {
            assert_eq!(log.admit(RejectionReason::BadValue, secs(t)), None);
        }
        assert_eq!(
            log.admit(RejectionReason::Late, secs(5)),
            Some(Admitted { suppressed: 0 }),
            "reasons are limited independently"
        );
        assert_eq!(
            log.admit(RejectionReason::BadValue, secs(10)),
            Some(Admitted { suppressed: 9 })
        );
        assert_eq!(log.admit(RejectionReason::BadValue, secs(11)), None);
    }
}
