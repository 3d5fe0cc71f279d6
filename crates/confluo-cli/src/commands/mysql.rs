//! `type: mysql` connections in the CLI: `confluo connections test|discover` and
//! `confluo sync` (snapshot mode) for MySQL and MariaDB; `mode: cdc` entries run through
//! `sync_cdc.rs`. `connections.rs` and `sync.rs`
//! dispatch here on the connection's type.

use std::process::ExitCode;
use std::time::Instant;

use confluo_connectors::mysql::config::ssl_mode_name;
use confluo_connectors::mysql::{
    MysqlConfig, MysqlError, SnapshotInfo, SnapshotRequest, SourceColumn, SourceTable, TableFilter,
    TableId, UnsupportedTypes, discover, map_type, resolve_tables, snapshot,
};
use confluo_core::project::IngestConfig;
use confluo_lakehouse::Lakehouse;
use serde::Serialize;
use serde_json::json;

use super::CmdResult;
use super::snapshot_writer::{Landing, print_tables, write_snapshot};
use super::sync::{DEFAULT_PARALLELISM, ensure_schema, target_schema};
use crate::progress::count;
use crate::report::CliError;

/// One text value of `sql` (text protocol), or `None`.
async fn text_value(conn: &mut sqlx::MySqlConnection, sql: &'static str) -> Option<String> {
    use sqlx::Row;
    let rows = sqlx::raw_sql(sql).fetch_all(&mut *conn).await.ok()?;
    rows.first()?
        .try_get_unchecked::<Option<&[u8]>, _>(0)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// `confluo connections test NAME` for a MySQL connection: server version, TLS, binary
/// log settings and whether the user can take the snapshot lock.
pub async fn test(cfg: &MysqlConfig, json: bool) -> CmdResult {
    let name = &cfg.name;
    let started = Instant::now();
    let mut conn = match cfg.connect().await {
        Ok(c) => c,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    json!({"connection": name, "ok": false, "error": e.to_string()})
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("FAIL  connection `{name}` ({})", cfg.addr());
            return Err(e.into());
        }
    };
    let version = text_value(&mut conn, "SELECT VERSION()")
        .await
        .unwrap_or_default();
    let user = text_value(&mut conn, "SELECT CURRENT_USER()")
        .await
        .unwrap_or_default();
    let log_bin = text_value(&mut conn, "SELECT @@log_bin").await.as_deref() == Some("1");
    let format = text_value(&mut conn, "SELECT @@binlog_format")
        .await
        .unwrap_or_default();
    let cipher = text_value(&mut conn, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher'")
        .await
        .unwrap_or_default();
    let grants = {
        use sqlx::Row;
        let rows = sqlx::raw_sql("SHOW GRANTS")
            .fetch_all(&mut conn)
            .await
            .map_err(MysqlError::query(name, "reading the user's grants"))?;
        rows.iter()
            .filter_map(|r| r.try_get_unchecked::<Option<&[u8]>, _>(0).ok().flatten())
            .map(|b| String::from_utf8_lossy(b).to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The same checks `mode: cdc` makes before it starts.
    let capture = confluo_connectors::mysql::cdc::server::check_server(cfg, &mut conn)
        .await
        .map_err(|e| e.to_string());
    let _ = sqlx::Connection::close(conn).await;
    let reload = grants.contains("ALL PRIVILEGES") || grants.contains("RELOAD");
    let tls = !cipher.is_empty();
    let ms = started.elapsed().as_millis();
    if json {
        println!(
            "{}",
            json!({
                "connection": name, "ok": true, "host": cfg.addr(), "database": cfg.database,
                "user": user, "server_version": version, "log_bin": log_bin,
                "binlog_format": format, "reload": reload, "tls": tls, "milliseconds": ms,
                "cdc_ready": capture.is_ok(),
                "cdc_problem": capture.as_ref().err(),
                "binlog_position": capture.as_ref().ok().map(|s| s.position.to_string()),
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "PASS  connection `{name}`: connected to {}/{} as {user} in {ms} ms",
        cfg.addr(),
        cfg.database
    );
    println!("  server version  {version}");
    println!(
        "  TLS             {} (ssl_mode {})",
        if tls { "on" } else { "off" },
        ssl_mode_name(cfg.ssl_mode)
    );
    println!(
        "  binary log      {}",
        if log_bin {
            format!("on, binlog_format {format}")
        } else {
            "off (snapshots carry no binlog position; enable log_bin for change capture)".into()
        }
    );
    println!(
        "  snapshot lock   {}",
        if reload {
            format!("{user} has RELOAD: snapshots are tied exactly to the binlog position")
        } else {
            format!(
                "{user} lacks RELOAD: snapshots read with one connection and the binlog position is approximate (GRANT RELOAD ON *.* TO ...)"
            )
        }
    );
    match &capture {
        Ok(s) => println!(
            "  change capture  ready: row format, full row images, replication privileges; binlog at {}",
            s.position
        ),
        Err(problem) => println!(
            "  change capture  not possible (`mode: cdc` would fail): {}",
            problem.replace('\n', "\n                  ")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// A column's Arrow type as text, or why it has none.
fn arrow_type(cfg: &MysqlConfig, c: &SourceColumn) -> String {
    match (map_type(&c.resolved), cfg.unsupported_types) {
        (Some(m), _) => confluo_lakehouse::delta::type_name(&m.arrow),
        (None, UnsupportedTypes::Text) => "string (as text)".into(),
        (None, UnsupportedTypes::Error) => "unsupported".into(),
    }
}

fn table_json(cfg: &MysqlConfig, t: &SourceTable) -> serde_json::Value {
    let cols: Vec<_> = t
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "ordinal": c.ordinal, "mysql_type": c.mysql_type,
                "charset": c.charset, "arrow_type": arrow_type(cfg, c), "nullable": c.nullable,
            })
        })
        .collect();
    json!({
        "schema": t.id.schema, "name": t.id.name, "kind": "table",
        "row_estimate": t.row_estimate, "primary_key": t.primary_key, "columns": cols,
    })
}

/// `confluo connections discover NAME [--schema DB]` for a MySQL connection. Without
/// `--schema`, the connection's own database.
pub async fn discover_cmd(cfg: &MysqlConfig, schema: Option<&str>, json: bool) -> CmdResult {
    let db = schema.unwrap_or(&cfg.database);
    let filter = TableFilter::schema(cfg, db)?;
    let mut conn = cfg.connect().await?;
    let tables = discover(&mut conn, cfg, &filter).await?;
    let _ = sqlx::Connection::close(conn).await;
    if json {
        let v: Vec<_> = tables.iter().map(|t| table_json(cfg, t)).collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(ExitCode::SUCCESS);
    }
    if tables.is_empty() {
        println!("No tables in database `{db}` that {} can read.", cfg.user);
        return Ok(ExitCode::SUCCESS);
    }
    for t in &tables {
        let rows = match t.row_estimate {
            Some(n) => format!("~{} rows", count(n)),
            None => "rows unknown".into(),
        };
        let pk = if t.primary_key.is_empty() {
            "no primary key".to_string()
        } else {
            format!("primary key ({})", t.primary_key.join(", "))
        };
        println!("{} (table, {rows}, {pk})", t.id);
        let wn = t.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let wt = t
            .columns
            .iter()
            .map(|c| c.mysql_type.len())
            .max()
            .unwrap_or(0);
        for c in &t.columns {
            let key = if t.primary_key.contains(&c.name) {
                "  key"
            } else {
                ""
            };
            println!(
                "  {:wn$}  {:wt$}  -> {}{}{key}",
                c.name,
                c.mysql_type,
                arrow_type(cfg, c),
                if c.nullable { "" } else { "  not null" },
            );
        }
    }
    println!(
        "{} table{}",
        tables.len(),
        if tables.len() == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

/// One lakehouse table written by a MySQL sync.
pub type SyncedTable = super::snapshot_writer::SyncedTable<TableId>;

/// What a MySQL snapshot sync did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// The entry's name.
    pub entry: String,
    /// The source connection.
    pub connection: String,
    /// The binlog position every table was read at.
    pub snapshot: SnapshotInfo,
    /// The tables, in source order.
    pub tables: Vec<SyncedTable>,
    /// Wall time.
    pub seconds: f64,
}

/// Prints a sync's summary.
pub fn print_report(r: &SyncReport) {
    let rows: u64 = r.tables.iter().map(|t| t.rows).sum();
    println!(
        "Synced `{}` from connection `{}`: {} table{}, {} rows in {:.2} s (binlog {}{}{})",
        r.entry,
        r.connection,
        r.tables.len(),
        if r.tables.len() == 1 { "" } else { "s" },
        count(rows),
        r.seconds,
        r.snapshot.position(),
        r.snapshot
            .gtid_set
            .as_ref()
            .map(|g| format!(", GTID {g}"))
            .unwrap_or_default(),
        if r.snapshot.exact {
            ""
        } else {
            ", approximate"
        }
    );
    print_tables(&r.tables, "zero dates, TIME beyond 24 h");
}

/// Copies a consistent snapshot of the entry's MySQL tables into the lakehouse: one table
/// per source table, each replaced in one Delta overwrite commit whose `commitInfo`
/// records `confluo.source` (connection, table, binlog file/position, GTID set, rows).
pub async fn sync_snapshot(
    cfg: &MysqlConfig,
    lh: &Lakehouse,
    entry_name: &str,
    entry: &IngestConfig,
    quiet: bool,
) -> Result<SyncReport, CliError> {
    let started = Instant::now();
    let (catalog, schema) = target_schema(lh, entry_name, &entry.schema)?;
    ensure_schema(lh, &catalog, &schema).await?;
    let mut conn = cfg.connect().await?;
    let tables = resolve_tables(&mut conn, cfg, &entry.tables).await?;
    let _ = sqlx::Connection::close(conn).await;
    // Validate every table's types before touching the lakehouse.
    for t in &tables {
        t.arrow_schema(cfg)?;
    }
    let order: Vec<TableId> = tables.iter().map(|t| t.id.clone()).collect();
    let request = SnapshotRequest {
        tables,
        parallelism: entry.parallelism.unwrap_or(DEFAULT_PARALLELISM).max(1),
    };
    let snap = snapshot(cfg, request).await?;
    let info = snap.info.clone();
    let tables = write_snapshot(
        lh,
        snap,
        &order,
        Landing {
            catalog: &catalog,
            schema: &schema,
            table_name: &|t: &TableId| t.name.clone(),
            comment: &|t: &TableId| format!("{t} from connection `{}` (MySQL)", cfg.name),
            source: &|t| {
                json!({
                    "connection": cfg.name,
                    "type": "mysql",
                    "database": t.table.schema,
                    "table": t.table.to_string(),
                    "entry": entry_name,
                    "server_version": info.server_version,
                    "binlog_file": info.binlog_file,
                    "binlog_position": info.binlog_position,
                    "gtid_set": info.gtid_set,
                    "position_exact": info.exact,
                    "rows": t.rows,
                })
            },
            quiet,
        },
    )
    .await?;
    Ok(SyncReport {
        entry: entry_name.to_string(),
        connection: cfg.name.clone(),
        snapshot: info,
        tables,
        seconds: started.elapsed().as_secs_f64(),
    })
}
