//! Trends: the last `trend_points` (time, sum) samples of a key, one every
//! `trend_interval_seconds`, published retained on `trends/{machineId}/{scrapIndex}` and read
//! back at start so a restart leaves no hole beyond the downtime.
//!
//! Sample times are multiples of the interval since the epoch ([`TrendConfig::next_tick`]), so
//! a restarted process samples on the grid of the points it read back, and a tick already held
//! is not appended again. [`Trend::merge`] continues a read-back trend.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timestamp::{Timestamp, TimestampError, duration_nanos};

/// How often a trend is sampled and how many samples it keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrendConfig {
    /// Time between samples (default 10 s); settings refuse zero.
    pub interval: Duration,
    /// Samples kept (default 90: 15 minutes at the default interval).
    pub points: usize,
}

impl Default for TrendConfig {
    fn default() -> Self {
        TrendConfig {
            interval: Duration::from_secs(10),
            points: 90,
        }
    }
}

impl TrendConfig {
    /// The time a trend covers: `points × interval`.
    pub fn span(&self) -> Duration {
        self.interval
            .saturating_mul(u32::try_from(self.points).unwrap_or(u32::MAX))
    }

    /// The first sample instant after `now` on the grid of multiples of the interval.
    pub fn next_tick(&self, now: Timestamp) -> Timestamp {
        // At least 1 ns, so a zero interval cannot divide by zero.
        let step = duration_nanos(self.interval).max(1);
        let floor = now.unix_nanos().div_euclid(step).saturating_mul(step);
        Timestamp::from_unix_nanos(floor.saturating_add(step))
    }
}

/// One sample of a trend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrendPoint {
    /// Sample instant.
    pub t: Timestamp,
    /// The key's window sum at `t`.
    pub sum: f64,
}

/// The samples of one key, oldest first, at most `capacity` of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    points: VecDeque<TrendPoint>,
    capacity: usize,
}

impl Trend {
    /// An empty trend keeping `capacity` samples.
    pub fn new(capacity: usize) -> Self {
        Trend {
            points: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
        }
    }

    /// Appends the sample (`t`, `sum`), dropping the oldest beyond the capacity. A sample not
    /// after the newest one is not appended (returns false): that tick is already recorded.
    pub fn push(&mut self, t: Timestamp, sum: f64) -> bool {
        if self.capacity == 0 || self.points.back().is_some_and(|last| last.t >= t) {
            return false;
        }
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(TrendPoint { t, sum });
        true
    }

    /// Continues this trend with points read back from before a restart: keeps the points of
    /// both that lie within the span before `now` (`now - span < t <= now`), one per instant
    /// (this trend's point wins over a read-back one), oldest first, at most the capacity
    /// (the newest).
    pub fn merge(
        &mut self,
        read_back: impl IntoIterator<Item = TrendPoint>,
        config: &TrendConfig,
        now: Timestamp,
    ) {
        let oldest = now.saturating_sub(config.span());
        let in_span = |p: &TrendPoint| p.t > oldest && p.t <= now;
        // Live points first, so a stable sort keeps them ahead of read-back ones at equal t.
        let mut all: Vec<TrendPoint> = self.points.iter().copied().filter(in_span).collect();
        all.extend(read_back.into_iter().filter(in_span));
        all.sort_by_key(|p| p.t);
        all.dedup_by_key(|p| p.t);
        let skip = all.len().saturating_sub(self.capacity);
        self.points = all.into_iter().skip(skip).collect();
    }

    /// The samples, oldest first.
    pub fn points(&self) -> impl ExactSizeIterator<Item = &TrendPoint> + '_ {
        self.points.iter()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The retained message for the key (`machine`, `scrap_index`).
    pub fn to_message(
        &self,
        machine: &str,
        scrap_index: u32,
        config: &TrendConfig,
    ) -> TrendMessage {
        TrendMessage {
            machine_id: machine.to_owned(),
            scrap_index,
            interval_seconds: config.interval.as_secs(),
            points: self
                .points
                .iter()
                .map(|p| TrendPointMessage {
                    t: p.t.to_rfc3339_millis(),
                    sum: p.sum,
                })
                .collect(),
        }
    }
}

