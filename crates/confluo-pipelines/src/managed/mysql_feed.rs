//! `STREAM read_changes('connection', 'database.table')` over MySQL / MariaDB: the table's
//! change feed from the binary log, with the columns and sequence of the PostgreSQL feed
//! (`_op`, `_lsn` = the transaction's binlog sequence, `_commit_ts`).
//!
//! The first update reads a consistent snapshot of the table (every row an `INSERT` at the
//! snapshot's binlog position); later updates read the whole transactions committed since
//! the position in the flow's offsets, which the pipeline records only after its commit: a
//! crash replays, and transactions at or before the recorded sequence are skipped.

use std::collections::HashMap;
use std::sync::Arc;

use confluo_connectors::mysql::MysqlConfig;
use confluo_connectors::mysql::cdc::{
    BinlogPosition, CapturedTable, ChangeReader, MysqlCdcError, batch, server,
};
use confluo_connectors::mysql::discover::{SourceTable, resolve_tables};
use confluo_connectors::mysql::snapshot::{SnapshotRequest, snapshot};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::datasource::MemTable;
use sqlx::mysql::MySqlConnection;

use super::changes_feed::{FeedRead, MAX_CHANGES_PER_UPDATE, SnapshotFeed, feed_schema, project};
use super::{ManagedError, Result};

async fn source_table(
    cfg: &MysqlConfig,
    conn: &mut MySqlConnection,
    table: &str,
) -> Result<SourceTable> {
    let t = resolve_tables(conn, cfg, &[table.to_string()])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ManagedError::Convert {
            table: table.to_string(),
            message: "not found".into(),
        })?;
    if t.primary_key.is_empty() {
        return Err(MysqlCdcError::Table {
            connection: cfg.name.clone(),
            table: t.id.to_string(),
            message: "has no primary key; a change feed orders the changes of each key".into(),
            hint: format!(
                "add a primary key (ALTER TABLE {} ADD PRIMARY KEY (...))",
                t.id.sql()
            ),
        }
        .into());
    }
    Ok(t)
}

/// The feed's schema, for planning without reading (validation, dry runs).
pub async fn schema(cfg: &MysqlConfig, table: &str) -> Result<SchemaRef> {
    let mut conn = cfg.connect().await?;
    let t = source_table(cfg, &mut conn, table).await?;
    Ok(feed_schema(&*t.arrow_schema(cfg)?, &t.primary_key))
}

/// The binlog position a sequence stands for, with the server's binlog base name (files
/// are `<base>.<number>`, six digits or more).
fn position_of(seq: u64, current: &BinlogPosition) -> BinlogPosition {
    let base = current
        .file
        .rsplit_once('.')
        .map_or(current.file.as_str(), |(b, _)| b);
    BinlogPosition {
        file: format!("{base}.{:06}", seq >> 32),
        position: seq & 0xffff_ffff,
    }
}

/// Reads what is new for one flow: the snapshot on its first update (no offset under
/// `key`), else the binlog since the offset. `server_id` is the flow's replica id.
pub async fn read(
    cfg: &MysqlConfig,
    table: &str,
    key: &str,
    server_id: u32,
    state: &HashMap<String, i64>,
) -> Result<FeedRead> {
    let mut conn = cfg.connect().await?;
    let info = server::check_server(cfg, &mut conn).await?;
    let source = source_table(cfg, &mut conn, table).await?;
    let schema = feed_schema(&*source.arrow_schema(cfg)?, &source.primary_key);
    let Some(&applied) = state.get(key) else {
        let snap = snapshot(
            cfg,
            SnapshotRequest {
                tables: vec![source],
                parallelism: 2,
            },
        )
        .await?;
        let at = match (&snap.info.binlog_file, snap.info.binlog_position) {
            (Some(f), Some(p)) => BinlogPosition {
                file: f.clone(),
                position: p,
            },
            _ => info.position.clone(),
        };
        let now = chrono::Utc::now().timestamp_micros();
        let seq = at.seq() as i64;
        let provider = SnapshotFeed::start(snap, schema.clone(), seq, now);
        return Ok(FeedRead {
            provider: Arc::new(
                StreamingTable::try_new(schema, vec![Arc::new(provider)])
                    .map_err(ManagedError::from)?,
            ),
            offsets: vec![(key.to_string(), seq)],
            new: true,
            warnings: vec![],
            lag_bytes: 0,
            lag_seconds: 0.0,
        });
    };
    let from = position_of(applied as u64, &info.position);
    let mut reader = ChangeReader::new(
        cfg,
        &info,
        server_id,
        vec![CapturedTable {
            table: source.clone(),
            applied_seq: applied as u64,
        }],
    )?
    .per_transaction();
    let read = reader
        .read(&mut conn, &from, None, MAX_CHANGES_PER_UPDATE as u64)
        .await?;
    let mut batches = Vec::new();
    for tc in &read.tables {
        let shape = reader.table(&source.id).unwrap_or(&source);
        let rows = batch::to_record_batch(cfg, shape, tc)?;
        batches.push(project(&rows, &schema)?);
    }
    let fresh = !read.tables.is_empty();
    // Move past other tables' transactions too, but only with a commit to record it.
    let last = match &read.end {
        Some(end) if fresh => end.seq() as i64,
        _ => applied,
    };
    let end = read.end.clone().unwrap_or(from);
    let lag_bytes = server::binary_logs(cfg, &mut conn)
        .await
        .map(|logs| server::bytes_behind(&logs, &end))
        .unwrap_or(0);
    let lag_seconds = if fresh {
        (chrono::Utc::now().timestamp_micros() - read.commit_ts_micros).max(0) as f64 / 1e6
    } else {
        0.0
    };
    Ok(FeedRead {
        provider: Arc::new(MemTable::try_new(schema, vec![batches]).map_err(ManagedError::from)?),
        offsets: vec![(key.to_string(), last)],
        new: fresh,
        warnings: read.notes,
        lag_bytes,
        lag_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequence_names_its_file_again() {
        let current = BinlogPosition {
            file: "mysql-bin.000012".into(),
            position: 99,
        };
        let p = BinlogPosition {
            file: "mysql-bin.000009".into(),
            position: 4242,
        };
        assert_eq!(position_of(p.seq(), &current), p);
    }
}
