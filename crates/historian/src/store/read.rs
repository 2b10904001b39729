//! Reading stored buckets back for the API: key after key, each in time order, streamed from
//! the database so that an answer over many keys holds one key's buckets at a time.

use aggregator_core::Timestamp;
use aggregator_core::plant_time::StoredTotal;
use futures_util::TryStreamExt;
use sqlx::Row;

use super::{Store, StoreError, from_unix_seconds, unix_seconds};

/// Which table answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// `minute_buckets`.
    Minute,
    /// `hour_buckets`: for periods that start and end on whole UTC hours.
    Hour,
    /// `shift_buckets`: for shifts, when the store keeps their totals by the asker's rules.
    Shift,
}

impl Unit {
    /// Its table and the column of a row's start.
    pub(super) fn table_and_time(self) -> (&'static str, &'static str) {
        match self {
            Unit::Minute => ("minute_buckets", "minute"),
            Unit::Hour => ("hour_buckets", "hour"),
            Unit::Shift => ("shift_buckets", "shift_start"),
        }
    }
}

/// The buckets asked for.
#[derive(Debug, Clone)]
pub struct BucketQuery<'q> {
    /// Only these machines; empty: every machine.
    pub machines: &'q [String],
    /// Only this scrap index.
    pub index: Option<u32>,
    /// Buckets starting at or after this.
    pub from: Timestamp,
    /// Buckets starting before this.
    pub to: Timestamp,
    /// Minutes or hours.
    pub unit: Unit,
}

/// Why reading stopped: the store failed, or the caller's `each` refused to go on.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What `each` returned.
    #[error("stopped")]
    Stopped(E),
}

impl Store {
    /// Calls `each` with every key that has buckets in the query's range and its buckets in
    /// time order, keys ordered by machine, then index.
    ///
    /// # Errors
    /// [`ReadError::Store`] when the database fails; [`ReadError::Stopped`] with the first
    /// error `each` returns.
    pub async fn for_each_key<E>(
        &self,
        query: &BucketQuery<'_>,
        mut each: impl FnMut(&str, u32, &[StoredTotal]) -> Result<(), E>,
    ) -> Result<(), ReadError<E>> {
        // Safe: the text is built from constants and numbered placeholders only; every value
        // is bound.
        let sql = sqlx::AssertSqlSafe(select(query));
        let mut statement = sqlx::query(sql)
            .bind(unix_seconds(query.from))
            .bind(unix_seconds(query.to));
        if let Some(index) = query.index {
            statement = statement.bind(i64::from(index));
        }
        for machine in query.machines {
            statement = statement.bind(machine.as_str());
        }
        let mut rows = statement.fetch(self.pool());
        let mut key: Option<(String, u32)> = None;
        let mut buckets = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(StoreError::from)? {
            let (machine, index, bucket) = decode(&row).map_err(StoreError::from)?;
            if key
                .as_ref()
                .is_some_and(|(m, i)| (m.as_str(), *i) != (machine.as_str(), index))
            {
                if let Some((m, i)) = key.take() {
                    each(&m, i, &buckets).map_err(ReadError::Stopped)?;
                }
                buckets.clear();
            }
            key.get_or_insert((machine, index));
            buckets.push(bucket);
        }
        if let Some((machine, index)) = key {
            each(&machine, index, &buckets).map_err(ReadError::Stopped)?;
        }
        Ok(())
    }
}

/// One row of [`select`] (machine, index, start, sum, count, is_final): machine, index, bucket.
pub(super) fn decode(row: &sqlx::any::AnyRow) -> Result<(String, u32, StoredTotal), sqlx::Error> {
    let index: i64 = row.try_get(1)?;
    let start: i64 = row.try_get(2)?;
    let count: i64 = row.try_get(4)?;
    let is_final: i64 = row.try_get(5)?;
    let bucket = StoredTotal {
        start: from_unix_seconds(start),
        sum: row.try_get(3)?,
        count: u64::try_from(count).unwrap_or(0),
        is_final: is_final != 0,
    };
    Ok((
        row.try_get(0)?,
        u32::try_from(index).unwrap_or(u32::MAX),
        bucket,
    ))
}

/// The SELECT for `query`: parameters `$1` from, `$2` to, then the index, then the machines.
fn select(query: &BucketQuery<'_>) -> String {
    let (table, time) = query.unit.table_and_time();
    let mut sql = format!(
        "SELECT machine, scrap_index, {time}, sum, count, is_final FROM {table} \
         WHERE {time} >= $1 AND {time} < $2"
    );
    let mut next = 3;
    if query.index.is_some() {
        sql.push_str(" AND scrap_index = $3");
        next = 4;
    }
    if !query.machines.is_empty() {
        let params: Vec<String> = (0..query.machines.len())
            .map(|n| format!("${}", next + n))
            .collect();
        sql.push_str(&format!(" AND machine IN ({})", params.join(", ")));
    }
    sql.push_str(&format!(" ORDER BY machine, scrap_index, {time}"));
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_select_numbers_its_parameters_in_binding_order() {
        let machines = ["A1".to_owned(), "B2".to_owned()];
        let query = BucketQuery {
            machines: &machines,
            index: Some(3),
            from: Timestamp::EPOCH,
            to: Timestamp::EPOCH,
            unit: Unit::Hour,
        };
        assert_eq!(
            select(&query),
            "SELECT machine, scrap_index, hour, sum, count, is_final FROM hour_buckets \
             WHERE hour >= $1 AND hour < $2 AND scrap_index = $3 AND machine IN ($4, $5) \
             ORDER BY machine, scrap_index, hour"
        );
        let query = BucketQuery {
            index: None,
            machines: &[],
            unit: Unit::Minute,
            ..query
        };
        assert!(
            select(&query).ends_with(
                "WHERE minute >= $1 AND minute < $2 ORDER BY machine, scrap_index, minute"
            )
        );
    }
}
