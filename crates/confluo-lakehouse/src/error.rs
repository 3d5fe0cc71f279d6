//! Errors of the lakehouse crate.

use crate::metastore::ObjectKind;

/// Result with a [`LakehouseError`].
pub type Result<T, E = LakehouseError> = std::result::Result<T, E>;

/// What can go wrong in storage, Delta tables and the metastore.
#[derive(Debug, thiserror::Error)]
pub enum LakehouseError {
    /// A catalog, schema or table that does not exist.
    #[error(
        "{kind} {name} does not exist{}",
        confluo_core::suggest::hint(suggestions)
    )]
    NotFound {
        /// What kind of object.
        kind: ObjectKind,
        /// Its full name.
        name: String,
        /// Close names that do exist.
        suggestions: Vec<String>,
    },
    /// Creating something that is already there.
    #[error("{kind} {name} already exists")]
    AlreadyExists {
        /// What kind of object.
        kind: ObjectKind,
        /// Its full name.
        name: String,
    },
    /// The metastore database failed.
    #[error("metastore: {context}: {source}")]
    Metastore {
        /// What was being done.
        context: String,
        /// The database error.
        #[source]
        source: sqlx::Error,
    },
    /// A Delta table operation failed.
    #[error("Delta table {table}: {source}")]
    Delta {
        /// The table (name or location).
        table: String,
        /// The delta-rs error.
        #[source]
        source: deltalake::DeltaTableError,
    },
    /// Object storage failed.
    #[error("storage {location}: {source}")]
    Storage {
        /// The URL or path.
        location: String,
        /// The object-store error.
        #[source]
        source: object_store::Error,
    },
    /// Local file-system error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Data does not fit a table's schema.
    #[error("{0}")]
    Schema(String),
    /// Arrow failed while shaping data.
    #[error("{context}: {source}")]
    Arrow {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: arrow::error::ArrowError,
    },
    /// The request is not valid (bad option, bad version, ...).
    #[error("{0}")]
    Invalid(String),
    /// Reading the source files failed.
    #[error(transparent)]
    Files(#[from] confluo_connectors::files::FilesError),
    /// A core error (project, names).
    #[error(transparent)]
    Core(#[from] confluo_core::Error),
    /// A query feeding a write failed.
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

impl LakehouseError {
    /// Wraps a delta-rs error with the table it concerns.
    pub fn delta(table: impl std::fmt::Display) -> impl FnOnce(deltalake::DeltaTableError) -> Self {
        let table = table.to_string();
        move |source| LakehouseError::Delta { table, source }
    }

    /// Wraps an object-store error with its location.
    pub fn storage(location: impl std::fmt::Display) -> impl FnOnce(object_store::Error) -> Self {
        let location = location.to_string();
        move |source| LakehouseError::Storage { location, source }
    }
}
