//! The metastore: catalogs, schemas and tables, through sqlx.
//!
//! SQLite in the project's state folder by default (embedded, nothing to set up), or
//! PostgreSQL when several workers share state. One set of portable migrations serves both;
//! every statement uses `$n` placeholders, which both drivers accept.

mod federation;
mod job_definitions;
mod job_triggers;
mod jobs;
mod models;
mod principals;
mod quality;
mod sources;
mod tokens;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlStr};

pub use federation::{ConnectionInfo, ForeignCatalogInfo, StoredSecret, ViewInfo};
pub use job_triggers::{CursorMove, PlannedRun, TriggerState};
pub use jobs::{JobRun, TaskAttempt};
pub use models::{CatalogInfo, IngestedFile, SchemaInfo, TableInfo};
pub use principals::{AuthEvent, Principal};
pub use quality::CheckState;
pub use sources::SourceOffset;
pub use tokens::AccessToken;

use crate::error::{LakehouseError, Result};
use confluo_core::TableName;

/// Kinds of metastore object, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A catalog.
    Catalog,
    /// A schema.
    Schema,
    /// A table.
    Table,
    /// A view.
    View,
    /// A connection to an external database.
    Connection,
    /// A catalog mirroring an external database.
    ForeignCatalog,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Catalog => "catalog",
            ObjectKind::Schema => "schema",
            ObjectKind::Table => "table",
            ObjectKind::View => "view",
            ObjectKind::Connection => "connection",
            ObjectKind::ForeignCatalog => "foreign catalog",
        })
    }
}

/// A connection pool to the metastore database.
#[derive(Debug, Clone)]
pub struct Metastore {
    pool: AnyPool,
    url: String,
}

