//! A SQL session over a lakehouse: parses a script, resolves what DataFusion cannot
//! (`read_files`, time travel, path tables), runs lakehouse statements itself and hands
//! queries to DataFusion.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{Ident, ObjectName, ObjectNamePart, Statement};
use datafusion::sql::sqlparser::tokenizer::Location;

use crate::catalog::{MetastoreCatalogList, SCRATCH_CATALOG, SCRATCH_SCHEMA};
use crate::error::{Result, SqlError};
use crate::parser::{ConfluoStatement, Parsed, parse_sql};
use crate::read_files::{ReadFilesFunc, ScanRegistry, plan_read_files, provider};
use crate::rewrite::{self, Request};
use confluo_core::{Ident as CoreIdent, TableName};
use confluo_lakehouse::{Lakehouse, TableVersion};

/// What a statement produced.
pub enum SqlOutput {
    /// Rows, streamed.
    Rows(SendableRecordBatchStream),
    /// A confirmation for statements without rows.
    Message(String),
}

impl std::fmt::Debug for SqlOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlOutput::Rows(s) => write!(f, "Rows({:?})", s.schema()),
            SqlOutput::Message(m) => write!(f, "Message({m:?})"),
        }
    }
}

/// A SQL session.
pub struct SqlSession {
    ctx: SessionContext,
    lakehouse: Arc<Lakehouse>,
    catalogs: Arc<MetastoreCatalogList>,
    scratch_seq: AtomicUsize,
    scans: ScanRegistry,
    current: Mutex<(String, String)>,
    principal: Mutex<Option<String>>,
}

impl SqlSession {
    /// A session over `lakehouse`, with its default catalog and schema current.
    pub async fn new(lakehouse: Arc<Lakehouse>) -> Result<Self> {
        let catalogs = Arc::new(MetastoreCatalogList::new(lakehouse.clone()));
        catalogs.refresh().await?;
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(
                lakehouse.default_catalog(),
                lakehouse.default_schema(),
            )
            .with_create_default_catalog_and_schema(false);
        config.options_mut().sql_parser.collect_spans = true;
        config.options_mut().sql_parser.dialect = datafusion::config::Dialect::Databricks;
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        let runtime = RuntimeEnvBuilder::new().build_arc()?;
        if lakehouse.storage().url().scheme() != "file" {
            let url = lakehouse.storage().url();
            let store = lakehouse.storage().store_for(url)?;
            runtime.register_object_store(url, store);
        }
        // The federation rule cuts the parts of a plan that read one foreign source out of
        // it (after scalar subqueries became joins), and its planner turns them into SQL
        // run there; plans without foreign tables pass through untouched.
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_optimizer_rules(datafusion_federation::default_optimizer_rules())
            .with_query_planner(Arc::new(datafusion_federation::FederatedQueryPlanner::new()))
            .with_catalog_list(catalogs.clone())
            .build();
        let ctx = SessionContext::new_with_state(state);
        let weak = ctx.state_weak_ref();
        catalogs.set_state(crate::catalog::StateSource(Box::new(move || {
            weak.upgrade().map(|s| s.read().clone())
        })));
        ctx.register_udtf("read_files", Arc::new(ReadFilesFunc));
        crate::spark::register(&ctx);
        let current = (
            lakehouse.default_catalog().to_string(),
            lakehouse.default_schema().to_string(),
        );
        Ok(SqlSession {
            ctx,
            lakehouse,
            catalogs,
            scratch_seq: AtomicUsize::new(0),
            scans: Arc::default(),
            current: Mutex::new(current),
            principal: Mutex::new(None),
        })
    }

    /// The DataFusion context (for callers that build plans themselves).
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// The lakehouse.
    pub fn lakehouse(&self) -> &Arc<Lakehouse> {
        &self.lakehouse
    }

    /// Schema → tables of foreign catalog `name` as last listed; `None` when `name` is no
    /// foreign catalog.
    pub fn foreign_listing(&self, name: &str) -> Option<crate::federation::Listing> {
        self.catalogs.foreign_listing(name)
    }

    /// The current catalog and schema.
    pub fn current(&self) -> (String, String) {
        self.current.lock().expect("current lock").clone()
    }

    /// Who this session runs as: the logged-in user of a served connection; `None` for the
    /// project's owner at the command line. Grants are judged against it.
    pub fn principal(&self) -> Option<String> {
        self.principal.lock().expect("principal lock").clone()
    }

    /// Runs the session as `name` (set once, at login).
    pub fn set_principal(&self, name: &str) {
        *self.principal.lock().expect("principal lock") = Some(name.to_string());
    }

