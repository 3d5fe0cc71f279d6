//! Errors of the PostgreSQL connector. Each names the connection (and the host, table or
//! column where it applies) and says what to check.

/// Result with a [`PostgresError`].
pub type Result<T, E = PostgresError> = std::result::Result<T, E>;

/// What can go wrong talking to PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
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
        /// What Confluo was doing (e.g. "reading public.orders").
        context: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A column whose type has no Arrow mapping, with `unsupported_types: error`.
    #[error(
        "connection `{connection}`: column {table}.{column} has type {pg_type}, which Confluo cannot map to Arrow\n  hint: set `unsupported_types: text` on the connection to read it as text, or leave the table out"
    )]
    UnsupportedType {
        /// The connection's name.
        connection: String,
        /// `schema.table`.
        table: String,
        /// The column.
        column: String,
        /// The PostgreSQL type as declared.
        pg_type: String,
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
    /// A value in the COPY stream that cannot be decoded into its Arrow column.
    #[error("connection `{connection}`: {table}.{column}: {message}")]
    Decode {
        /// The connection's name.
        connection: String,
        /// `schema.table`.
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

impl PostgresError {
    /// A `map_err` adapter for driver errors while doing `context` on `connection`.
    pub fn query(
        connection: &str,
        context: impl Into<String>,
    ) -> impl FnOnce(sqlx::Error) -> PostgresError {
        let connection = connection.to_string();
        let context = context.into();
        move |source| PostgresError::Query {
            connection,
            context,
            source,
        }
    }
}
