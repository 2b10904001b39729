//! The bucket store: SQLite or PostgreSQL behind one code path (sqlx's `Any` driver, portable
//! SQL, no compile-time-checked queries). [`Store::write`] writes a [`Batch`] in one
//! transaction: the hours it touches claimed (their rows locked), each minute upserted unless the
//! stored revision is as high, then the hourly rollup of every hour recomputed from its minutes,
//! so that several historians can write one store at once, and with shift rules the totals of
//! the shifts it touches ([`shifts`]). [`Store::prune`] deletes what retention no longer keeps.
//! The tables: [`schema`].

mod read;
pub mod schema;
mod shifts;

pub use read::{BucketQuery, ReadError, Unit};
pub use shifts::ShiftRules;

use std::str::FromStr;
use std::time::Duration;

use aggregator_core::Timestamp;
use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use crate::batch::Batch;
use crate::bucket::{Bucket, HOUR_SECS};
use crate::configuration::{StoreKind, redact};

/// How long getting a connection may take before the write counts as failed.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A minute is written unless the stored row has the same or a higher revision.
const UPSERT_MINUTE: &str = "
    INSERT INTO minute_buckets
        (machine, scrap_index, minute, sum, count, min, max, revision, is_final)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
    ON CONFLICT (machine, scrap_index, minute) DO UPDATE SET
        sum = excluded.sum, count = excluded.count, min = excluded.min, max = excluded.max,
        revision = excluded.revision, is_final = excluded.is_final
    WHERE excluded.revision > minute_buckets.revision";

/// Takes the hour's row lock (creating a placeholder row the rollup then replaces) before any
/// of its minutes is written. Two historians on one PostgreSQL thus change an hour one after
/// the other: without it, each would roll the hour up from a snapshot that misses the other's
/// uncommitted minute, and the later commit would store a total short of one of them.
const CLAIM_HOUR: &str = "
    INSERT INTO hour_buckets
        (machine, scrap_index, hour, sum, count, min, max, minutes, is_final)
    VALUES ($1, $2, $3, 0, 0, 0, 0, 0, 0)
    ON CONFLICT (machine, scrap_index, hour) DO UPDATE SET minutes = hour_buckets.minutes";

/// An hour is the sum, count, min and max of its stored minutes.
const ROLL_UP_HOUR: &str = "
    INSERT INTO hour_buckets
        (machine, scrap_index, hour, sum, count, min, max, minutes, is_final)
    SELECT machine, scrap_index, $3, SUM(sum), SUM(count), MIN(min), MAX(max), COUNT(*),
        MIN(is_final)
    FROM minute_buckets
    WHERE machine = $1 AND scrap_index = $2 AND minute >= $3 AND minute < $4
    GROUP BY machine, scrap_index
    ON CONFLICT (machine, scrap_index, hour) DO UPDATE SET
        sum = excluded.sum, count = excluded.count, min = excluded.min, max = excluded.max,
        minutes = excluded.minutes, is_final = excluded.is_final";

/// Rows one multi-row INSERT of [`Store::insert_new`] carries (9 values each). Few: SQLite
/// reads `$N` as a named parameter and finds each by name among the statement's, so binding
/// costs grow with the square of the parameters (500 rows made it 20 times slower).
pub(crate) const ROWS_PER_INSERT: usize = 50;

/// An hourly rollup as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct HourRow {
    /// Machine id.
    pub machine: String,
    /// Scrap index.
    pub index: u32,
    /// The UTC hour's start, unix seconds.
    pub hour: i64,
    /// Sum of its minutes' sums.
    pub sum: f64,
    /// Readings in it.
    pub count: i64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Minute rows rolled up.
    pub minutes: i64,
    /// Every one of them is final.
    pub is_final: bool,
}

impl HourRow {
    /// The rollup of `minutes`, all of one key and hour; none when empty.
    pub fn of(minutes: &[Bucket]) -> Option<Self> {
        let first = minutes.first()?;
        Some(Self {
            machine: first.machine.clone(),
            index: first.index,
            hour: first.hour(),
            sum: minutes.iter().map(|b| b.sum).sum(),
            count: minutes.iter().map(|b| b.count).sum(),
            min: minutes.iter().map(|b| b.min).fold(f64::MAX, f64::min),
            max: minutes.iter().map(|b| b.max).fold(f64::MIN, f64::max),
            minutes: minutes.len() as i64,
            is_final: minutes.iter().all(|b| b.is_final),
        })
    }
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `store.url` is not a database URL sqlx can use.
    #[error("store.url {url:?}: {source}")]
    Url {
        /// The URL, without its password.
        url: String,
        /// What sqlx said.
        source: sqlx::Error,
    },
    /// The database could not be reached or refused a statement.
    #[error("store: {0}")]
    Database(#[from] sqlx::Error),
    /// A newer historian has written the tables.
    #[error("the store's schema is at version {found}; this historian knows up to {known}")]
    NewerSchema {
        /// The version found.
        found: i64,
        /// The newest this historian knows.
        known: i64,
    },
}

/// What a committed batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Written {
    /// Minute rows inserted or changed.
    pub minutes: u64,
    /// Hourly rollups recomputed.
    pub hours: u64,
    /// Shift totals recomputed.
    pub shifts: u64,
}