    /// Makes `catalog.schema` current for unqualified names.
    pub fn set_current(&self, catalog: &str, schema: &str) {
        *self.current.lock().expect("current lock") = (catalog.to_string(), schema.to_string());
        let state = self.ctx.state_ref();
        let mut state = state.write();
        let opts = state.config_mut().options_mut();
        opts.catalog.default_catalog = catalog.to_string();
        opts.catalog.default_schema = schema.to_string();
    }

    /// Parses a script.
    pub fn parse(&self, sql: &str) -> Result<Vec<Parsed>> {
        parse_sql(sql).map_err(SqlError::Parse)
    }

    /// Runs a whole script, returning the output of its last statement. Earlier rows are
    /// consumed and discarded.
    pub async fn run_script(&self, sql: &str) -> Result<SqlOutput> {
        let parsed = self.parse(sql)?;
        let mut last = SqlOutput::Message(String::new());
        let n = parsed.len();
        for (i, p) in parsed.into_iter().enumerate() {
            let out = self.execute(p.statement).await?;
            if i + 1 < n
                && let SqlOutput::Rows(stream) = out
            {
                let _ = datafusion::physical_plan::common::collect(stream).await?;
                continue;
            }
            last = out;
        }
        Ok(last)
    }

    /// Runs a query and collects its rows (convenience for tests and small results).
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        match self.run_script(sql).await? {
            SqlOutput::Rows(s) => Ok(datafusion::physical_plan::common::collect(s).await?),
            SqlOutput::Message(_) => Ok(vec![]),
        }
    }

    /// Notices about the last statement: rows rescued by `read_files`.
    pub fn notices(&self) -> Vec<String> {
        self.scans
            .lock()
            .expect("scan registry")
            .iter()
            .filter_map(|(label, p)| {
                let n = p.rescued.load(Ordering::Relaxed);
                (n > 0).then(|| {
                    format!(
                        "read_files('{label}'): {n} row{} had values that did not fit the schema; they are kept in _rescued_data",
                        if n == 1 { "" } else { "s" }
                    )
                })
            })
            .collect()
    }

    /// Executes one statement.
    pub async fn execute(&self, statement: ConfluoStatement) -> Result<SqlOutput> {
        self.catalogs.refresh().await?;
        self.clear_scratch();
        match statement {
            ConfluoStatement::Query(s) => {
                let df = self.plan_statement(*s).await?;
                Ok(SqlOutput::Rows(
                    df.execute_stream()
                        .await
                        .map_err(|e| self.explain_error(e))?,
                ))
            }
            other => crate::statements::execute(self, other).await,
        }
    }

    /// Re-reads the catalog names (after tables were created outside this session) and
    /// forgets the previous statement's scratch tables.
    pub async fn refresh(&self) -> Result<()> {
        self.catalogs.refresh().await?;
        self.clear_scratch();
        Ok(())
    }

    /// Re-reads the catalog names, keeping registered scratch tables.
    pub async fn refresh_names(&self) -> Result<()> {
        self.catalogs.refresh().await?;
        Ok(())
    }

    /// Registers a provider for the current statement; returns the name to read it by.
    pub fn register_scratch(
        &self,
        provider: std::sync::Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<ObjectName> {
        let id = format!("t{}", self.scratch_seq.fetch_add(1, Ordering::Relaxed));
        self.catalogs
            .scratch()
            .register_table(id.clone(), provider)?;
        Ok(rewrite::object_name(&[
            SCRATCH_CATALOG,
            SCRATCH_SCHEMA,
            &id,
        ]))
    }

    fn clear_scratch(&self) {
        let scratch = self.catalogs.scratch();
        for name in scratch.table_names() {
            let _ = scratch.deregister_table(&name);
        }
        self.scans.lock().expect("scan registry").clear();
    }

    /// Plans a statement DataFusion understands, after resolving `read_files`, time travel
    /// and path tables.
    pub async fn plan_statement(&self, mut statement: Statement) -> Result<DataFrame> {
        crate::spark::respell(&mut statement);
        self.resolve_references(&mut statement).await?;
        let state = self.ctx.state();
        let plan = match state
            .statement_to_plan(DfStatement::Statement(Box::new(statement.clone())))
            .await
        {
            Ok(plan) => plan,
            Err(e) => {
                // An unquoted name of a mixed-case column (`Amount` from a CSV header) is
                // matched ignoring case, as Spark SQL does, and the statement planned again.
                if !(is_unknown_column(&e) && self.respell_columns(&mut statement).await) {
                    return Err(self.explain_error(e));
                }
                state
                    .statement_to_plan(DfStatement::Statement(Box::new(statement)))
                    .await
                    .map_err(|_| self.explain_error(e))?
            }
        };
        self.ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| self.explain_error(e))
    }

    /// Respells unquoted column names that equal a column of the statement's tables only
    /// when case is ignored (and equal no other column that way) as that column's name.
    async fn respell_columns(&self, statement: &mut Statement) -> bool {
        let mut by_lower: std::collections::HashMap<String, Vec<String>> = Default::default();
        for name in rewrite::table_names(statement) {
            let Ok(provider) = self.ctx.table_provider(name.to_string().as_str()).await else {
                continue;
            };
            for f in provider.schema().fields() {
                let names = by_lower.entry(f.name().to_lowercase()).or_default();
                if !names.contains(f.name()) {
                    names.push(f.name().clone());
                }
            }
        }
        let spelling: std::collections::HashMap<String, String> = by_lower
            .into_iter()
            .filter_map(|(lower, mut names)| match names.len() {
                1 if names[0] != lower => Some((lower, names.remove(0))),
                _ => None,
            })
            .collect();
        !spelling.is_empty() && rewrite::respell_columns(statement, &spelling)
    }

    async fn resolve_references(&self, statement: &mut Statement) -> Result<()> {
        let requests = rewrite::collect(statement).map_err(|m| SqlError::plan(m, None))?;
        if requests.is_empty() {
            return Ok(());
        }
        let metadata = crate::metadata_column::names_metadata(statement);
        if metadata {
            crate::metadata_column::hide_from_wildcards(statement, &|tf| {
                matches!(rewrite::request_of(tf), Ok(Some(Request::ReadFiles { .. })))
            });
        }
        let scratch = self.catalogs.scratch();
        let mut names = Vec::with_capacity(requests.len());
        for req in requests {
            let provider = match req {
                Request::ReadFiles {
                    path,
                    options,
                    location,
                } => {
                    let store = if path.contains("://") && !path.starts_with("file://") {
                        let url = url_of(&path).map_err(|m| SqlError::plan(m, location))?;
                        Some(self.lakehouse.storage().store_for(&url)?)
                    } else {
                        None
                    };
                    let scan = plan_read_files(&path, &options, store, metadata)
                        .await
                        .map_err(|e| match e {
                            confluo_connectors::files::FilesError::BadOption { .. } => {
                                SqlError::plan(format!("read_files: {e}"), location)
                            }
                            other => other.into(),
                        })?;
                    provider(scan, Some(&self.scans), &path)?
                }
                Request::TimeTravel {
                    name,
                    version,
                    timestamp,
                    location,
                } => {
                    let table = self
                        .table_name(&name)
                        .map_err(|e| with_location(e, location))?;
                    let info = self
                        .lakehouse
                        .table(&table)
                        .await
                        .map_err(|e| with_location(e.into(), location))?;
                    let v = match (version, timestamp) {
                        (Some(v), _) => TableVersion::Version(v),
                        (None, Some(expr)) => TableVersion::Timestamp(
                            self.eval_timestamp(&expr)
                                .await
                                .map_err(|e| with_location(e, location))?,
                        ),
                        _ => TableVersion::Latest,
                    };
                    let delta = self
                        .lakehouse
                        .open_delta(&info, v)
                        .await
                        .map_err(|e| with_location(e.into(), location))?;
                    delta.table_provider().await?
                }
                Request::DeltaPath { path, location } => {
                    let delta = self
                        .lakehouse
                        .open_path(&path, TableVersion::Latest)
                        .await
                        .map_err(|e| with_location(e.into(), location))?;
                    delta.table_provider().await?
                }
            };
            let id = format!("t{}", self.scratch_seq.fetch_add(1, Ordering::Relaxed));
            scratch.register_table(id.clone(), provider)?;
            names.push(rewrite::object_name(&[
                SCRATCH_CATALOG,
                SCRATCH_SCHEMA,
                &id,
            ]));
        }
        rewrite::replace(statement, &names);
        Ok(())
    }

    /// Evaluates `TIMESTAMP AS OF` text: a literal or any SQL expression.
    async fn eval_timestamp(&self, expr: &str) -> Result<chrono::DateTime<chrono::Utc>> {
        if let Some(ts) = confluo_connectors::files::values::parse_iso_timestamp(expr.as_bytes()) {
            return chrono::DateTime::from_timestamp_micros(ts)
                .ok_or_else(|| SqlError::plan(format!("timestamp out of range: {expr}"), None));
        }
        let sql = format!("SELECT CAST(({expr}) AS TIMESTAMP)");
        let df = self.ctx.sql(&sql).await.map_err(|e| {
            SqlError::plan(
                format!(
                    "TIMESTAMP AS OF {expr}: {}",
                    crate::error::clean_datafusion(&e)
                ),
                None,
            )
        })?;
        let batches = df.collect().await?;
        let col = batches
            .first()
            .map(|b| b.column(0).clone())
            .ok_or_else(|| SqlError::plan(format!("TIMESTAMP AS OF {expr}: no value"), None))?;
        let col = datafusion::arrow::compute::cast(
            &col,
            &datafusion::arrow::datatypes::DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Microsecond,
                None,
            ),
        )?;
        let arr = col
            .as_any()
            .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
            .ok_or_else(|| {
                SqlError::plan(format!("TIMESTAMP AS OF {expr}: not a timestamp"), None)
            })?;
        if arr.is_empty() || datafusion::arrow::array::Array::is_null(arr, 0) {
            return Err(SqlError::plan(
                format!("TIMESTAMP AS OF {expr}: the expression is null"),
                None,
            ));
        }
        chrono::DateTime::from_timestamp_micros(arr.value(0))
            .ok_or_else(|| SqlError::plan(format!("timestamp out of range: {expr}"), None))
    }

    /// A three-part table name from an AST name, completed with the current catalog/schema.
    pub fn table_name(&self, name: &ObjectName) -> Result<TableName> {
        let parts = ident_parts(name)?;
        let (c, s) = self.current();
        match parts.as_slice() {
            [t] => Ok(TableName::new(c, s, t.clone())),
            [sc, t] => Ok(TableName::new(c, sc.clone(), t.clone())),
            [ca, sc, t] => Ok(TableName::new(ca.clone(), sc.clone(), t.clone())),
            _ => Err(SqlError::plan(
                format!("`{name}` has too many parts: a table name is catalog.schema.table"),
                location_of(name),
            )),
        }
    }

    /// Turns DataFusion's "table not found" into an error that suggests near names.
    pub fn explain_error(&self, e: DataFusionError) -> SqlError {
        let location = crate::error::diagnostic_location(&e);
        let msg = e.to_string();
        if let Some(rest) = msg.split("table '").nth(1)
            && let Some(name) = rest.split("' not found").next()
            && msg.contains("' not found")
        {
            let parts: Vec<&str> = name.split('.').collect();
            let (c, s) = self.current();
            let full = match parts.as_slice() {
                [t] => TableName::new(c, s, *t),
                [sc, t] => TableName::new(c, *sc, *t),
                [ca, sc, t] => TableName::new(*ca, *sc, *t),
                _ => return SqlError::plan(msg, location),
            };
            let names = self.catalogs.names();
            let all: Vec<String> = names
                .iter()
                .flat_map(|(c, ss)| {
                    ss.iter().flat_map(move |(s, ts)| {
                        ts.iter().map(move |t| TableName::new(c, s, t).to_string())
                    })
                })
                .collect();
            let mut suggestions =
                confluo_core::suggest::nearest(&full.to_string(), all.iter().map(String::as_str));
            if suggestions.is_empty() {
                suggestions = all
                    .iter()
                    .filter(|n| n.rsplit('.').next() == Some(full.table.as_str()))
                    .take(3)
                    .cloned()
                    .collect();
            }
            return SqlError::plan(
                format!(
                    "table {full} does not exist{}",
                    confluo_core::suggest::hint(&suggestions)
                ),
                location,
            );
        }
        let mut err = SqlError::from(e);
        if let SqlError::DataFusion(_) = &err
            && location.is_some()
        {
            err = SqlError::plan(err.to_string(), location);
        }
        err
    }

    /// Rows as an output stream.
    pub fn rows(&self, schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<SqlOutput> {
        Ok(SqlOutput::Rows(Box::pin(MemoryStream::try_new(
            batches, schema, None,
        )?)))
    }
}

