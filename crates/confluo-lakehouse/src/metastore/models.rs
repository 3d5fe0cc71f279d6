//! Rows of the metastore.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{json_map, opt_string};
use crate::error::{LakehouseError, Result};
use confluo_core::TableName;

fn row_err(e: sqlx::Error) -> LakehouseError {
    LakehouseError::Metastore {
        context: "unexpected metastore row".into(),
        source: e,
    }
}

/// A catalog: the top level of `catalog.schema.table`.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogInfo {
    /// Normalised name.
    pub name: String,
    /// Who owns it.
    pub owner: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Key/value properties.
    pub properties: BTreeMap<String, String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

impl CatalogInfo {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(CatalogInfo {
            name: r.try_get(0).map_err(row_err)?,
            owner: opt_string(r, 1),
            comment: opt_string(r, 2),
            properties: json_map(&r.try_get::<String, _>(3).map_err(row_err)?),
            created_at: r.try_get(4).map_err(row_err)?,
            updated_at: r.try_get(5).map_err(row_err)?,
        })
    }
}

/// A schema within a catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaInfo {
    /// The catalog it belongs to.
    pub catalog: String,
    /// Normalised name.
    pub name: String,
    /// Who owns it.
    pub owner: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Key/value properties.
    pub properties: BTreeMap<String, String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

impl SchemaInfo {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(SchemaInfo {
            catalog: r.try_get(0).map_err(row_err)?,
            name: r.try_get(1).map_err(row_err)?,
            owner: opt_string(r, 2),
            comment: opt_string(r, 3),
            properties: json_map(&r.try_get::<String, _>(4).map_err(row_err)?),
            created_at: r.try_get(5).map_err(row_err)?,
            updated_at: r.try_get(6).map_err(row_err)?,
        })
    }
}

/// A table registered in the metastore.
#[derive(Debug, Clone, PartialEq)]
pub struct TableInfo {
    /// Stable identifier (survives renames).
    pub id: String,
    /// Full name.
    pub name: TableName,
    /// Storage URL of the table's root.
    pub location: String,
    /// Table format; `delta` for now.
    pub format: String,
    /// Managed tables are stored under the lakehouse root and deleted with the table.
    pub managed: bool,
    /// Who owns it.
    pub owner: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Key/value properties (`TBLPROPERTIES`).
    pub properties: BTreeMap<String, String>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    /// Milliseconds since the epoch.
    pub updated_at: i64,
}

impl TableInfo {
    pub(super) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(TableInfo {
            id: r.try_get(0).map_err(row_err)?,
            name: TableName::new(
                r.try_get::<String, _>(1).map_err(row_err)?,
                r.try_get::<String, _>(2).map_err(row_err)?,
                r.try_get::<String, _>(3).map_err(row_err)?,
            ),
            location: r.try_get(4).map_err(row_err)?,
            format: r.try_get(5).map_err(row_err)?,
            managed: r.try_get::<i64, _>(6).map_err(row_err)? != 0,
            owner: opt_string(r, 7),
            comment: opt_string(r, 8),
            properties: json_map(&r.try_get::<String, _>(9).map_err(row_err)?),
            created_at: r.try_get(10).map_err(row_err)?,
            updated_at: r.try_get(11).map_err(row_err)?,
        })
    }
}

/// A source file recorded as ingested into a table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IngestedFile {
    /// The file's path or URL as it was listed.
    pub path: String,
    /// Size in bytes when ingested.
    pub size: i64,
    /// Modification time when ingested, milliseconds since the epoch.
    pub modified_ms: i64,
    /// The Delta version that committed its rows.
    #[serde(default)]
    pub delta_version: i64,
}
