//! Synthetic history for demos and the query benchmark: minute buckets and their hourly rollups
//! for `machines` x `indexes` keys over the last `days` days, written straight into a store.
//!
//! What marks them as synthetic: the machine ids (`demo-001`, ...) and revision 0. Ingest's
//! revisions are its clock in milliseconds, so a real bucket of the same minute always
//! replaces a synthetic one and a synthetic one never replaces anything (rows are only ever
//! inserted). The values are a deterministic function of key and minute: two fills give the
//! same store.

use crate::bucket::{Bucket, HOUR_SECS, MINUTE_SECS};
use crate::store::{HourRow, Store, StoreError};

/// What every synthetic machine id starts with.
pub const MACHINE_PREFIX: &str = "demo-";
/// The revision of every synthetic bucket: below any that ingest sends.
pub const REVISION: i64 = 0;
/// Keys written per transaction: a day of 10 keys is at most 14 400 minute rows.
const KEYS_PER_TRANSACTION: usize = 10;

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Days back from `end`.
    pub days: u32,
    /// Machines `demo-001` ...
    pub machines: u32,
    /// Scrap indexes per machine, from 1.
    pub indexes: u32,
    /// The end (exclusive), unix seconds, rounded down to the hour.
    pub end: i64,
}

/// What a fill wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Filled {
    /// Minute rows inserted.
    pub minutes: u64,
    /// Hour rows inserted.
    pub hours: u64,
}

/// The id of machine `n` (from 1).
pub fn machine_id(n: u32) -> String {
    format!("{MACHINE_PREFIX}{n:03}")
}

/// The synthetic bucket of one key's minute, or none when the machine made no scrap in it.
///
/// About two minutes in three have readings, fewer at night (local to UTC: the data is for
/// demos, not for a plant's calendar); each reading is 0.25 .. 4.0 in steps of 0.25, so sums
/// are exact in binary floating point.
pub fn minute_bucket(machine: u32, index: u32, minute: i64) -> Option<Bucket> {
    let mut state = mix(u64::from(machine) << 40 ^ u64::from(index) << 32 ^ minute as u64);
    let hour_of_day = minute.rem_euclid(86_400) / HOUR_SECS;
    let busy = if (6..22).contains(&hour_of_day) { 3 } else { 6 };
    if state % busy >= 2 {
        return None;
    }
    let count = 1 + (state >> 8) % 6;
    let (mut sum, mut min, mut max) = (0.0, f64::MAX, f64::MIN);
    for _ in 0..count {
        state = mix(state);
        let value = (1 + state % 16) as f64 * 0.25;
        sum += value;
        min = min.min(value);
        max = max.max(value);
    }
    Some(Bucket {
        machine: machine_id(machine),
        index,
        minute,
        sum,
        count: count as i64,
        min,
        max,
        revision: REVISION,
        is_final: true,
    })
}

/// One step of splitmix64: a well-spread 64-bit hash.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The minutes of one key's day starting at `day` and their hourly rollups.
pub fn key_day(machine: u32, index: u32, day: i64) -> (Vec<Bucket>, Vec<HourRow>) {
    let mut minutes = Vec::new();
    let mut hours = Vec::new();
    for hour in (day..day + 86_400).step_by(HOUR_SECS as usize) {
        let first = minutes.len();
        minutes.extend(
            (hour..hour + HOUR_SECS)
                .step_by(MINUTE_SECS as usize)
                .filter_map(|m| minute_bucket(machine, index, m)),
        );
        let of_hour = &minutes[first..];
        if let Some(row) = HourRow::of(of_hour) {
            hours.push(row);
        }
    }
    (minutes, hours)
}

/// Writes the plan's buckets, a day at a time for a few keys per transaction; `progress` is
/// called after each transaction with what is written so far.
///
/// # Errors
/// [`StoreError::Database`]; what was committed before stays.
pub async fn fill(
    store: &Store,
    plan: Plan,
    mut progress: impl FnMut(Filled),
) -> Result<Filled, StoreError> {
    let end = plan.end.div_euclid(HOUR_SECS) * HOUR_SECS;
    let keys: Vec<(u32, u32)> = (1..=plan.machines)
        .flat_map(|m| (1..=plan.indexes).map(move |i| (m, i)))
        .collect();
    let mut filled = Filled::default();
    for d in (1..=i64::from(plan.days)).rev() {
        let day = end - d * 86_400;
        for chunk in keys.chunks(KEYS_PER_TRANSACTION) {
            let (mut minutes, mut hours) = (Vec::new(), Vec::new());
            for &(machine, index) in chunk {
                let (m, h) = key_day(machine, index, day);
                minutes.extend(m);
                hours.extend(h);
            }
            let written = store.insert_new(&minutes, &hours).await?;
            filled.minutes += written.minutes;
            filled.hours += written.hours;
            progress(filled);
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 1_796_428_800; // a UTC midnight

    #[test]
    fn the_same_key_and_minute_give_the_same_bucket_and_keys_differ() {
        let a = minute_bucket(1, 1, DAY + 600);
        assert_eq!(a, minute_bucket(1, 1, DAY + 600));
        let day: Vec<_> = (0..1_440)
            .map(|m| minute_bucket(1, 1, DAY + 60 * m))
            .collect();
        let other: Vec<_> = (0..1_440)
            .map(|m| minute_bucket(1, 2, DAY + 60 * m))
            .collect();
        assert_ne!(day, other);
    }

    #[test]
    fn buckets_are_synthetic_final_and_consistent() {
        for m in 0..1_440 {
            let Some(b) = minute_bucket(7, 3, DAY + 60 * m) else {
                continue;
            };
            assert_eq!(b.machine, "demo-007");
            assert_eq!(b.revision, REVISION);
            assert!(b.is_final);
            assert!((1..=6).contains(&b.count));
            assert!(b.min <= b.max && b.min >= 0.25 && b.max <= 4.0);
            assert!(b.sum >= b.min * b.count as f64 && b.sum <= b.max * b.count as f64);
        }
    }

    #[test]
    fn a_day_has_idle_minutes_fewer_at_night_and_hours_that_roll_its_minutes_up() {
        let (minutes, hours) = key_day(2, 1, DAY);
        let at_night = minutes
            .iter()
            .filter(|b| b.minute < DAY + 6 * 3_600)
            .count();
        assert!(
            minutes.len() > 500 && minutes.len() < 1_200,
            "{}",
            minutes.len()
        );
        assert!(at_night < 6 * 60 / 2, "{at_night}");
        assert_eq!(hours.len(), 24);
        let sum: f64 = minutes.iter().map(|b| b.sum).sum();
        let rolled: f64 = hours.iter().map(|h| h.sum).sum();
        assert_eq!(sum, rolled);
        let count: i64 = hours.iter().map(|h| h.minutes).sum();
        assert_eq!(count as usize, minutes.len());
    }
}
