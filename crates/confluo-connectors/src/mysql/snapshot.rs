//! A consistent snapshot of several tables, tied to the binary log position, read over
//! several connections.
//!
//! A coordinator session takes `FLUSH TABLES WITH READ LOCK`, reads the binlog position
//! (file, offset, GTID set), starts `START TRANSACTION WITH CONSISTENT SNAPSHOT` on every
//! worker connection while writes are blocked, then releases the lock: every worker reads
//! the same instant, and that instant is exactly the position read. A user without the
//! RELOAD privilege cannot take the lock: then one worker reads every table in one
//! consistent-snapshot transaction (consistent across tables) and the position, read right
//! before the transaction starts, is approximate (`exact: false`): changes between the two
//! may be both copied and streamed, never lost.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::SchemaRef;
use futures::TryStreamExt;
use serde::Serialize;
use sqlx::mysql::MySqlConnection;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use super::config::MysqlConfig;
use super::decode::{BATCH_ROWS, BatchBuilder};
use super::discover::{SourceTable, TableId};
use super::error::{MysqlError, Result};
use super::types::{ColumnMapping, quote_ident};
use crate::snapshot::WorkQueue as Queue;
pub use crate::snapshot::split_range;

/// What to snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The tables, as discovered.
    pub tables: Vec<SourceTable>,
    /// Connections reading in parallel (at least 1).
    pub parallelism: usize,
}

/// The instant a snapshot reads: the binary log position it corresponds to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// `SELECT VERSION()`.
    pub server_version: String,
    /// The binlog file (`SHOW MASTER STATUS`), `None` when binary logging is off or the
    /// user may not read it.
    pub binlog_file: Option<String>,
    /// The offset in `binlog_file`.
    pub binlog_position: Option<u64>,
    /// MariaDB `@@gtid_binlog_pos` or MySQL `@@gtid_executed` (`None` when empty).
    pub gtid_set: Option<String>,
    /// Whether the position is exactly the snapshot's instant (taken under
    /// `FLUSH TABLES WITH READ LOCK`), or read just after it without the lock.
    pub exact: bool,
}

impl SnapshotInfo {
    /// `file:position` (or `-`), for messages.
    pub fn position(&self) -> String {
        match (&self.binlog_file, self.binlog_position) {
            (Some(f), Some(p)) => format!("{f}:{p}"),
            _ => "-".into(),
        }
    }
}

/// What a MySQL snapshot produces.
pub type SnapshotEvent = crate::snapshot::SnapshotEvent<TableId>;
/// The outcome for one table.
pub type TableSnapshot = crate::snapshot::TableSnapshot<TableId>;
/// A MySQL snapshot in progress.
pub type Snapshot = crate::snapshot::Snapshot<TableId, SnapshotInfo, MysqlError>;

fn task_failed(message: String) -> MysqlError {
    MysqlError::Cancelled {
        connection: String::new(),
        message,
    }
}

/// One table's plan: how to read it and in which ranges.
struct TablePlan {
    table: SourceTable,
    mappings: Vec<ColumnMapping>,
    schema: SchemaRef,
    select: String,
    filters: Vec<Option<String>>,
}

async fn exec(conn: &mut MySqlConnection, cfg: &MysqlConfig, sql: &str, what: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut *conn)
        .await
        .map_err(MysqlError::query(&cfg.name, what))?;
    Ok(())
}

/// Starts a REPEATABLE READ transaction whose snapshot is taken now.
async fn begin_snapshot(conn: &mut MySqlConnection, cfg: &MysqlConfig) -> Result<()> {
    exec(
        conn,
        cfg,
        "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
        "setting the isolation level",
    )
    .await?;
    exec(
        conn,
        cfg,
        "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        "starting the snapshot transaction",
    )
    .await
}

