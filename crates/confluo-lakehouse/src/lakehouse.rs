//! The lakehouse: a storage root plus the metastore that names its tables.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::Schema;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use url::Url;

use crate::delta::{self, CreateOptions, TableVersion};
use crate::error::{LakehouseError, Result};
use crate::metastore::{Metastore, ObjectKind, TableInfo};
use crate::storage::{StorageRoot, location_url};
use confluo_core::project::ConnectionConfig;
use confluo_core::{Project, TableName};

/// A lakehouse opened for work.
#[derive(Debug, Clone)]
pub struct Lakehouse {
    storage: StorageRoot,
    metastore: Metastore,
    default_catalog: String,
    default_schema: String,
    /// The `connections:` of `confluo.yaml`, which foreign catalogs may name.
    connections: Arc<BTreeMap<String, ConnectionConfig>>,
    /// The project's state directory (`.confluo`), where the secret store's key lives.
    state_dir: std::path::PathBuf,
}

/// What a new table should be.
#[derive(Debug, Clone)]
pub struct NewTable {
    /// Full name.
    pub name: TableName,
    /// Columns.
    pub schema: Schema,
    /// Partition columns.
    pub partition_by: Vec<String>,
    /// Description.
    pub comment: Option<String>,
    /// `TBLPROPERTIES`; `delta.*` keys also become Delta configuration.
    pub properties: BTreeMap<String, String>,
    /// An explicit location makes an external table (never deleted by DROP).
    pub location: Option<String>,
}