fn migrator() -> Migrator {
    Migrator::with_migrations(vec![
        Migration::new(
            1,
            Cow::Borrowed("catalog"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0001_catalog.sql")),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("pipelines"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0002_pipelines.sql")),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("sources"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0003_sources.sql")),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("ingest_state"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0004_ingest_state.sql")),
            false,
        ),
        Migration::new(
            5,
            Cow::Borrowed("jobs"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0005_jobs.sql")),
            false,
        ),
        Migration::new(
            6,
            Cow::Borrowed("job_triggers"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0006_job_triggers.sql")),
            false,
        ),
        Migration::new(
            7,
            Cow::Borrowed("quality"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0007_quality.sql")),
            false,
        ),
        Migration::new(
            8,
            Cow::Borrowed("principals"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0008_principals.sql")),
            false,
        ),
        Migration::new(
            9,
            Cow::Borrowed("tokens"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0009_tokens.sql")),
            false,
        ),
        Migration::new(
            10,
            Cow::Borrowed("federation"),
            MigrationType::Simple,
            SqlStr::from_static(include_str!("migrations/0010_federation.sql")),
            false,
        ),
    ])
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Metastore {
    /// Connects to the metastore at `url` and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let redacted = redact(url);
        if let Some(path) = sqlite_path(url)
            && let Some(parent) = Path::new(&path).parent()
        {
            std::fs::create_dir_all(parent).map_err(|e| LakehouseError::Io {
                path: parent.display().to_string(),
                source: e,
            })?;
        }
        let options = AnyConnectOptions::from_str(url).map_err(|e| LakehouseError::Metastore {
            context: format!("invalid metastore URL {redacted}"),
            source: e,
        })?;
        let is_sqlite = url.starts_with("sqlite:");
        // One direct connection first: a wrong host, port or password fails at once with
        // the server's own message instead of after the pool's retries.
        {
            use sqlx::Connection;
            let conn = sqlx::AnyConnection::connect_with(&options)
                .await
                .map_err(|e| LakehouseError::Metastore {
                    context: format!("cannot connect to the metastore at {redacted}"),
                    source: e,
                })?;
            let _ = conn.close().await;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if is_sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if is_sqlite {
                        // WAL lets readers work while a writer commits; the busy timeout makes
                        // concurrent confluo processes wait for each other instead of failing.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 30000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| LakehouseError::Metastore {
                context: format!("cannot connect to the metastore at {redacted}"),
                source: e,
            })?;
        // Two confluo processes opening a new SQLite metastore at once would both create its
        // tables (PostgreSQL migrations already take an advisory lock): one migrates while
        // the other waits on a lock file beside the database.
        let _migration_lock = match sqlite_path(url) {
            Some(path) => {
                let lock_path = format!("{path}.migrate.lock");
                let file = std::fs::File::create(&lock_path).map_err(|e| LakehouseError::Io {
                    path: lock_path.clone(),
                    source: e,
                })?;
                let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
                    .await
                    .map_err(|e| LakehouseError::Invalid(format!("metastore lock: {e}")))?
                    .map_err(|e| LakehouseError::Io {
                        path: lock_path,
                        source: e,
                    })?;
                Some(file)
            }
            None => None,
        };
        migrator()
            .run(&pool)
            .await
            .map_err(|e| LakehouseError::Metastore {
                context: format!("cannot migrate the metastore at {redacted}"),
                source: e.into(),
            })?;
        Ok(Metastore {
            pool,
            url: redacted,
        })
    }

    /// The metastore URL with any password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn err(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> LakehouseError {
        let context = context.into();
        move |source| LakehouseError::Metastore { context, source }
    }

    // ---- catalogs ----

    /// Creates a catalog. Returns false when it already existed and `if_not_exists` is set.
    pub async fn create_catalog(
        &self,
        name: &str,
        comment: Option<&str>,
        owner: Option<&str>,
        if_not_exists: bool,
    ) -> Result<bool> {
        if self.get_catalog(name).await?.is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(LakehouseError::AlreadyExists {
                    kind: ObjectKind::Catalog,
                    name: name.to_string(),
                })
            };
        }
        let now = now_ms();
        let res = sqlx::query(
            "INSERT INTO catalogs (name, owner, comment, properties, created_at, updated_at) VALUES ($1, $2, $3, '{}', $4, $4)",
        )
        .bind(name)
        .bind(owner)
        .bind(comment)
        .bind(now)
        .execute(&self.pool)
        .await;
        self.map_insert(res, ObjectKind::Catalog, name, if_not_exists)
    }

    pub(crate) fn map_insert(
        &self,
        res: std::result::Result<sqlx::any::AnyQueryResult, sqlx::Error>,
        kind: ObjectKind,
        name: &str,
        if_not_exists: bool,
    ) -> Result<bool> {
        match res {
            Ok(_) => Ok(true),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                if if_not_exists {
                    Ok(false)
                } else {
                    Err(LakehouseError::AlreadyExists {
                        kind,
                        name: name.to_string(),
                    })
                }
            }
            Err(e) => Err(LakehouseError::Metastore {
                context: format!("cannot create {kind} {name}"),
                source: e,
            }),
        }
    }

    /// Looks a catalog up by its normalised name.
    pub async fn get_catalog(&self, name: &str) -> Result<Option<CatalogInfo>> {
        let row = sqlx::query("SELECT name, owner, comment, properties, created_at, updated_at FROM catalogs WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err(format!("cannot read catalog {name}")))?;
        row.map(|r| CatalogInfo::from_row(&r)).transpose()
    }

    /// All catalogs, by name.
    pub async fn list_catalogs(&self) -> Result<Vec<CatalogInfo>> {
        let rows = sqlx::query("SELECT name, owner, comment, properties, created_at, updated_at FROM catalogs ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err("cannot list catalogs"))?;
        rows.iter().map(CatalogInfo::from_row).collect()
    }

    /// Drops an empty catalog (or, with `cascade`, its schemas; tables must be dropped first
    /// by the caller, which owns their storage).
    pub async fn drop_catalog(&self, name: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        sqlx::query("DELETE FROM views WHERE catalog_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(Self::err(format!("cannot drop views of catalog {name}")))?;
        sqlx::query("DELETE FROM schemas WHERE catalog_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(Self::err(format!("cannot drop catalog {name}")))?;
        let res = sqlx::query("DELETE FROM catalogs WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(Self::err(format!("cannot drop catalog {name}")))?;
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(res.rows_affected() > 0)
    }

    // ---- schemas ----

    /// Creates a schema in an existing catalog.
    pub async fn create_schema(
        &self,
        catalog: &str,
        name: &str,
        comment: Option<&str>,
        owner: Option<&str>,
        if_not_exists: bool,
    ) -> Result<bool> {
        let full = format!("{catalog}.{name}");
        if self.get_catalog(catalog).await?.is_none() {
            return Err(LakehouseError::NotFound {
                kind: ObjectKind::Catalog,
                name: catalog.to_string(),
                suggestions: vec![],
            });
        }
        if self.get_schema(catalog, name).await?.is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(LakehouseError::AlreadyExists {
                    kind: ObjectKind::Schema,
                    name: full,
                })
            };
        }
        let now = now_ms();
        let res = sqlx::query(
            "INSERT INTO schemas (catalog_name, name, owner, comment, properties, created_at, updated_at) VALUES ($1, $2, $3, $4, '{}', $5, $5)",
        )
        .bind(catalog)
        .bind(name)
        .bind(owner)
        .bind(comment)
        .bind(now)
        .execute(&self.pool)
        .await;
        self.map_insert(res, ObjectKind::Schema, &full, if_not_exists)
    }

    /// Looks a schema up.
    pub async fn get_schema(&self, catalog: &str, name: &str) -> Result<Option<SchemaInfo>> {
        let row = sqlx::query("SELECT catalog_name, name, owner, comment, properties, created_at, updated_at FROM schemas WHERE catalog_name = $1 AND name = $2")
            .bind(catalog)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err(format!("cannot read schema {catalog}.{name}")))?;
        row.map(|r| SchemaInfo::from_row(&r)).transpose()
    }

    /// Schemas of one catalog, or of all catalogs.
    pub async fn list_schemas(&self, catalog: Option<&str>) -> Result<Vec<SchemaInfo>> {
        let q = match catalog {
            Some(c) => sqlx::query("SELECT catalog_name, name, owner, comment, properties, created_at, updated_at FROM schemas WHERE catalog_name = $1 ORDER BY catalog_name, name").bind(c.to_string()),
            None => sqlx::query("SELECT catalog_name, name, owner, comment, properties, created_at, updated_at FROM schemas ORDER BY catalog_name, name"),
        };
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err("cannot list schemas"))?;
        rows.iter().map(SchemaInfo::from_row).collect()
    }

    /// Removes a schema's record (its tables must be gone).
    pub async fn drop_schema(&self, catalog: &str, name: &str) -> Result<bool> {
        sqlx::query("DELETE FROM views WHERE catalog_name = $1 AND schema_name = $2")
            .bind(catalog)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(Self::err(format!("cannot drop views of {catalog}.{name}")))?;
        let res = sqlx::query("DELETE FROM schemas WHERE catalog_name = $1 AND name = $2")
            .bind(catalog)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(Self::err(format!("cannot drop schema {catalog}.{name}")))?;
        Ok(res.rows_affected() > 0)
    }

    // ---- tables ----

    /// Records a new table.
    pub async fn create_table(&self, table: &TableInfo) -> Result<()> {
        let res = sqlx::query(
            "INSERT INTO tables (id, catalog_name, schema_name, name, location, format, managed, owner, comment, properties, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&table.id)
        .bind(table.name.catalog.as_str())
        .bind(table.name.schema.as_str())
        .bind(table.name.table.as_str())
        .bind(&table.location)
        .bind(&table.format)
        .bind(i64::from(table.managed))
        .bind(table.owner.as_deref())
        .bind(table.comment.as_deref())
        .bind(serde_json::to_string(&table.properties).unwrap_or_else(|_| "{}".into()))
        .bind(table.created_at)
        .bind(table.updated_at)
        .execute(&self.pool)
        .await;
        self.map_insert(res, ObjectKind::Table, &table.name.to_string(), false)
            .map(|_| ())
    }

    /// Looks a table up by its full name.
    pub async fn get_table(&self, name: &TableName) -> Result<Option<TableInfo>> {
        let row = sqlx::query(GET_TABLE)
            .bind(name.catalog.as_str())
            .bind(name.schema.as_str())
            .bind(name.table.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err(format!("cannot read table {name}")))?;
        row.map(|r| TableInfo::from_row(&r)).transpose()
    }

    /// Tables of one schema, of one catalog, or all tables.
    pub async fn list_tables(
        &self,
        catalog: Option<&str>,
        schema: Option<&str>,
    ) -> Result<Vec<TableInfo>> {
        let rows = match (catalog, schema) {
            (Some(c), Some(s)) => {
                sqlx::query(LIST_TABLES_IN_SCHEMA)
                    .bind(c.to_string())
                    .bind(s.to_string())
                    .fetch_all(&self.pool)
                    .await
            }
            (Some(c), None) => {
                sqlx::query(LIST_TABLES_IN_CATALOG)
                    .bind(c.to_string())
                    .fetch_all(&self.pool)
                    .await
            }
            _ => sqlx::query(LIST_ALL_TABLES).fetch_all(&self.pool).await,
        }
        .map_err(Self::err("cannot list tables"))?;
        rows.iter().map(TableInfo::from_row).collect()
    }

    /// Removes a table's record, returning it.
    pub async fn drop_table(&self, name: &TableName) -> Result<Option<TableInfo>> {
        let Some(info) = self.get_table(name).await? else {
            return Ok(None);
        };
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        sqlx::query("DELETE FROM tables WHERE id = $1")
            .bind(&info.id)
            .execute(&mut *tx)
            .await
            .map_err(Self::err(format!("cannot drop table {name}")))?;
        sqlx::query("DELETE FROM ingested_files WHERE table_id = $1")
            .bind(&info.id)
            .execute(&mut *tx)
            .await
            .map_err(Self::err(format!("cannot drop table {name}")))?;
        sqlx::query("DELETE FROM ingest_index WHERE table_id = $1")
            .bind(&info.id)
            .execute(&mut *tx)
            .await
            .map_err(Self::err(format!("cannot drop table {name}")))?;
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(Some(info))
    }

    /// Sets or clears a table's comment.
    pub async fn set_table_comment(&self, name: &TableName, comment: Option<&str>) -> Result<()> {
        let res = sqlx::query("UPDATE tables SET comment = $1, updated_at = $2 WHERE catalog_name = $3 AND schema_name = $4 AND name = $5")
            .bind(comment)
            .bind(now_ms())
            .bind(name.catalog.as_str())
            .bind(name.schema.as_str())
            .bind(name.table.as_str())
            .execute(&self.pool)
            .await
            .map_err(Self::err(format!("cannot comment on {name}")))?;
        self.expect_one(res.rows_affected(), name)
    }

    /// Replaces a table's properties.
    pub async fn set_table_properties(
        &self,
        name: &TableName,
        properties: &BTreeMap<String, String>,
    ) -> Result<()> {
        let res = sqlx::query("UPDATE tables SET properties = $1, updated_at = $2 WHERE catalog_name = $3 AND schema_name = $4 AND name = $5")
            .bind(serde_json::to_string(properties).unwrap_or_else(|_| "{}".into()))
            .bind(now_ms())
            .bind(name.catalog.as_str())
            .bind(name.schema.as_str())
            .bind(name.table.as_str())
            .execute(&self.pool)
            .await
            .map_err(Self::err(format!("cannot set properties of {name}")))?;
        self.expect_one(res.rows_affected(), name)
    }

    /// Marks a table as updated now (after a write).
    pub async fn touch_table(&self, name: &TableName) -> Result<()> {
        sqlx::query("UPDATE tables SET updated_at = $1 WHERE catalog_name = $2 AND schema_name = $3 AND name = $4")
            .bind(now_ms())
            .bind(name.catalog.as_str())
            .bind(name.schema.as_str())
            .bind(name.table.as_str())
            .execute(&self.pool)
            .await
            .map_err(Self::err(format!("cannot update {name}")))?;
        Ok(())
    }

    fn expect_one(&self, affected: u64, name: &TableName) -> Result<()> {
        if affected == 0 {
            Err(LakehouseError::NotFound {
                kind: ObjectKind::Table,
                name: name.to_string(),
                suggestions: vec![],
            })
        } else {
            Ok(())
        }
    }

    // ---- ingest index ----

    /// The last Delta version whose ingest records are in the index.
    pub async fn indexed_version(&self, table_id: &str) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT indexed_version FROM ingest_index WHERE table_id = $1")
            .bind(table_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err("cannot read the ingest index"))?;
        Ok(row.map(|r| r.get::<i64, _>(0)))
    }

    /// Files ingested into a table, by path.
    pub async fn ingested_files(&self, table_id: &str) -> Result<HashMap<String, IngestedFile>> {
        let rows = sqlx::query(
            "SELECT path, size, modified_ms, delta_version FROM ingested_files WHERE table_id = $1",
        )
        .bind(table_id)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read ingested files"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let f = IngestedFile {
                    path: r.get(0),
                    size: r.get(1),
                    modified_ms: r.get(2),
                    delta_version: r.get(3),
                };
                (f.path.clone(), f)
            })
            .collect())
    }

    /// Adds the files of one Delta commit to the index. An overwrite first forgets every
    /// earlier file; `version` becomes the indexed version.
    pub async fn record_ingest(
        &self,
        table_id: &str,
        version: i64,
        overwrite: bool,
        files: &[IngestedFile],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        if overwrite {
            sqlx::query("DELETE FROM ingested_files WHERE table_id = $1")
                .bind(table_id)
                .execute(&mut *tx)
                .await
                .map_err(Self::err("cannot update ingested files"))?;
        }
        for f in files {
            sqlx::query("DELETE FROM ingested_files WHERE table_id = $1 AND path = $2")
                .bind(table_id)
                .bind(&f.path)
                .execute(&mut *tx)
                .await
                .map_err(Self::err("cannot update ingested files"))?;
            sqlx::query("INSERT INTO ingested_files (table_id, path, size, modified_ms, delta_version) VALUES ($1, $2, $3, $4, $5)")
                .bind(table_id)
                .bind(&f.path)
                .bind(f.size)
                .bind(f.modified_ms)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(Self::err("cannot update ingested files"))?;
        }
        self.set_indexed_version_in(&mut tx, table_id, version)
            .await?;
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(())
    }

    /// Advances the indexed version past commits that ingested nothing.
    pub async fn set_indexed_version(&self, table_id: &str, version: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        self.set_indexed_version_in(&mut tx, table_id, version)
            .await?;
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(())
    }

    // ---- pipeline flow progress ----

    /// How far a flow has read each streaming source.
    pub async fn flow_offsets(&self, flow_key: &str) -> Result<HashMap<String, i64>> {
        let rows = sqlx::query("SELECT source, value FROM flow_offsets WHERE flow_key = $1")
            .bind(flow_key)
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err("cannot read flow offsets"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
            .collect())
    }

    /// Records a flow's offsets.
    pub async fn set_flow_offsets(&self, flow_key: &str, offsets: &[(String, i64)]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        for (source, value) in offsets {
            sqlx::query("DELETE FROM flow_offsets WHERE flow_key = $1 AND source = $2")
                .bind(flow_key)
                .bind(source)
                .execute(&mut *tx)
                .await
                .map_err(Self::err("cannot update flow offsets"))?;
            sqlx::query("INSERT INTO flow_offsets (flow_key, source, value) VALUES ($1, $2, $3)")
                .bind(flow_key)
                .bind(source)
                .bind(*value)
                .execute(&mut *tx)
                .await
                .map_err(Self::err("cannot update flow offsets"))?;
        }
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(())
    }

    /// Forgets the progress of every flow whose key starts with `prefix` (a full refresh).
    pub async fn clear_flows(&self, prefix: &str) -> Result<()> {
        let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
        for sql in [
            "DELETE FROM flow_offsets WHERE flow_key LIKE $1 ESCAPE '\\'",
            "DELETE FROM ingested_files WHERE table_id LIKE $1 ESCAPE '\\'",
        ] {
            sqlx::query(sql)
                .bind(&pattern)
                .execute(&self.pool)
                .await
                .map_err(Self::err("cannot reset flow progress"))?;
        }
        Ok(())
    }

    /// Forgets every ingested file of a table (after a non-ingest overwrite or a restore).
    pub async fn clear_ingested(&self, table_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM ingested_files WHERE table_id = $1")
            .bind(table_id)
            .execute(&self.pool)
            .await
            .map_err(Self::err("cannot update ingested files"))?;
        Ok(())
    }

    async fn set_indexed_version_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        table_id: &str,
        version: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM ingest_index WHERE table_id = $1")
            .bind(table_id)
            .execute(&mut **tx)
            .await
            .map_err(Self::err("cannot update the ingest index"))?;
        sqlx::query("INSERT INTO ingest_index (table_id, indexed_version) VALUES ($1, $2)")
            .bind(table_id)
            .bind(version)
            .execute(&mut **tx)
            .await
            .map_err(Self::err("cannot update the ingest index"))?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const GET_TABLE: &str = "SELECT id, catalog_name, schema_name, name, location, format, managed, owner, comment, properties, created_at, updated_at FROM tables WHERE catalog_name = $1 AND schema_name = $2 AND name = $3";
const LIST_TABLES_IN_SCHEMA: &str = "SELECT id, catalog_name, schema_name, name, location, format, managed, owner, comment, properties, created_at, updated_at FROM tables WHERE catalog_name = $1 AND schema_name = $2 ORDER BY catalog_name, schema_name, name";
const LIST_TABLES_IN_CATALOG: &str = "SELECT id, catalog_name, schema_name, name, location, format, managed, owner, comment, properties, created_at, updated_at FROM tables WHERE catalog_name = $1 ORDER BY catalog_name, schema_name, name";
const LIST_ALL_TABLES: &str = "SELECT id, catalog_name, schema_name, name, location, format, managed, owner, comment, properties, created_at, updated_at FROM tables ORDER BY catalog_name, schema_name, name";

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

/// Hides the password in a database URL.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

pub(crate) fn json_map(text: &str) -> BTreeMap<String, String> {
    serde_json::from_str(text).unwrap_or_default()
}

pub(crate) fn opt_string(row: &AnyRow, idx: usize) -> Option<String> {
    row.try_get::<Option<String>, _>(idx).ok().flatten()
}
