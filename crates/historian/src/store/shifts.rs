//! Shift totals kept beside the buckets: one row per (machine, scrap index, shift) in
//! `shift_buckets`, so that totals by shift over weeks read one row per shift instead of eight
//! hours or 480 minutes. The rows follow one set of shift rules, the text in `shift_rules`:
//!
//! - A writer whose rules are the store's recomputes, in its batch's transaction, each shift
//!   its minutes fall in, after taking the `shift_rules` row's lock, so that two historians
//!   on one PostgreSQL change shift rows one after the other.
//! - A writer with other rules, or rows written without shifts (synthetic data), blank the
//!   rules: from then on nobody keeps or reads the rows, and answers come from the buckets.
//! - A historian that finds rules other than its own at start rebuilds the rows from the
//!   buckets in one transaction and writes its rules.

use std::collections::BTreeSet;
use std::sync::Arc;

use aggregator_core::Timestamp;
use aggregator_core::plant_time::{Period, ShiftCalendar, StoredTotal, span_totals};
use sqlx::{Any, Row, Transaction};

use super::read::{Unit, decode};
use super::{ROWS_PER_INSERT, StoreError, from_unix_seconds as seconds, insert_sql, unix_seconds};
use crate::batch::Batch;
use crate::bucket::HOUR_SECS;

/// The rows follow these rules from here on; also takes the row's lock.
const WRITE_RULES: &str = "UPDATE shift_rules SET rules = $1";

/// Takes the lock when the store follows `$1`; no row when it does not.
const CLAIM_RULES: &str = "UPDATE shift_rules SET rules = rules WHERE rules = $1";

/// Nobody keeps or reads the rows until a historian rebuilds them.
pub(super) const BLANK_RULES: &str = "UPDATE shift_rules SET rules = '' WHERE rules <> ''";

const SHIFT_COLUMNS: &str =
    "shift_buckets (machine, scrap_index, shift_start, sum, count, is_final)";

/// The shift calendar a store's shift rows follow, and its text as stored.
#[derive(Debug, Clone)]
pub struct ShiftRules {
    calendar: Arc<ShiftCalendar>,
    text: String,
}

impl ShiftRules {
    /// `calendar`, stored as `text`: the same text for the same zone, day start and rules.
    pub fn new(calendar: Arc<ShiftCalendar>, text: String) -> Self {
        Self { calendar, text }
    }

