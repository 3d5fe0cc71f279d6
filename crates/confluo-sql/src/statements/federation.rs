//! `CREATE CONNECTION`, `CREATE FOREIGN CATALOG`, `CREATE VIEW`, their `DROP`s and `SHOW`s.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{Ident, ObjectName, Query};

use super::describe::{out, strings};
use super::like;
use crate::error::{Result, SqlError};
use crate::federation::{CONNECTION_TYPES, connection_kind, open_source};
use crate::session::{SqlOutput, SqlSession, location_of, normalize};
use confluo_core::TableName;
use confluo_govern::SecretRef;
use confluo_lakehouse::LakehouseError;
use confluo_lakehouse::lakehouse::current_user;
use confluo_lakehouse::metastore::{ConnectionInfo, ForeignCatalogInfo, ObjectKind, ViewInfo};

fn msg(s: impl Into<String>) -> Result<SqlOutput> {
    Ok(SqlOutput::Message(s.into()))
}

/// Options that carry credentials: only ever a `secret(...)` reference.
const SECRET_OPTIONS: &[&str] = &["password"];

pub(super) async fn create_connection(
    s: &SqlSession,
    name: Ident,
    if_not_exists: bool,
    kind: String,
    options: Vec<(String, String)>,
    comment: Option<String>,
) -> Result<SqlOutput> {
    let n = normalize(&name);
    let where_ = location_of(&ObjectName::from(vec![name.clone()]));
    let Some(kind) = connection_kind(&kind) else {
        return Err(SqlError::plan(
            format!(
                "CREATE CONNECTION {n}: TYPE `{kind}` is not one Confluo can query\n  hint: use one of {}",
                CONNECTION_TYPES.join(", ")
            ),
            where_,
        ));
    };
    for (k, v) in &options {
        if SECRET_OPTIONS.contains(&k.as_str()) && SecretRef::parse(v).is_none() {
            return Err(SqlError::plan(
                format!(
                    "CREATE CONNECTION {n}: `{k}` must be a secret, not a value written in the statement (it would be stored and logged)\n  hint: confluo secrets put {n} {k}, then OPTIONS (..., {k} secret('{n}', '{k}'))"
                ),
                where_,
            ));
        }
    }
    let ms = s.lakehouse().metastore();
    let info = ConnectionInfo {
        name: n.clone(),
        kind: kind.to_string(),
        options: options.into_iter().collect(),
        owner: Some(current_user()),
        comment,
        created_ms: 0,
    };
    if !ms.create_connection(&info, if_not_exists).await? {
        return msg(format!("connection {n} already exists"));
    }
    // The connector's own option parser checks the keys now, not at the first query.
    let probe = ForeignCatalogInfo {
        name: format!("(connection {n})"),
        connection: n.clone(),
        // PostgreSQL needs a database to log in to; the catalog names the real one.
        options: if kind == "postgresql" && !info.options.contains_key("database") {
            BTreeMap::from([("database".to_string(), "postgres".to_string())])
        } else {
            BTreeMap::new()
        },
        owner: None,
        comment: None,
        created_ms: 0,
    };
    if let Err(e) = open_source(s.lakehouse(), &probe).await {
        ms.drop_connection(&n).await?;
        return Err(SqlError::plan(
            format!("CREATE CONNECTION {n}: {e}"),
            where_,
        ));
    }
    msg(format!("created connection {n}"))
}

pub(super) async fn create_foreign_catalog(
    s: &SqlSession,
    name: Ident,
    if_not_exists: bool,
    connection: Ident,
    options: Vec<(String, String)>,
    comment: Option<String>,
) -> Result<SqlOutput> {
    let n = normalize(&name);
    let c = normalize(&connection);
    let where_ = location_of(&ObjectName::from(vec![connection.clone()]));
    let ms = s.lakehouse().metastore();
    if ms.get_connection(&c).await?.is_none()
        && !s.lakehouse().project_connections().contains_key(&c)
    {
        let mut known: Vec<String> = ms
            .list_connections()
            .await?
            .into_iter()
            .map(|c| c.name)
            .collect();
        known.extend(s.lakehouse().project_connections().keys().cloned());
        return Err(SqlError::plan(
            format!(
                "connection `{c}` does not exist{}",
                confluo_core::suggest::hint(&confluo_core::suggest::nearest(
                    &c,
                    known.iter().map(String::as_str)
                ))
            ),
            where_,
        ));
    }
    let info = ForeignCatalogInfo {
        name: n.clone(),
        connection: c,
        options: options.into_iter().collect(),
        owner: Some(current_user()),
        comment,
        created_ms: 0,
    };
    if let Err(e) = open_source(s.lakehouse(), &info).await {
        return Err(SqlError::plan(
            format!("CREATE FOREIGN CATALOG {n}: {e}"),
            where_,
        ));
    }
    if ms.create_foreign_catalog(&info, if_not_exists).await? {
        msg(format!("created foreign catalog {n}"))
    } else {
        msg(format!("catalog {n} already exists"))
    }
}