/// A key's trend as published retained on `trends/{machineId}/{scrapIndex}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendMessage {
    /// Machine id.
    #[serde(rename = "maschinenId")]
    pub machine_id: String,
    /// Scrap index.
    #[serde(rename = "scrapIndex")]
    pub scrap_index: u32,
    /// Time between samples, in seconds.
    #[serde(rename = "intervalSeconds")]
    pub interval_seconds: u64,
    /// The samples, oldest first.
    pub points: Vec<TrendPointMessage>,
}

/// One sample on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrendPointMessage {
    /// Sample instant, RFC 3339 UTC with milliseconds.
    pub t: String,
    /// The window sum at `t`.
    pub sum: f64,
}

/// Why a retained trend could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum TrendMessageError {
    /// Not the JSON of a [`TrendMessage`].
    #[error("not a trend message: {0}")]
    Json(#[from] serde_json::Error),
    /// A point's `t` is not an RFC 3339 time.
    #[error("points[{index}].t: {source}")]
    Time {
        /// Position of the point in `points`.
        index: usize,
        /// What was wrong with it.
        source: TimestampError,
    },
}

impl TrendMessage {
    /// Parses a retained payload (an empty one means "no trend": the caller skips it).
    pub fn parse(payload: &[u8]) -> Result<Self, TrendMessageError> {
        Ok(serde_json::from_slice(payload)?)
    }

