//! From a foreign catalog's definition to a source: its connection (made with `CREATE
//! CONNECTION`, or one of `confluo.yaml`'s `connections:`), secrets resolved, checked by the
//! connector's own option parser so every mistake names the connection and the key.

use std::path::PathBuf;
use std::sync::Arc;

use serde_yaml_ng::Value;

use confluo_connectors::mysql::MysqlConfig;
use confluo_connectors::postgres::PostgresConfig;
use confluo_core::project::ConnectionConfig;
use confluo_govern::{SecretRef, Secrets};
use confluo_lakehouse::Lakehouse;
use confluo_lakehouse::metastore::ForeignCatalogInfo;

use super::SourceRef;
use super::mysql::MysqlSource;
use super::postgres::PostgresSource;
use super::sqlite::SqliteSource;

/// The `TYPE`s `CREATE CONNECTION` accepts.
pub const CONNECTION_TYPES: &[&str] = &["postgresql", "mysql", "sqlite"];

/// The normal spelling of a connection type (`postgres` → `postgresql`, `mariadb` →
/// `mysql`), or `None` for a type federation does not read.
pub fn connection_kind(kind: &str) -> Option<&'static str> {
    match kind.to_ascii_lowercase().as_str() {
        "postgresql" | "postgres" => Some("postgresql"),
        "mysql" | "mariadb" => Some("mysql"),
        "sqlite" => Some("sqlite"),
        _ => None,
    }
}

/// The source a foreign catalog reads. Errors say what is wrong with the connection or the
/// catalog, naming them.
pub async fn open_source(lh: &Lakehouse, info: &ForeignCatalogInfo) -> Result<SourceRef, String> {
    let name = info.connection.as_str();
    let (kind, mut options) = match lh
        .metastore()
        .get_connection(name)
        .await
        .map_err(|e| e.to_string())?
    {
        Some(c) => {
            let mut options = std::collections::BTreeMap::new();
            for (k, v) in &c.options {
                let value = match SecretRef::parse(v) {
                    Some(r) => Secrets::new(lh)
                        .get(&r)
                        .await
                        .map_err(|e| format!("connection `{name}`: `{k}`: {e}"))?,
                    None => v.clone(),
                };
                options.insert(k.clone(), Value::String(value));
            }
            (c.kind.clone(), options)
        }
        None => match lh.project_connections().get(name) {
            Some(c) => (c.kind.clone(), c.options.clone()),
            None => {
                return Err(format!(
                    "foreign catalog {}: connection `{name}` does not exist\n  hint: CREATE CONNECTION {name} TYPE postgresql OPTIONS (...), or add it under `connections:` in confluo.yaml",
                    info.name
                ));
            }
        },
    };
    for (k, v) in &info.options {
        options.insert(k.clone(), Value::String(v.clone()));
    }
    let Some(kind) = connection_kind(&kind) else {
        return Err(format!(
            "connection `{name}` is of type `{kind}`, which foreign catalogs cannot read\n  hint: use one of {}",
            CONNECTION_TYPES.join(", ")
        ));
    };
    match kind {
        "postgresql" => {
            let conn = ConnectionConfig {
                kind: "postgres".into(),
                options,
            };
            let cfg = PostgresConfig::from_connection(name, &conn).map_err(|e| e.to_string())?;
            Ok(Arc::new(PostgresSource::new(cfg)))
        }
        "mysql" => {
            // A MySQL foreign catalog shows every database of the server as a schema; the
            // login needs one to start in.
            options
                .entry("database".into())
                .or_insert_with(|| Value::String("information_schema".into()));
            let conn = ConnectionConfig {
                kind: "mysql".into(),
                options,
            };
            let cfg = MysqlConfig::from_connection(name, &conn).map_err(|e| e.to_string())?;
            Ok(Arc::new(MysqlSource::new(cfg)))
        }
        _ => {
            let path = options
                .get("path")
                .or_else(|| options.get("database"))
                .and_then(|v| v.as_str().map(str::to_string))
                .ok_or_else(|| {
                    format!(
                        "connection `{name}`: a SQLite connection needs `path` (the database file)"
                    )
                })?;
            let path = confluo_core::project::expand_env(&path).map_err(|e| e.to_string())?;
            Ok(Arc::new(SqliteSource::new(name, PathBuf::from(path))))
        }
    }
}
