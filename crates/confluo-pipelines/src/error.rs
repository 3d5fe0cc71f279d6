//! Pipeline errors: every one a user can cause names the file, line and column.

use std::path::PathBuf;

use confluo_lakehouse::LakehouseError;
use confluo_sql::SqlError;
use datafusion::error::DataFusionError;

/// A place in a pipeline source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// The SQL file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// What went wrong in a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A problem in the definitions, found before any data moves.
    #[error("{pos}: {message}")]
    At {
        /// Where.
        pos: Pos,
        /// What.
        message: String,
    },
    /// A problem with the pipeline's configuration (no files, unknown pipeline).
    #[error("{0}")]
    Config(String),
    /// An expectation with `ON VIOLATION FAIL UPDATE` failed.
    #[error(
        "expectation `{expectation}` failed on {dataset}: {failed} row(s) violate `{condition}`; first failing row: {row}"
    )]
    ExpectationFailed {
        /// The dataset being updated.
        dataset: String,
        /// The expectation's name.
        expectation: String,
        /// Its condition.
        condition: String,
        /// How many rows failed in the batch.
        failed: u64,
        /// One failing row, as JSON.
        row: String,
    },
    /// A dataset was not updated because one it reads failed.
    #[error("skipped: upstream {0} failed")]
    UpstreamFailed(String),
    /// SQL planning or execution.
    #[error(transparent)]
    Sql(Box<SqlError>),
    /// Tables and the metastore.
    #[error(transparent)]
    Lakehouse(Box<LakehouseError>),
    /// Query execution.
    #[error("{}", confluo_sql::error::clean_datafusion(.0))]
    DataFusion(Box<DataFusionError>),
    /// Batch manipulation.
    #[error(transparent)]
    Arrow(Box<datafusion::arrow::error::ArrowError>),
    /// I/O on pipeline files.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl PipelineError {
    /// An error at a position.
    pub fn at(pos: Pos, message: impl Into<String>) -> Self {
        PipelineError::At {
            pos,
            message: message.into(),
        }
    }

    /// The position, when the error has one.
    pub fn pos(&self) -> Option<&Pos> {
        match self {
            PipelineError::At { pos, .. } => Some(pos),
            _ => None,
        }
    }
}

impl From<SqlError> for PipelineError {
    fn from(e: SqlError) -> Self {
        PipelineError::Sql(Box::new(e))
    }
}

impl From<LakehouseError> for PipelineError {
    fn from(e: LakehouseError) -> Self {
        PipelineError::Lakehouse(Box::new(e))
    }
}

impl From<DataFusionError> for PipelineError {
    fn from(e: DataFusionError) -> Self {
        PipelineError::DataFusion(Box::new(e))
    }
}

impl From<datafusion::arrow::error::ArrowError> for PipelineError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        PipelineError::Arrow(Box::new(e))
    }
}

/// Results of this crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