/// One text value of a single-row statement (`None` when there is no row or it is NULL).
async fn scalar(
    conn: &mut MySqlConnection,
    sql: &str,
    column: usize,
) -> sqlx::Result<Option<String>> {
    use sqlx::Row;
    let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.first().and_then(|r| {
        r.try_get_unchecked::<Option<&[u8]>, _>(column)
            .ok()
            .flatten()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }))
}

/// Reads the binary log position on `conn`. Missing privileges or a server without binary
/// logging leave the parts `None` rather than failing the snapshot.
async fn read_position(conn: &mut MySqlConnection, exact: bool) -> SnapshotInfo {
    let server_version = scalar(conn, "SELECT VERSION()", 0)
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    // MySQL 8.4 removed SHOW MASTER STATUS in favour of SHOW BINARY LOG STATUS.
    let mut file = scalar(conn, "SHOW MASTER STATUS", 0).await;
    let mut pos = scalar(conn, "SHOW MASTER STATUS", 1).await;
    if file.is_err() {
        file = scalar(conn, "SHOW BINARY LOG STATUS", 0).await;
        pos = scalar(conn, "SHOW BINARY LOG STATUS", 1).await;
    }
    let gtid_sql = if server_version.to_ascii_lowercase().contains("mariadb") {
        "SELECT @@gtid_binlog_pos"
    } else {
        "SELECT @@gtid_executed"
    };
    let gtid_set = scalar(conn, gtid_sql, 0)
        .await
        .ok()
        .flatten()
        .map(|g| g.replace('\n', ""))
        .filter(|g| !g.is_empty());
    SnapshotInfo {
        server_version,
        binlog_file: file.ok().flatten(),
        binlog_position: pos.ok().flatten().and_then(|p| p.parse().ok()),
        gtid_set,
        exact,
    }
}

