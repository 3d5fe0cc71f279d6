//! The catalog routes: catalogs, their schemas and tables, a table's columns and its Delta
//! history, read from the metastore and the tables themselves.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use confluo_core::TableName;
use confluo_lakehouse::TableInfo;

use super::Shared;
use super::auth::User;
use super::query::open_session;
use super::reply::{ApiError, ApiResult, objects, time};

/// `GET /api/v1/catalogs`.
pub(crate) async fn catalogs(State(shared): State<Arc<Shared>>) -> ApiResult {
    let ms = shared.lakehouse.metastore();
    let list = ms.list_catalogs().await?;
    let mut out: Vec<Value> = list
        .into_iter()
        .map(|c| {
            json!({
                "name": c.name,
                "type": "lakehouse",
                "owner": c.owner,
                "comment": c.comment,
                "properties": c.properties,
                "created_at": time(c.created_at),
                "updated_at": time(c.updated_at),
            })
        })
        .collect();
    // Foreign catalogs are read through a SQL session (`/api/v1/query`: SHOW SCHEMAS IN ...).
    out.extend(ms.list_foreign_catalogs().await?.into_iter().map(|f| {
        json!({
            "name": f.name,
            "type": "foreign",
            "connection": f.connection,
            "options": f.options,
            "owner": f.owner,
            "comment": f.comment,
            "created_at": time(f.created_ms),
        })
    }));
    Ok(axum::Json(json!({ "catalogs": out })))
}

/// `GET /api/v1/catalogs/{catalog}/schemas`.
pub(crate) async fn schemas(
    State(shared): State<Arc<Shared>>,
    Path(catalog): Path<String>,
) -> ApiResult {
    let ms = shared.lakehouse.metastore();
    let catalog = catalog.to_ascii_lowercase();
    if ms.get_catalog(&catalog).await?.is_none() {
        return Err(ApiError::not_found(format!("no catalog named {catalog}")));
    }
    let list = ms.list_schemas(Some(&catalog)).await?;
    Ok(axum::Json(json!({
        "schemas": list.into_iter().map(|s| json!({
            "catalog": s.catalog,
            "name": s.name,
            "owner": s.owner,
            "comment": s.comment,
            "properties": s.properties,
            "created_at": time(s.created_at),
            "updated_at": time(s.updated_at),
        })).collect::<Vec<_>>()
    })))
}

/// `GET /api/v1/catalogs/{catalog}/schemas/{schema}/tables`.
pub(crate) async fn tables(
    State(shared): State<Arc<Shared>>,
    Path((catalog, schema)): Path<(String, String)>,
) -> ApiResult {
    let ms = shared.lakehouse.metastore();
    let (catalog, schema) = (catalog.to_ascii_lowercase(), schema.to_ascii_lowercase());
    if ms.get_schema(&catalog, &schema).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "no schema named {catalog}.{schema}"
        )));
    }
    let list = ms.list_tables(Some(&catalog), Some(&schema)).await?;
    let mut out: Vec<Value> = list.iter().map(table_json).collect();
    out.extend(
        ms.list_views(Some(&catalog), Some(&schema))
            .await?
            .into_iter()
            .map(|v| {
                json!({
                    "name": v.name.to_string(),
                    "catalog": v.name.catalog.as_str(),
                    "schema": v.name.schema.as_str(),
                    "table": v.name.table.as_str(),
                    "type": "view",
                    "definition": v.sql,
                    "owner": v.owner,
                    "comment": v.comment,
                    "created_at": time(v.created_ms),
                    "updated_at": time(v.updated_ms),
                })
            }),
    );
    Ok(axum::Json(json!({ "tables": out })))
}

fn table_json(t: &TableInfo) -> Value {
    json!({
        "name": t.name.to_string(),
        "catalog": t.name.catalog.as_str(),
        "schema": t.name.schema.as_str(),
        "table": t.name.table.as_str(),
        "type": "table",
        "format": t.format,
        "location": t.location,
        "managed": t.managed,
        "owner": t.owner,
        "comment": t.comment,
        "properties": t.properties,
        "created_at": time(t.created_at),
        "updated_at": time(t.updated_at),
    })
}

/// A table named in a path (`catalog.schema.table`, or shorter with the defaults).
async fn named_table(shared: &Shared, text: &str) -> Result<TableInfo, ApiError> {
    let name = TableName::parse(
        text,
        shared.lakehouse.default_catalog(),
        shared.lakehouse.default_schema(),
    )
    .map_err(|e| ApiError::bad_request(format!("table name `{text}`: {e}")))?;
    shared
        .lakehouse
        .metastore()
        .get_table(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no table named {name}")))
}

/// `GET /api/v1/tables/{table}`: the table with its columns.
pub(crate) async fn table(
    State(shared): State<Arc<Shared>>,
    Extension(user): Extension<User>,
    Path(text): Path<String>,
) -> ApiResult {
    let info = named_table(&shared, &text).await?;
    let name = &info.name;
    let session = open_session(&shared, &user).await?;
    let provider = session
        .context()
        .table_provider(datafusion::common::TableReference::full(
            name.catalog.as_str(),
            name.schema.as_str(),
            name.table.as_str(),
        ))
        .await
        .map_err(|e| ApiError::internal(format!("cannot open {name}: {e}")))?;
    let mut out = table_json(&info);
    out["columns"] = provider
        .schema()
        .fields()
        .iter()
        .map(|f| {
            json!({
                "name": f.name(),
                "type": f.data_type().to_string(),
                "nullable": f.is_nullable(),
            })
        })
        .collect();
    Ok(axum::Json(out))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Limit {
    limit: Option<usize>,
}

/// `GET /api/v1/tables/{table}/history?limit=N`: the Delta log's commits, newest first.
pub(crate) async fn history(
    State(shared): State<Arc<Shared>>,
    Extension(user): Extension<User>,
    Path(text): Path<String>,
    Query(q): Query<Limit>,
) -> ApiResult {
    let name = named_table(&shared, &text).await?.name;
    let session = open_session(&shared, &user).await?;
    let sql = format!(
        "DESCRIBE HISTORY `{}`.`{}`.`{}` LIMIT {}",
        name.catalog.as_str(),
        name.schema.as_str(),
        name.table.as_str(),
        q.limit.unwrap_or(100)
    );
    let batches = session.query(&sql).await?;
    Ok(axum::Json(
        json!({"table": name.to_string(), "history": objects(&batches)?}),
    ))
}
