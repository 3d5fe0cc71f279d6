//! Cross-system agreement: a number computed in the lakehouse against the same number
//! computed in the source system (the customer count in the CRM's database and in the
//! lakehouse), read through the project's connections.

use confluo_connectors::registry::Connection;
use confluo_core::project::ConnectionConfig;
use confluo_sql::SqlSession;

use crate::checks::{CheckResult, errored, lakehouse_number, measured};
use crate::spec::Check;

/// Runs `query` on the source behind connection `name` and returns its one number.
pub async fn source_number(
    name: &str,
    config: &ConnectionConfig,
    query: &str,
) -> Result<f64, String> {
    let connection =
        confluo_connectors::registry::connection(name, config).map_err(|e| e.to_string())?;
    let failed = |e: sqlx::Error| format!("connection `{name}`: the query failed: {e}");
    let value: Option<f64> = match connection {
        Connection::Postgres(pg) => {
            let mut conn = pg.connect().await.map_err(|e| e.to_string())?;
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(({query}) AS DOUBLE PRECISION)"
            )))
            .fetch_one(&mut conn)
            .await
            .map_err(failed)?
        }
        Connection::Mysql(my) => {
            let mut conn = my.connect().await.map_err(|e| e.to_string())?;
            let v = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT CAST(({query}) AS DOUBLE)"
            )))
            .fetch_one(&mut conn)
            .await
            .map_err(failed);
            use sqlx::Connection as _;
            let _ = conn.close().await;
            v?
        }
        other => {
            return Err(format!(
                "connection `{name}` is of type `{}`; compare reads databases (postgres, mysql)",
                other.kind()
            ));
        }
    };
    value.ok_or_else(|| format!("connection `{name}`: the query returned NULL"))
}

/// The lakehouse's number minus the source's.
pub async fn compare(
    session: &SqlSession,
    check: &Check,
    query: &str,
    name: &str,
    config: Option<&ConnectionConfig>,
    source_query: &str,
) -> CheckResult {
    let Some(config) = config else {
        return errored(
            check,
            format!("no connection `{name}` in confluo.yaml's `connections:`"),
        );
    };
    let here = match lakehouse_number(session, query).await {
        Ok(v) => v,
        Err(e) => return errored(check, format!("lakehouse query: {e}")),
    };
    let there = match source_number(name, config, source_query).await {
        Ok(v) => v,
        Err(e) => return errored(check, e),
    };
    let mut r = measured(check, String::new(), here - there, None, None);
    r.message = format!(
        "lakehouse {here} against {there} in `{name}` (difference {})",
        here - there
    );
    r
}
