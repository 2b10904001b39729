//! The alarm state machine of one key: window totals and a time in, a state change out.
//!
//! Cleared → raised when a configured metric is above its raise threshold; raised → cleared
//! when every configured metric is below its clear threshold; anything in between holds the
//! current state (hysteresis). The change carries what the alarm message needs. A service
//! calls [`KeyAlarm::evaluate`] after every change of the key's window, expiry included, so an
//! emptied window clears without new input.

use super::rules::Thresholds;
use super::{AlarmState, Metric};
use crate::timestamp::Timestamp;
use crate::window::WindowTotals;

/// A change of a key's alarm state, to be published.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AlarmChange {
    /// The new state.
    pub state: AlarmState,
    /// The metric that raised the alarm (for a clear: the one that had raised it).
    pub metric: Metric,
    /// The metric's value now; `None` for the average of an empty window.
    pub value: Option<f64>,
    /// The threshold crossed: raise threshold when raised, clear threshold when cleared.
    pub threshold: f64,
    /// When the new state began (the evaluation time).
    pub since: Timestamp,
}

/// One key's alarm: its thresholds (resolved once from the rules) and, while raised, the
/// raising metric and since-when.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KeyAlarm {
    thresholds: Thresholds,
    raised: Option<(Metric, Timestamp)>,
}

fn value_of(metric: Metric, totals: &WindowTotals) -> Option<f64> {
    match metric {
        Metric::Sum => Some(totals.sum),
        Metric::Avg => totals.avg(),
    }
}

impl KeyAlarm {
    /// A cleared alarm under `thresholds`.
    pub fn new(thresholds: Thresholds) -> Self {
        KeyAlarm {
            thresholds,
            raised: None,
        }
    }

    /// The thresholds this key is evaluated against.
    pub fn thresholds(&self) -> &Thresholds {
        &self.thresholds
    }

    /// The raising metric and since-when, while raised.
    pub fn raised(&self) -> Option<(Metric, Timestamp)> {
        self.raised
    }

    /// Adopts a raised state read back at start (from the retained alarm topic), so that a
    /// window replayed above the threshold does not raise again with a new `since`, and one
    /// replayed below it clears. Returns false, leaving the state cleared, when the rule for
    /// this key no longer has `metric`.
    pub fn restore_raised(&mut self, metric: Metric, since: Timestamp) -> bool {
        let known = self.thresholds.band(metric).is_some();
        if known {
            self.raised = Some((metric, since));
        }
        known
    }

