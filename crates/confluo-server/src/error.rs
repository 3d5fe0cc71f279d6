//! Errors of the server.

use thiserror::Error;

/// Result with a [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// What can stop an endpoint from starting.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The address cannot be listened on.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or key cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The metastore failed.
    #[error(transparent)]
    Govern(#[from] confluo_govern::GovernError),
}