/// Starts a consistent snapshot of `req.tables` and returns once every worker's
/// transaction is open, with the binlog position; batches follow through
/// [`Snapshot::next`].
pub async fn snapshot(cfg: &MysqlConfig, req: SnapshotRequest) -> Result<Snapshot> {
    let parallelism = req.parallelism.max(1);
    let mut coordinator = cfg.connect().await?;
    // Plan every table first, so an unsupported type fails before any work starts. Key
    // ranges are read before the snapshot: the outer ranges are open-ended, so rows added
    // since cannot fall between ranges.
    let mut plans = Vec::with_capacity(req.tables.len());
    for table in req.tables {
        let mappings = table.mappings(cfg)?;
        let schema = table.arrow_schema(cfg)?;
        let select = mappings
            .iter()
            .map(|(name, m)| m.select_expr(name))
            .collect::<Vec<_>>()
            .join(", ");
        let filters = ranges(&mut coordinator, cfg, &table, parallelism).await?;
        plans.push(Arc::new(TablePlan {
            table,
            mappings: mappings.into_iter().map(|(_, m)| m).collect(),
            schema,
            select,
            filters,
        }));
    }
    let mut tasks = VecDeque::new();
    for (t, p) in plans.iter().enumerate() {
        for r in 0..p.filters.len() {
            tasks.push_back((t, r));
        }
    }
    let wanted = parallelism.min(tasks.len()).max(1);
    let mut conns = Vec::with_capacity(wanted);
    for _ in 0..wanted {
        conns.push(cfg.connect().await?);
    }
    let locked = sqlx::raw_sql("FLUSH TABLES WITH READ LOCK")
        .execute(&mut coordinator)
        .await
        .is_ok();
    let info = if locked {
        // Writes are blocked: the position and every worker's snapshot are the same instant.
        let info = read_position(&mut coordinator, true).await;
        let mut started = Ok(());
        for c in conns.iter_mut() {
            started = begin_snapshot(c, cfg).await;
            if started.is_err() {
                break;
            }
        }
        let _ = sqlx::raw_sql("UNLOCK TABLES")
            .execute(&mut coordinator)
            .await;
        started?;
        info
    } else {
        // Without RELOAD one transaction reads every table, so tables stay consistent with
        // each other; the position, read just before it starts, may be a little early.
        tracing::warn!(
            connection = %cfg.name,
            "FLUSH TABLES WITH READ LOCK failed (the user lacks RELOAD?): reading with one connection, binlog position approximate"
        );
        conns.truncate(1);
        // Read before the transaction starts: a transaction committed in between is then
        // both in the snapshot and after the position (replayed, harmless for keyed
        // upserts), never in neither.
        let info = read_position(&mut coordinator, false).await;
        begin_snapshot(&mut conns[0], cfg).await?;
        info
    };
    let _ = sqlx::Connection::close(coordinator).await;
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
    let driver = tokio::spawn(async move {
        let stop = Arc::new(AtomicBool::new(false));
        let mut set = JoinSet::new();
        for conn in conns {
            let (cfg, plans, queue, tx, stop) = (
                cfg.clone(),
                plans.clone(),
                queue.clone(),
                tx.clone(),
                stop.clone(),
            );
            set.spawn(async move {
                let r = worker(&cfg, conn, &plans, &queue, &tx, &stop).await;
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
        if let Some(message) = failure {
            return Err(MysqlError::Cancelled {
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
    conn: &mut MySqlConnection,
    cfg: &MysqlConfig,
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
        "SELECT CAST(MIN({key}) AS SIGNED), CAST(MAX({key}) AS SIGNED) FROM {}",
        table.id.sql()
    );
    let what = format!("reading the key range of {}", table.id);
    let lo = scalar(conn, &sql, 0)
        .await
        .map_err(MysqlError::query(&cfg.name, what.clone()))?;
    let hi = scalar(conn, &sql, 1)
        .await
        .map_err(MysqlError::query(&cfg.name, what))?;
    let (Some(lo), Some(hi)) = (
        lo.and_then(|v| v.parse::<i64>().ok()),
        hi.and_then(|v| v.parse::<i64>().ok()),
    ) else {
        return Ok(vec![None]);
    };
    Ok(split_range(&key, lo, hi, parallelism))
}

/// One worker: reads ranges in its snapshot transaction until the queue is empty.
async fn worker(
    cfg: &MysqlConfig,
    mut conn: MySqlConnection,
    plans: &[Arc<TablePlan>],
    queue: &Mutex<Queue>,
    tx: &mpsc::Sender<Result<SnapshotEvent>>,
    stop: &AtomicBool,
) -> Result<()> {
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
        let mut sql = format!("SELECT {} FROM {}", plan.select, id.sql());
        if let Some(f) = &plan.filters[r] {
            sql.push_str(" WHERE ");
            sql.push_str(f);
        }
        let mut builder = BatchBuilder::new(
            &cfg.name,
            &id.to_string(),
            plan.schema.clone(),
            &plan.mappings,
        );
        let mut rows = 0u64;
        {
            let mut stream = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch(&mut conn);
            while let Some(row) = stream
                .try_next()
                .await
                .map_err(MysqlError::query(&cfg.name, format!("reading {id}")))?
            {
                builder.append(&row)?;
                rows += 1;
                if builder.len() >= BATCH_ROWS {
                    let batch = builder.finish()?;
                    if tx
                        .send(Ok(SnapshotEvent::Batch {
                            table: id.clone(),
                            batch,
                        }))
                        .await
                        .is_err()
                    {
                        return Ok(());
                    }
                }
            }
        }
        if !builder.is_empty() {
            let batch = builder.finish()?;
            let _ = tx
                .send(Ok(SnapshotEvent::Batch {
                    table: id.clone(),
                    batch,
                }))
                .await;
        }
        let mut q = queue.lock().await;
        q.rows[t] += rows;
        for (col, n) in builder.nulled() {
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
        let r = split_range("k", 1, 100, 2);
        assert_eq!(r, vec![Some("k < 51".into()), Some("k >= 51".into())]);
    }
}
