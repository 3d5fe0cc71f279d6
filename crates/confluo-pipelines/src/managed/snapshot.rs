//! `mode: snapshot` ingest entries: a consistent snapshot of every selected source table,
//! each replacing its lakehouse table in one Delta overwrite commit whose `confluo.source`
//! metadata records the source position.

use std::fmt::Display;
use std::hash::Hash;
use std::time::Instant;

use confluo_connectors::snapshot::Snapshot;
use confluo_connectors::{mysql, postgres};
use confluo_core::TableName;
use confluo_core::project::IngestConfig;
use confluo_lakehouse::Lakehouse;
use serde::Serialize;
use serde_json::json;

use super::capture::Progress;
use super::copy::{self, CopiedTable, CopyPlan};
use super::{ManagedError, Result, ensure_schema, target_schema};

/// Source connections a snapshot reads with when an entry does not say.
pub const DEFAULT_PARALLELISM: usize = 4;

/// What a snapshot sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport<Id, Info> {
    /// The entry's name.
    pub entry: String,
    /// The source connection.
    pub connection: String,
    /// The source instant every table was read at.
    pub snapshot: Info,
    /// The tables, in source order.
    pub tables: Vec<CopiedTable<Id>>,
    /// Wall time.
    pub seconds: f64,
}

/// A PostgreSQL snapshot sync's report.
pub type PostgresReport = SnapshotReport<postgres::TableId, postgres::SnapshotInfo>;
/// A MySQL / MariaDB snapshot sync's report.
pub type MysqlReport = SnapshotReport<mysql::TableId, mysql::SnapshotInfo>;

/// Copies a consistent snapshot of a PostgreSQL entry's tables; `confluo.source` records
/// the connection, table, snapshot, LSN and rows.
pub async fn sync_postgres(
    cfg: &postgres::PostgresConfig,
    lh: &Lakehouse,
    entry_name: &str,
    entry: &IngestConfig,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<PostgresReport> {
    let started = Instant::now();
    let (catalog, schema) = target_schema(lh, entry_name, &entry.schema)?;
    ensure_schema(lh, &catalog, &schema).await?;
    let mut conn = cfg.connect().await?;
    let tables = postgres::resolve_tables(&mut conn, cfg, &entry.tables).await?;
    let _ = sqlx::Connection::close(conn).await;
    // Every table's types are checked before the lakehouse is touched.
    for t in &tables {
        t.arrow_schema(cfg)?;
    }
    let order: Vec<postgres::TableId> = tables.iter().map(|t| t.id.clone()).collect();
    let request = postgres::SnapshotRequest {
        tables,
        parallelism: entry.parallelism.unwrap_or(DEFAULT_PARALLELISM).max(1),
        snapshot_id: None,
    };
    let snap = postgres::snapshot(cfg, request).await?;
    let position = serde_json::Map::from_iter([
        ("type".to_string(), json!("postgres")),
        ("database".to_string(), json!(cfg.database)),
        ("snapshot".to_string(), json!(snap.info.pg_snapshot)),
        ("lsn".to_string(), json!(snap.info.wal_lsn)),
    ]);
    let target = |t: &postgres::TableId| TableName::new(&catalog, &schema, t.name.clone());
    let landing = Landing {
        entry: entry_name,
        connection: &cfg.name,
        order: &order,
        target: &target,
        started,
    };
    land_snapshot(lh, snap, position, landing, progress).await
}

/// Copies a consistent snapshot of a MySQL / MariaDB entry's tables; `confluo.source`
/// records the connection, table, binlog file and position, GTID set and rows.
pub async fn sync_mysql(
    cfg: &mysql::MysqlConfig,
    lh: &Lakehouse,
    entry_name: &str,
    entry: &IngestConfig,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<MysqlReport> {
    let started = Instant::now();
    let (catalog, schema) = target_schema(lh, entry_name, &entry.schema)?;
    ensure_schema(lh, &catalog, &schema).await?;
    let mut conn = cfg.connect().await?;
    let tables = mysql::resolve_tables(&mut conn, cfg, &entry.tables).await?;
    let _ = sqlx::Connection::close(conn).await;
    for t in &tables {
        t.arrow_schema(cfg)?;
    }
    let order: Vec<mysql::TableId> = tables.iter().map(|t| t.id.clone()).collect();
    let request = mysql::SnapshotRequest {
        tables,
        parallelism: entry.parallelism.unwrap_or(DEFAULT_PARALLELISM).max(1),
    };
    let snap = mysql::snapshot(cfg, request).await?;
    let info = &snap.info;
    let position = serde_json::Map::from_iter([
        ("type".to_string(), json!("mysql")),
        ("server_version".to_string(), json!(info.server_version)),
        ("binlog_file".to_string(), json!(info.binlog_file)),
        ("binlog_position".to_string(), json!(info.binlog_position)),
        ("gtid_set".to_string(), json!(info.gtid_set)),
        ("position_exact".to_string(), json!(info.exact)),
    ]);
    let target = |t: &mysql::TableId| TableName::new(&catalog, &schema, t.name.clone());
    let landing = Landing {
        entry: entry_name,
        connection: &cfg.name,
        order: &order,
        target: &target,
        started,
    };
    land_snapshot(lh, snap, position, landing, progress).await
}

/// Where a snapshot sync's tables go, and what its report names.
struct Landing<'a, Id> {
    entry: &'a str,
    connection: &'a str,
    /// The source tables in source order (the report's order).
    order: &'a [Id],
    target: &'a (dyn Fn(&Id) -> TableName + Sync),
    started: Instant,
}

/// Lands every table of a running snapshot, each in one overwrite commit whose
/// `confluo.source` records `position`, waits for the snapshot's workers and reports.
async fn land_snapshot<Id, Info, E>(
    lh: &Lakehouse,
    mut snap: Snapshot<Id, Info, E>,
    position: serde_json::Map<String, serde_json::Value>,
    landing: Landing<'_, Id>,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<SnapshotReport<Id, Info>>
where
    Id: Clone + Eq + Hash + Display,
    Info: Clone,
    ManagedError: From<E>,
{
    let plan = CopyPlan {
        entry: landing.entry,
        connection: landing.connection,
        capture: "snapshot",
        metadata_key: "confluo.source",
        position,
        txn: None,
        history: false,
        target: landing.target,
    };
    let tables = copy::land(lh, &mut snap, &plan, landing.order, progress, None).await?;
    let info = snap.info.clone();
    snap.finish().await?;
    Ok(SnapshotReport {
        entry: landing.entry.to_string(),
        connection: landing.connection.to_string(),
        snapshot: info,
        tables,
        seconds: landing.started.elapsed().as_secs_f64(),
    })
}
