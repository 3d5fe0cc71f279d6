//! A foreign catalog as DataFusion sees it: the source's schemas and tables, each table a
//! federated scan. Names are listed at most once a minute (DataFusion asks for them without
//! waiting); a table's columns are read when a query names it and kept for 30 s, so a burst
//! of queries asks the source once. A catalog is shared by every session of the process
//! with the same definition (a served connection or HTTP request is a new session, and must
//! not list every foreign database again), and reopened after five minutes so a secret saved
//! again takes effect.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{RemoteTableRef, SQLFederationProvider, SQLTableSource};

use super::{Listing, SourceRef};

/// How long a listing of names is used before it is read again.
const LISTING_TTL: Duration = Duration::from_secs(60);
/// How long a table's columns are used before they are read again.
const TABLE_TTL: Duration = Duration::from_secs(30);
/// How long a listing may take before the statement goes on without it.
const LISTING_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a catalog is shared before it is opened again (secrets read anew).
const SHARE_TTL: Duration = Duration::from_secs(300);

/// Catalogs opened in this process, by definition.
static SHARED: LazyLock<Mutex<HashMap<String, Arc<ForeignCatalog>>>> =
    LazyLock::new(Mutex::default);

/// A table's provider and when its columns were read.
type Cached = (Instant, Arc<dyn TableProvider>);

#[derive(Default)]
struct Names {
    read_at: Option<Instant>,
    listing: Listing,
}

/// One foreign catalog.
pub struct ForeignCatalog {
    name: String,
    opened: Instant,
    source: Result<SourceRef, String>,
    provider: Option<Arc<SQLFederationProvider>>,
    names: RwLock<Names>,
    tables: Mutex<HashMap<(String, String), Cached>>,
}

impl std::fmt::Debug for ForeignCatalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForeignCatalog")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ForeignCatalog {
    /// The catalog `name` over `source` (or over the error that stopped the source from
    /// opening, which every table lookup then reports).
    pub fn new(name: &str, source: Result<SourceRef, String>) -> Self {
        let provider = source.as_ref().ok().map(|s| {
            let executor: Arc<dyn datafusion_federation::sql::SQLExecutor> = s.clone();
            Arc::new(SQLFederationProvider::new(executor))
        });
        ForeignCatalog {
            name: name.to_string(),
            opened: Instant::now(),
            source,
            provider,
            names: RwLock::default(),
            tables: Mutex::default(),
        }
    }

    /// The catalog of `definition` (the catalog's and its connection's settings) opened by
    /// another session less than five minutes ago, or a new one over what `open` returns.
    /// A source that failed to open is not shared: the next session tries again.
    pub async fn shared(
        name: &str,
        definition: String,
        open: impl std::future::Future<Output = Result<SourceRef, String>>,
    ) -> Arc<ForeignCatalog> {
        let fresh = |c: &Arc<ForeignCatalog>| c.opened.elapsed() < SHARE_TTL;
        if let Some(c) = SHARED
            .lock()
            .expect("shared lock")
            .get(&definition)
            .filter(|c| fresh(c))
        {
            return c.clone();
        }
        let catalog = Arc::new(ForeignCatalog::new(name, open.await));
        if catalog.source.is_ok() {
            let mut shared = SHARED.lock().expect("shared lock");
            shared.retain(|_, c| fresh(c));
            shared.insert(definition, catalog.clone());
        }
        catalog
    }

    /// Reads the source's names again when they are older than a minute. A source that does
    /// not answer leaves the old names (a statement about lakehouse tables must not wait
    /// on, or fail because of, a foreign database).
    pub async fn refresh_names(&self) {
        let fresh = self
            .names
            .read()
            .expect("names lock")
            .read_at
            .is_some_and(|t| t.elapsed() < LISTING_TTL);
        if fresh {
            return;
        }
        let Ok(source) = &self.source else {
            self.names.write().expect("names lock").read_at = Some(Instant::now());
            return;
        };
        let listing = tokio::time::timeout(LISTING_TIMEOUT, source.list()).await;
        let mut names = self.names.write().expect("names lock");
        names.read_at = Some(Instant::now());
        if let Ok(Ok(listing)) = listing {
            names.listing = listing;
        }
    }

    /// Schema → tables as last listed.
    pub fn listing(&self) -> Listing {
        self.names.read().expect("names lock").listing.clone()
    }

    fn error(&self) -> DataFusionError {
        match &self.source {
            Err(e) => DataFusionError::Plan(e.clone()),
            Ok(_) => DataFusionError::Internal("the source is open".into()),
        }
    }

    async fn table(&self, schema: &str, table: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (Ok(source), Some(provider)) = (&self.source, &self.provider) else {
            return Err(self.error());
        };
        let key = (schema.to_string(), table.to_string());
        if let Some((at, t)) = self.tables.lock().expect("tables lock").get(&key)
            && at.elapsed() < TABLE_TTL
        {
            return Ok(Some(t.clone()));
        }
        let Some(columns) = source.table_schema(schema, table).await? else {
            return Ok(None);
        };
        let reference = RemoteTableRef::from(TableReference::partial(schema, table));
        let table_source = SQLTableSource::new_with_schema(provider.clone(), reference, columns);
        let adaptor: Arc<dyn TableProvider> =
            Arc::new(FederatedTableProviderAdaptor::new(Arc::new(table_source)));
        self.tables
            .lock()
            .expect("tables lock")
            .insert(key, (Instant::now(), adaptor.clone()));
        Ok(Some(adaptor))
    }
}

/// The catalog provider of a shared [`ForeignCatalog`].
#[derive(Debug, Clone)]
pub struct ForeignCatalogProvider(pub Arc<ForeignCatalog>);

impl CatalogProvider for ForeignCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        self.0.listing().into_keys().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        // Any name is tried: a schema made at the source since the last listing is found
        // when its table is looked up.
        Some(Arc::new(ForeignSchema {
            catalog: self.0.clone(),
            schema: name.to_string(),
        }))
    }
}

#[derive(Debug)]
struct ForeignSchema {
    catalog: Arc<ForeignCatalog>,
    schema: String,
}

#[async_trait]
impl SchemaProvider for ForeignSchema {
    fn table_names(&self) -> Vec<String> {
        self.catalog
            .listing()
            .remove(&self.schema)
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.catalog.table(&self.schema, name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        self.table_names().iter().any(|t| t == name)
    }
}
