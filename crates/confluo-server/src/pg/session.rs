//! A connection's SQL session: a Confluo session over the lakehouse, opened after login,
//! with `pg_catalog` and the Postgres session functions installed, as the user who logged
//! in and in the catalog the client named as its database.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use pgwire::api::ClientInfo;
use pgwire::error::PgWireResult;

use confluo_sql::SqlSession;
use std::time::Instant;

use crate::metrics::{Metrics, QueryTimer};

use super::Shared;
use super::auth::{ENDPOINT, fatal};

/// One connection's session.
pub(crate) struct ConnSession {
    /// The SQL session.
    pub sql: SqlSession,
    /// Who is logged in.
    pub user: String,
    metrics: Arc<Metrics>,
    /// When the statement being answered arrived.
    started: std::sync::Mutex<Instant>,
}

impl ConnSession {
    /// A statement arrived.
    pub fn begin_statement(&self) {
        *self.started.lock().expect("statement clock") = Instant::now();
    }

    /// Counts the rows of the statement being answered, as they are sent.
    pub fn timer(&self) -> QueryTimer {
        QueryTimer::new(
            self.metrics.clone(),
            ENDPOINT,
            *self.started.lock().expect("statement clock"),
        )
    }

    /// Counts a statement that sent no rows (a failure, a command); row results count
    /// themselves through their [`QueryTimer`].
    pub fn finished(&self, result: &PgWireResult<pgwire::api::results::Response>) {
        if matches!(result, Ok(pgwire::api::results::Response::Query(_))) {
            return;
        }
        let mut t = self.timer();
        if result.is_err() {
            t.outcome("error");
        }
    }
}

/// Opens the session of a logged-in client.
pub(crate) async fn open<C: ClientInfo + Sync + ?Sized>(
    shared: &Shared,
    client: &C,
) -> PgWireResult<Arc<ConnSession>> {
    let user = client
        .metadata()
        .get(pgwire::api::METADATA_USER)
        .cloned()
        .unwrap_or_default();
    let database = client
        .metadata()
        .get(pgwire::api::METADATA_DATABASE)
        .cloned();
    let sql = SqlSession::new(shared.lakehouse.clone())
        .await
        .map_err(|e| fatal("XX000", format!("cannot open a session: {e}")))?;
    sql.set_principal(&user);
    let (default_catalog, default_schema) = sql.current();
    // The database a client names is a catalog; clients that send their user name or
    // `postgres` (psql's and drivers' defaults) get the project's default catalog.
    if let Some(db) = database.filter(|d| !d.is_empty() && *d != user && d != "postgres") {
        // The session read the catalog names when it opened: no second trip to the metastore.
        let catalogs = sql.context().catalog_names();
        if !catalogs.contains(&db) {
            return Err(fatal(
                "3D000",
                format!(
                    "database \"{db}\" does not exist: a database is a catalog here ({})",
                    catalogs.join(", ")
                ),
            ));
        }
        if db != default_catalog {
            sql.set_current(&db, &default_schema);
        }
    }
    // libpq's `options` (`-c search_path=sales`): the settings a client asks for at start.
    if let Some(options) = client.metadata().get("options") {
        for (key, value) in startup_settings(options) {
            if key == "search_path" {
                let schema = first_schema(&value);
                let (catalog, _) = sql.current();
                if !has_schema(&sql, &catalog, schema) {
                    return Err(fatal(
                        "3F000",
                        format!("schema \"{schema}\" does not exist in catalog {catalog}"),
                    ));
                }
                sql.set_current(&catalog, schema);
            }
        }
    }
    let (catalog, _) = sql.current();
    datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
        sql.context(),
        &catalog,
        EmptyContextProvider,
    )
    .map_err(|e| fatal("XX000", format!("cannot set up pg_catalog: {e}")))?;
    for name in ["current_user", "session_user", "user", "current_role"] {
        sql.context().register_udf(constant_text(name, &user));
    }
    sql.context().register_udf(constant_text(
        "version",
        &format!(
            "PostgreSQL 16.0 (Confluo {}, Apache DataFusion over Delta Lake)",
            env!("CARGO_PKG_VERSION")
        ),
    ));
    Ok(Arc::new(ConnSession {
        sql,
        user,
        metrics: shared.metrics.clone(),
        started: std::sync::Mutex::new(Instant::now()),
    }))
}

/// The first schema of a `search_path` value (`sales, public` → `sales`).
pub(crate) fn first_schema(search_path: &str) -> &str {
    search_path
        .split(',')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
}

/// Whether `catalog` has `schema`, by the names the session read at its last refresh.
pub(crate) fn has_schema(sql: &SqlSession, catalog: &str, schema: &str) -> bool {
    sql.context()
        .catalog(catalog)
        .is_some_and(|c| c.schema_names().iter().any(|s| s == schema))
}

/// `key=value` pairs of libpq's `options` (`-c a=b -c c=d`, `--a=b`).
fn startup_settings(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words.next()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest)
        } else {
            w.strip_prefix("--")
        };
        if let Some((k, v)) = setting.and_then(|s| s.split_once('=')) {
            out.push((k.replace('-', "_").to_lowercase(), v.to_string()));
        }
    }
    out
}

/// A function of no arguments returning `value` (the session's user, the version).
fn constant_text(name: &str, value: &str) -> datafusion::logical_expr::ScalarUDF {
    let value = value.to_string();
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_args: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                value.clone(),
            ))))
        }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn startup_options_are_read() {
        assert_eq!(
            super::startup_settings("-c search_path=bench --statement-timeout=5s -cTimeZone=UTC"),
            vec![
                ("search_path".to_string(), "bench".to_string()),
                ("statement_timeout".to_string(), "5s".to_string()),
                ("timezone".to_string(), "UTC".to_string()),
            ]
        );
    }
}
