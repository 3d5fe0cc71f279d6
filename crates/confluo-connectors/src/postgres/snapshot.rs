//! A consistent, parallel snapshot of tables.
//!
//! One coordinator connection opens `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY` and
//! exports its snapshot (`pg_export_snapshot()`), or imports one given by the caller (the
//! snapshot of a logical replication slot, so the snapshot and the change stream meet with
//! no gap and no overlap). Worker connections import the same snapshot with `SET TRANSACTION
//! SNAPSHOT`, so every table, and every key range of a table, is read as of one instant.
//!
//! Tables estimated larger than `snapshot_split_rows` with a single-column integer primary
//! key are split into key ranges (bounds from `min`/`max` inside the snapshot); the others
//! are read whole. Work is handed out table by table, so only a few tables are in flight at
//! once and a consumer writing one file set per table keeps bounded memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::SchemaRef;
use serde::Serialize;
use sqlx::{PgConnection, Row};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use super::config::PostgresConfig;
use super::copy::{CopyDecoder, copy_out, copy_statement};
use super::discover::{SourceTable, TableId};
use super::error::{PostgresError, Result};
use super::types::{ColumnMapping, quote_ident, quote_literal};
use crate::snapshot::WorkQueue as Queue;
pub use crate::snapshot::split_range;

/// What to snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The tables, as discovered.
    pub tables: Vec<SourceTable>,
    /// Worker connections (at least 1).
    pub parallelism: usize,
    /// Use this exported snapshot (e.g. from `CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT`)
    /// instead of creating one. Its exporter must stay open until [`snapshot`] returns.
    pub snapshot_id: Option<String>,
}

/// The instant a snapshot reads, as seen from inside its transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// The exported snapshot's id (what `SET TRANSACTION SNAPSHOT` takes).
    pub snapshot_id: String,
    /// `pg_current_snapshot()` as text (`xmin:xmax:xip,...`).
    pub pg_snapshot: String,
    /// `pg_current_wal_lsn()` read in the snapshot's transaction.
    pub wal_lsn: String,
}

/// What a PostgreSQL snapshot produces.
pub type SnapshotEvent = crate::snapshot::SnapshotEvent<TableId>;
/// The outcome for one table.
pub type TableSnapshot = crate::snapshot::TableSnapshot<TableId>;
/// A PostgreSQL snapshot in progress.
pub type Snapshot = crate::snapshot::Snapshot<TableId, SnapshotInfo, PostgresError>;

fn task_failed(message: String) -> PostgresError {
    PostgresError::Cancelled {
        connection: String::new(),
        message,
    }
}

/// One table's plan: how to read it and in which ranges.
struct TablePlan {
    table: SourceTable,
    mappings: Vec<(String, ColumnMapping)>,
    schema: SchemaRef,
    filters: Vec<Option<String>>,
}

/// Begins a snapshot transaction on `conn`: `BEGIN ISOLATION LEVEL REPEATABLE READ READ
/// ONLY`, then imports `snapshot_id` if given. Use it on a connection passed to
/// [`snapshot_in_transaction`].
pub async fn begin_snapshot(
    conn: &mut PgConnection,
    cfg: &PostgresConfig,
    snapshot_id: Option<&str>,
) -> Result<()> {
    sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(PostgresError::query(
            &cfg.name,
            "starting the snapshot transaction",
        ))?;
    if let Some(id) = snapshot_id {
        import_snapshot(conn, cfg, id).await?;
    }
    Ok(())
}

async fn import_snapshot(conn: &mut PgConnection, cfg: &PostgresConfig, id: &str) -> Result<()> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(PostgresError::Config {
            connection: cfg.name.clone(),
            key: "snapshot_id".into(),
            message: format!("`{id}` is not an exported snapshot id"),
        });
    }
    let sql = format!("SET TRANSACTION SNAPSHOT {}", quote_literal(id));
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(PostgresError::query(
            &cfg.name,
            format!("importing snapshot {id} (its exporting transaction must still be open)"),
        ))?;
    Ok(())
}

