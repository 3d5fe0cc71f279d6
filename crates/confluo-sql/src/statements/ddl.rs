//! Catalogs, schemas, comments, properties, DROP and USE.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{Ident, ObjectName};

use crate::error::{Result, SqlError};
use crate::parser::ObjectKind;
use crate::session::{SqlOutput, SqlSession, ident_parts, location_of, normalize};
use confluo_lakehouse::lakehouse::current_user;
use confluo_lakehouse::metastore::ObjectKind as MsKind;
use confluo_lakehouse::{LakehouseError, TableVersion, delta};

fn msg(s: impl Into<String>) -> Result<SqlOutput> {
    Ok(SqlOutput::Message(s.into()))
}

pub(super) async fn create_catalog(
    s: &SqlSession,
    name: Ident,
    if_not_exists: bool,
    comment: Option<String>,
) -> Result<SqlOutput> {
    let n = normalize(&name);
    let created = s
        .lakehouse()
        .metastore()
        .create_catalog(&n, comment.as_deref(), Some(&current_user()), if_not_exists)
        .await?;
    if created {
        // Every catalog starts with a `default` schema, as in Databricks.
        s.lakehouse()
            .metastore()
            .create_schema(&n, "default", None, Some(&current_user()), true)
            .await?;
        msg(format!("created catalog {n}"))
    } else {
        msg(format!("catalog {n} already exists"))
    }
}

/// `catalog.schema` or `schema` (in the current catalog).
fn schema_name(s: &SqlSession, name: &ObjectName) -> Result<(String, String)> {
    let parts = ident_parts(name)?;
    match parts.as_slice() {
        [sc] => Ok((s.current().0, sc.clone())),
        [c, sc] => Ok((c.clone(), sc.clone())),
        _ => Err(SqlError::plan(
            format!("`{name}` is not a schema name (catalog.schema)"),
            location_of(name),
        )),
    }
}

pub(super) async fn create_schema(
    s: &SqlSession,
    name: ObjectName,
    if_not_exists: bool,
    comment: Option<String>,
) -> Result<SqlOutput> {
    let (c, sc) = schema_name(s, &name)?;
    let ms = s.lakehouse().metastore();
    if ms.get_catalog(&c).await?.is_none() {
        let cats = ms.list_catalogs().await?;
        return Err(SqlError::from(LakehouseError::NotFound {
            kind: MsKind::Catalog,
            name: c.clone(),
            suggestions: confluo_core::suggest::nearest(&c, cats.iter().map(|x| x.name.as_str())),
        }));
    }
    if ms
        .create_schema(
            &c,
            &sc,
            comment.as_deref(),
            Some(&current_user()),
            if_not_exists,
        )
        .await?
    {
        msg(format!("created schema {c}.{sc}"))
    } else {
        msg(format!("schema {c}.{sc} already exists"))
    }
}

pub(super) async fn drop(
    s: &SqlSession,
    kind: ObjectKind,
    name: ObjectName,
    if_exists: bool,
    cascade: bool,
) -> Result<SqlOutput> {
    let lh = s.lakehouse();
    match kind {
        ObjectKind::View | ObjectKind::Connection => Err(SqlError::plan(
            "views and connections are dropped by the federation statements",
            location_of(&name),
        )),
        ObjectKind::Table | ObjectKind::Column => {
            let t = s.table_name(&name)?;
            if lh.drop_table(&t, if_exists).await? {
                msg(format!("dropped table {t}"))
            } else {
                msg(format!("table {t} does not exist"))
            }
        }
        ObjectKind::Schema => {
            let (c, sc) = schema_name(s, &name)?;
            if lh.metastore().get_schema(&c, &sc).await?.is_none() {
                return if if_exists {
                    msg(format!("schema {c}.{sc} does not exist"))
                } else {
                    lh.require_schema(&c, &sc)
                        .await
                        .map(|_| SqlOutput::Message(String::new()))
                        .map_err(SqlError::from)
                };
            }
            let tables = lh.metastore().list_tables(Some(&c), Some(&sc)).await?;
            let views = lh.metastore().list_views(Some(&c), Some(&sc)).await?;
            let empty = tables.is_empty() && views.is_empty();
            if !empty && !cascade {
                return Err(SqlError::plan(
                    format!(
                        "schema {c}.{sc} is not empty ({} tables, {} views)\n  hint: drop them first, or use DROP SCHEMA ... CASCADE",
                        tables.len(),
                        views.len()
                    ),
                    location_of(&name),
                ));
            }
            for t in tables {
                lh.drop_table(&t.name, true).await?;
            }
            lh.metastore().drop_schema(&c, &sc).await?;
            msg(format!("dropped schema {c}.{sc}"))
        }
        ObjectKind::Catalog => {
            let parts = ident_parts(&name)?;
            let c = parts.join(".");
            if lh.metastore().get_catalog(&c).await?.is_none() {
                return if if_exists {
                    msg(format!("catalog {c} does not exist"))
                } else {
                    Err(SqlError::from(LakehouseError::NotFound {
                        kind: MsKind::Catalog,
                        name: c,
                        suggestions: vec![],
                    }))
                };
            }
            if c == lh.default_catalog() {
                return Err(SqlError::plan(
                    format!("catalog {c} is the project's default catalog and cannot be dropped"),
                    location_of(&name),
                ));
            }
            let tables = lh.metastore().list_tables(Some(&c), None).await?;
            if !tables.is_empty() && !cascade {
                return Err(SqlError::plan(
                    format!(
                        "catalog {c} is not empty ({} tables)\n  hint: use DROP CATALOG ... CASCADE",
                        tables.len()
                    ),
                    location_of(&name),
                ));
            }
            for t in tables {
                lh.drop_table(&t.name, true).await?;
            }
            lh.metastore().drop_catalog(&c).await?;
            msg(format!("dropped catalog {c}"))
        }
    }
}

