//! The latest status of each quality check and what its alerts last said: the small,
//! mutable half of monitoring (the history is appended to Delta tables).

use sqlx::Row;

use super::Metastore;
use crate::error::Result;

/// A check's latest status (one slice of it, for checks evaluated per group).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckState {
    /// The monitored table.
    pub monitor: String,
    /// The check's name.
    pub check: String,
    /// `region=EU` for a group's result; empty for the whole table.
    pub slice: String,
    /// `pass`, `warn`, `fail` or `error`.
    pub status: String,
    /// When the check entered this status (ms since the epoch).
    pub since_ms: i64,
    /// When it was last evaluated.
    pub checked_ms: i64,
    /// The monitor run that evaluated it.
    pub run_id: String,
    /// The table version it saw.
    pub table_version: Option<i64>,
    /// The measured value.
    pub value: Option<f64>,
    /// What was found.
    pub message: Option<String>,
    /// The status the last alert announced (`None`: no alert is open).
    pub notified_status: Option<String>,
    /// When that alert went out.
    pub notified_ms: Option<i64>,
}

/// The columns of `quality_checks`, in [`state`]'s order (a macro: queries must be
/// literals).
macro_rules! columns {
    () => {
        "monitor, check_name, slice, status, since_ms, checked_ms, run_id, table_version, value, message, notified_status, notified_ms"
    };
}

fn state(r: &sqlx::any::AnyRow) -> CheckState {
    CheckState {
        monitor: r.get(0),
        check: r.get(1),
        slice: r.get(2),
        status: r.get(3),
        since_ms: r.get(4),
        checked_ms: r.get(5),
        run_id: r.get(6),
        table_version: r.get(7),
        value: r.get(8),
        message: r.get(9),
        notified_status: r.get(10),
        notified_ms: r.get(11),
    }
}

impl Metastore {
    /// The latest status of every check of `monitor` (of every monitor when `None`).
    pub async fn check_states(&self, monitor: Option<&str>) -> Result<Vec<CheckState>> {
        let rows =
            match monitor {
                Some(m) => sqlx::query(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM quality_checks WHERE monitor = $1 ORDER BY monitor, check_name, slice"
                ))
                .bind(m)
                .fetch_all(&self.pool)
                .await,
                None => {
                    sqlx::query(concat!(
                        "SELECT ",
                        columns!(),
                        " FROM quality_checks ORDER BY monitor, check_name, slice"
                    ))
                    .fetch_all(&self.pool)
                    .await
                }
            }
            .map_err(Self::err("cannot read the quality checks"))?;
        Ok(rows.iter().map(state).collect())
    }

    /// Records a check's new status (insert or replace).
    pub async fn put_check_state(&self, s: &CheckState) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO quality_checks (",
            columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (monitor, check_name, slice) DO UPDATE SET
               status = excluded.status, since_ms = excluded.since_ms,
               checked_ms = excluded.checked_ms, run_id = excluded.run_id,
               table_version = excluded.table_version, value = excluded.value,
               message = excluded.message, notified_status = excluded.notified_status,
               notified_ms = excluded.notified_ms"
        ))
        .bind(&s.monitor)
        .bind(&s.check)
        .bind(&s.slice)
        .bind(&s.status)
        .bind(s.since_ms)
        .bind(s.checked_ms)
        .bind(&s.run_id)
        .bind(s.table_version)
        .bind(s.value)
        .bind(&s.message)
        .bind(&s.notified_status)
        .bind(s.notified_ms)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot record the quality check"))?;
        Ok(())
    }

    /// Forgets checks of `monitor` that are no longer configured (kept: `keep`), so a
    /// removed check neither shows in the status nor keeps an alert open.
    pub async fn forget_checks(&self, monitor: &str, keep: &[String]) -> Result<u64> {
        let rows = self.check_states(Some(monitor)).await?;
        let mut n = 0;
        for r in rows.iter().filter(|r| !keep.contains(&r.check)) {
            n += sqlx::query("DELETE FROM quality_checks WHERE monitor = $1 AND check_name = $2")
                .bind(monitor)
                .bind(&r.check)
                .execute(&self.pool)
                .await
                .map_err(Self::err("cannot forget a quality check"))?
                .rows_affected();
        }
        Ok(n)
    }
}