/// Exports the snapshot of the REPEATABLE READ transaction open on `conn` (or takes
/// `snapshot_id`, already imported there) and reads `pg_current_snapshot()` and
/// `pg_current_wal_lsn()` inside it.
pub async fn snapshot_info(
    conn: &mut PgConnection,
    cfg: &PostgresConfig,
    snapshot_id: Option<&str>,
) -> Result<SnapshotInfo> {
    let row = sqlx::query(
        "SELECT pg_current_snapshot()::text AS snap,
                (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                      ELSE pg_current_wal_lsn() END)::text AS lsn",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(PostgresError::query(
        &cfg.name,
        "reading the snapshot's position",
    ))?;
    let snapshot_id = match snapshot_id {
        Some(id) => id.to_string(),
        None => sqlx::query_scalar::<_, String>("SELECT pg_export_snapshot()")
            .fetch_one(&mut *conn)
            .await
            .map_err(PostgresError::query(&cfg.name, "exporting the snapshot"))?,
    };
    Ok(SnapshotInfo {
        snapshot_id,
        pg_snapshot: row.get("snap"),
        wal_lsn: row.get::<Option<String>, _>("lsn").unwrap_or_default(),
    })
}

/// Starts a consistent snapshot of `req.tables`: opens the coordinator transaction (or
/// imports `req.snapshot_id`) and returns at once with the instant; batches follow through
/// [`Snapshot::next`].
pub async fn snapshot(cfg: &PostgresConfig, req: SnapshotRequest) -> Result<Snapshot> {
    let mut conn = cfg.connect().await?;
    begin_snapshot(&mut conn, cfg, req.snapshot_id.as_deref()).await?;
    snapshot_in_transaction(cfg, conn, req).await
}

/// Like [`snapshot`], on a connection already inside a REPEATABLE READ transaction: its
/// snapshot is exported (or `req.snapshot_id`, already imported there, is used) and shared
/// with the workers. The connection is committed and closed when the snapshot ends.
pub async fn snapshot_in_transaction(
    cfg: &PostgresConfig,
    mut coordinator: PgConnection,
    req: SnapshotRequest,
) -> Result<Snapshot> {
    let info = snapshot_info(&mut coordinator, cfg, req.snapshot_id.as_deref()).await?;
    let parallelism = req.parallelism.max(1);
    // Plan every table first, so an unsupported type fails before any work starts.
    let mut plans = Vec::with_capacity(req.tables.len());
    for table in req.tables {
        let mappings = table.mappings(cfg)?;
        let schema = table.arrow_schema(cfg)?;
        let filters = ranges(&mut coordinator, cfg, &table, parallelism).await?;
        plans.push(Arc::new(TablePlan {
            table,
            mappings,
            schema,
            filters,
        }));
    }
    let mut tasks = VecDeque::new();
    for (t, p) in plans.iter().enumerate() {
        for r in 0..p.filters.len() {
            tasks.push_back((t, r));
        }
    }
    let workers = parallelism.min(tasks.len()).max(1);
    let queue = Arc::new(Mutex::new(Queue {
        tasks,
        started: vec![false; plans.len()],
        remaining: plans.iter().map(|p| p.filters.len()).collect(),
        rows: vec![0; plans.len()],
        nulled: vec![Vec::new(); plans.len()],
    }));
    let (tx, rx) = mpsc::channel(parallelism * 2);
    let plans = Arc::new(plans);
    let cfg = cfg.clone();
    let snapshot_id = info.snapshot_id.clone();
    let driver = tokio::spawn(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for _ in 0..workers {
            let (cfg, plans, queue, tx, stop, id) = (
                cfg.clone(),
                plans.clone(),
                queue.clone(),
                tx.clone(),
                stop.clone(),
                snapshot_id.clone(),
            );
            set.spawn(async move {
                let r = worker(&cfg, &id, &plans, &queue, &tx, &stop).await;
                if let Err(e) = r {
                    stop.store(true, Ordering::Relaxed);
                    let msg = e.to_string();
                    let _ = tx.send(Err(e)).await;
                    return Err(msg);
                }
                Ok(())
            });
        }
        drop(tx);
        let mut failure = None;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(m)) => failure = failure.or(Some(m)),
                Err(e) => failure = failure.or(Some(format!("worker failed: {e}"))),
            }
        }
        // The exporter stays open until every worker is done with the snapshot.
        let _ = sqlx::raw_sql("COMMIT").execute(&mut coordinator).await;
        let _ = sqlx::Connection::close(coordinator).await;
        if let Some(message) = failure {
            return Err(PostgresError::Cancelled {
                connection: cfg.name.clone(),
                message,
            });
        }
        let q = queue.lock().await;
        Ok(plans
            .iter()
            .enumerate()
            .map(|(i, p)| TableSnapshot {
                table: p.table.id.clone(),
                rows: q.rows[i],
                nulled: q.nulled[i].clone(),
            })
            .collect())
    });
    Ok(Snapshot::new(info, rx, driver, task_failed))
}

