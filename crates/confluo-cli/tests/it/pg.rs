//! A PostgreSQL database of one test's own on the machine's server (127.0.0.1:5432, trust
//! auth), dropped with its replication slots when the test ends.

use sqlx::{Connection, PgConnection};

use crate::common::TestProject;

pub(crate) const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database `confluo_t_<random>` for one test.
pub(crate) struct PgDb {
    pub(crate) name: String,
    pub(crate) rt: tokio::runtime::Runtime,
}

impl PgDb {
    pub(crate) fn new() -> Self {
        let name = format!("confluo_t_{}", uuid::Uuid::new_v4().simple());
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut c = PgConnection::connect(ADMIN).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await
                .unwrap();
        });
        PgDb { name, rt }
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.name)
    }

    /// Runs SQL statements (simple protocol: several per call, one implicit transaction).
    pub(crate) fn exec(&self, sql: &str) {
        self.rt.block_on(async {
            let mut c = PgConnection::connect(&self.url()).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// One text value.
    pub(crate) fn scalar(&self, sql: &str) -> String {
        self.rt.block_on(async {
            let mut c = PgConnection::connect(&self.url()).await.unwrap();
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_one(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// The text of each row of `sql`, whose one column is text.
    pub(crate) fn text_rows(&self, sql: &str) -> Vec<String> {
        self.rt.block_on(async {
            let mut c = PgConnection::connect(&self.url()).await.unwrap();
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_string()))
                .fetch_all(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            rows.into_iter().map(|(s,)| s).collect()
        })
    }

    /// The `connections:` entry `pg` for this database, plus `extra` keys.
    pub(crate) fn connection(&self, extra: &str) -> String {
        format!(
            "connections:\n  pg:\n    type: postgres\n    host: 127.0.0.1\n    port: 5432\n    database: {}\n    user: postgres\n    password: ${{env:CONFLUO_T_PGPASS}}\n    sslmode: disable\n{extra}",
            self.name
        )
    }

    /// A project with connection `pg` and ingest entry `e` syncing `tables` into `bronze`.
    pub(crate) fn project(&self, conn_extra: &str, tables: &str, entry_extra: &str) -> TestProject {
        TestProject::with_config(&format!(
            "{}ingest:\n  e:\n    connection: pg\n    tables: {tables}\n    schema: bronze\n{entry_extra}",
            self.connection(conn_extra)
        ))
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        self.rt.block_on(async {
            if let Ok(mut c) = PgConnection::connect(ADMIN).await {
                for sql in [
                    format!("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '{name}'"),
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ] {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            }
        });
    }
}