    /// Evaluates the key's current window at `now`; returns the state change, if any.
    pub fn evaluate(&mut self, totals: WindowTotals, now: Timestamp) -> Option<AlarmChange> {
        match self.raised {
            None => {
                let (metric, value, band) =
                    [Metric::Sum, Metric::Avg].into_iter().find_map(|m| {
                        let band = self.thresholds.band(m)?;
                        let value = value_of(m, &totals)?;
                        (value > band.raise).then_some((m, value, band))
                    })?;
                self.raised = Some((metric, now));
                Some(AlarmChange {
                    state: AlarmState::Raised,
                    metric,
                    value: Some(value),
                    threshold: band.raise,
                    since: now,
                })
            }
            Some((metric, _)) => {
                let all_below = [Metric::Sum, Metric::Avg].into_iter().all(|m| {
                    let Some(band) = self.thresholds.band(m) else {
                        return true;
                    };
                    // No average (empty window) is below any threshold.
                    value_of(m, &totals).is_none_or(|v| v < band.clear)
                });
                // The raising metric always has a band: `restore_raised` checks it.
                let clear = self.thresholds.band(metric)?.clear;
                if !all_below {
                    return None;
                }
                self.raised = None;
                Some(AlarmChange {
                    state: AlarmState::Cleared,
                    metric,
                    value: value_of(metric, &totals),
                    threshold: clear,
                    since: now,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alarm::rules::Band;
    use proptest::prelude::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_nanos(secs * 1_000_000_000)
    }

    fn totals(sum: f64, count: u64) -> WindowTotals {
        WindowTotals { sum, count }
    }

    fn sum_alarm(raise: f64, clear: f64) -> KeyAlarm {
        KeyAlarm::new(Thresholds {
            rule: 1,
            sum: Some(Band { raise, clear }),
            avg: None,
        })
    }

    #[test]
    fn raises_above_holds_in_the_band_and_clears_below() {
        let mut a = sum_alarm(30.0, 25.0);
        assert_eq!(a.evaluate(totals(30.0, 3), at(1)), None, "at the threshold");
        let raised = a.evaluate(totals(31.0, 4), at(2)).unwrap();
        assert_eq!(
            raised,
            AlarmChange {
                state: AlarmState::Raised,
                metric: Metric::Sum,
                value: Some(31.0),
                threshold: 30.0,
                since: at(2)
            }
        );
        assert_eq!(a.evaluate(totals(40.0, 5), at(3)), None, "already raised");
        assert_eq!(a.evaluate(totals(25.0, 5), at(4)), None, "in the band");
        assert_eq!(a.raised(), Some((Metric::Sum, at(2))));
        let cleared = a.evaluate(totals(24.0, 5), at(5)).unwrap();
        assert_eq!(
            cleared,
            AlarmChange {
                state: AlarmState::Cleared,
                metric: Metric::Sum,
                value: Some(24.0),
                threshold: 25.0,
                since: at(5)
            }
        );
        assert_eq!(
            a.evaluate(totals(29.0, 5), at(6)),
            None,
            "in the band, cleared"
        );
    }

    #[test]
    fn an_empty_window_clears() {
        let mut a = sum_alarm(3.0, 3.0);
        a.evaluate(totals(4.0, 1), at(1)).unwrap();
        let cleared = a.evaluate(totals(0.0, 0), at(61)).unwrap();
        assert_eq!(cleared.state, AlarmState::Cleared);
        assert_eq!(cleared.value, Some(0.0));

        let mut avg = KeyAlarm::new(Thresholds {
            rule: 1,
            sum: None,
            avg: Some(Band {
                raise: -1.0,
                clear: -2.0,
            }),
        });
        assert_eq!(
            avg.evaluate(totals(0.0, 0), at(0)),
            None,
            "no average, no alarm"
        );
        avg.evaluate(totals(0.0, 2), at(1)).unwrap();
        let cleared = avg.evaluate(totals(0.0, 0), at(61)).unwrap();
        assert_eq!((cleared.metric, cleared.value), (Metric::Avg, None));
    }

    #[test]
    fn with_both_metrics_either_raises_and_both_must_clear() {
        let mut a = KeyAlarm::new(Thresholds {
            rule: 1,
            sum: Some(Band {
                raise: 30.0,
                clear: 30.0,
            }),
            avg: Some(Band {
                raise: 4.0,
                clear: 4.0,
            }),
        });
        let raised = a.evaluate(totals(10.0, 2), at(1)).unwrap();
        assert_eq!((raised.metric, raised.value), (Metric::Avg, Some(5.0)));
        assert_eq!(
            a.evaluate(totals(40.0, 20), at(2)),
            None,
            "sum above, avg 2"
        );
        let cleared = a.evaluate(totals(20.0, 10), at(3)).unwrap();
        assert_eq!((cleared.metric, cleared.value), (Metric::Avg, Some(2.0)));
        let raised = a.evaluate(totals(40.0, 20), at(4)).unwrap();
        assert_eq!(raised.metric, Metric::Sum, "the sum is looked at first");
    }

    #[test]
    fn a_restored_alarm_does_not_raise_again() {
        let mut a = sum_alarm(30.0, 25.0);
        assert!(a.restore_raised(Metric::Sum, at(100)));
        assert_eq!(a.evaluate(totals(35.0, 7), at(200)), None);
        assert_eq!(a.raised(), Some((Metric::Sum, at(100))));
        assert!(a.evaluate(totals(1.0, 1), at(201)).is_some());
        let mut b = sum_alarm(30.0, 25.0);
        assert!(!b.restore_raised(Metric::Avg, at(100)));
        assert_eq!(b.raised(), None);
    }

    proptest! {
        /// Against a direct statement of the rule: the state after each step is "raised" iff
        /// the value went above `raise` at some step and has not gone below `clear` since;
        /// a change is reported exactly when that state flips.
        #[test]
        fn hysteresis_matches_its_definition(
            raise in -5.0..5.0_f64,
            gap in 0.0..3.0_f64,
            sums in prop::collection::vec(-10.0..10.0_f64, 1..60),
        ) {
            let clear = raise - gap;
            let mut a = sum_alarm(raise, clear);
            let mut raised = false;
            for (step, sum) in sums.into_iter().enumerate() {
                let was = raised;
                if !raised && sum > raise {
                    raised = true;
                } else if raised && sum < clear {
                    raised = false;
                }
                let change = a.evaluate(totals(sum, 1), at(step as i64));
                prop_assert_eq!(change.is_some(), was != raised);
                if let Some(c) = change {
                    prop_assert_eq!(c.state == AlarmState::Raised, raised);
                    prop_assert_eq!(c.threshold, if raised { raise } else { clear });
                    prop_assert_eq!(c.value, Some(sum));
                }
                prop_assert_eq!(a.raised().is_some(), raised);
            }
        }
    }
}
