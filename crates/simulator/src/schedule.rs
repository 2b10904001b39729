//! When each message is due.
//!
//! With `--rate R` messages are evenly spaced, `1/R` apart, over all machines together, and
//! the machine of each message is drawn at random. Without it, every machine keeps its own
//! timer and sends one message every 0.5 to 2 s (uniformly drawn each time), like the
//! original simulator; with 3 machines that is about 2.4 messages per second overall.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Shortest and longest gap between two messages of one machine without `--rate`.
pub const ORIGINAL_GAP_SECS: (f64, f64) = (0.5, 2.0);

/// The message timetable, as offsets from the start of the run.
#[derive(Debug)]
pub enum Schedule {
    /// Evenly spaced at a fixed overall rate.
    Rate {
        /// Messages per second.
        per_second: f64,
        /// Number of messages already taken.
        taken: u64,
    },
    /// One timer per machine.
    PerMachine {
        /// Next due offset per machine.
        next_due: Vec<Duration>,
        /// Draws the gaps; separate from the content RNG.
        rng: Box<StdRng>,
    },
}

impl Schedule {
    /// A schedule at `rate` messages per second, or the original per-machine timing.
    /// `seed` makes the per-machine gaps reproducible.
    pub fn new(rate: Option<f64>, machines: usize, seed: u64) -> Self {
        match rate {
            Some(per_second) => Self::Rate {
                per_second,
                taken: 0,
            },
            None => {
                // A different stream from the content RNG, derived from the same seed.
                let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_5c4e_d01e_0000);
                let next_due = (0..machines)
                    .map(|_| Duration::from_secs_f64(rng.random_range(0.0..ORIGINAL_GAP_SECS.0)))
                    .collect();
                Self::PerMachine {
                    next_due,
                    rng: Box::new(rng),
                }
            }
        }
    }

    /// Offset from the start at which the next message is due.
    pub fn next_due(&self) -> Duration {
        match self {
            // u64 -> f64 loses precision only beyond 2^53 messages.
            #[allow(clippy::cast_precision_loss)]
            Self::Rate { per_second, taken } => Duration::from_secs_f64(*taken as f64 / per_second),
            Self::PerMachine { next_due, .. } => next_due.iter().min().copied().unwrap_or_default(),
        }
    }

    /// Takes the next message: `Some(machine)` when the schedule fixes the machine, `None`
    /// when the content generator should draw it.
    pub fn take(&mut self) -> Option<usize> {
        match self {
            Self::Rate { taken, .. } => {
                *taken += 1;
                None
            }
            Self::PerMachine { next_due, rng } => {
                let (machine, due) = next_due
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, d)| **d)
                    .map(|(m, d)| (m, *d))?;
                next_due[machine] = due
                    + Duration::from_secs_f64(
                        rng.random_range(ORIGINAL_GAP_SECS.0..=ORIGINAL_GAP_SECS.1),
                    );
                Some(machine)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_spaces_messages_evenly() {
        let mut schedule = Schedule::new(Some(4.0), 3, 1);
        let mut dues = Vec::new();
        for _ in 0..5 {
            dues.push(schedule.next_due());
            assert_eq!(schedule.take(), None);
        }
        assert_eq!(dues, [0, 250, 500, 750, 1000].map(Duration::from_millis));
    }

    #[test]
    fn per_machine_gaps_are_half_to_two_seconds() {
        let mut schedule = Schedule::new(None, 3, 9);
        let mut last = [None::<Duration>; 3];
        let mut previous_due = Duration::ZERO;
        for _ in 0..300 {
            let due = schedule.next_due();
            assert!(due >= previous_due, "the timetable never goes back");
            previous_due = due;
            let machine = schedule.take().unwrap();
            if let Some(before) = last[machine] {
                let gap = (due - before).as_secs_f64();
                assert!((0.5..=2.0).contains(&gap), "gap {gap}");
            }
            last[machine] = Some(due);
        }
        assert!(last.iter().all(Option::is_some), "every machine sends");
    }
}
