//! `confluo query "SQL"`: run SQL, print the result.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{CmdResult, Context};
use crate::render::{OutputFormat, write_stream};
use crate::report::CliError;
use confluo_sql::{SqlOutput, SqlSession};

/// Arguments of `confluo query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL: one statement or several separated by `;` (`-` reads standard input).
    sql: String,
    /// table (default on a terminal), csv (default otherwise), json, jsonl or parquet.
    #[arg(long, short, value_enum)]
    format: Option<OutputFormat>,
    /// Write the result here instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

/// Runs each statement in turn, printing every result.
pub async fn run(ctx: &Context, args: QueryArgs) -> CmdResult {
    let sql = if args.sql == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        args.sql.clone()
    };
    let (_project, lh) = ctx.lakehouse().await?;
    let session = SqlSession::new(lh)
        .await
        .map_err(|e| CliError::sql(e, &sql, "query"))?;
    // A job's task runs as the job's service principal (checked by the scheduler).
    if let Ok(name) = std::env::var(confluo_jobs::RUN_AS_ENV) {
        session.set_principal(&name);
    }
    let format = args.format.unwrap_or(
        if args.output.is_none() && std::io::stdout().is_terminal() {
            OutputFormat::Table
        } else if let Some(p) = &args.output {
            match p.extension().and_then(|e| e.to_str()) {
                Some("parquet") => OutputFormat::Parquet,
                Some("json") => OutputFormat::Json,
                Some("jsonl" | "ndjson") => OutputFormat::Jsonl,
                Some("txt") => OutputFormat::Table,
                _ => OutputFormat::Csv,
            }
        } else {
            OutputFormat::Csv
        },
    );
    run_sql(&session, &sql, "query", format, args.output.as_deref()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a script, printing each statement's output; errors point into `sql`.
pub async fn run_sql(
    session: &SqlSession,
    sql: &str,
    label: &str,
    format: OutputFormat,
    output: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let parsed = session
        .parse(sql)
        .map_err(|e| CliError::sql(e, sql, label))?;
    for p in parsed {
        match session
            .execute(p.statement)
            .await
            .map_err(|e| CliError::sql(e, sql, label))?
        {
            SqlOutput::Rows(stream) => {
                write_stream(stream, format, output).await.map_err(|e| {
                    match e.downcast::<datafusion::error::DataFusionError>() {
                        Ok(df) => CliError::sql(session.explain_error(df), sql, label),
                        Err(other) => CliError::from(other),
                    }
                })?;
            }
            SqlOutput::Message(m) => {
                if !m.is_empty() {
                    eprintln!("{m}");
                }
            }
        }
        for n in session.notices() {
            eprintln!("note: {n}");
        }
    }
    Ok(())
}
