//! `confluo verify CONNECTION.SCHEMA.TABLE LAKEHOUSE_TABLE`: compares a source table
//! (PostgreSQL, MySQL or MariaDB) with a lakehouse table — row counts, checksums per key
//! range, then the differing keys.

use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use confluo_connectors::registry::Connection;
use confluo_pipelines::managed::verify::{Difference, SourceConfig, VerifyRequest, verify};

use super::{CmdResult, Context};
use crate::progress::count;

/// Arguments of `confluo verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The source table: `connection.schema.table` (or `connection.table` for `public`); for
    /// MySQL `connection.database.table` (or `connection.table` in the connection's database).
    pub source: String,
    /// The lakehouse table (1, 2 or 3 parts).
    pub target: String,
    /// Key ranges of the first checksum pass.
    #[arg(long, default_value_t = 64)]
    pub ranges: usize,
    /// List at most this many differing keys.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `confluo verify`; exit status 1 when the tables differ.
pub async fn run(ctx: &Context, args: VerifyArgs) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let (conn_name, table) = args.source.split_once('.').ok_or_else(|| {
        anyhow!(
            "`{}` does not name a source table\n  hint: write CONNECTION.SCHEMA.TABLE, e.g. shop.public.orders",
            args.source
        )
    })?;
    let conn = project.config.connections.get(conn_name).ok_or_else(|| {
        let names: Vec<&str> = project
            .config
            .connections
            .keys()
            .map(String::as_str)
            .collect();
        anyhow!(
            "no connection `{conn_name}` in confluo.yaml{}",
            confluo_core::suggest::hint(&confluo_core::suggest::nearest(
                conn_name,
                names.iter().copied()
            ))
        )
    })?;
    let parsed = confluo_connectors::registry::connection(conn_name, conn)?;
    let (source, source_table) = match &parsed {
        // Without a database, the table is in the connection's (as in `tables:`).
        Connection::Mysql(my) => (SourceConfig::Mysql(my), table.to_string()),
        Connection::Postgres(pg) => {
            let table = if table.contains('.') {
                table.to_string()
            } else {
                format!("public.{table}")
            };
            (SourceConfig::Postgres(pg), table)
        }
        other => {
            return Err(anyhow!(
                "connection `{conn_name}` is of type `{}`; verify compares database tables (postgres, mysql)",
                other.kind()
            )
            .into());
        }
    };
    let target = lh.resolve(&args.target)?;
    let report = verify(
        &lh,
        VerifyRequest {
            source,
            source_table,
            target,
            ranges: args.ranges,
            max_differences: args.limit,
        },
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.equal {
        println!(
            "equal: {} and {} hold the same {} rows ({} columns, {} key ranges checked in {:.2} s)",
            report.source,
            report.target,
            count(report.source_rows),
            report.columns.len(),
            report.ranges,
            report.seconds
        );
    } else {
        println!(
            "different: {} has {} rows, {} has {} rows",
            report.source,
            count(report.source_rows),
            report.target,
            count(report.target_rows)
        );
        for d in &report.differences {
            match d {
                Difference::MissingInTarget { key } => {
                    println!("  key {key}: missing in {}", report.target)
                }
                Difference::ExtraInTarget { key } => {
                    println!("  key {key}: in {} but not in the source", report.target)
                }
                Difference::Changed { key, columns } => {
                    let cols: Vec<String> = columns
                        .iter()
                        .map(|(c, s, t)| format!("{c}: source {s}, lakehouse {t}"))
                        .collect();
                    println!("  key {key}: differs ({})", cols.join("; "));
                }
            }
        }
        if report.truncated {
            println!("  … more differences (raise --limit to list them)");
        }
    }
    Ok(if report.equal {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
