//! Errors of the files connector. Each names the file, option or column at fault.

/// Result with a [`FilesError`].
pub type Result<T, E = FilesError> = std::result::Result<T, E>;

/// What can go wrong reading files.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// Nothing matched the path or glob.
    #[error("no files found at {path}{hint}")]
    NoFiles {
        /// The path or glob as given.
        path: String,
        /// Extra guidance.
        hint: String,
    },
    /// A path that does not exist.
    #[error("{path}: no such file or folder")]
    NotFound {
        /// The path.
        path: String,
    },
    /// A file or folder that cannot be read.
    #[error("{path}: {message}")]
    Unreadable {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
    /// A bad `read_files` / `ingest` option.
    #[error("option `{option}`: {message}")]
    BadOption {
        /// The option as spelt.
        option: String,
        /// What is wrong.
        message: String,
    },
    /// A column whose type in a file cannot be reconciled with the target.
    #[error(
        "{file}: column `{column}` has type {found} here but {expected} in the {target}; the types are not compatible\n  hint: cast it in a query, pass schemaHints, or ingest into a new table"
    )]
    IncompatibleType {
        /// The file.
        file: String,
        /// The column.
        column: String,
        /// The type in the file.
        found: String,
        /// The type expected.
        expected: String,
        /// "table schema" or "schema inferred from earlier files".
        target: String,
    },
    /// A file whose content cannot be decoded at all (e.g. a corrupt Parquet footer).
    #[error("{file}: {message}")]
    Corrupt {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A bad value when rescue is off (mode FAILFAST).
    #[error("{file}:{line}: column `{column}`: cannot read `{value}` as {expected}")]
    BadValue {
        /// The file.
        file: String,
        /// 1-based line.
        line: u64,
        /// Column.
        column: String,
        /// The text.
        value: String,
        /// Expected type.
        expected: String,
    },
    /// Writing the decoded rows failed (the sink's error).
    #[error("{0}")]
    Sink(String),
    /// The read was cancelled.
    #[error("cancelled")]
    Cancelled,
}