/// The user recorded as owner of new objects.
pub fn current_user() -> String {
    std::env::var("CONFLUO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "confluo".into())
}

impl Lakehouse {
    /// Opens the project's lakehouse, creating its default catalog and schema if needed.
    pub async fn open(project: &Project) -> Result<Self> {
        let storage = StorageRoot::new(&project.storage_root(), &project.config.storage.options)?;
        let metastore = Metastore::connect(&project.metastore_url()).await?;
        let lh = Lakehouse {
            storage,
            metastore,
            default_catalog: confluo_core::Ident::parse(&project.config.catalog)?
                .as_str()
                .to_string(),
            default_schema: confluo_core::Ident::parse(&project.config.schema)?
                .as_str()
                .to_string(),
            connections: Arc::new(project.config.connections.clone()),
            state_dir: project.state_dir(),
        };
        let owner = current_user();
        lh.metastore
            .create_catalog(&lh.default_catalog, None, Some(&owner), true)
            .await?;
        lh.metastore
            .create_schema(
                &lh.default_catalog,
                &lh.default_schema,
                None,
                Some(&owner),
                true,
            )
            .await?;
        Ok(lh)
    }

    /// The connections defined in `confluo.yaml`.
    pub fn project_connections(&self) -> &BTreeMap<String, ConnectionConfig> {
        &self.connections
    }

    /// The project's state directory.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The storage root.
    pub fn storage(&self) -> &StorageRoot {
        &self.storage
    }

    /// The metastore.
    pub fn metastore(&self) -> &Metastore {
        &self.metastore
    }

    /// The catalog used for one- and two-part names.
    pub fn default_catalog(&self) -> &str {
        &self.default_catalog
    }

    /// The schema used for one-part names.
    pub fn default_schema(&self) -> &str {
        &self.default_schema
    }

    /// Parses a user's table name, completing it with the defaults.
    pub fn resolve(&self, text: &str) -> Result<TableName> {
        Ok(TableName::parse(
            text,
            &self.default_catalog,
            &self.default_schema,
        )?)
    }

    /// Looks a table up; a missing one is an error suggesting near names.
    pub async fn table(&self, name: &TableName) -> Result<TableInfo> {
        match self.metastore.get_table(name).await? {
            Some(t) => Ok(t),
            None => Err(self.table_not_found(name).await),
        }
    }

    /// The error for a missing table, with near names as suggestions.
    pub async fn table_not_found(&self, name: &TableName) -> LakehouseError {
        let all = self
            .metastore
            .list_tables(None, None)
            .await
            .unwrap_or_default();
        let names: Vec<String> = all.iter().map(|t| t.name.to_string()).collect();
        let mut suggestions =
            confluo_core::suggest::nearest(&name.to_string(), names.iter().map(String::as_str));
        if suggestions.is_empty() {
            // The same table name in another schema is a good guess too.
            suggestions = all
                .iter()
                .filter(|t| t.name.table == name.table)
                .map(|t| t.name.to_string())
                .take(3)
                .collect();
        }
        LakehouseError::NotFound {
            kind: ObjectKind::Table,
            name: name.to_string(),
            suggestions,
        }
    }

    /// Fails unless the schema of `name` exists (suggesting near schema names).
    pub async fn require_schema(&self, catalog: &str, schema: &str) -> Result<()> {
        if self.metastore.get_schema(catalog, schema).await?.is_some() {
            return Ok(());
        }
        if self.metastore.get_catalog(catalog).await?.is_none() {
            let cats = self.metastore.list_catalogs().await?;
            return Err(LakehouseError::NotFound {
                kind: ObjectKind::Catalog,
                name: catalog.to_string(),
                suggestions: confluo_core::suggest::nearest(
                    catalog,
                    cats.iter().map(|c| c.name.as_str()),
                ),
            });
        }
        let schemas = self.metastore.list_schemas(None).await?;
        let full: Vec<String> = schemas
            .iter()
            .map(|s| format!("{}.{}", s.catalog, s.name))
            .collect();
        Err(LakehouseError::NotFound {
            kind: ObjectKind::Schema,
            name: format!("{catalog}.{schema}"),
            suggestions: confluo_core::suggest::nearest(
                &format!("{catalog}.{schema}"),
                full.iter().map(String::as_str),
            ),
        })
    }

    /// Opens a registered table's Delta log.
    pub async fn open_delta(&self, info: &TableInfo, version: TableVersion) -> Result<DeltaTable> {
        delta::open_table(&self.storage, &info.location, version)
            .await
            .map_err(|e| match e {
                LakehouseError::Invalid(msg) => {
                    LakehouseError::Invalid(format!("table {}: {msg}", info.name))
                }
                other => other,
            })
    }

    /// The files under `location` (a local folder or an object-store URL such as
    /// s3://bucket/landing, with the project's storage options), each as its name relative
    /// to `location` and its last modification (milliseconds since the epoch).
    pub async fn list_files(&self, location: &str) -> Result<Vec<(String, i64)>> {
        let url = location_url(location)?;
        let store = self.storage.store_for(&url)?;
        let prefix = ObjectPath::from_url_path(url.path())
            .map_err(|e| LakehouseError::Invalid(format!("invalid location {location}: {e}")))?;
        let mut listing = store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = listing
            .try_next()
            .await
            .map_err(LakehouseError::storage(location))?
        {
            let full = meta.location.as_ref();
            let rel = full
                .strip_prefix(prefix.as_ref())
                .unwrap_or(full)
                .trim_start_matches('/');
            out.push((rel.to_string(), meta.last_modified.timestamp_millis()));
        }
        Ok(out)
    }

    /// The newest version of table `name` (-1 before its first commit), read from its
    /// log's file names.
    pub async fn latest_version(&self, name: &TableName) -> Result<i64> {
        let info = self.table(name).await?;
        crate::delta::latest_version(&self.storage, &info.location).await
    }

    /// Opens a Delta table by path or URL (for `delta.\`/path\`` and external tables).
    pub async fn open_path(&self, location: &str, version: TableVersion) -> Result<DeltaTable> {
        let url = location_url(location)?;
        delta::open_table(&self.storage, url.as_str(), version).await
    }

    /// Creates a table: a new Delta table at its managed location, or, with a location that
    /// already holds a Delta table, registers that table as it is.
    pub async fn create_table(&self, req: NewTable) -> Result<(TableInfo, DeltaTable)> {
        let NewTable {
            name,
            schema,
            partition_by,
            comment,
            properties,
            location,
        } = req;
        self.require_schema(name.catalog.as_str(), name.schema.as_str())
            .await?;
        if self.metastore.get_table(&name).await?.is_some() {
            return Err(LakehouseError::AlreadyExists {
                kind: ObjectKind::Table,
                name: name.to_string(),
            });
        }
        let managed = location.is_none();
        let url: Url = match &location {
            Some(l) => location_url(l)?,
            None => self.storage.table_url(&name),
        };
        let mut existing = delta::table_exists(&self.storage, url.as_str()).await?;
        if existing && managed {
            // A create killed between writing the Delta log and registering the table leaves
            // version 0 (metadata, no data) behind at the managed location: start it over.
            // Anything further along holds someone's data, so it is refused.
            let found =
                delta::open_table(&self.storage, url.as_str(), TableVersion::Latest).await?;
            if found.version() != Some(0) {
                return Err(LakehouseError::Invalid(format!(
                    "cannot create {name}: its location {url} already holds a Delta table that is not registered\n  hint: register it with CREATE TABLE {name} LOCATION '{url}', or remove the folder"
                )));
            }
            self.delete_location(url.as_str()).await?;
            existing = false;
        }
        let table = if existing {
            delta::open_table(&self.storage, url.as_str(), TableVersion::Latest).await?
        } else {
            if schema.fields().is_empty() {
                return Err(LakehouseError::Schema(match &location {
                    Some(l) => format!(
                        "cannot register {name}: {l} holds no Delta table (no _delta_log); give columns to create one there"
                    ),
                    None => format!("cannot create {name}: a table needs at least one column"),
                }));
            }
            let configuration: HashMap<String, String> = properties
                .iter()
                .filter(|(k, _)| k.starts_with("delta."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            delta::create_table(
                &self.storage,
                url.as_str(),
                &schema,
                CreateOptions {
                    name: Some(name.table.as_str().to_string()),
                    comment: comment.clone(),
                    partition_by,
                    configuration,
                },
            )
            .await?
        };
        let now = chrono::Utc::now().timestamp_millis();
        let info = TableInfo {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            location: url.to_string(),
            format: "delta".into(),
            managed,
            owner: Some(current_user()),
            comment,
            properties,
            created_at: now,
            updated_at: now,
        };
        self.metastore.create_table(&info).await?;
        Ok((info, table))
    }

    /// Drops a table. A managed table's files are deleted; an external table's are kept.
    /// Returns false when it did not exist and `if_exists` is set.
    pub async fn drop_table(&self, name: &TableName, if_exists: bool) -> Result<bool> {
        let Some(info) = self.metastore.drop_table(name).await? else {
            return if if_exists {
                Ok(false)
            } else {
                Err(self.table_not_found(name).await)
            };
        };
        if info.managed {
            self.delete_location(&info.location).await?;
        }
        Ok(true)
    }

    async fn delete_location(&self, location: &str) -> Result<()> {
        let url = Url::parse(location)
            .map_err(|e| LakehouseError::Invalid(format!("invalid location {location}: {e}")))?;
        let store = self.storage.store_for(&url)?;
        let prefix = ObjectPath::from_url_path(url.path())
            .map_err(|e| LakehouseError::Invalid(format!("invalid location {location}: {e}")))?;
        let locations = store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        store
            .delete_stream(locations)
            .try_collect::<Vec<_>>()
            .await
            .map_err(LakehouseError::storage(location))?;
        if url.scheme() == "file"
            && let Ok(path) = url.to_file_path()
        {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(())
    }

    /// Sets table properties; `delta.*` keys are also written to the Delta table.
    pub async fn set_properties(
        &self,
        name: &TableName,
        set: &BTreeMap<String, String>,
        unset: &[String],
    ) -> Result<()> {
        let info = self.table(name).await?;
        let mut props = info.properties.clone();
        for k in unset {
            props.remove(k);
        }
        props.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let delta_props: HashMap<String, String> = set
            .iter()
            .filter(|(k, _)| k.starts_with("delta."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !delta_props.is_empty() {
            let table = self.open_delta(&info, TableVersion::Latest).await?;
            table
                .set_tbl_properties()
                .with_properties(delta_props)
                .with_raise_if_not_exists(false)
                .await
                .map_err(LakehouseError::delta(name))?;
        }
        self.metastore.set_table_properties(name, &props).await
    }
}