/// Key-range filters for a table: one `None` to read it whole, or `parallelism` ranges over
/// its single-column integer primary key when it is estimated above the split threshold.
async fn ranges(
    conn: &mut PgConnection,
    cfg: &PostgresConfig,
    table: &SourceTable,
    parallelism: usize,
) -> Result<Vec<Option<String>>> {
    let big = table
        .row_estimate
        .is_some_and(|e| e > cfg.snapshot_split_rows);
    let key = match table.split_key() {
        Some(k) if big && parallelism > 1 => quote_ident(&k.name),
        _ => return Ok(vec![None]),
    };
    let sql = format!(
        "SELECT min({key})::int8 AS lo, max({key})::int8 AS hi FROM {}",
        table.id.sql()
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await
        .map_err(PostgresError::query(
            &cfg.name,
            format!("reading the key range of {}", table.id),
        ))?;
    let (Some(lo), Some(hi)) = (
        row.get::<Option<i64>, _>("lo"),
        row.get::<Option<i64>, _>("hi"),
    ) else {
        return Ok(vec![None]);
    };
    Ok(split_range(&key, lo, hi, parallelism))
}

/// One worker: imports the snapshot, then reads ranges until the queue is empty.
async fn worker(
    cfg: &PostgresConfig,
    snapshot_id: &str,
    plans: &[Arc<TablePlan>],
    queue: &Mutex<Queue>,
    tx: &mpsc::Sender<Result<SnapshotEvent>>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut conn = cfg.connect().await?;
    begin_snapshot(&mut conn, cfg, Some(snapshot_id)).await?;
    loop {
        if stop.load(Ordering::Relaxed) || tx.is_closed() {
            break;
        }
        let (t, r) = {
            let mut q = queue.lock().await;
            let Some((t, r)) = q.tasks.pop_front() else {
                break;
            };
            if !q.started[t] {
                q.started[t] = true;
                let p = &plans[t];
                // Sent under the lock, so it precedes every batch of the table.
                let _ = tx
                    .send(Ok(SnapshotEvent::TableStarted {
                        table: p.table.id.clone(),
                        schema: p.schema.clone(),
                        row_estimate: p.table.row_estimate,
                        ranges: p.filters.len(),
                    }))
                    .await;
            }
            (t, r)
        };
        let plan = &plans[t];
        let id = plan.table.id.clone();
        let statement = copy_statement(
            &plan.table.id.sql(),
            &plan.mappings,
            plan.filters[r].as_deref(),
        );
        let mappings: Vec<ColumnMapping> = plan.mappings.iter().map(|(_, m)| m.clone()).collect();
        let decoder = CopyDecoder::new(&cfg.name, &id.to_string(), plan.schema.clone(), &mappings);
        let (rows, nulled) = copy_out(&mut conn, &statement, decoder, tx, |batch| {
            Ok(SnapshotEvent::Batch {
                table: id.clone(),
                batch,
            })
        })
        .await?;
        let mut q = queue.lock().await;
        q.rows[t] += rows;
        for (col, n) in nulled {
            match q.nulled[t].iter_mut().find(|(c, _)| *c == col) {
                Some(e) => e.1 += n,
                None => q.nulled[t].push((col, n)),
            }
        }
        q.remaining[t] -= 1;
        if q.remaining[t] == 0 {
            let done = TableSnapshot {
                table: id,
                rows: q.rows[t],
                nulled: q.nulled[t].clone(),
            };
            let _ = tx.send(Ok(SnapshotEvent::TableFinished(done))).await;
        }
    }
    let _ = sqlx::raw_sql("COMMIT").execute(&mut conn).await;
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything() {
        assert_eq!(split_range("k", 1, 1, 4), vec![None]);
        let r = split_range("k", 1, 100, 4);
        assert_eq!(
            r,
            vec![
                Some("k < 26".into()),
                Some("k >= 26 AND k < 51".into()),
                Some("k >= 51 AND k < 76".into()),
                Some("k >= 76".into()),
            ]
        );
        assert_eq!(split_range("k", i64::MIN, i64::MAX, 2).len(), 2);
        assert_eq!(split_range("k", 5, 6, 8).len(), 2);
    }
}