pub(super) async fn create_view(
    s: &SqlSession,
    name: ObjectName,
    or_replace: bool,
    if_not_exists: bool,
    query: Box<Query>,
    comment: Option<String>,
) -> Result<SqlOutput> {
    let full = s.table_name(&name)?;
    let ms = s.lakehouse().metastore();
    if ms.get_view(&full).await?.is_some() && !or_replace {
        return if if_not_exists {
            msg(format!("view {full} already exists"))
        } else {
            Err(SqlError::from(LakehouseError::AlreadyExists {
                kind: ObjectKind::View,
                name: full.to_string(),
            }))
        };
    }
    let sql = query.to_string();
    let (catalog, schema) = s.current();
    // Planned now, as it will be when read: a view that does not plan is not stored.
    s.context()
        .state()
        .create_logical_plan(&sql)
        .await
        .map_err(|e| s.explain_error(e))?;
    let previous = ms.get_view(&full).await?;
    ms.put_view(
        &ViewInfo {
            name: full.clone(),
            sql,
            default_catalog: catalog,
            default_schema: schema,
            owner: Some(current_user()),
            comment,
            created_ms: previous.as_ref().map(|p| p.created_ms).unwrap_or(0),
            updated_ms: 0,
        },
        or_replace,
    )
    .await?;
    // Read through its new definition once: a view that now reads itself (through others)
    // is put back as it was.
    let check = format!("SELECT * FROM {}", quoted(&full));
    if let Err(e) = s.context().state().create_logical_plan(&check).await {
        match previous {
            Some(p) => ms.put_view(&p, true).await?,
            None => {
                ms.drop_view(&full).await?;
            }
        }
        return Err(SqlError::plan(e.to_string(), location_of(&name)));
    }
    msg(format!("created view {full}"))
}

/// `catalog`.`schema`.`name`, quoted for the Databricks dialect.
fn quoted(name: &TableName) -> String {
    [
        name.catalog.as_str(),
        name.schema.as_str(),
        name.table.as_str(),
    ]
    .iter()
    .map(|p| format!("`{}`", p.replace('`', "``")))
    .collect::<Vec<_>>()
    .join(".")
}

/// `DROP VIEW`.
pub(super) async fn drop_view(
    s: &SqlSession,
    name: ObjectName,
    if_exists: bool,
) -> Result<SqlOutput> {
    let full = s.table_name(&name)?;
    if s.lakehouse().metastore().drop_view(&full).await? {
        msg(format!("dropped view {full}"))
    } else if if_exists {
        msg(format!("view {full} does not exist"))
    } else {
        Err(SqlError::from(LakehouseError::NotFound {
            kind: ObjectKind::View,
            name: full.to_string(),
            suggestions: vec![],
        }))
    }
}

/// `DROP CONNECTION`.
pub(super) async fn drop_connection(
    s: &SqlSession,
    name: ObjectName,
    if_exists: bool,
) -> Result<SqlOutput> {
    let n = crate::session::ident_parts(&name)?.join(".");
    if s.lakehouse().metastore().drop_connection(&n).await? {
        msg(format!("dropped connection {n}"))
    } else if if_exists {
        msg(format!("connection {n} does not exist"))
    } else {
        Err(SqlError::from(LakehouseError::NotFound {
            kind: ObjectKind::Connection,
            name: n,
            suggestions: vec![],
        }))
    }
}

/// `DROP CATALOG` of a foreign catalog; `None` when `name` is no foreign catalog.
pub(super) async fn drop_foreign_catalog(s: &SqlSession, name: &str) -> Result<Option<SqlOutput>> {
    if s.lakehouse().metastore().drop_foreign_catalog(name).await? {
        Ok(Some(SqlOutput::Message(format!(
            "dropped foreign catalog {name}"
        ))))
    } else {
        Ok(None)
    }
}

