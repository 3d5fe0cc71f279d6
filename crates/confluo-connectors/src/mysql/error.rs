//! Errors of the MySQL connector. Each names the connection (and the host, table or
//! column where it applies) and says what to check.

/// Result with a [`MysqlError`].
pub type Result<T, E = MysqlError> = std::result::Result<T, E>;

/// What can go wrong talking to MySQL or MariaDB.
#[derive(Debug, thiserror::Error)]
pub enum MysqlError {
    /// A setting of the connection in `confluo.yaml` is missing or wrong.
    #[error("connection `{connection}`: `{key}`: {message}")]
    Config {
        /// The connection's name in `confluo.yaml`.
        connection: String,
        /// The key at fault.
        key: String,
        /// What is wrong, with a hint.
        message: String,
    },
    /// A key the connector does not know (often a typo).
    #[error("connection `{connection}`: unknown key `{key}`{hint}")]
    UnknownKey {
        /// The connection's name.
        connection: String,
        /// The key as written.
        key: String,
        /// "did you mean" hint, or the list of valid keys.
        hint: String,
    },
    /// The server could not be reached or refused the login.
    #[error("connection `{connection}` ({addr}): {message}\n  hint: {hint}")]
    Connect {
        /// The connection's name.
        connection: String,
        /// `host:port`.
        addr: String,
        /// What happened.
        message: String,
        /// What to check.
        hint: String,
    },
    /// A statement failed on an open connection.
    #[error("connection `{connection}`: {context}: {source}")]
    Query {
        /// The connection's name.
        connection: String,
        /// What Confluo was doing (e.g. "reading shop.orders").
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A column whose type has no Arrow mapping, with `unsupported_types: error`.
    #[error(
        "connection `{connection}`: column {table}.{column} has type {mysql_type}, which Confluo cannot map to Arrow\n  hint: set `unsupported_types: text` on the connection to read it as text, or leave the table out"
    )]
    UnsupportedType {
        /// The connection's name.
        connection: String,
        /// `database.table`.
        table: String,
        /// The column.
        column: String,
        /// The column type as declared (`COLUMN_TYPE`).
        mysql_type: String,
    },
    /// Table patterns that match no table of the source.
    #[error("connection `{connection}`: no table matches {patterns}{hint}")]
    NoTables {
        /// The connection's name.
        connection: String,
        /// The patterns as written.
        patterns: String,
        /// Suggestions.
        hint: String,
    },
    /// A value that cannot be decoded into its Arrow column.
    #[error("connection `{connection}`: {table}.{column}: {message}")]
    Decode {
        /// The connection's name.
        connection: String,
        /// `database.table`.
        table: String,
        /// The column (or `(row)` for framing errors).
        column: String,
        /// What is wrong.
        message: String,
    },
    /// The snapshot was stopped because its consumer went away or a worker failed.
    #[error("snapshot of connection `{connection}` stopped: {message}")]
    Cancelled {
        /// The connection's name.
        connection: String,
        /// Why.
        message: String,
    },
}

impl MysqlError {
    /// Whether the error is a lost or refused connection (network, server restart) that a
    /// retry can get past; a refused login is not.
    pub fn is_transient(&self) -> bool {
        match self {
            MysqlError::Connect { message, .. } => {
                !message.to_ascii_lowercase().contains("access denied")
            }
            MysqlError::Query { source, .. } => matches!(
                source,
                sqlx::Error::Io(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed
            ),
            _ => false,
        }
    }

    /// A `map_err` adapter for driver errors while doing `context` on `connection`.
    pub fn query(
        connection: &str,
        context: impl Into<String>,
    ) -> impl FnOnce(sqlx::Error) -> MysqlError {
        let connection = connection.to_string();
        let context = context.into();
        move |source| MysqlError::Query {
            connection,
            context,
            source,
        }
    }
}