/// What a pruning run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Minute rows deleted.
    pub minutes: u64,
    /// Hourly rollups deleted.
    pub hours: u64,
    /// Shift totals deleted.
    pub shifts: u64,
}

/// A connection pool to the store.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    kind: StoreKind,
    shifts: Option<ShiftRules>,
}

impl Store {
    /// A pool for `url` that connects on first use, so that a store that is down at start is
    /// waited for, not fatal. A SQLite file is created when missing.
    ///
    /// # Errors
    /// [`StoreError::Url`] when the URL cannot be parsed.
    pub fn open(url: &str, kind: StoreKind) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let url_error = |source| StoreError::Url {
            url: redact(url),
            source,
        };
        let options = AnyConnectOptions::from_str(&connect_url(url, kind)).map_err(url_error)?;
        let pool = AnyPoolOptions::new()
            // One writer and the pruning; SQLite has one writer at a time anyway.
            .max_connections(2)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        Ok(Self {
            pool,
            kind,
            shifts: None,
        })
    }

    /// This store keeping shift totals by `rules` (see [`shifts`]).
    #[must_use]
    pub fn with_shifts(self, rules: ShiftRules) -> Self {
        Self {
            shifts: Some(rules),
            ..self
        }
    }

    /// Whether the shift totals follow this store's rules, so that totals by shift may be
    /// read from them.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn shift_totals_kept(&self) -> Result<bool, StoreError> {
        match &self.shifts {
            Some(rules) => rules.followed(&self.pool).await,
            None => Ok(false),
        }
    }

    /// Creates or upgrades the tables and, with shift rules other than the store's, rebuilds
    /// the shift totals; returns the version found.
    ///
    /// # Errors
    /// As [`schema::migrate`].
    pub async fn migrate(&self) -> Result<i64, StoreError> {
        if self.kind == StoreKind::Sqlite {
            // Write-ahead logging, kept in the file: a commit costs one sync of the log instead
            // of a rollback journal's several, so a historian behind a broker that lets few
            // messages wait for acknowledgement (Mosquitto's default: 20) keeps up, and
            // readers of the API never block the writer. Still synced on every commit.
            sqlx::query("PRAGMA journal_mode = WAL")
                .fetch_optional(&self.pool)
                .await?;
        }
        let found = schema::migrate(&self.pool).await?;
        if let Some(rules) = &self.shifts {
            let started = std::time::Instant::now();
            if let Some(rows) = rules.adopt(&self.pool).await? {
                let ms = started.elapsed().as_millis() as u64;
                tracing::info!(
                    rows,
                    ms,
                    "shift totals rebuilt for this historian's shift rules"
                );
            }
        }
        Ok(found)
    }

    /// Writes `batch` in one transaction: claims its hours (in key order, so that two writers
    /// never wait on each other in a circle), writes its minutes, then rolls its hours up.
    ///
    /// # Errors
    /// [`StoreError::Database`]; nothing of the batch is stored then.
    pub async fn write<A>(&self, batch: &Batch<A>) -> Result<Written, StoreError> {
        let mut written = Written::default();
        let hours = batch.hours();
        let mut tx = self.pool.begin().await?;
        for &(machine, index, hour) in &hours {
            sqlx::query(CLAIM_HOUR)
                .bind(machine)
                .bind(i64::from(index))
                .bind(hour)
                .execute(&mut *tx)
                .await?;
        }
        for b in batch.buckets() {
            let done = sqlx::query(UPSERT_MINUTE)
                .bind(b.machine.as_str())
                .bind(i64::from(b.index))
                .bind(b.minute)
                .bind(b.sum)
                .bind(b.count)
                .bind(b.min)
                .bind(b.max)
                .bind(b.revision)
                .bind(i64::from(b.is_final))
                .execute(&mut *tx)
                .await?;
            written.minutes += done.rows_affected();
        }
        for &(machine, index, hour) in &hours {
            sqlx::query(ROLL_UP_HOUR)
                .bind(machine)
                .bind(i64::from(index))
                .bind(hour)
                .bind(hour + HOUR_SECS)
                .execute(&mut *tx)
                .await?;
            written.hours += 1;
        }
        if let Some(rules) = &self.shifts {
            written.shifts = rules.update(&mut tx, batch).await?;
        }
        tx.commit().await?;
        Ok(written)
    }

    /// Inserts `minutes` and `hours` in one transaction where no row of their key is stored yet,
    /// leaving every stored row as it is (synthetic data: [`crate::demo`]).
    ///
    /// # Errors
    /// [`StoreError::Database`]; nothing is stored then.
    pub async fn insert_new(
        &self,
        minutes: &[Bucket],
        hours: &[HourRow],
    ) -> Result<Written, StoreError> {
        let minute_rows: Vec<Values<'_>> = minutes
            .iter()
            .map(|b| {
                let values = (b.sum, b.count, b.min, b.max);
                (
                    b.machine.as_str(),
                    b.index,
                    b.minute,
                    values,
                    b.revision,
                    b.is_final,
                )
            })
            .collect();
        let hour_rows: Vec<Values<'_>> = hours
            .iter()
            .map(|h| {
                let values = (h.sum, h.count, h.min, h.max);
                (
                    h.machine.as_str(),
                    h.index,
                    h.hour,
                    values,
                    h.minutes,
                    h.is_final,
                )
            })
            .collect();
        let mut tx = self.pool.begin().await?;
        let written = Written {
            minutes: insert_chunks(&mut tx, MINUTE_COLUMNS, &minute_rows).await?,
            hours: insert_chunks(&mut tx, HOUR_COLUMNS, &hour_rows).await?,
            shifts: 0,
        };
        // Written past the shift totals: a historian rebuilds them at its next start.
        sqlx::query(shifts::BLANK_RULES).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(written)
    }

    /// Deletes minutes that start before `minutes_before`, hours and shift totals that start
    /// before `hours_before` (unix seconds).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn prune(
        &self,
        minutes_before: i64,
        hours_before: i64,
    ) -> Result<Pruned, StoreError> {
        let minutes = sqlx::query("DELETE FROM minute_buckets WHERE minute < $1")
            .bind(minutes_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let hours = sqlx::query("DELETE FROM hour_buckets WHERE hour < $1")
            .bind(hours_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let shifts = sqlx::query("DELETE FROM shift_buckets WHERE shift_start < $1")
            .bind(hours_before)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(Pruned {
            minutes,
            hours,
            shifts,
        })
    }

    /// The pool, for reading the tables (tests, tools).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const NANOS_PER_SECOND: i64 = 1_000_000_000;

/// The instant `unix` seconds after the epoch, as the tables store times.
fn from_unix_seconds(unix: i64) -> Timestamp {
    Timestamp::from_unix_nanos(unix.saturating_mul(NANOS_PER_SECOND))
}

/// `t` in whole unix seconds, as the tables store times.
fn unix_seconds(t: Timestamp) -> i64 {
    t.unix_nanos().div_euclid(NANOS_PER_SECOND)
}

/// A row of either bucket table as [`Store::insert_new`] writes it: machine, index, time,
/// (sum, count, min, max), the revision or the number of minutes, and whether it is final.
type Values<'a> = (&'a str, u32, i64, (f64, i64, f64, f64), i64, bool);

const MINUTE_COLUMNS: &str =
    "minute_buckets (machine, scrap_index, minute, sum, count, min, max, revision, is_final)";
const HOUR_COLUMNS: &str =
    "hour_buckets (machine, scrap_index, hour, sum, count, min, max, minutes, is_final)";

/// Inserts `rows` into `table` (with its columns) in statements of [`ROWS_PER_INSERT`], skipping
/// rows whose key is stored; returns the rows inserted.
async fn insert_chunks(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    table: &str,
    rows: &[Values<'_>],
) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(table, 9, chunk.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for &(machine, index, time, (sum, count, min, max), extra, is_final) in chunk {
            query = query
                .bind(machine)
                .bind(i64::from(index))
                .bind(time)
                .bind(sum)
                .bind(count)
                .bind(min)
                .bind(max)
                .bind(extra)
                .bind(i64::from(is_final));
        }
        inserted += query.execute(&mut **tx).await?.rows_affected();
    }
    Ok(inserted)
}

/// `INSERT INTO {table} VALUES (...), ...` for `rows` rows of `columns` values, skipping rows
/// whose key is stored. Only placeholders vary, never a value: safe to run as built.
fn insert_sql(table: &str, columns: usize, rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let params: Vec<String> = (1..=columns)
                .map(|n| format!("${}", row * columns + n))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    format!(
        "INSERT INTO {table} VALUES {} ON CONFLICT DO NOTHING",
        values.join(", ")
    )
}

/// `url` as sqlx takes it: a SQLite file is opened read-write and created when missing
/// (`mode=rwc`) unless the URL says otherwise.
fn connect_url(url: &str, kind: StoreKind) -> String {
    if kind != StoreKind::Sqlite || url.contains("mode=") {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}mode=rwc")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sqlite_file_is_created_unless_the_url_says_otherwise() {
        let sqlite = StoreKind::Sqlite;
        assert_eq!(
            connect_url("sqlite://h.db", sqlite),
            "sqlite://h.db?mode=rwc"
        );
        assert_eq!(
            connect_url("sqlite://h.db?cache=shared", sqlite),
            "sqlite://h.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            connect_url("sqlite://h.db?mode=ro", sqlite),
            "sqlite://h.db?mode=ro"
        );
        let pg = "postgres://u@h/db";
        assert_eq!(connect_url(pg, StoreKind::Postgres), pg);
    }

    #[test]
    fn a_multi_row_insert_numbers_its_parameters_in_order() {
        assert_eq!(
            insert_sql("t (a)", 9, 2),
            "INSERT INTO t (a) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9), \
             ($10, $11, $12, $13, $14, $15, $16, $17, $18) ON CONFLICT DO NOTHING"
        );
    }
}