fn url_of(path: &str) -> std::result::Result<url::Url, String> {
    url::Url::parse(path).map_err(|e| format!("invalid URL {path}: {e}"))
}

fn with_location(e: SqlError, location: Option<Location>) -> SqlError {
    match e {
        SqlError::Lakehouse(l) => SqlError::plan(l.to_string(), location),
        SqlError::Plan {
            message,
            location: None,
        } => SqlError::Plan { message, location },
        other => other,
    }
}

/// The location of a name's first part.
pub fn location_of(name: &ObjectName) -> Option<Location> {
    match name.0.first()? {
        ObjectNamePart::Identifier(i) => Some(i.span.start).filter(|l| l.line > 0),
        _ => None,
    }
}

/// Normalised parts of a name: unquoted parts lowercase, quoted ones exact.
pub fn ident_parts(name: &ObjectName) -> Result<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => Ok(normalize(i)),
            other => Err(SqlError::plan(
                format!("unsupported name part {other}"),
                None,
            )),
        })
        .collect()
}

/// One identifier, normalised.
pub fn normalize(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        CoreIdent::parse(&i.value)
            .map(|x| x.as_str().to_string())
            .unwrap_or_else(|_| i.value.to_lowercase())
    }
}

/// Whether planning failed on a column name the tables do not have.
fn is_unknown_column(e: &DataFusionError) -> bool {
    matches!(
        e.find_root(),
        DataFusionError::SchemaError(e, _)
            if matches!(e.as_ref(), datafusion::common::SchemaError::FieldNotFound { .. })
    )
}
