//! Connections to external databases, foreign catalogs over them, and views: the rows only
//! (`confluo-sql` plans with them).

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Metastore, ObjectKind, json_map, now_ms, opt_string};
use crate::error::{LakehouseError, Result};
use confluo_core::TableName;

/// A connection made with `CREATE CONNECTION`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConnectionInfo {
    /// Normalised name.
    pub name: String,
    /// The connector: `postgresql`, `mysql` or `sqlite`.
    pub kind: String,
    /// Options as given (`host`, `port`, `user`, ...). A password is a reference
    /// (`secret('scope','key')`), never a value.
    pub options: BTreeMap<String, String>,
    /// Who made it.
    pub owner: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
}

/// A foreign catalog made with `CREATE FOREIGN CATALOG`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ForeignCatalogInfo {
    /// Normalised name.
    pub name: String,
    /// The connection it reads through (`CREATE CONNECTION` or `confluo.yaml`).
    pub connection: String,
    /// Options (`database`).
    pub options: BTreeMap<String, String>,
    /// Who made it.
    pub owner: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
}

/// A secret as stored: encrypted (base64 of nonce and ciphertext).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSecret {
    /// The scope (a group of secrets).
    pub scope: String,
    /// The key within the scope.
    pub name: String,
    /// Base64 of the 12-byte nonce.
    pub nonce: String,
    /// Base64 of the ciphertext with its tag.
    pub ciphertext: String,
    /// Last written, ms since the epoch.
    pub updated_ms: i64,
}

/// A view: a stored query.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewInfo {
    /// Full name.
    pub name: TableName,
    /// The query, as written.
    pub sql: String,
    /// The catalog current when it was made (for unqualified names in `sql`).
    pub default_catalog: String,
    /// The schema current when it was made.
    pub default_schema: String,
    /// Who made it.
    pub owner: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    /// Milliseconds since the epoch.
    pub updated_ms: i64,
}

fn row_err(e: sqlx::Error) -> LakehouseError {
    LakehouseError::Metastore {
        context: "unexpected metastore row".into(),
        source: e,
    }
}

fn connection_from_row(r: &AnyRow) -> Result<ConnectionInfo> {
    Ok(ConnectionInfo {
        name: r.try_get(0).map_err(row_err)?,
        kind: r.try_get(1).map_err(row_err)?,
        options: json_map(&r.try_get::<String, _>(2).map_err(row_err)?),
        owner: opt_string(r, 3),
        comment: opt_string(r, 4),
        created_ms: r.try_get(5).map_err(row_err)?,
    })
}

fn foreign_from_row(r: &AnyRow) -> Result<ForeignCatalogInfo> {
    Ok(ForeignCatalogInfo {
        name: r.try_get(0).map_err(row_err)?,
        connection: r.try_get(1).map_err(row_err)?,
        options: json_map(&r.try_get::<String, _>(2).map_err(row_err)?),
        owner: opt_string(r, 3),
        comment: opt_string(r, 4),
        created_ms: r.try_get(5).map_err(row_err)?,
    })
}

fn secret_from_row(r: &AnyRow) -> Result<StoredSecret> {
    Ok(StoredSecret {
        scope: r.try_get(0).map_err(row_err)?,
        name: r.try_get(1).map_err(row_err)?,
        nonce: r.try_get(2).map_err(row_err)?,
        ciphertext: r.try_get(3).map_err(row_err)?,
        updated_ms: r.try_get(4).map_err(row_err)?,
    })
}

fn view_from_row(r: &AnyRow) -> Result<ViewInfo> {
    Ok(ViewInfo {
        name: TableName::new(
            r.try_get::<String, _>(0).map_err(row_err)?,
            r.try_get::<String, _>(1).map_err(row_err)?,
            r.try_get::<String, _>(2).map_err(row_err)?,
        ),
        sql: r.try_get(3).map_err(row_err)?,
        default_catalog: r.try_get(4).map_err(row_err)?,
        default_schema: r.try_get(5).map_err(row_err)?,
        owner: opt_string(r, 6),
        comment: opt_string(r, 7),
        created_ms: r.try_get(8).map_err(row_err)?,
        updated_ms: r.try_get(9).map_err(row_err)?,
    })
}

macro_rules! view_columns {
    () => {
        "catalog_name, schema_name, name, sql_text, default_catalog, default_schema, owner, comment, created_ms, updated_ms"
    };
}

impl Metastore {
    // ---- connections ----

