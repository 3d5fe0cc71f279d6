//! Errors of SQL statements, with where in the text they point.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::tokenizer::Location;

use crate::parser::ParseError;

/// Result with a [`SqlError`].
pub type Result<T, E = SqlError> = std::result::Result<T, E>;

/// What can go wrong running SQL.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The text is not valid SQL.
    #[error("syntax error: {}", .0.message)]
    Parse(ParseError),
    /// The statement is valid SQL but cannot be planned (unknown table or column, types).
    #[error("{message}")]
    Plan {
        /// What is wrong, with hints.
        message: String,
        /// Where in the text, when known.
        location: Option<Location>,
    },
    /// The lakehouse refused (missing table, storage, metastore).
    #[error(transparent)]
    Lakehouse(Box<confluo_lakehouse::LakehouseError>),
    /// Reading files failed.
    #[error(transparent)]
    Files(Box<confluo_connectors::files::FilesError>),
    /// Execution failed.
    #[error("{}", clean_datafusion(.0))]
    DataFusion(DataFusionError),
}

impl SqlError {
    /// Where in the statement text the error points, if known.
    pub fn location(&self) -> Option<Location> {
        match self {
            SqlError::Parse(e) => e.location,
            SqlError::Plan { location, .. } => *location,
            SqlError::DataFusion(e) => diagnostic_location(e),
            _ => None,
        }
    }

    /// A planning error at a place.
    pub fn plan(message: impl Into<String>, location: Option<Location>) -> Self {
        SqlError::Plan {
            message: message.into(),
            location,
        }
    }
}

impl From<confluo_lakehouse::LakehouseError> for SqlError {
    fn from(e: confluo_lakehouse::LakehouseError) -> Self {
        SqlError::Lakehouse(Box::new(e))
    }
}

impl From<confluo_connectors::files::FilesError> for SqlError {
    fn from(e: confluo_connectors::files::FilesError) -> Self {
        SqlError::Files(Box::new(e))
    }
}

impl From<DataFusionError> for SqlError {
    fn from(e: DataFusionError) -> Self {
        // Errors from our own layers travel through DataFusion as External: unwrap them.
        let e = match e {
            DataFusionError::External(inner) => {
                match inner.downcast::<confluo_lakehouse::LakehouseError>() {
                    Ok(l) => return SqlError::Lakehouse(l),
                    Err(inner) => match inner.downcast::<confluo_connectors::files::FilesError>() {
                        Ok(f) => return SqlError::Files(f),
                        Err(inner) => DataFusionError::External(inner),
                    },
                }
            }
            DataFusionError::Context(ctx, inner) => match *inner {
                DataFusionError::External(_) => return SqlError::from(*inner),
                other => DataFusionError::Context(ctx, Box::new(other)),
            },
            other => other,
        };
        SqlError::DataFusion(e)
    }
}

/// Where DataFusion's diagnostic for an error points, if anywhere.
pub fn diagnostic_location(e: &DataFusionError) -> Option<Location> {
    e.diagnostic()
        .and_then(|d| d.span)
        .map(|s| Location {
            line: s.start.line,
            column: s.start.column,
        })
        .filter(|l| l.line > 0)
}

impl From<datafusion::arrow::error::ArrowError> for SqlError {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        SqlError::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }
}

/// DataFusion's message without its internal category prefixes.
pub fn clean_datafusion(e: &DataFusionError) -> String {
    let mut s = e.to_string();
    for prefix in [
        "Error during planning: ",
        "Schema error: ",
        "Execution error: ",
        "External error: ",
        "Arrow error: ",
        "Optimizer rule 'optimize_projections' failed\ncaused by\n",
    ] {
        while let Some(i) = s.find(prefix) {
            s.replace_range(i..i + prefix.len(), "");
        }
    }
    s
}
