//! `confluo connections test|discover` for `type: mysql` connections (MySQL and MariaDB).

use std::process::ExitCode;
use std::time::Instant;

use confluo_connectors::mysql::config::ssl_mode_name;
use confluo_connectors::mysql::{
    MysqlConfig, MysqlError, SourceColumn, SourceTable, TableFilter, UnsupportedTypes, discover,
    map_type,
};
use serde_json::json;

use crate::commands::CmdResult;
use crate::progress::count;

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