    /// The samples with their times parsed, in message order.
    pub fn points(&self) -> Result<Vec<TrendPoint>, TrendMessageError> {
        self.points
            .iter()
            .enumerate()
            .map(|(index, p)| {
                Ok(TrendPoint {
                    t: Timestamp::parse_rfc3339(&p.t)
                        .map_err(|source| TrendMessageError::Time { index, source })?,
                    sum: p.sum,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: i64 = 1_000_000_000;
    const BASE: i64 = 1_767_268_800 * SEC; // 2026-01-01T12:00:00Z

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_nanos(BASE + secs * SEC)
    }

    fn config(points: usize) -> TrendConfig {
        TrendConfig {
            interval: Duration::from_secs(10),
            points,
        }
    }

    #[test]
    fn ticks_are_on_the_interval_grid() {
        let c = config(90);
        assert_eq!(c.next_tick(at(0)), at(10));
        assert_eq!(c.next_tick(at(3)), at(10));
        assert_eq!(
            c.next_tick(Timestamp::from_unix_nanos(BASE + 10 * SEC - 1)),
            at(10)
        );
        assert_eq!(c.span(), Duration::from_secs(900));
        let zero = TrendConfig {
            interval: Duration::ZERO,
            points: 1,
        };
        assert_eq!(zero.next_tick(at(0)), Timestamp::from_unix_nanos(BASE + 1));
    }

    #[test]
    fn the_ring_keeps_the_newest_points_and_no_repeated_tick() {
        let mut t = Trend::new(3);
        for s in 1..=5 {
            assert!(t.push(at(10 * s), s as f64));
        }
        assert!(!t.push(at(50), 9.0), "same tick");
        assert!(!t.push(at(40), 9.0), "older tick");
        let sums: Vec<f64> = t.points().map(|p| p.sum).collect();
        assert_eq!(sums, [3.0, 4.0, 5.0]);
        assert!(!Trend::new(0).push(at(0), 1.0));
    }

    #[test]
    fn trend_json_has_the_contract_fields() {
        let mut t = Trend::new(90);
        t.push(at(10), 12.0);
        t.push(at(20), 12.5);
        let msg = t.to_message("A1", 2, &config(90));
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json,
            r#"{"maschinenId":"A1","scrapIndex":2,"intervalSeconds":10,"points":[{"t":"2026-01-01T12:00:10.000Z","sum":12.0},{"t":"2026-01-01T12:00:20.000Z","sum":12.5}]}"#
        );
        let back = TrendMessage::parse(json.as_bytes()).unwrap();
        assert_eq!(back, msg);
        let points: Vec<TrendPoint> = back.points().unwrap();
        assert_eq!(points, t.points().copied().collect::<Vec<_>>());
    }

    #[test]
    fn bad_retained_trends_are_errors_naming_the_point() {
        assert!(TrendMessage::parse(b"").is_err());
        let msg = TrendMessage::parse(
            br#"{"maschinenId":"A1","scrapIndex":2,"intervalSeconds":10,"points":[{"t":"2026-01-01T12:00:10Z","sum":1},{"t":"soon","sum":2}]}"#,
        )
        .unwrap();
        match msg.points() {
            Err(TrendMessageError::Time { index, .. }) => assert_eq!(index, 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_restart_continues_the_trend_without_a_seam() {
        let c = config(4);
        // Before the restart: ticks 10..=60; the process stops at 65 and is back at 95.
        let mut before = Trend::new(4);
        for s in 1..=6 {
            before.push(at(10 * s), s as f64);
        }
        let read_back: Vec<TrendPoint> = before.points().copied().collect();
        let now = at(95);
        let mut after = Trend::new(4);
        after.merge(read_back, &c, now);
        // Span 40 s before 95: only 60 survives (30..=50 are older than 55).
        let times: Vec<Timestamp> = after.points().map(|p| p.t).collect();
        assert_eq!(times, [at(60)]);
        assert!(after.push(c.next_tick(now), 7.0));
        assert_eq!(after.points().last().unwrap().t, at(100));
    }

    #[test]
    fn live_points_win_at_the_same_instant() {
        let c = config(10);
        let mut live = Trend::new(10);
        live.push(at(30), 30.0);
        live.merge(
            [
                TrendPoint {
                    t: at(20),
                    sum: 2.0,
                },
                TrendPoint {
                    t: at(30),
                    sum: 3.0,
                },
                TrendPoint {
                    t: at(31),
                    sum: 3.1,
                },
                TrendPoint {
                    t: at(99),
                    sum: 9.9,
                },
            ],
            &c,
            at(35),
        );
        let got: Vec<(Timestamp, f64)> = live.points().map(|p| (p.t, p.sum)).collect();
        assert_eq!(got, [(at(20), 2.0), (at(30), 30.0), (at(31), 3.1)]);
    }

    proptest! {
        /// After a merge the trend is strictly increasing in time, within the span, at most
        /// the capacity, and holds every live point that was within the span and among the
        /// newest `capacity` instants.
        #[test]
        fn merged_trends_are_ordered_bounded_and_keep_live_points(
            live in prop::collection::btree_set(0..200_i64, 0..30),
            read_back in prop::collection::vec(0..200_i64, 0..60),
            points in 1..20_usize,
            now in 100..250_i64,
        ) {
            let c = TrendConfig { interval: Duration::from_secs(5), points };
            let mut trend = Trend::new(points);
            for &s in &live {
                trend.push(at(s), 1.0);
            }
            let before: Vec<TrendPoint> = trend.points().copied().collect();
            trend.merge(read_back.iter().map(|&s| TrendPoint { t: at(s), sum: 2.0 }), &c, at(now));
            let got: Vec<TrendPoint> = trend.points().copied().collect();
            prop_assert!(got.len() <= points);
            prop_assert!(got.windows(2).all(|w| w[0].t < w[1].t));
            let oldest = at(now).saturating_sub(c.span());
            prop_assert!(got.iter().all(|p| p.t > oldest && p.t <= at(now)));
            for p in got.iter().filter(|p| p.sum == 2.0) {
                prop_assert!(!before.iter().any(|b| b.t == p.t), "read-back point shadowed a live one");
            }
            let expected_len = {
                let mut ts: Vec<i64> = before.iter().map(|p| p.t.unix_nanos())
                    .chain(read_back.iter().map(|&s| at(s).unix_nanos()))
                    .filter(|&t| t > oldest.unix_nanos() && t <= at(now).unix_nanos())
                    .collect();
                ts.sort_unstable();
                ts.dedup();
                ts.len().min(points)
            };
            prop_assert_eq!(got.len(), expected_len);
        }
    }
}
