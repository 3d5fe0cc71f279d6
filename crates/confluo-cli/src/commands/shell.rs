//! `confluo sql`: an interactive shell with history.

use std::process::ExitCode;

use clap::Args;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::{CmdResult, Context};
use crate::render::OutputFormat;
use crate::report::print_error;
use confluo_sql::SqlSession;

/// Arguments of `confluo sql`.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// Output format of results.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

const HELP: &str = "Statements end with `;`. Commands: \\q or exit to leave, \\h for this help.
Try: SHOW TABLES;  DESCRIBE HISTORY t;  SELECT * FROM read_files('data/*.csv') LIMIT 5;";

/// Reads statements until `;`, runs them, prints results; history is kept in the state folder.
pub async fn run(ctx: &Context, args: ShellArgs) -> CmdResult {
    let (project, lh) = ctx.lakehouse().await?;
    let session = SqlSession::new(lh).await.map_err(|e| anyhow::anyhow!(e))?;
    let history = project.state_dir().join("sql_history");
    let mut rl =
        DefaultEditor::new().map_err(|e| anyhow::anyhow!("cannot start the line editor: {e}"))?;
    let _ = rl.load_history(&history);
    eprintln!(
        "Confluo SQL shell — project {}. {HELP}",
        project.config.name
    );
    let mut buffer = String::new();
    loop {
        let (c, s) = session.current();
        let prompt = if buffer.is_empty() {
            format!("{c}.{s}> ")
        } else {
            "    ...> ".to_string()
        };
        match rl.readline(&prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() {
                    match trimmed {
                        "" => continue,
                        "\\q" | "exit" | "quit" | "exit;" | "quit;" => break,
                        "\\h" | "help" | "\\?" => {
                            eprintln!("{HELP}");
                            continue;
                        }
                        _ => {}
                    }
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if !trimmed.ends_with(';') {
                    continue;
                }
                let sql = std::mem::take(&mut buffer);
                let _ = rl.add_history_entry(sql.trim());
                if let Err(e) =
                    super::query::run_sql(&session, &sql, "sql", args.format, None).await
                {
                    print_error(&e);
                }
            }
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(anyhow::anyhow!("input error: {e}").into()),
        }
    }
    let _ = std::fs::create_dir_all(project.state_dir());
    let _ = rl.save_history(&history);
    Ok(ExitCode::SUCCESS)
}