/// `SHOW CONNECTIONS`: yaml connections too; option values that are secrets show as the
/// reference, never the value.
pub(super) async fn show_connections(s: &SqlSession, pattern: Option<String>) -> Result<SqlOutput> {
    let keep = |n: &str| pattern.as_deref().is_none_or(|p| like(p, n));
    // (name, type, options, owner, comment)
    type Row = (String, String, String, Option<String>, Option<String>);
    let mut rows: Vec<Row> = s
        .lakehouse()
        .metastore()
        .list_connections()
        .await?
        .into_iter()
        .map(|c| {
            let options = serde_json::to_string(&c.options).unwrap_or_default();
            (c.name, c.kind, options, c.owner, c.comment)
        })
        .collect();
    for (name, c) in s.lakehouse().project_connections() {
        if rows.iter().any(|r| &r.0 == name) {
            continue;
        }
        rows.push((
            name.clone(),
            c.kind.clone(),
            "(confluo.yaml)".into(),
            None,
            None,
        ));
    }
    rows.retain(|r| keep(&r.0));
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    out(
        s,
        vec![
            strings(
                "connection",
                rows.iter().map(|r| Some(r.0.clone())).collect(),
            ),
            strings("type", rows.iter().map(|r| Some(r.1.clone())).collect()),
            strings("options", rows.iter().map(|r| Some(r.2.clone())).collect()),
            strings("owner", rows.iter().map(|r| r.3.clone()).collect()),
            strings("comment", rows.iter().map(|r| r.4.clone()).collect()),
        ],
    )
}

/// `SHOW VIEWS [IN schema]`.
pub(super) async fn show_views(
    s: &SqlSession,
    catalog: String,
    schema: String,
    pattern: Option<String>,
) -> Result<SqlOutput> {
    let keep = |n: &str| pattern.as_deref().is_none_or(|p| like(p, n));
    let views: Vec<ViewInfo> = s
        .lakehouse()
        .metastore()
        .list_views(Some(&catalog), Some(&schema))
        .await?
        .into_iter()
        .filter(|v| keep(v.name.table.as_str()))
        .collect();
    out(
        s,
        vec![
            strings(
                "schema",
                views
                    .iter()
                    .map(|v| Some(format!("{}.{}", v.name.catalog, v.name.schema)))
                    .collect(),
            ),
            strings(
                "view",
                views
                    .iter()
                    .map(|v| Some(v.name.table.to_string()))
                    .collect(),
            ),
            strings(
                "definition",
                views.iter().map(|v| Some(v.sql.clone())).collect(),
            ),
            strings("owner", views.iter().map(|v| v.owner.clone()).collect()),
        ],
    )
}

/// `SHOW SCHEMAS IN foreign` and `SHOW TABLES IN foreign.schema`, from the source's listing;
/// `None` when the name is not in a foreign catalog.
pub(super) fn show_foreign(
    s: &SqlSession,
    parts: &[String],
    tables: bool,
    pattern: Option<&str>,
) -> Option<Result<SqlOutput>> {
    let keep = |n: &str| pattern.is_none_or(|p| like(p, n));
    let (catalog, schema) = match (tables, parts) {
        (false, [c]) => (c, None),
        (true, [c, sc]) => (c, Some(sc)),
        _ => return None,
    };
    let listing = s.foreign_listing(catalog)?;
    let rows: Vec<(String, String)> = match schema {
        None => listing
            .keys()
            .filter(|x| keep(x))
            .map(|x| (catalog.clone(), x.clone()))
            .collect(),
        Some(sc) => listing
            .get(sc)
            .into_iter()
            .flatten()
            .filter(|t| keep(t))
            .map(|t| (format!("{catalog}.{sc}"), t.clone()))
            .collect(),
    };
    let (a, b) = if tables {
        ("schema", "table")
    } else {
        ("catalog", "schema")
    };
    Some(out(
        s,
        vec![
            strings(a, rows.iter().map(|r| Some(r.0.clone())).collect()),
            strings(b, rows.iter().map(|r| Some(r.1.clone())).collect()),
        ],
    ))
}
