//! Managed ingestion: `ingest:` entries of `confluo.yaml` that keep one lakehouse table per
//! source table in sync without any SQL — a consistent snapshot, then the source's change
//! stream applied exactly once.

pub mod capture;
pub mod changes_feed;
pub mod mysql_cdc;
pub mod mysql_feed;
pub mod postgres_cdc;
pub mod runner;
pub mod state;
pub mod verify;

/// What can go wrong keeping tables in sync.
#[derive(Debug, thiserror::Error)]
pub enum ManagedError {
    /// Capturing changes failed.
    #[error(transparent)]
    Cdc(Box<confluo_connectors::postgres::cdc::CdcError>),
    /// Talking to PostgreSQL failed.
    #[error(transparent)]
    Postgres(Box<confluo_connectors::postgres::error::PostgresError>),
    /// Capturing changes from MySQL / MariaDB failed.
    #[error(transparent)]
    MysqlCdc(Box<confluo_connectors::mysql::cdc::MysqlCdcError>),
    /// Talking to MySQL / MariaDB failed.
    #[error(transparent)]
    Mysql(Box<confluo_connectors::mysql::MysqlError>),
    /// Writing the lakehouse failed.
    #[error(transparent)]
    Lakehouse(Box<confluo_lakehouse::LakehouseError>),
    /// The entry's state file could not be read or written.
    #[error("{path}: {message}")]
    State {
        /// The state file.
        path: String,
        /// What happened.
        message: String,
    },
    /// A source failed (definite or transient: the runner retries only transient ones).
    #[error(transparent)]
    Source(#[from] confluo_core::source::SourceError),
    /// A change could not be turned into rows of its table.
    #[error("{table}: {message}")]
    Convert {
        /// The source table.
        table: String,
        /// What is wrong.
        message: String,
    },
}

impl From<confluo_connectors::postgres::cdc::CdcError> for ManagedError {
    fn from(e: confluo_connectors::postgres::cdc::CdcError) -> Self {
        ManagedError::Cdc(Box::new(e))
    }
}

impl From<confluo_connectors::postgres::error::PostgresError> for ManagedError {
    fn from(e: confluo_connectors::postgres::error::PostgresError) -> Self {
        ManagedError::Postgres(Box::new(e))
    }
}

impl From<confluo_connectors::mysql::cdc::MysqlCdcError> for ManagedError {
    fn from(e: confluo_connectors::mysql::cdc::MysqlCdcError) -> Self {
        ManagedError::MysqlCdc(Box::new(e))
    }
}

impl From<confluo_connectors::mysql::MysqlError> for ManagedError {
    fn from(e: confluo_connectors::mysql::MysqlError) -> Self {
        ManagedError::Mysql(Box::new(e))
    }
}

impl From<confluo_lakehouse::LakehouseError> for ManagedError {
    fn from(e: confluo_lakehouse::LakehouseError) -> Self {
        ManagedError::Lakehouse(Box::new(e))
    }
}

impl From<datafusion::error::DataFusionError> for ManagedError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        ManagedError::Lakehouse(Box::new(e.into()))
    }
}

/// Result with a [`ManagedError`].
pub type Result<T, E = ManagedError> = std::result::Result<T, E>;
