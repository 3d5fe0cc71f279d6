//! The core error type. Errors a user can cause carry what went wrong, where, and a hint.

use std::path::PathBuf;

/// Result with Confluo's core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors raised by the core crate: project files, identifiers and configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `confluo.yaml` was found walking up from a folder.
    #[error(
        "no Confluo project found in {start} or any parent folder\n  hint: run `confluo init` to create one, or pass --project DIR"
    )]
    ProjectNotFound {
        /// The folder the search started from.
        start: PathBuf,
    },
    /// The project file exists but cannot be read or parsed.
    #[error("{path}{location}: {message}")]
    ProjectFile {
        /// Path of the project file.
        path: PathBuf,
        /// `:line:col` when known, else empty.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A name that is not a valid identifier or qualified table name.
    #[error("invalid name `{name}`: {reason}")]
    InvalidName {
        /// The text as written.
        name: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A configuration value is wrong.
    #[error("invalid configuration `{key}`: {message}")]
    Config {
        /// The option or key at fault.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// An I/O error on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