pub(super) async fn comment_on(
    s: &SqlSession,
    kind: ObjectKind,
    name: ObjectName,
    comment: Option<String>,
) -> Result<SqlOutput> {
    let lh = s.lakehouse();
    match kind {
        ObjectKind::Table => {
            let t = s.table_name(&name)?;
            lh.table(&t).await?;
            lh.metastore()
                .set_table_comment(&t, comment.as_deref())
                .await?;
            msg(format!("comment set on table {t}"))
        }
        ObjectKind::Column => {
            let parts = ident_parts(&name)?;
            let (col, table_parts) = parts.split_last().ok_or_else(|| {
                SqlError::plan("COMMENT ON COLUMN needs table.column", location_of(&name))
            })?;
            if table_parts.is_empty() {
                return Err(SqlError::plan(
                    "COMMENT ON COLUMN needs table.column",
                    location_of(&name),
                ));
            }
            let mut tn = name.clone();
            tn.0.pop();
            let t = s.table_name(&tn)?;
            let info = lh.table(&t).await?;
            let table = lh.open_delta(&info, TableVersion::Latest).await?;
            let schema = delta::table_schema(&table)?;
            let field = schema
                .fields()
                .iter()
                .find(|f| f.name().eq_ignore_ascii_case(col))
                .ok_or_else(|| {
                    SqlError::plan(
                        format!("column `{col}` does not exist in {t}"),
                        location_of(&name),
                    )
                })?;
            let mut meta = std::collections::HashMap::new();
            meta.insert(
                "comment".to_string(),
                deltalake::kernel::MetadataValue::String(comment.clone().unwrap_or_default()),
            );
            table
                .update_field_metadata()
                .with_field_name(field.name())
                .with_metadata(meta)
                .await
                .map_err(LakehouseError::delta(&t))?;
            msg(format!("comment set on column {t}.{col}"))
        }
        ObjectKind::View | ObjectKind::Connection => Err(SqlError::plan(
            "COMMENT ON VIEW and CONNECTION are set at creation (COMMENT '...') in this version",
            location_of(&name),
        )),
        ObjectKind::Schema | ObjectKind::Catalog => Err(SqlError::plan(
            "COMMENT ON SCHEMA and CATALOG are set at creation (CREATE ... COMMENT '...') in this version",
            location_of(&name),
        )),
    }
}

pub(super) async fn alter_properties(
    s: &SqlSession,
    table: ObjectName,
    set: Vec<(String, String)>,
    unset: Vec<String>,
) -> Result<SqlOutput> {
    let t = s.table_name(&table)?;
    let set: BTreeMap<String, String> = set.into_iter().collect();
    s.lakehouse().set_properties(&t, &set, &unset).await?;
    msg(format!("properties of {t} updated"))
}

pub(super) async fn use_(s: &SqlSession, name: ObjectName, catalog: bool) -> Result<SqlOutput> {
    let parts = ident_parts(&name)?;
    let lh = s.lakehouse();
    let (c, sc) = match (catalog, parts.as_slice()) {
        (true, [c]) => (c.clone(), "default".to_string()),
        (false, [sc]) => (s.current().0, sc.clone()),
        (_, [c, sc]) => (c.clone(), sc.clone()),
        _ => {
            return Err(SqlError::plan(
                format!("USE {name}: expected a catalog or catalog.schema"),
                location_of(&name),
            ));
        }
    };
    lh.require_schema(&c, &sc).await?;
    s.set_current(&c, &sc);
    msg(format!("using {c}.{sc}"))
}
