//! The metastore seen as DataFusion catalogs: every `catalog.schema.table` in the metastore
//! is a table DataFusion can plan against, read through delta-rs.
//!
//! DataFusion asks for catalog and schema names synchronously, so the names are held in a
//! snapshot that the session refreshes before each statement; tables themselves are looked
//! up and opened asynchronously when a query names them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, SchemaProvider, TableProvider,
};
use datafusion::error::{DataFusionError, Result};

use confluo_core::TableName;
use confluo_lakehouse::{Lakehouse, TableVersion};

/// The catalog holding per-statement providers (`read_files(...)`, time travel).
pub const SCRATCH_CATALOG: &str = "__confluo_scratch";
/// Its one schema.
pub const SCRATCH_SCHEMA: &str = "s";

/// Catalog → schema → table names.
pub type Names = BTreeMap<String, BTreeMap<String, Vec<String>>>;

/// Schemas a session adds to every catalog (the Postgres endpoint's `pg_catalog`).
type Extras = Arc<RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>>;

/// All catalogs of the metastore, plus the scratch catalog.
#[derive(Debug)]
pub struct MetastoreCatalogList {
    lakehouse: Arc<Lakehouse>,
    names: Arc<RwLock<Names>>,
    scratch: Arc<MemoryCatalogProvider>,
    extras: Extras,
}

impl MetastoreCatalogList {
    /// A catalog list over `lakehouse`; call [`Self::refresh`] before planning.
    pub fn new(lakehouse: Arc<Lakehouse>) -> Self {
        let scratch = Arc::new(MemoryCatalogProvider::new());
        scratch
            .register_schema(
                SCRATCH_SCHEMA,
                Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
            )
            .expect("a fresh memory catalog accepts schemas");
        MetastoreCatalogList {
            lakehouse,
            names: Arc::new(RwLock::new(Names::new())),
            scratch,
            extras: Extras::default(),
        }
    }

    /// Reloads catalog, schema and table names from the metastore.
    pub async fn refresh(&self) -> confluo_lakehouse::Result<()> {
        let ms = self.lakehouse.metastore();
        let mut names = Names::new();
        for c in ms.list_catalogs().await? {
            names.entry(c.name).or_default();
        }
        for s in ms.list_schemas(None).await? {
            names
                .entry(s.catalog)
                .or_default()
                .entry(s.name)
                .or_default();
        }
        for t in ms.list_tables(None, None).await? {
            names
                .entry(t.name.catalog.as_str().to_string())
                .or_default()
                .entry(t.name.schema.as_str().to_string())
                .or_default()
                .push(t.name.table.as_str().to_string());
        }
        *self.names.write().expect("names lock") = names;
        Ok(())
    }

    /// The names as of the last refresh.
    pub fn names(&self) -> Names {
        self.names.read().expect("names lock").clone()
    }

    /// The scratch schema for per-statement providers.
    pub fn scratch(&self) -> Arc<dyn SchemaProvider> {
        self.scratch
            .schema(SCRATCH_SCHEMA)
            .expect("registered at creation")
    }
}

impl CatalogProviderList for MetastoreCatalogList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .names
            .read()
            .expect("names lock")
            .keys()
            .cloned()
            .collect();
        if !names.iter().any(|n| n == crate::system::SYSTEM_CATALOG) {
            names.push(crate::system::SYSTEM_CATALOG.into());
        }
        names
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        if name == SCRATCH_CATALOG {
            return Some(self.scratch.clone());
        }
        if name == crate::system::SYSTEM_CATALOG {
            let quality = self
                .names
                .read()
                .expect("names lock")
                .get(crate::system::SYSTEM_CATALOG)
                .and_then(|s| s.get("quality"))
                .cloned()
                .unwrap_or_default();
            return Some(Arc::new(crate::system::SystemCatalog::new(
                self.lakehouse.clone(),
                quality,
            )));
        }
        self.names
            .read()
            .expect("names lock")
            .contains_key(name)
            .then(|| {
                Arc::new(MetastoreCatalog {
                    lakehouse: self.lakehouse.clone(),
                    names: self.names.clone(),
                    catalog: name.to_string(),
                    extras: self.extras.clone(),
                }) as Arc<dyn CatalogProvider>
            })
    }
}

#[derive(Debug)]
struct MetastoreCatalog {
    lakehouse: Arc<Lakehouse>,
    names: Arc<RwLock<Names>>,
    catalog: String,
    extras: Extras,
}

impl CatalogProvider for MetastoreCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .names
            .read()
            .expect("names lock")
            .get(&self.catalog)
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        names.extend(self.extras.read().expect("extras lock").keys().cloned());
        names
    }

    /// A schema registered by the session (not the metastore) appears in every catalog of
    /// this session only: the Postgres endpoint's `pg_catalog`, which describes them all.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        Ok(self
            .extras
            .write()
            .expect("extras lock")
            .insert(name.to_string(), schema))
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.extras.read().expect("extras lock").get(name) {
            return Some(s.clone());
        }
        let names = self.names.read().expect("names lock");
        names.get(&self.catalog)?.get(name)?;
        Some(Arc::new(MetastoreSchema {
            lakehouse: self.lakehouse.clone(),
            names: self.names.clone(),
            catalog: self.catalog.clone(),
            schema: name.to_string(),
        }))
    }
}

/// One schema of the metastore.
#[derive(Debug)]
pub struct MetastoreSchema {
    lakehouse: Arc<Lakehouse>,
    names: Arc<RwLock<Names>>,
    catalog: String,
    schema: String,
}

#[async_trait]
impl SchemaProvider for MetastoreSchema {
    fn table_names(&self) -> Vec<String> {
        self.names
            .read()
            .expect("names lock")
            .get(&self.catalog)
            .and_then(|s| s.get(&self.schema))
            .cloned()
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let full = TableName::new(&self.catalog, &self.schema, name);
        let Some(info) = self
            .lakehouse
            .metastore()
            .get_table(&full)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
        else {
            return Ok(None);
        };
        let table = self
            .lakehouse
            .open_delta(&info, TableVersion::Latest)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Some(table.table_provider().await?))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|t| t == name)
    }
}