    /// Records a connection. Returns false when it exists and `if_not_exists` is set.
    pub async fn create_connection(&self, c: &ConnectionInfo, if_not_exists: bool) -> Result<bool> {
        let res = sqlx::query(
            "INSERT INTO connections (name, kind, options, owner, comment, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.name)
        .bind(&c.kind)
        .bind(serde_json::to_string(&c.options).expect("a string map serialises"))
        .bind(&c.owner)
        .bind(&c.comment)
        .bind(now_ms())
        .execute(&self.pool)
        .await;
        self.map_insert(res, ObjectKind::Connection, &c.name, if_not_exists)
    }

    /// Looks a connection up.
    pub async fn get_connection(&self, name: &str) -> Result<Option<ConnectionInfo>> {
        let row = sqlx::query("SELECT name, kind, options, owner, comment, created_ms FROM connections WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err(format!("cannot read connection {name}")))?;
        row.map(|r| connection_from_row(&r)).transpose()
    }

    /// All connections, by name.
    pub async fn list_connections(&self) -> Result<Vec<ConnectionInfo>> {
        let rows = sqlx::query(
            "SELECT name, kind, options, owner, comment, created_ms FROM connections ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot list connections"))?;
        rows.iter().map(connection_from_row).collect()
    }

    /// Removes a connection. Foreign catalogs still using it are an error naming them.
    pub async fn drop_connection(&self, name: &str) -> Result<bool> {
        let users: Vec<String> = self
            .list_foreign_catalogs()
            .await?
            .into_iter()
            .filter(|f| f.connection == name)
            .map(|f| f.name)
            .collect();
        if !users.is_empty() {
            return Err(LakehouseError::Invalid(format!(
                "connection {name} is used by foreign catalog{} {}\n  hint: DROP CATALOG {} first",
                if users.len() == 1 { "" } else { "s" },
                users.join(", "),
                users.join(", ")
            )));
        }
        let res = sqlx::query("DELETE FROM connections WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(Self::err(format!("cannot drop connection {name}")))?;
        Ok(res.rows_affected() > 0)
    }

    // ---- foreign catalogs ----

    /// Records a foreign catalog. Its name must not be a lakehouse catalog's.
    pub async fn create_foreign_catalog(
        &self,
        f: &ForeignCatalogInfo,
        if_not_exists: bool,
    ) -> Result<bool> {
        if self.get_catalog(&f.name).await?.is_some() {
            return if if_not_exists {
                Ok(false)
            } else {
                Err(LakehouseError::AlreadyExists {
                    kind: ObjectKind::Catalog,
                    name: f.name.clone(),
                })
            };
        }
        let res = sqlx::query(
            "INSERT INTO foreign_catalogs (name, connection, options, owner, comment, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&f.name)
        .bind(&f.connection)
        .bind(serde_json::to_string(&f.options).expect("a string map serialises"))
        .bind(&f.owner)
        .bind(&f.comment)
        .bind(now_ms())
        .execute(&self.pool)
        .await;
        self.map_insert(res, ObjectKind::ForeignCatalog, &f.name, if_not_exists)
    }

    /// Looks a foreign catalog up.
    pub async fn get_foreign_catalog(&self, name: &str) -> Result<Option<ForeignCatalogInfo>> {
        let row = sqlx::query("SELECT name, connection, options, owner, comment, created_ms FROM foreign_catalogs WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err(format!("cannot read foreign catalog {name}")))?;
        row.map(|r| foreign_from_row(&r)).transpose()
    }

    /// All foreign catalogs, by name.
    pub async fn list_foreign_catalogs(&self) -> Result<Vec<ForeignCatalogInfo>> {
        let rows = sqlx::query("SELECT name, connection, options, owner, comment, created_ms FROM foreign_catalogs ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err("cannot list foreign catalogs"))?;
        rows.iter().map(foreign_from_row).collect()
    }

    /// Removes a foreign catalog (the external database is not touched).
    pub async fn drop_foreign_catalog(&self, name: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM foreign_catalogs WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(Self::err(format!("cannot drop foreign catalog {name}")))?;
        Ok(res.rows_affected() > 0)
    }

    // ---- secrets ----

    /// Saves (or replaces) an encrypted secret.
    pub async fn put_secret(&self, s: &StoredSecret) -> Result<()> {
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        sqlx::query("DELETE FROM secrets WHERE scope = $1 AND name = $2")
            .bind(&s.scope)
            .bind(&s.name)
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot replace the secret"))?;
        sqlx::query("INSERT INTO secrets (scope, name, nonce, ciphertext, created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $5)")
            .bind(&s.scope)
            .bind(&s.name)
            .bind(&s.nonce)
            .bind(&s.ciphertext)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Self::err("cannot save the secret"))?;
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(())
    }

    /// One encrypted secret.
    pub async fn get_secret(&self, scope: &str, name: &str) -> Result<Option<StoredSecret>> {
        let row = sqlx::query("SELECT scope, name, nonce, ciphertext, updated_ms FROM secrets WHERE scope = $1 AND name = $2")
            .bind(scope)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err("cannot read the secret"))?;
        row.map(|r| secret_from_row(&r)).transpose()
    }

    /// Secrets (encrypted) of one scope, or all.
    pub async fn list_secrets(&self, scope: Option<&str>) -> Result<Vec<StoredSecret>> {
        let q = match scope {
            Some(sc) => sqlx::query("SELECT scope, name, nonce, ciphertext, updated_ms FROM secrets WHERE scope = $1 ORDER BY scope, name")
                .bind(sc.to_string()),
            None => sqlx::query("SELECT scope, name, nonce, ciphertext, updated_ms FROM secrets ORDER BY scope, name"),
        };
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err("cannot list secrets"))?;
        rows.iter().map(secret_from_row).collect()
    }

    /// Removes a secret.
    pub async fn delete_secret(&self, scope: &str, name: &str) -> Result<bool> {
        let res = sqlx::query("DELETE FROM secrets WHERE scope = $1 AND name = $2")
            .bind(scope)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(Self::err("cannot delete the secret"))?;
        Ok(res.rows_affected() > 0)
    }

    // ---- views ----

    /// Records a view, replacing one of the same name when `or_replace`. A table of that
    /// name is an error.
    pub async fn put_view(&self, v: &ViewInfo, or_replace: bool) -> Result<()> {
        if self.get_table(&v.name).await?.is_some() {
            return Err(LakehouseError::AlreadyExists {
                kind: ObjectKind::Table,
                name: v.name.to_string(),
            });
        }
        if self
            .get_schema(v.name.catalog.as_str(), v.name.schema.as_str())
            .await?
            .is_none()
        {
            return Err(LakehouseError::NotFound {
                kind: ObjectKind::Schema,
                name: format!("{}.{}", v.name.catalog, v.name.schema),
                suggestions: vec![],
            });
        }
        let now = now_ms();
        let mut tx = self.pool.begin().await.map_err(Self::err("cannot begin"))?;
        if or_replace {
            sqlx::query(
                "DELETE FROM views WHERE catalog_name = $1 AND schema_name = $2 AND name = $3",
            )
            .bind(v.name.catalog.as_str())
            .bind(v.name.schema.as_str())
            .bind(v.name.table.as_str())
            .execute(&mut *tx)
            .await
            .map_err(Self::err(format!("cannot replace view {}", v.name)))?;
        }
        let res = sqlx::query(concat!(
            "INSERT INTO views (",
            view_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(v.name.catalog.as_str())
        .bind(v.name.schema.as_str())
        .bind(v.name.table.as_str())
        .bind(&v.sql)
        .bind(&v.default_catalog)
        .bind(&v.default_schema)
        .bind(&v.owner)
        .bind(&v.comment)
        .bind(if v.created_ms == 0 { now } else { v.created_ms })
        .bind(now)
        .execute(&mut *tx)
        .await;
        self.map_insert(res, ObjectKind::View, &v.name.to_string(), false)?;
        tx.commit().await.map_err(Self::err("cannot commit"))?;
        Ok(())
    }

    /// Looks a view up.
    pub async fn get_view(&self, name: &TableName) -> Result<Option<ViewInfo>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            view_columns!(),
            " FROM views WHERE catalog_name = $1 AND schema_name = $2 AND name = $3"
        ))
        .bind(name.catalog.as_str())
        .bind(name.schema.as_str())
        .bind(name.table.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(Self::err(format!("cannot read view {name}")))?;
        row.map(|r| view_from_row(&r)).transpose()
    }

    /// Views of one catalog (and schema), or of all.
    pub async fn list_views(
        &self,
        catalog: Option<&str>,
        schema: Option<&str>,
    ) -> Result<Vec<ViewInfo>> {
        let q = match (catalog, schema) {
            (Some(c), Some(s)) => sqlx::query(concat!(
                "SELECT ",
                view_columns!(),
                " FROM views WHERE catalog_name = $1 AND schema_name = $2 ORDER BY catalog_name, schema_name, name"
            ))
            .bind(c.to_string())
            .bind(s.to_string()),
            (Some(c), None) => sqlx::query(concat!(
                "SELECT ",
                view_columns!(),
                " FROM views WHERE catalog_name = $1 ORDER BY catalog_name, schema_name, name"
            ))
            .bind(c.to_string()),
            _ => sqlx::query(concat!(
                "SELECT ",
                view_columns!(),
                " FROM views ORDER BY catalog_name, schema_name, name"
            )),
        };
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err("cannot list views"))?;
        rows.iter().map(view_from_row).collect()
    }

    /// Removes a view.
    pub async fn drop_view(&self, name: &TableName) -> Result<bool> {
        let res = sqlx::query(
            "DELETE FROM views WHERE catalog_name = $1 AND schema_name = $2 AND name = $3",
        )
        .bind(name.catalog.as_str())
        .bind(name.schema.as_str())
        .bind(name.table.as_str())
        .execute(&self.pool)
        .await
        .map_err(Self::err(format!("cannot drop view {name}")))?;
        Ok(res.rows_affected() > 0)
    }
}
