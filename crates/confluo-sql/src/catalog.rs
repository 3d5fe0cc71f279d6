//! The metastore seen as DataFusion catalogs: every `catalog.schema.table` in the metastore
//! is a table DataFusion can plan against, read through delta-rs.
//!
//! DataFusion asks for catalog and schema names synchronously, so the names are held in a
//! snapshot that the session refreshes before each statement; tables themselves are looked
//! up and opened asynchronously when a query names them. Views are planned from their SQL
//! when a query names them (so they see the tables as they are now); foreign catalogs are
//! kept across statements and rebuilt only when their definition changes.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::catalog::view::ViewTable;
use datafusion::execution::session_state::SessionState;

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, SchemaProvider, TableProvider,
};
use datafusion::error::{DataFusionError, Result};

use crate::federation::{ForeignCatalog, ForeignCatalogProvider, open_source};
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

/// The session's state as of now, for planning views (`None` once the session is gone).
pub struct StateSource(pub Box<dyn Fn() -> Option<SessionState> + Send + Sync>);

impl std::fmt::Debug for StateSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateSource")
    }
}

type StateFn = Arc<RwLock<Option<StateSource>>>;

tokio::task_local! {
    /// The views being planned, outermost first.
    static VIEW_CHAIN: Vec<String>;
}

/// Foreign catalogs by name.
type Foreign = Arc<RwLock<BTreeMap<String, Arc<ForeignCatalog>>>>;

/// All catalogs of the metastore, plus the scratch catalog.
#[derive(Debug)]
pub struct MetastoreCatalogList {
    lakehouse: Arc<Lakehouse>,
    names: Arc<RwLock<Names>>,
    scratch: Arc<MemoryCatalogProvider>,
    extras: Extras,
    foreign: Foreign,
    state: StateFn,
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
            foreign: Foreign::default(),
            state: StateFn::default(),
        }
    }

    /// Gives views a way to plan their SQL: `state` returns the session's current state.
    pub fn set_state(&self, state: StateSource) {
        *self.state.write().expect("state lock") = Some(state);
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
        let tables = ms.list_tables(None, None).await?;
        let views = ms.list_views(None, None).await?;
        for name in tables
            .iter()
            .map(|t| &t.name)
            .chain(views.iter().map(|v| &v.name))
        {
            names
                .entry(name.catalog.as_str().to_string())
                .or_default()
                .entry(name.schema.as_str().to_string())
                .or_default()
                .push(name.table.as_str().to_string());
        }
        *self.names.write().expect("names lock") = names;
        self.refresh_foreign().await
    }

    /// Keeps the foreign catalogs in step with the metastore: new ones are opened, changed
    /// ones (catalog or connection redefined) reopened, dropped ones forgotten.
    async fn refresh_foreign(&self) -> confluo_lakehouse::Result<()> {
        let ms = self.lakehouse.metastore();
        let defs = ms.list_foreign_catalogs().await?;
        let mut next = BTreeMap::new();
        for f in defs {
            // The project, the catalog and its connection (made by SQL or in confluo.yaml):
            // a change to any of them opens the catalog anew.
            let connection = ms.get_connection(&f.connection).await?;
            let definition = format!(
                "{}|{f:?}|{connection:?}|{:?}",
                self.lakehouse.state_dir().display(),
                self.lakehouse.project_connections().get(&f.connection)
            );
            let catalog =
                ForeignCatalog::shared(&f.name, definition, open_source(&self.lakehouse, &f)).await;
            catalog.refresh_names().await;
            next.insert(f.name, catalog);
        }
        *self.foreign.write().expect("foreign lock") = next;
        Ok(())
    }

    /// Schema → tables of foreign catalog `name` as last listed; `None` when it is none.
    pub fn foreign_listing(&self, name: &str) -> Option<crate::federation::Listing> {
        self.foreign
            .read()
            .expect("foreign lock")
            .get(name)
            .map(|f| f.listing())
    }

    /// The names as of the last refresh, foreign catalogs' included.
    pub fn names(&self) -> Names {
        let mut names = self.names.read().expect("names lock").clone();
        for (name, f) in self.foreign.read().expect("foreign lock").iter() {
            names.insert(name.clone(), f.listing().into_iter().collect());
        }
        names
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
        names.extend(self.foreign.read().expect("foreign lock").keys().cloned());
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
        if let Some(f) = self.foreign.read().expect("foreign lock").get(name) {
            return Some(Arc::new(ForeignCatalogProvider(f.clone())));
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
                    state: self.state.clone(),
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
    state: StateFn,
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
            state: self.state.clone(),
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
    state: StateFn,
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
        let ms = self.lakehouse.metastore();
        let Some(info) = ms
            .get_table(&full)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
        else {
            let view = ms
                .get_view(&full)
                .await
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            return match view {
                Some(v) => Ok(Some(self.plan_view(&v).await?)),
                None => Ok(None),
            };
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

impl MetastoreSchema {
    /// A view as a provider: its SQL planned now, with the catalog and schema that were
    /// current when it was made.
    async fn plan_view(
        &self,
        v: &confluo_lakehouse::metastore::ViewInfo,
    ) -> Result<Arc<dyn TableProvider>> {
        let state = {
            let guard = self.state.read().expect("state lock");
            guard.as_ref().and_then(|f| (f.0)())
        };
        let Some(mut state) = state else {
            return Err(DataFusionError::Plan(format!(
                "view {} cannot be read outside a SQL session",
                v.name
            )));
        };
        let opts = state.config_mut().options_mut();
        opts.catalog.default_catalog = v.default_catalog.clone();
        opts.catalog.default_schema = v.default_schema.clone();
        // Views are planned inside the planning of what reads them (same task), so the chain
        // of views being planned is known: one that appears twice would never finish.
        let me = v.name.to_string();
        let mut chain = VIEW_CHAIN.try_with(|c| c.clone()).unwrap_or_default();
        if chain.contains(&me) {
            chain.push(me.clone());
            return Err(DataFusionError::Plan(format!(
                "view {me} would read itself: {}",
                chain.join(" → ")
            )));
        }
        chain.push(me);
        let plan = VIEW_CHAIN
            .scope(chain, state.create_logical_plan(&v.sql))
            .await
            .map_err(|e| match e {
                DataFusionError::Plan(m) if m.contains("would read itself") => {
                    DataFusionError::Plan(m)
                }
                e => DataFusionError::Plan(format!(
                    "view {} no longer plans: {e}\n  hint: CREATE OR REPLACE VIEW {} AS ... to redefine it",
                    v.name, v.name
                )),
            })?;
        Ok(Arc::new(ViewTable::new(plan, Some(v.sql.clone()))))
    }
}
