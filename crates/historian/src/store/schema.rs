//! The store's tables and their versions. `schema_version` holds the version the tables are
//! at; a start applies, in one transaction each, the steps above it, so a historian starts
//! cleanly on a new, an older or its own store, and refuses one a newer historian wrote.
//!
//! The SQL is the subset SQLite (3.24 and later) and PostgreSQL share, run through one code
//! path (sqlx's `Any` driver): `BIGINT` integers, `DOUBLE PRECISION` values, times as unix
//! seconds.
//!
//! - `minute_buckets`: one row per (machine, scrap_index, minute), the minute's start in unix
//!   seconds, with the values of the highest revision received; `is_final` is 1 when no
//!   further change will come for the minute, else 0 (an integer: the `Any` driver reads no
//!   SQLite boolean).
//! - `hour_buckets`: one row per (machine, scrap_index, hour), the UTC hour's start in unix
//!   seconds, rolled up from its stored minutes (`minutes` of them); `is_final` is 1 when
//!   every one of them is.
//! - `shift_buckets`: one row per (machine, scrap_index, shift), the shift's start in unix
//!   seconds, with the total of its buckets; `is_final` is 1 when every one of them is.
//! - `shift_rules`: one row, the text of the shift rules `shift_buckets` follows; empty when
//!   it follows none (see [`super::shifts`]).

use sqlx::{AnyPool, Row};

use super::StoreError;

/// Each version's statements, from version 1 on.
const STEPS: &[&[&str]] = &[
    &[
        "CREATE TABLE minute_buckets (
        machine TEXT NOT NULL,
        scrap_index BIGINT NOT NULL,
        minute BIGINT NOT NULL,
        sum DOUBLE PRECISION NOT NULL,
        count BIGINT NOT NULL,
        min DOUBLE PRECISION NOT NULL,
        max DOUBLE PRECISION NOT NULL,
        revision BIGINT NOT NULL,
        is_final BIGINT NOT NULL,
        PRIMARY KEY (machine, scrap_index, minute)
    )",
        "CREATE INDEX minute_buckets_by_minute ON minute_buckets (minute)",
        "CREATE TABLE hour_buckets (
        machine TEXT NOT NULL,
        scrap_index BIGINT NOT NULL,
        hour BIGINT NOT NULL,
        sum DOUBLE PRECISION NOT NULL,
        count BIGINT NOT NULL,
        min DOUBLE PRECISION NOT NULL,
        max DOUBLE PRECISION NOT NULL,
        minutes BIGINT NOT NULL,
        is_final BIGINT NOT NULL,
        PRIMARY KEY (machine, scrap_index, hour)
    )",
        "CREATE INDEX hour_buckets_by_hour ON hour_buckets (hour)",
    ],
    &[
        "CREATE TABLE shift_buckets (
        machine TEXT NOT NULL,
        scrap_index BIGINT NOT NULL,
        shift_start BIGINT NOT NULL,
        sum DOUBLE PRECISION NOT NULL,
        count BIGINT NOT NULL,
        is_final BIGINT NOT NULL,
        PRIMARY KEY (machine, scrap_index, shift_start)
    )",
        "CREATE INDEX shift_buckets_by_start ON shift_buckets (shift_start)",
        "CREATE TABLE shift_rules (rules TEXT NOT NULL)",
        "INSERT INTO shift_rules (rules) VALUES ('')",
    ],
];

/// The version this historian writes.
pub const VERSION: i64 = STEPS.len() as i64;

/// Brings the tables to [`VERSION`]; returns the version found.
///
/// # Errors
/// [`StoreError::Database`] when the store cannot be reached or a statement fails;
/// [`StoreError::NewerSchema`] when a newer historian wrote it.
pub async fn migrate(pool: &AnyPool) -> Result<i64, StoreError> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .execute(pool)
        .await?;
    let found = current(pool).await?;
    if found > VERSION {
        return Err(StoreError::NewerSchema {
            found,
            known: VERSION,
        });
    }
    for (version, statements) in (1..).zip(STEPS).skip(found as usize) {
        let mut tx = pool.begin().await?;
        for statement in *statements {
            sqlx::query(*statement).execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM schema_version")
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "store schema upgraded");
    }
    Ok(found)
}

/// The version the tables are at; 0 for none.
async fn current(pool: &AnyPool) -> Result<i64, StoreError> {
    let row = sqlx::query("SELECT MAX(version) FROM schema_version")
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<Option<i64>, _>(0)?.unwrap_or(0))
}
