//! `confluo init [DIR]`: a new project.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use super::{CmdResult, Context};
use confluo_core::project::{PROJECT_FILE, starter_yaml};

/// Arguments of `confluo init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to create the project in (default: the current folder).
    dir: Option<PathBuf>,
    /// Project name (default: the folder's name).
    #[arg(long)]
    name: Option<String>,
}

/// Writes `confluo.yaml` and the lakehouse and state folders.
pub async fn run(_ctx: &Context, args: InitArgs) -> CmdResult {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file = dir.join(PROJECT_FILE);
    if file.exists() {
        return Err(anyhow::anyhow!(
            "{} already exists; this folder is already a Confluo project",
            file.display()
        )
        .into());
    }
    let name = args.name.unwrap_or_else(|| {
        dir.canonicalize()
            .ok()
            .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "confluo_project".into())
    });
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::fs::write(&file, starter_yaml(&name))
        .with_context(|| format!("cannot write {}", file.display()))?;
    std::fs::write(dir.join(".gitignore"), "/lakehouse/\n/.confluo/\n")
        .with_context(|| format!("cannot write {}", dir.join(".gitignore").display()))?;
    println!("Created project {name} in {}", dir.display());
    println!("  next: confluo ingest <files> --into bronze.my_table");
    println!("        confluo query \"SELECT * FROM bronze.my_table LIMIT 10\"");
    Ok(ExitCode::SUCCESS)
}
