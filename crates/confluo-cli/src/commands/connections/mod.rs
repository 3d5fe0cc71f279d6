//! `confluo connections list | test NAME | discover NAME`: the project's connections to
//! external systems.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use confluo_connectors::postgres::config::sslmode_name;
use confluo_connectors::postgres::{
    PostgresConfig, SourceTable, TableFilter, UnsupportedTypes, discover, map_type,
};
use confluo_connectors::registry::{self, Connection};
use confluo_core::Project;
use serde_json::json;
use sqlx::Row;

mod mysql;

use super::{CmdResult, Context};
use crate::report::CliError;

/// Arguments of `confluo connections`.
#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    #[command(subcommand)]
    command: ConnectionsCommand,
}

#[derive(Debug, Subcommand)]
enum ConnectionsCommand {
    /// List the project's connections (never their passwords).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Connect, and print the server version, wal_level and whether the user may replicate.
    Test {
        /// The connection's name in confluo.yaml.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tables with their columns, types (and Arrow types), primary keys and row
    /// estimates.
    Discover {
        /// The connection's name in confluo.yaml.
        name: String,
        /// Only this schema.
        #[arg(long)]
        schema: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `connections` subcommand.
pub async fn run(ctx: &Context, args: ConnectionsArgs) -> CmdResult {
    let project = ctx.project()?;
    match args.command {
        ConnectionsCommand::List { json } => list(&project, json),
        ConnectionsCommand::Test { name, json } => test(&project, &name, json).await,
        ConnectionsCommand::Discover { name, schema, json } => {
            discover_cmd(&project, &name, schema.as_deref(), json).await
        }
    }
}

/// The connection `name` of the project, parsed by its connector.
fn connection(project: &Project, name: &str) -> Result<Connection, CliError> {
    Ok(registry::named(&project.config.connections, name)?)
}

/// `connections test` for a stream connection: what the server says, or why it cannot.
async fn test_stream(conn: &Connection, name: &str, json: bool) -> CmdResult {
    match conn.test_stream().await.expect("a stream connection") {
        Ok(v) => {
            if json {
                println!("{}", serde_json::json!({"ok": true, "server": v}));
            } else {
                println!("Connection `{name}` ({}): ok", conn.kind());
                if let Some(m) = v.as_object() {
                    for (k, v) in m {
                        if !v.is_null() && k != "connection" {
                            println!(
                                "  {k}: {}",
                                v.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| v.to_string())
                            );
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    json!({"connection": name, "ok": false, "error": e.to_string()})
                );
                return Ok(ExitCode::FAILURE);
            }
            Err(anyhow::anyhow!(e).into())
        }
    }
}

fn option_text(v: Option<&serde_yaml_ng::Value>) -> String {
    match v {
        Some(serde_yaml_ng::Value::String(s)) => s.clone(),
        Some(serde_yaml_ng::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn list(project: &Project, json: bool) -> CmdResult {
    let rows: Vec<(String, String, String, String)> = project
        .config
        .connections
        .iter()
        .map(|(name, c)| {
            let host = option_text(c.options.get("host"));
            let port = option_text(c.options.get("port"));
            let addr = match (host.is_empty(), port.is_empty()) {
                (true, _) => String::new(),
                (false, true) => host,
                (false, false) => format!("{host}:{port}"),
            };
            (
                name.clone(),
                c.kind.clone(),
                addr,
                option_text(c.options.get("database")),
            )
        })
        .collect();
    if json {
        let v: Vec<_> = rows
            .iter()
            .map(|(n, t, h, d)| json!({"name": n, "type": t, "host": h, "database": d}))
            .collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No connections in confluo.yaml (add them under `connections:`).");
        return Ok(ExitCode::SUCCESS);
    }
    let width = |title: &str, col: usize| {
        rows.iter()
            .map(|r| [&r.0, &r.1, &r.2][col].len())
            .max()
            .unwrap_or(0)
            .max(title.len())
    };
    let (wn, wt, wh) = (width("NAME", 0), width("TYPE", 1), width("HOST", 2));
    println!("{:wn$}  {:wt$}  {:wh$}  DATABASE", "NAME", "TYPE", "HOST");
    for (n, t, h, d) in &rows {
        println!("{n:wn$}  {t:wt$}  {h:wh$}  {d}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn test(project: &Project, name: &str, json: bool) -> CmdResult {
    let cfg = match connection(project, name)? {
        Connection::Postgres(cfg) => cfg,
        Connection::Mysql(cfg) => return mysql::test(&cfg, json).await,
        stream => return test_stream(&stream, name, json).await,
    };
    let started = std::time::Instant::now();
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
    let row = sqlx::query(
        "SELECT current_setting('server_version') AS version,
                current_setting('wal_level') AS wal_level,
                coalesce((SELECT rolreplication OR rolsuper FROM pg_roles
                          WHERE rolname = current_user), false) AS replication,
                current_user::text AS usr,
                coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()), false) AS tls",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(confluo_connectors::postgres::PostgresError::query(
        name,
        "reading server settings",
    ))?;
    let _ = sqlx::Connection::close(conn).await;
    let version: String = row.get("version");
    let wal_level: String = row.get("wal_level");
    let replication: bool = row.get("replication");
    let user: String = row.get("usr");
    let tls: bool = row.get("tls");
    let ms = started.elapsed().as_millis();
    if json {
        println!(
            "{}",
            json!({
                "connection": name, "ok": true, "host": cfg.addr(), "database": cfg.database,
                "user": user, "server_version": version, "wal_level": wal_level,
                "replication": replication, "tls": tls, "milliseconds": ms,
            })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "PASS  connection `{name}`: connected to {}/{} as {user} in {ms} ms",
        cfg.addr(),
        cfg.database
    );
    println!("  server version  PostgreSQL {version}");
    println!(
        "  TLS             {} (sslmode {})",
        if tls { "on" } else { "off" },
        sslmode_name(cfg.sslmode)
    );
    println!(
        "  wal_level       {wal_level}{}",
        if wal_level == "logical" {
            ""
        } else {
            "  (change capture needs wal_level = logical: ALTER SYSTEM SET wal_level = logical, then restart)"
        }
    );
    println!(
        "  replication     {}",
        if replication {
            format!("{user} may replicate")
        } else {
            format!(
                "{user} may not replicate (change capture needs ALTER ROLE {user} WITH REPLICATION)"
            )
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// A column's Arrow type as text, or why it has none.
fn arrow_type(cfg: &PostgresConfig, c: &confluo_connectors::postgres::SourceColumn) -> String {
    match (map_type(&c.resolved), cfg.unsupported_types) {
        (Some(m), _) => confluo_lakehouse::delta::type_name(&m.arrow),
        (None, UnsupportedTypes::Text) => "string (as text)".into(),
        (None, UnsupportedTypes::Error) => "unsupported".into(),
    }
}

fn table_json(cfg: &PostgresConfig, t: &SourceTable) -> serde_json::Value {
    let cols: Vec<_> = t
        .columns
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "ordinal": c.ordinal, "pg_type": c.pg_type,
                "arrow_type": arrow_type(cfg, c), "nullable": c.nullable,
            })
        })
        .collect();
    json!({
        "schema": t.id.schema, "name": t.id.name, "kind": t.kind,
        "row_estimate": t.row_estimate, "primary_key": t.primary_key,
        "replica_identity": t.replica_identity, "columns": cols,
    })
}

async fn discover_cmd(
    project: &Project,
    name: &str,
    schema: Option<&str>,
    json: bool,
) -> CmdResult {
    let cfg = match connection(project, name)? {
        Connection::Postgres(cfg) => cfg,
        Connection::Mysql(cfg) => return mysql::discover_cmd(&cfg, schema, json).await,
        other => {
            return Err(anyhow::anyhow!(
                "connection `{name}` is a {} stream; discover lists database tables\n  hint: `confluo connections test {name}` shows what the server holds",
                other.kind()
            )
            .into());
        }
    };
    let filter = match schema {
        Some(s) => TableFilter::schema(name, s)?,
        None => TableFilter::all(),
    };
    let mut conn = cfg.connect().await?;
    let tables = discover(&mut conn, &cfg, &filter).await?;
    let _ = sqlx::Connection::close(conn).await;
    if json {
        let v: Vec<_> = tables.iter().map(|t| table_json(&cfg, t)).collect();
        println!("{}", serde_json::Value::Array(v));
        return Ok(ExitCode::SUCCESS);
    }
    if tables.is_empty() {
        println!(
            "No tables{} in database `{}` that {} can read.",
            schema
                .map(|s| format!(" in schema `{s}`"))
                .unwrap_or_default(),
            cfg.database,
            cfg.user
        );
        return Ok(ExitCode::SUCCESS);
    }
    for t in &tables {
        let rows = match t.row_estimate {
            Some(n) => format!("~{} rows", crate::progress::count(n)),
            None => "rows unknown (not analyzed)".into(),
        };
        let pk = if t.primary_key.is_empty() {
            "no primary key".to_string()
        } else {
            format!("primary key ({})", t.primary_key.join(", "))
        };
        let kind = serde_json::to_value(t.kind)
            .ok()
            .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
            .unwrap_or_default();
        println!("{} ({kind}, {rows}, {pk})", t.id);
        let wn = t.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let wt = t.columns.iter().map(|c| c.pg_type.len()).max().unwrap_or(0);
        for c in &t.columns {
            let key = if t.primary_key.contains(&c.name) {
                "  key"
            } else {
                ""
            };
            println!(
                "  {:wn$}  {:wt$}  -> {}{}{key}",
                c.name,
                c.pg_type,
                arrow_type(&cfg, c),
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
