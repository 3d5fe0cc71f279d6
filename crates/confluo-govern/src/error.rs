//! Errors of governance.

use thiserror::Error;

/// Result with a [`GovernError`].
pub type Result<T, E = GovernError> = std::result::Result<T, E>;

/// What can go wrong managing principals or judging a login.
#[derive(Debug, Error)]
pub enum GovernError {
    /// A name or password does not meet the rules: which, and why.
    #[error("{0}")]
    Invalid(String),
    /// The principal does not exist.
    #[error("no user or service principal named `{0}` (see `confluo users list`)")]
    NotFound(String),
    /// Hashing failed (a bug or an exhausted system RNG).
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The metastore failed.
    #[error(transparent)]
    Lakehouse(Box<confluo_lakehouse::LakehouseError>),
}

impl From<confluo_lakehouse::LakehouseError> for GovernError {
    fn from(e: confluo_lakehouse::LakehouseError) -> Self {
        GovernError::Lakehouse(Box::new(e))
    }
}
