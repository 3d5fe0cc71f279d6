//! The `confluo` subcommands.

pub mod connections;
pub mod demo;
pub mod ingest;
pub mod init;
pub mod jobs;
pub mod monitor;
pub mod pipeline;
pub mod query;
pub mod secrets;
pub mod serve;
pub mod shell;
pub mod sync;
pub mod users;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;

use confluo_core::Project;
use confluo_lakehouse::Lakehouse;

use crate::report::CliError;

/// Options shared by every command.
#[derive(Debug, Clone)]
pub struct Context {
    /// `--project DIR`.
    pub project_dir: Option<PathBuf>,
    /// `--quiet`.
    pub quiet: bool,
}

/// Result of a command.
pub type CmdResult = Result<std::process::ExitCode, CliError>;

impl Context {
    /// The project: `--project DIR`, or found by walking up from the current folder.
    pub fn project(&self) -> Result<Project, CliError> {
        let p = match &self.project_dir {
            Some(dir) => Project::load(dir)?,
            None => Project::discover(&std::env::current_dir()?)?,
        };
        Ok(p)
    }

    /// The project and its opened lakehouse.
    pub async fn lakehouse(&self) -> Result<(Project, Arc<Lakehouse>), CliError> {
        let project = self.project()?;
        let lh = Lakehouse::open(&project).await?;
        Ok((project, Arc::new(lh)))
    }
}