    /// Whether the store follows these rules: its shift rows then answer totals by shift.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn followed(&self, pool: &sqlx::AnyPool) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT rules FROM shift_rules")
            .fetch_optional(pool)
            .await?;
        let stored: Option<String> = row.map(|r| r.try_get(0)).transpose()?;
        Ok(stored.as_deref() == Some(self.text.as_str()))
    }

    /// Brings the shift rows to these rules when the store follows others: every row rebuilt
    /// from the buckets in one transaction. Returns the rows written, `None` when the store
    /// already followed them.
    ///
    /// # Errors
    /// [`StoreError::Database`]; the store is unchanged then.
    pub async fn adopt(&self, pool: &sqlx::AnyPool) -> Result<Option<u64>, StoreError> {
        if self.followed(pool).await? {
            return Ok(None);
        }
        let mut tx = pool.begin().await?;
        // First, so that writers wait for the rebuild instead of changing rows under it.
        sqlx::query(WRITE_RULES)
            .bind(self.text.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM shift_buckets")
            .execute(&mut *tx)
            .await?;
        let ranges = sqlx::query(
            "SELECT machine, MIN(hour), MAX(hour) FROM hour_buckets GROUP BY machine \
             ORDER BY machine",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut written = 0;
        for range in ranges {
            let machine: String = range.try_get(0)?;
            let first = seconds(range.try_get(1)?);
            let last = seconds(range.try_get::<i64, _>(2)? + HOUR_SECS);
            let shifts = self.calendar.shifts_between(&machine, first, last);
            written += rebuild_machine(&mut tx, &machine, &shifts).await?;
        }
        tx.commit().await?;
        Ok(Some(written))
    }

    /// Recomputes, inside a batch's transaction (its minutes and hours written), the shift
    /// rows the batch's minutes fall in, when the store follows these rules; otherwise makes
    /// sure nobody reads the rows. Returns the shift rows recomputed.
    pub(super) async fn update<A>(
        &self,
        tx: &mut Transaction<'_, Any>,
        batch: &Batch<A>,
    ) -> Result<u64, sqlx::Error> {
        let mut touched = BTreeSet::new();
        for b in batch.buckets() {
            let minute = seconds(b.minute);
            if let Some(shift) = self.calendar.shift_at(&b.machine, minute) {
                touched.insert((b.machine.as_str(), b.index, shift.start, shift.end));
            }
        }
        if touched.is_empty() {
            return Ok(0);
        }
        let claimed = sqlx::query(CLAIM_RULES)
            .bind(self.text.as_str())
            .execute(&mut **tx)
            .await?
            .rows_affected();
        if claimed == 0 {
            sqlx::query(BLANK_RULES).execute(&mut **tx).await?;
            return Ok(0);
        }
        for &(machine, index, start, end) in &touched {
            let sql = roll_up_shift(source_for(start, end));
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(machine)
                .bind(i64::from(index))
                .bind(unix_seconds(start))
                .bind(unix_seconds(end))
                .execute(&mut **tx)
                .await?;
        }
        Ok(touched.len() as u64)
    }
}

/// The bucket table a shift's total is read from: hours when the shift starts and ends on
/// whole UTC hours, else minutes.
fn source_for(start: Timestamp, end: Timestamp) -> Unit {
    let whole = |t: Timestamp| unix_seconds(t).rem_euclid(HOUR_SECS) == 0;
    if whole(start) && whole(end) {
        Unit::Hour
    } else {
        Unit::Minute
    }
}

fn roll_up_shift(source: Unit) -> String {
    let (table, time) = source.table_and_time();
    format!(
        "INSERT INTO {SHIFT_COLUMNS}
         SELECT machine, scrap_index, $3, SUM(sum), SUM(count), MIN(is_final)
         FROM {table}
         WHERE machine = $1 AND scrap_index = $2 AND {time} >= $3 AND {time} < $4
         GROUP BY machine, scrap_index
         ON CONFLICT (machine, scrap_index, shift_start) DO UPDATE SET
             sum = excluded.sum, count = excluded.count, is_final = excluded.is_final"
    )
}

/// Writes the shift rows of one machine's `shifts` from its buckets; returns the rows.
async fn rebuild_machine(
    tx: &mut Transaction<'_, Any>,
    machine: &str,
    shifts: &[Period],
) -> Result<u64, sqlx::Error> {
    let mut rows: Vec<(u32, StoredTotal)> = Vec::new();
    for source in [Unit::Hour, Unit::Minute] {
        let mine: Vec<Period> = shifts
            .iter()
            .filter(|s| source_for(s.start, s.end) == source)
            .cloned()
            .collect();
        if mine.is_empty() {
            continue;
        }
        let buckets = machine_buckets(tx, machine, source).await?;
        for (index, stored) in buckets {
            rows.extend(span_totals(&mine, &stored).into_iter().map(|s| (index, s)));
        }
    }
    let mut written = 0;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(SHIFT_COLUMNS, 6, chunk.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (index, span) in chunk {
            query = query
                .bind(machine)
                .bind(i64::from(*index))
                .bind(unix_seconds(span.start))
                .bind(span.sum)
                .bind(i64::try_from(span.count).unwrap_or(i64::MAX))
                .bind(i64::from(span.is_final));
        }
        written += query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(written)
}

/// One machine's buckets from `source`, per scrap index, each in time order.
async fn machine_buckets(
    tx: &mut Transaction<'_, Any>,
    machine: &str,
    source: Unit,
) -> Result<Vec<(u32, Vec<StoredTotal>)>, sqlx::Error> {
    let (table, time) = source.table_and_time();
    let sql = format!(
        "SELECT machine, scrap_index, {time}, sum, count, is_final FROM {table} \
         WHERE machine = $1 ORDER BY scrap_index, {time}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(machine)
        .fetch_all(&mut **tx)
        .await?;
    let mut out: Vec<(u32, Vec<StoredTotal>)> = Vec::new();
    for row in rows {
        let (_, index, bucket) = decode(&row)?;
        match out.last_mut() {
            Some((last, buckets)) if *last == index => buckets.push(bucket),
            _ => out.push((index, vec![bucket])),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shift_on_whole_utc_hours_is_read_from_hours() {
        let t = |s: i64| seconds(s);
        assert_eq!(source_for(t(6 * 3_600), t(14 * 3_600)), Unit::Hour);
        // A half-hour zone's 06:00 is not a whole UTC hour.
        assert_eq!(
            source_for(t(6 * 3_600 + 1_800), t(14 * 3_600 + 1_800)),
            Unit::Minute
        );
    }

    #[test]
    fn a_multi_row_insert_numbers_its_parameters_in_order() {
        assert!(
            insert_sql(SHIFT_COLUMNS, 6, 2)
                .contains("VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)")
        );
    }
}
