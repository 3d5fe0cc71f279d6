//! Managed ingestion: `ingest:` entries of `confluo.yaml` that keep one lakehouse table per
//! source table in sync without any SQL — a consistent snapshot, then the source's change
//! stream applied exactly once.

use confluo_lakehouse::Lakehouse;

pub mod capture;
pub mod changes_feed;
pub mod copy;
pub mod mysql_cdc;
pub mod mysql_feed;
pub mod postgres_cdc;
pub mod runner;
pub mod snapshot;
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
    /// The entry's state could not be read or written.
    #[error("{path}: {message}")]
    State {
        /// Where the state is (the metastore, or a legacy state file).
        path: String,
        /// What happened.
        message: String,
    },
    /// A source failed (definite or transient: the runner retries only transient ones).
    #[error(transparent)]
    Source(#[from] confluo_core::source::SourceError),
    /// An ingest entry's settings are wrong.
    #[error("ingest entry `{entry}`: {message}")]
    Entry {
        /// The entry.
        entry: String,
        /// What is wrong.
        message: String,
    },
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

/// The entry's target `(catalog, schema)` from its `schema:` (`schema` or
/// `catalog.schema`; the lakehouse's default catalog when it names none).
pub fn target_schema(lh: &Lakehouse, entry: &str, text: &str) -> Result<(String, String)> {
    let invalid = |message: String| ManagedError::Entry {
        entry: entry.to_string(),
        message,
    };
    let parts = confluo_core::ident::split_parts(text)
        .map_err(|e| invalid(format!("`schema: {text}` is not a schema name: {e}")))?;
    match parts.as_slice() {
        [s] => Ok((lh.default_catalog().to_string(), s.as_str().to_string())),
        [c, s] => Ok((c.as_str().to_string(), s.as_str().to_string())),
        _ => Err(invalid(format!(
            "`schema: {text}` has too many parts; write `schema` or `catalog.schema`"
        ))),
    }
}

/// Creates the target schema when its catalog exists and it does not; fails when the
/// catalog is missing.
pub async fn ensure_schema(lh: &Lakehouse, catalog: &str, schema: &str) -> Result<()> {
    let ms = lh.metastore();
    if ms.get_catalog(catalog).await?.is_some() && ms.get_schema(catalog, schema).await?.is_none() {
        let owner = confluo_lakehouse::lakehouse::current_user();
        ms.create_schema(catalog, schema, None, Some(&owner), true)
            .await?;
    }
    lh.require_schema(catalog, schema).await?;
    Ok(())
}

/// Result with a [`ManagedError`].
pub type Result<T, E = ManagedError> = std::result::Result<T, E>;
