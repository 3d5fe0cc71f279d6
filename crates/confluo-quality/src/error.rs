//! Errors of monitoring.

use thiserror::Error;

/// What can go wrong while checking tables. The wrapped errors are boxed: they are large, and
/// most results here carry a configuration error or nothing.
#[derive(Debug, Error)]
pub enum QualityError {
    /// `monitors:` in confluo.yaml is wrong: where, and what.
    #[error("{0}")]
    Config(String),
    /// The lakehouse (metastore, Delta tables) failed.
    #[error(transparent)]
    Lakehouse(Box<confluo_lakehouse::LakehouseError>),
    /// A query failed.
    #[error(transparent)]
    Sql(Box<confluo_sql::SqlError>),
    /// DataFusion failed while reading results.
    #[error(transparent)]
    DataFusion(Box<datafusion::error::DataFusionError>),
    /// Arrow failed while building results.
    #[error(transparent)]
    Arrow(Box<arrow::error::ArrowError>),
}

macro_rules! boxed_from {
    ($variant:ident, $ty:ty) => {
        impl From<$ty> for QualityError {
            fn from(e: $ty) -> Self {
                QualityError::$variant(Box::new(e))
            }
        }
    };
}

boxed_from!(Lakehouse, confluo_lakehouse::LakehouseError);
boxed_from!(Sql, confluo_sql::SqlError);
boxed_from!(DataFusion, datafusion::error::DataFusionError);
boxed_from!(Arrow, arrow::error::ArrowError);

/// A result of monitoring.
pub type Result<T> = std::result::Result<T, QualityError>;
