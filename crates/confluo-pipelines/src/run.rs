//! Running a pipeline update: validate every flow against placeholder tables, then update
//! datasets in dependency order, independent ones concurrently.
//!
//! Exactly-once for streaming flows: a flow's batch is committed to its target with the Delta
//! application transaction `(confluo:<pipeline>:<flow>, N)` and, in the same commit's
//! `commitInfo`, the files and upstream versions it read. The metastore only indexes that
//! log, so after a crash the next run catches the index up from the log and never reads a
//! committed input twice, nor skips an uncommitted one. Quarantined rows are committed first,
//! under the same transaction, and skipped on a redo that finds them there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::{DataFrame, Expr, col};
use datafusion::sql::sqlparser::ast::{Query, Statement};
use deltalake::DeltaTable;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::{Value, json};

use confluo_connectors::files::SourceFile;
use confluo_core::TableName;
use confluo_core::project::Project;
use confluo_lakehouse::delta::{self, CommitRequest, WriteMode};
use confluo_lakehouse::lakehouse::current_user;
use confluo_lakehouse::metastore::IngestedFile;
use confluo_lakehouse::write::TableWriter;
use confluo_lakehouse::{Lakehouse, NewTable, TableInfo, TableVersion};
use confluo_sql::SqlSession;
use confluo_sql::read_files::{plan_read_files, provider};
use confluo_sql::rewrite::object_name;

use crate::dialect::{self, DatasetKind, Reference, Replacement};
use crate::error::{PipelineError, Pos, Result};
use crate::event_log::{self, Event, EventLog};
use crate::expectations::Checker;
use crate::graph::{Dataset, Flow, Pipeline, at, files_path, full_name};

/// Key of a flow's record in each commit's `commitInfo`.
pub const FLOW_KEY: &str = "confluo.flow";
/// Key of a materialized view's input signature in its commits.
pub const MV_KEY: &str = "confluo.mv";

/// What to refresh.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Rebuild every dataset from scratch.
    pub full_refresh: bool,
    /// Update only these datasets (names as typed).
    pub refresh: Vec<String>,
    /// Rebuild these from scratch (and update nothing else).
    pub full_refresh_selection: Vec<String>,
}

/// How a dataset's update ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// New data was written.
    Completed,
    /// Nothing new to read: no new Delta version.
    UpToDate,
    /// The update failed with this message.
    Failed(String),
    /// Not updated because an upstream dataset failed.
    Skipped(String),
    /// Not selected by `--refresh`.
    NotSelected,
}

impl Status {
    /// A short word for tables.
    pub fn label(&self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::UpToDate => "up to date",
            Status::Failed(_) => "failed",
            Status::Skipped(_) => "skipped",
            Status::NotSelected => "not selected",
        }
    }
}

/// Counts of one expectation in one update.
#[derive(Debug, Clone)]
pub struct ExpectationReport {
    /// Its name.
    pub name: String,
    /// warn, drop, fail or quarantine.
    pub action: &'static str,
    /// Rows that met it.
    pub passed: u64,
    /// Rows that did not.
    pub failed: u64,
}

/// What happened to one dataset.
#[derive(Debug, Clone)]
pub struct DatasetReport {
    /// Full name.
    pub key: String,
    /// Its kind.
    pub kind: DatasetKind,
    /// The outcome.
    pub status: Status,
    /// Rows written to the table.
    pub rows_written: u64,
    /// Rows left out by DROP ROW.
    pub rows_dropped: u64,
    /// Rows moved to quarantine.
    pub rows_quarantined: u64,
    /// Input files read.
    pub files_read: u64,
    /// AUTO CDC: keys inserted or updated (SCD 1) or versions written (SCD 2).
    pub rows_upserted: u64,
    /// AUTO CDC: keys deleted.
    pub rows_deleted: u64,
    /// Per-expectation counts.
    pub expectations: Vec<ExpectationReport>,
    /// Wall time.
    pub duration: Duration,
    /// The Delta version written, if any.
    pub version: Option<i64>,
}

/// What an update did.
#[derive(Debug, Clone)]
pub struct UpdateReport {
    /// The update's id.
    pub update_id: String,
    /// The pipeline.
    pub pipeline: String,
    /// Every stored dataset, in dependency order.
    pub datasets: Vec<DatasetReport>,
    /// Wall time.
    pub duration: Duration,
}

impl UpdateReport {
    /// Whether every dataset succeeded.
    pub fn ok(&self) -> bool {
        !self
            .datasets
            .iter()
            .any(|d| matches!(d.status, Status::Failed(_) | Status::Skipped(_)))
    }
}

/// Live notifications for a display.
pub trait Observer: Send + Sync {
    /// A dataset's update started; `rows` counts rows written as they go.
    fn started(&self, key: &str, kind: DatasetKind, rows: Arc<AtomicU64>);
    /// A dataset's update ended.
    fn finished(&self, report: &DatasetReport);
}

/// An observer that shows nothing.
pub struct Quiet;

impl Observer for Quiet {
    fn started(&self, _: &str, _: DatasetKind, _: Arc<AtomicU64>) {}
    fn finished(&self, _: &DatasetReport) {}
}

/// Runs updates of one pipeline.
pub struct Runner<'a> {
    project: &'a Project,
    lh: Arc<Lakehouse>,
    session: SqlSession,
    pipeline: &'a Pipeline,
    schemas: std::sync::Mutex<HashMap<String, SchemaRef>>,
}

struct Planned {
    df: DataFrame,
    /// New files per file source read through STREAM.
    files: Vec<SourceFile>,
    /// New upstream versions per table source read through STREAM.
    offsets: Vec<(String, i64)>,
    /// Whether the flow reads through STREAM and found nothing new.
    nothing_new: bool,
    /// Input versions and file fingerprints (for materialized views).
    signature: BTreeMap<String, Value>,
    /// The flow being planned (names its change-feed slots).
    flow: String,
    /// How far behind each change feed read is (for the event log).
    source_lag: Vec<Value>,
}

#[derive(Default)]
struct FlowState {
    files: HashMap<String, IngestedFile>,
    offsets: HashMap<String, i64>,
}

impl<'a> Runner<'a> {
    /// A runner over the project's lakehouse.
    pub async fn new(
        project: &'a Project,
        lh: Arc<Lakehouse>,
        pipeline: &'a Pipeline,
    ) -> Result<Self> {
        let session = SqlSession::new(lh.clone()).await?;
        ensure_schema(&lh, &pipeline.catalog, &pipeline.schema).await?;
        session.refresh().await?;
        session.set_current(&pipeline.catalog, &pipeline.schema);
        Ok(Runner {
            project,
            lh,
            session,
            pipeline,
            schemas: Default::default(),
        })
    }

    /// Plans every flow against placeholders: unknown columns, type errors and bad
    /// expectations are reported with their position before any data moves.
    pub async fn validate(&self) -> Result<()> {
        let views: Vec<&Dataset> = self
            .pipeline
            .datasets
            .values()
            .filter(|d| d.kind() == DatasetKind::View)
            .collect();
        for key in &self.pipeline.order {
            let ds = self.pipeline.dataset(key);
            let mut schema: Option<SchemaRef> = None;
            for &fi in &ds.flows {
                let flow = &self.pipeline.flows[fi];
                if ds.kind() == DatasetKind::StreamingTable && !flow.is_streaming() && !flow.once {
                    return Err(PipelineError::at(
                        flow.pos.clone(),
                        format!(
                            "streaming table {} reads nothing through STREAM, so it would never see new rows\n  hint: read with STREAM(...) or STREAM read_files(...), make it a MATERIALIZED VIEW, or use INSERT INTO ONCE for a one-time backfill",
                            ds.key
                        ),
                    ));
                }
                let planned = self.plan(flow, true, &FlowState::default()).await?;
                let out = match &flow.auto_cdc {
                    Some(cdc) => crate::auto_cdc::target_schema(cdc, flow, &planned.df)?,
                    None => Arc::new(planned.df.schema().as_arrow().clone()),
                };
                self.check_expectations(ds, &planned.df, flow)?;
                schema = Some(match schema {
                    None => out,
                    Some(s) => delta::evolve_schema(&s, &out, &flow.label())
                        .map_err(|e| PipelineError::at(flow.pos.clone(), e.to_string()))?
                        .unwrap_or(s),
                });
            }
            if let Some(s) = schema {
                self.schemas.lock().expect("schemas").insert(key.clone(), s);
            }
        }
        // Views nobody reads still have to plan.
        for v in views {
            let q = v.def.query.clone().expect("views have queries");
            let flow = Flow {
                name: v.table.table.to_string(),
                target: v.key.clone(),
                query: q,
                once: false,
                inputs: vec![],
                auto_cdc: None,
                pos: v.def.pos.clone(),
            };
            self.plan(&flow, true, &FlowState::default()).await?;
        }
        Ok(())
    }

    fn check_expectations(&self, ds: &Dataset, df: &DataFrame, flow: &Flow) -> Result<()> {
        for e in ds.expectations() {
            let expr = df.parse_sql_expr(&e.condition).map_err(|err| {
                PipelineError::at(
                    e.pos.clone(),
                    format!(
                        "expectation `{}` of {}: {}",
                        e.name,
                        ds.key,
                        confluo_sql::error::clean_datafusion(&err)
                    ),
                )
            })?;
            df.clone().filter(expr).map_err(|err| {
                PipelineError::at(
                    e.pos.clone(),
                    format!(
                        "expectation `{}` of {} (flow {}): {}",
                        e.name,
                        ds.key,
                        flow.name,
                        confluo_sql::error::clean_datafusion(&err)
                    ),
                )
            })?;
        }
        Ok(())
    }

    /// Runs an update.
    pub async fn run(&self, options: &RunOptions, observer: &dyn Observer) -> Result<UpdateReport> {
        let started = Instant::now();
        let update_id = uuid::Uuid::now_v7().to_string();
        let log = EventLog::new(
            event_log::table_name(
                &self.pipeline.catalog,
                &self.pipeline.schema,
                &self.pipeline.name,
            ),
            &self.pipeline.name,
            &update_id,
        );
        log.record(
            Event::info(
                "create_update",
                format!(
                    "update {update_id} of pipeline {} started",
                    self.pipeline.name
                ),
            )
            .with(json!({
                "full_refresh": options.full_refresh,
                "refresh": options.refresh,
                "full_refresh_selection": options.full_refresh_selection,
                "user": current_user(),
            })),
        );
        let plan_start = Instant::now();
        if let Err(e) = self.validate().await {
            log.record(Event::error(
                "update_failed",
                "planning failed",
                e.to_string(),
            ));
            let _ = log.flush(&self.lh).await;
            return Err(e);
        }
        log.record(
            Event::info(
                "planning",
                format!(
                    "planned {} datasets and {} flows",
                    self.pipeline.datasets.len(),
                    self.pipeline.flows.len()
                ),
            )
            .with(json!({"duration_ms": plan_start.elapsed().as_millis() as u64})),
        );
        log.flush(&self.lh).await?;

        // Selection.
        let mut full: HashSet<String> = HashSet::new();
        let mut selected: HashSet<String> = self.pipeline.order.iter().cloned().collect();
        if options.full_refresh {
            full = selected.clone();
        }
        if !options.full_refresh_selection.is_empty() || !options.refresh.is_empty() {
            selected.clear();
            for n in &options.full_refresh_selection {
                let k = self.pipeline.find(n)?;
                full.insert(k.clone());
                selected.insert(k);
            }
            for n in &options.refresh {
                selected.insert(self.pipeline.find(n)?);
            }
        }
        // `pipelines.reset.allowed = false`: a full refresh updates the table incrementally
        // instead of clearing it (its history may exist nowhere else).
        full.retain(|key| {
            let ds = self.pipeline.dataset(key);
            let protected = ds.def.properties.iter().any(|(k, v)| {
                k.eq_ignore_ascii_case(crate::dialect::RESET_ALLOWED) && v.eq_ignore_ascii_case("false")
            });
            if protected {
                log.record(
                    Event::info(
                        "reset_not_allowed",
                        format!(
                            "{key}: {} = false, so the full refresh updates it incrementally instead of clearing it",
                            crate::dialect::RESET_ALLOWED
                        ),
                    )
                    .on(key, None),
                );
            }
            !protected
        });

        let log = &log;
        let mut reports: HashMap<String, DatasetReport> = HashMap::new();
        let mut running = FuturesUnordered::new();
        let mut pending: Vec<String> = self.pipeline.order.clone();
        let parallel = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        loop {
            // Start every dataset whose upstream is settled.
            let mut i = 0;
            while i < pending.len() && running.len() < parallel {
                let key = pending[i].clone();
                let ds = self.pipeline.dataset(&key);
                let upstream: Vec<&String> = ds
                    .upstream
                    .iter()
                    .filter(|u| self.pipeline.dataset(u).kind() != DatasetKind::View)
                    .collect();
                if upstream.iter().any(|u| !reports.contains_key(*u)) {
                    i += 1;
                    continue;
                }
                pending.remove(i);
                let failed_up = upstream.iter().find(|u| {
                    matches!(reports[**u].status, Status::Failed(_) | Status::Skipped(_))
                });
                if let Some(u) = failed_up {
                    let r = DatasetReport::new(ds, Status::Skipped((*u).clone()));
                    log.record(
                        Event::info(
                            "flow_skipped",
                            format!("{key} skipped: upstream {u} failed"),
                        )
                        .on(&key, None),
                    );
                    observer.finished(&r);
                    reports.insert(key, r);
                    continue;
                }
                if !selected.contains(&key) {
                    let r = DatasetReport::new(ds, Status::NotSelected);
                    reports.insert(key, r);
                    continue;
                }
                let is_full = full.contains(&key);
                running.push(async move {
                    let rows = Arc::new(AtomicU64::new(0));
                    observer.started(&key, ds.kind(), rows.clone());
                    let t0 = Instant::now();
                    log.record(
                        Event::info(
                            "flow_started",
                            format!(
                                "{} {} {}",
                                if is_full { "rebuilding" } else { "updating" },
                                ds.kind().label(),
                                key
                            ),
                        )
                        .on(&key, None),
                    );
                    let result = self.update_dataset(ds, is_full, &rows, log).await;
                    let mut r = match result {
                        Ok(r) => r,
                        Err(e) => {
                            log.record(
                                Event::error("flow_failed", format!("{key} failed"), e.to_string())
                                    .on(&key, None),
                            );
                            DatasetReport::new(ds, Status::Failed(e.to_string()))
                        }
                    };
                    r.duration = t0.elapsed();
                    if !matches!(r.status, Status::Failed(_)) {
                        log.record(
                            Event::info(
                                "flow_completed",
                                format!(
                                    "{key}: {}, {} rows written",
                                    r.status.label(),
                                    r.rows_written
                                ),
                            )
                            .on(&key, None)
                            .with(r.metrics()),
                        );
                    }
                    observer.finished(&r);
                    (key, r)
                });
            }
            match running.next().await {
                Some((k, r)) => {
                    reports.insert(k, r);
                }
                None if pending.is_empty() => break,
                // Nothing running and nothing startable: only possible if the graph were
                // not in dependency order, which `graph::build` guarantees.
                None if i >= pending.len() => {
                    return Err(PipelineError::Config(format!(
                        "cannot schedule {}: its inputs never settle",
                        pending.join(", ")
                    )));
                }
                None => continue,
            }
        }
        let datasets: Vec<DatasetReport> = self
            .pipeline
            .order
            .iter()
            .map(|k| reports.remove(k).expect("every dataset reported"))
            .collect();
        let report = UpdateReport {
            update_id,
            pipeline: self.pipeline.name.clone(),
            datasets,
            duration: started.elapsed(),
        };
        let summary = json!({
            "duration_ms": report.duration.as_millis() as u64,
            "completed": report.datasets.iter().filter(|d| d.status == Status::Completed).count(),
            "up_to_date": report.datasets.iter().filter(|d| d.status == Status::UpToDate).count(),
            "failed": report.datasets.iter().filter(|d| matches!(d.status, Status::Failed(_))).count(),
            "skipped": report.datasets.iter().filter(|d| matches!(d.status, Status::Skipped(_))).count(),
        });
        if report.ok() {
            log.record(Event::info("update_completed", "update completed").with(summary));
        } else {
            let first = report
                .datasets
                .iter()
                .find_map(DatasetReport::failure)
                .unwrap_or_default();
            log.record(Event::error("update_failed", "update failed", first).with(summary));
        }
        log.flush(&self.lh).await?;
        Ok(report)
    }

    async fn update_dataset(
        &self,
        ds: &Dataset,
        full: bool,
        rows: &Arc<AtomicU64>,
        log: &EventLog,
    ) -> Result<DatasetReport> {
        match ds.kind() {
            DatasetKind::StreamingTable => self.update_streaming(ds, full, rows, log).await,
            DatasetKind::MaterializedView => self.update_view(ds, full, rows).await,
            DatasetKind::View => Ok(DatasetReport::new(ds, Status::UpToDate)),
        }
    }

    /// Opens (or creates) the dataset's Delta table.
    async fn target(&self, ds: &Dataset, schema: &SchemaRef) -> Result<(TableInfo, DeltaTable)> {
        if let Some(info) = self.lh.metastore().get_table(&ds.table).await? {
            let t = self.lh.open_delta(&info, TableVersion::Latest).await?;
            return Ok((info, t));
        }
        let mut properties: BTreeMap<String, String> = ds.def.properties.iter().cloned().collect();
        properties.insert("pipelines.pipeline".into(), self.pipeline.name.clone());
        properties.insert("pipelines.kind".into(), ds.kind().label().into());
        let schema = match self.declared(ds)? {
            Some(d) => d.as_ref().clone(),
            None => nullable(schema),
        };
        Ok(self
            .lh
            .create_table(NewTable {
                name: ds.table.clone(),
                schema,
                partition_by: ds.def.partition_by.clone(),
                comment: ds.def.comment.clone(),
                properties,
                location: None,
            })
            .await?)
    }

    async fn quarantine_target(
        &self,
        ds: &Dataset,
        schema: &SchemaRef,
    ) -> Result<(TableInfo, DeltaTable)> {
        let name = TableName::new(
            ds.table.catalog.as_str(),
            ds.table.schema.as_str(),
            format!("{}_quarantine", ds.table.table.as_str()),
        );
        let qschema = Checker::quarantine_schema(schema);
        if let Some(info) = self.lh.metastore().get_table(&name).await? {
            let t = self.lh.open_delta(&info, TableVersion::Latest).await?;
            return Ok((info, t));
        }
        Ok(self
            .lh
            .create_table(NewTable {
                name,
                schema: nullable(&qschema),
                partition_by: vec![],
                comment: Some(format!(
                    "rows of {} that failed a quarantine expectation",
                    ds.key
                )),
                properties: BTreeMap::from([(
                    "pipelines.pipeline".to_string(),
                    self.pipeline.name.clone(),
                )]),
                location: None,
            })
            .await?)
    }

    async fn update_streaming(
        &self,
        ds: &Dataset,
        full: bool,
        rows: &Arc<AtomicU64>,
        log: &EventLog,
    ) -> Result<DatasetReport> {
        let planned_schema = self.schemas.lock().expect("schemas")[&ds.key].clone();
        let (info, mut table) = self.target(ds, &planned_schema).await?;
        let prefix = format!("{}|", info.id);
        if full && delta::table_version(&table) > 0 {
            if ds
                .flows
                .iter()
                .any(|&f| self.pipeline.flows[f].auto_cdc.is_some())
            {
                crate::auto_cdc::reset_state(&self.lh, &ds.table).await?;
            }
            delta::commit(
                &table,
                CommitRequest {
                    mode: WriteMode::Overwrite,
                    new_schema: Some(
                        self.declared(ds)?
                            .unwrap_or_else(|| nullable_ref(&planned_schema)),
                    ),
                    app_metadata: HashMap::from([(
                        FLOW_KEY.to_string(),
                        json!({"pipeline": self.pipeline.name, "reset": true}),
                    )]),
                    ..Default::default()
                },
            )
            .await?;
            table = self.lh.open_delta(&info, TableVersion::Latest).await?;
            if ds
                .expectations()
                .iter()
                .any(|e| e.action == crate::dialect::Action::Quarantine)
            {
                let (_, q) = self.quarantine_target(ds, &planned_schema).await?;
                delta::commit(
                    &q,
                    CommitRequest {
                        mode: WriteMode::Overwrite,
                        ..Default::default()
                    },
                )
                .await?;
            }
        }
        self.catch_up(&info, &table, &prefix).await?;
        let mut report = DatasetReport::new(ds, Status::UpToDate);
        let mut totals: Vec<(u64, u64)> = vec![(0, 0); ds.expectations().len()];
        for &fi in &ds.flows {
            let flow = &self.pipeline.flows[fi];
            let flow_key = format!("{prefix}{}", flow.name);
            let state = FlowState {
                files: self.lh.metastore().ingested_files(&flow_key).await?,
                offsets: self.lh.metastore().flow_offsets(&flow_key).await?,
            };
            if flow.once && state.offsets.contains_key("__once") {
                continue;
            }
            self.session.refresh_names().await?;
            let planned = self.plan(flow, false, &state).await?;
            if planned.nothing_new && !flow.once {
                continue;
            }
            let app_id = format!("confluo:{}:{}", self.pipeline.name, flow.name);
            let batch = table
                .snapshot()
                .map_err(|e| PipelineError::Config(e.to_string()))?
                .transaction_version(table.log_store().as_ref(), &app_id)
                .await
                .map_err(|e| PipelineError::Config(e.to_string()))?
                .map(|v| v + 1)
                .unwrap_or(0);
            if let Some(cdc) = &flow.auto_cdc {
                let meta = json!({
                    "pipeline": self.pipeline.name,
                    "flow": flow.name,
                    "batch": batch,
                    "files": planned.files.iter().map(|f| json!({"path": f.location, "size": f.size, "modified_ms": f.modified_ms})).collect::<Vec<_>>(),
                    "offsets": planned.offsets.iter().cloned().collect::<BTreeMap<String, i64>>(),
                    "once": flow.once,
                });
                let txn = crate::auto_cdc::Txn {
                    app_id,
                    version: batch,
                };
                let metadata = HashMap::from([(FLOW_KEY.to_string(), meta)]);
                let s = crate::auto_cdc::apply_changes(
                    &self.lh, &info, planned.df, &cdc.spec, &txn, metadata,
                )
                .await?;
                table = self.lh.open_delta(&info, TableVersion::Latest).await?;
                self.catch_up(&info, &table, &prefix).await?;
                self.lh.metastore().touch_table(&ds.table).await?;
                rows.fetch_add(s.upserted + s.deleted, Ordering::Relaxed);
                report.status = Status::Completed;
                report.version = Some(s.version);
                report.rows_written += s.upserted;
                report.rows_upserted += s.upserted;
                report.rows_deleted += s.deleted;
                report.files_read += planned.files.len() as u64;
                log.record(
                    Event::info("flow_progress", format!("flow {} batch {batch}: {} change rows, {} upserted, {} deleted, {} late", flow.name, s.changes, s.upserted, s.deleted, s.late))
                        .on(&ds.key, Some(&flow.name))
                        .with(with_source_lag(json!({"batch": batch, "version": s.version, "changes": s.changes, "rows_upserted": s.upserted, "rows_deleted": s.deleted, "rows_late": s.late, "truncated": s.truncated, "files_read": planned.files.len()}), &planned.source_lag)),
                );
                continue;
            }
            // Evolve the table when the flow brings new columns.
            let current = delta::table_schema(&table)?;
            let incoming = Arc::new(planned.df.schema().as_arrow().clone());
            let evolved = delta::evolve_schema(&current, &incoming, &flow.label())?;
            let target_schema = evolved.clone().unwrap_or(current);
            let df =
                confluo_sql::statements::project_to_schema(planned.df, &target_schema, &[], true)?;
            let checker = Arc::new(Checker::new(
                &ds.key,
                ds.expectations().to_vec(),
                target_schema.fields().len(),
            ));
            let q = if checker.quarantines() {
                Some(self.quarantine_target(ds, &target_schema).await?.1)
            } else {
                None
            };
            let written =
                write_checked(df, &target_schema, &checker, &table, q.as_ref(), rows).await?;
            let files_meta: Vec<Value> = planned
                .files
                .iter()
                .map(|f| json!({"path": f.location, "size": f.size, "modified_ms": f.modified_ms}))
                .collect();
            let meta = json!({
                "pipeline": self.pipeline.name,
                "flow": flow.name,
                "batch": batch,
                "files": files_meta,
                "offsets": planned.offsets.iter().cloned().collect::<BTreeMap<String, i64>>(),
                "once": flow.once,
            });
            if let (Some(qt), false) = (&q, written.quarantine.is_empty()) {
                let done = qt
                    .snapshot()
                    .map_err(|e| PipelineError::Config(e.to_string()))?
                    .transaction_version(qt.log_store().as_ref(), &app_id)
                    .await
                    .map_err(|e| PipelineError::Config(e.to_string()))?;
                if done.is_none_or(|v| v < batch) {
                    let qschema = Checker::quarantine_schema(&target_schema);
                    let qcurrent = delta::table_schema(qt)?;
                    delta::commit(
                        qt,
                        CommitRequest {
                            adds: written.quarantine.clone(),
                            new_schema: delta::evolve_schema(&qcurrent, &qschema, &flow.label())?,
                            txns: vec![(app_id.clone(), batch)],
                            ..Default::default()
                        },
                    )
                    .await?;
                }
            }
            let version = delta::commit(
                &table,
                CommitRequest {
                    adds: written.adds,
                    new_schema: evolved,
                    app_metadata: HashMap::from([(FLOW_KEY.to_string(), meta)]),
                    txns: vec![(app_id, batch)],
                    ..Default::default()
                },
            )
            .await?;
            table = self.lh.open_delta(&info, TableVersion::Latest).await?;
            self.catch_up(&info, &table, &prefix).await?;
            self.lh.metastore().touch_table(&ds.table).await?;
            report.status = Status::Completed;
            report.version = Some(version);
            report.rows_written += written.rows;
            report.rows_dropped += written.dropped;
            report.rows_quarantined += written.quarantined;
            report.files_read += planned.files.len() as u64;
            for (i, t) in totals.iter_mut().enumerate() {
                let (p, f) = checker.counts(i);
                t.0 += p;
                t.1 += f;
            }
            log.record(
                Event::info(
                    "flow_progress",
                    format!(
                        "flow {} batch {batch}: {} rows written, {} files read",
                        flow.name,
                        written.rows,
                        planned.files.len()
                    ),
                )
                .on(&ds.key, Some(&flow.name))
                .with(with_source_lag(json!({
                    "batch": batch,
                    "version": version,
                    "rows_written": written.rows,
                    "rows_dropped": written.dropped,
                    "rows_quarantined": written.quarantined,
                    "files_read": planned.files.len(),
                    "expectations": ds.expectations().iter().enumerate().map(|(i, e)| {
                        let (p, f) = checker.counts(i);
                        json!({"name": e.name, "action": e.action.label(), "passed": p, "failed": f})
                    }).collect::<Vec<_>>(),
                }), &planned.source_lag)),
            );
        }
        report.expectations = ds
            .expectations()
            .iter()
            .zip(totals)
            .map(|(e, (p, f))| ExpectationReport {
                name: e.name.clone(),
                action: e.action.label(),
                passed: p,
                failed: f,
            })
            .collect();
        Ok(report)
    }

    /// Brings the metastore's index of a streaming table's flow progress up to its log.
    async fn catch_up(&self, info: &TableInfo, table: &DeltaTable, prefix: &str) -> Result<()> {
        let ms = self.lh.metastore();
        let index_key = format!("{prefix}*");
        let indexed = ms.indexed_version(&index_key).await?.unwrap_or(-1);
        let latest = delta::table_version(table);
        for version in (indexed + 1)..=latest {
            let Some(commit) = delta::read_commit_info(table, version).await? else {
                continue;
            };
            let Some(flow) = commit.get(FLOW_KEY) else {
                continue;
            };
            if flow.get("reset").and_then(Value::as_bool) == Some(true) {
                ms.clear_flows(prefix).await?;
                continue;
            }
            let Some(name) = flow.get("flow").and_then(Value::as_str) else {
                continue;
            };
            let flow_key = format!("{prefix}{name}");
            let files = confluo_lakehouse::ingest::files_in_commit(flow, version);
            if !files.is_empty() {
                ms.record_ingest(&flow_key, version, false, &files).await?;
            }
            let mut offsets: Vec<(String, i64)> = flow
                .get("offsets")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                        .collect()
                })
                .unwrap_or_default();
            if flow.get("once").and_then(Value::as_bool) == Some(true) {
                offsets.push(("__once".into(), 1));
            }
            ms.set_flow_offsets(&flow_key, &offsets).await?;
        }
        if latest > indexed {
            ms.set_indexed_version(&index_key, latest).await?;
        }
        let _ = info;
        Ok(())
    }

    async fn update_view(
        &self,
        ds: &Dataset,
        full: bool,
        rows: &Arc<AtomicU64>,
    ) -> Result<DatasetReport> {
        let flow = &self.pipeline.flows[ds.flows[0]];
        self.session.refresh_names().await?;
        let planned = self.plan(flow, false, &FlowState::default()).await?;
        let mut signature = planned.signature.clone();
        signature.insert(
            "definition".into(),
            Value::String(format!(
                "{}|{}",
                flow.query,
                ds.expectations()
                    .iter()
                    .map(|e| format!("{}:{}:{}", e.name, e.condition, e.action.label()))
                    .collect::<Vec<_>>()
                    .join(";")
            )),
        );
        let signature = Value::Object(signature.into_iter().collect());
        let schema = Arc::new(planned.df.schema().as_arrow().clone());
        let (info, table) = self.target(ds, &schema).await?;
        let latest = delta::table_version(&table);
        if !full && latest > 0 {
            let last = delta::read_commit_info(&table, latest).await?;
            if last.as_ref().and_then(|c| c.get(MV_KEY)) == Some(&signature) {
                return Ok(DatasetReport::new(ds, Status::UpToDate));
            }
        }
        let target_schema = self.declared(ds)?.unwrap_or_else(|| nullable_ref(&schema));
        let checker = Arc::new(Checker::new(
            &ds.key,
            ds.expectations().to_vec(),
            target_schema.fields().len(),
        ));
        let q = if checker.quarantines() {
            Some(self.quarantine_target(ds, &target_schema).await?.1)
        } else {
            None
        };
        let df = confluo_sql::statements::project_to_schema(planned.df, &target_schema, &[], true)?;
        let written = write_checked(df, &target_schema, &checker, &table, q.as_ref(), rows).await?;
        if let Some(qt) = &q {
            delta::commit(
                qt,
                CommitRequest {
                    adds: written.quarantine.clone(),
                    mode: WriteMode::Overwrite,
                    new_schema: Some(Checker::quarantine_schema(&target_schema)),
                    ..Default::default()
                },
            )
            .await?;
        }
        let version = delta::commit(
            &table,
            CommitRequest {
                adds: written.adds,
                mode: WriteMode::Overwrite,
                new_schema: Some(target_schema.clone()),
                app_metadata: HashMap::from([(MV_KEY.to_string(), signature)]),
                ..Default::default()
            },
        )
        .await?;
        self.lh.metastore().touch_table(&info.name).await?;
        let mut report = DatasetReport::new(ds, Status::Completed);
        report.version = Some(version);
        report.rows_written = written.rows;
        report.rows_dropped = written.dropped;
        report.rows_quarantined = written.quarantined;
        report.expectations = ds
            .expectations()
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (p, f) = checker.counts(i);
                ExpectationReport {
                    name: e.name.clone(),
                    action: e.action.label(),
                    passed: p,
                    failed: f,
                }
            })
            .collect();
        Ok(report)
    }

    /// Plans a flow: every reference pointed at a provider (validation: placeholders),
    /// `STREAM` inputs restricted to what is new for this flow.
    async fn plan(&self, flow: &Flow, validate: bool, state: &FlowState) -> Result<Planned> {
        let mut planned = Planned {
            df: self.session.context().read_empty()?,
            files: vec![],
            offsets: vec![],
            nothing_new: true,
            signature: BTreeMap::new(),
            flow: flow.name.clone(),
            source_lag: vec![],
        };
        let mut any_stream = false;
        let query = self
            .rewrite(
                &flow.query,
                &flow.pos,
                validate,
                true,
                state,
                &mut planned,
                &mut any_stream,
                0,
            )
            .await?;
        if !any_stream {
            planned.nothing_new = false;
        }
        let df = self
            .session
            .plan_statement(Statement::Query(query))
            .await
            .map_err(|e| {
                let pos = match e.location() {
                    Some(l) if l.line > 0 => Pos {
                        file: flow.pos.file.clone(),
                        line: l.line,
                        column: l.column,
                    },
                    _ => flow.pos.clone(),
                };
                PipelineError::at(
                    pos,
                    format!("{}: {e}", self.pipeline.dataset(&flow.target).key),
                )
            })?;
        planned.df = df;
        // Declared columns define the dataset's rows (an AUTO CDC flow's target columns
        // come from its own clauses).
        let ds = self.pipeline.dataset(&flow.target);
        if flow.auto_cdc.is_none()
            && let Some(declared) = self.declared(ds)?
        {
            planned.df =
                crate::declared::apply(planned.df, &ds.def.columns, &declared, &ds.key, &flow.pos)?;
        }
        Ok(planned)
    }

    /// The schema a dataset's declared columns define, if it declares any.
    fn declared(&self, ds: &Dataset) -> Result<Option<SchemaRef>> {
        crate::declared::schema(&ds.def.columns, &ds.key, &ds.def.pos)
    }

    #[allow(clippy::too_many_arguments)]
    fn rewrite<'b>(
        &'b self,
        query: &'b Query,
        pos: &'b Pos,
        validate: bool,
        stream_ok: bool,
        state: &'b FlowState,
        planned: &'b mut Planned,
        any_stream: &'b mut bool,
        depth: usize,
    ) -> futures::future::BoxFuture<'b, Result<Box<Query>>> {
        Box::pin(async move {
            if depth > 16 {
                return Err(PipelineError::at(pos.clone(), "views nest too deeply"));
            }
            let refs = dialect::references(query, &pos.file)?;
            let metadata = confluo_sql::metadata_column::names_metadata(query);
            let mut reps: Vec<Option<Replacement>> = Vec::with_capacity(refs.len());
            for r in &refs {
                let here = at(pos, r.location());
                let stream = r.is_stream() && stream_ok;
                let rep = match r {
                    Reference::Files { path, options, .. } => {
                        let abs = files_path(&self.project.root, path);
                        let scan = plan_read_files(&abs, options, None, metadata)
                            .await
                            .map_err(|e| {
                                PipelineError::at(
                                    here.clone(),
                                    format!("read_files('{path}'): {e}"),
                                )
                            })?;
                        let source = format!("files:{abs}");
                        let scan = if stream && !validate {
                            *any_stream = true;
                            let new: Vec<SourceFile> = scan
                                .files()
                                .iter()
                                .filter(|f| !state.files.contains_key(&f.location))
                                .cloned()
                                .collect();
                            if !new.is_empty() {
                                planned.nothing_new = false;
                            }
                            planned.files.extend(new.iter().cloned());
                            scan.with_files(new)
                        } else {
                            if stream {
                                *any_stream = true;
                            }
                            let total: u64 = scan.files().iter().map(|f| f.size).sum();
                            let newest = scan
                                .files()
                                .iter()
                                .map(|f| f.modified_ms)
                                .max()
                                .unwrap_or(0);
                            planned.signature.insert(
                                source.clone(),
                                json!({"files": scan.files().len(), "bytes": total, "newest_ms": newest}),
                            );
                            scan
                        };
                        let p = provider(scan, None, path).map_err(PipelineError::from)?;
                        Replacement::Table(self.session.register_scratch(p)?)
                    }
                    Reference::Stream {
                        function, options, ..
                    } => {
                        self.stream_source(
                            function, options, stream, validate, &here, state, planned, any_stream,
                        )
                        .await?
                    }
                    Reference::Changes {
                        connection, table, ..
                    } => {
                        self.changes_source(
                            connection, table, stream, validate, &here, state, planned, any_stream,
                        )
                        .await?
                    }
                    Reference::Table { name, .. } => {
                        let table =
                            full_name(name, &self.pipeline.catalog, &self.pipeline.schema, &here)?;
                        let key = table.to_string();
                        match self.pipeline.datasets.get(&key) {
                            Some(d) if d.kind() == DatasetKind::View => {
                                let q = d.def.query.as_ref().expect("views have queries");
                                let inner = self
                                    .rewrite(
                                        q,
                                        &d.def.pos,
                                        validate,
                                        stream,
                                        state,
                                        planned,
                                        any_stream,
                                        depth + 1,
                                    )
                                    .await?;
                                Replacement::Query(inner)
                            }
                            Some(_) if validate => {
                                if stream {
                                    *any_stream = true;
                                }
                                let schema = self
                                    .schemas
                                    .lock()
                                    .expect("schemas")
                                    .get(&key)
                                    .cloned()
                                    .ok_or_else(|| {
                                        PipelineError::at(
                                            here.clone(),
                                            format!("{key} is read before it is planned"),
                                        )
                                    })?;
                                let mem: Arc<dyn TableProvider> =
                                    Arc::new(MemTable::try_new(schema, vec![vec![]])?);
                                Replacement::Table(self.session.register_scratch(mem)?)
                            }
                            _ => {
                                let info =
                                    self.lh.table(&table).await.map_err(|e| {
                                        PipelineError::at(here.clone(), e.to_string())
                                    })?;
                                let delta_table =
                                    self.lh.open_delta(&info, TableVersion::Latest).await?;
                                let version = delta::table_version(&delta_table);
                                let source = format!("table:{}", info.id);
                                if stream {
                                    *any_stream = true;
                                    if validate {
                                        Replacement::Keep
                                    } else {
                                        let from =
                                            state.offsets.get(&source).copied().unwrap_or(-1);
                                        if version == from {
                                            let empty = MemTable::try_new(
                                                delta::table_schema(&delta_table)?,
                                                vec![vec![]],
                                            )?;
                                            Replacement::Table(
                                                self.session.register_scratch(Arc::new(empty))?,
                                            )
                                        } else {
                                            let paths = self
                                                .new_files(&info, &delta_table, from, &here)
                                                .await?;
                                            planned.offsets.push((source, version));
                                            planned.nothing_new = false;
                                            let p = delta_table
                                                .table_provider()
                                                .with_file_paths(paths)
                                                .await
                                                .map_err(|e| {
                                                    PipelineError::Config(e.to_string())
                                                })?;
                                            Replacement::Table(self.session.register_scratch(p)?)
                                        }
                                    }
                                } else {
                                    planned.signature.insert(source, json!(version));
                                    Replacement::Table(object_name(&[
                                        table.catalog.as_str(),
                                        table.schema.as_str(),
                                        table.table.as_str(),
                                    ]))
                                }
                            }
                        }
                    }
                };
                reps.push(Some(rep));
            }
            let mut q = Box::new(query.clone());
            if metadata {
                confluo_sql::metadata_column::hide_from_wildcards(&mut *q, &dialect::reads_files);
            }
            let mut i = 0;
            dialect::rewrite(&mut q, &mut |_r| {
                let rep = reps
                    .get_mut(i)
                    .and_then(Option::take)
                    .unwrap_or(Replacement::Keep);
                i += 1;
                rep
            });
            Ok(q)
        })
    }

    /// `STREAM read_changes(connection, table)`: the feed's schema when validating, else
    /// what is new since the flow's offsets.
    #[allow(clippy::too_many_arguments)]
    async fn changes_source(
        &self,
        connection: &str,
        table: &str,
        stream: bool,
        validate: bool,
        here: &Pos,
        state: &FlowState,
        planned: &mut Planned,
        any_stream: &mut bool,
    ) -> Result<Replacement> {
        use crate::managed::{changes_feed, mysql_feed};
        let fail = |m: String| {
            PipelineError::at(
                here.clone(),
                format!("read_changes('{connection}', '{table}'): {m}"),
            )
        };
        if !stream {
            return Err(fail(
                "a change feed is read as a stream: write STREAM read_changes(...)".into(),
            ));
        }
        *any_stream = true;
        let conn = self
            .project
            .config
            .connections
            .get(connection)
            .ok_or_else(|| {
                let names = self.project.config.connections.keys().map(String::as_str);
                fail(format!(
                    "no connection `{connection}` in confluo.yaml{}",
                    confluo_core::suggest::hint(&confluo_core::suggest::nearest(connection, names))
                ))
            })?;
        use confluo_connectors::registry::{self, Connection};
        let parsed = registry::connection(connection, conn).map_err(|e| fail(e.to_string()))?;
        if let Connection::Mysql(cfg) = &parsed {
            if validate {
                let schema = mysql_feed::schema(cfg, table)
                    .await
                    .map_err(|e| fail(e.to_string()))?;
                let empty: Arc<dyn TableProvider> =
                    Arc::new(MemTable::try_new(schema, vec![vec![]])?);
                return Ok(Replacement::Table(self.session.register_scratch(empty)?));
            }
            // One replica id per flow and table, stable across runs.
            let server_id = confluo_connectors::mysql::cdc::replica_id(&format!(
                "{}\0{}\0{connection}\0{table}",
                self.pipeline.name, planned.flow
            ));
            let key = format!("my:{connection}:{table}");
            let read = mysql_feed::read(cfg, table, &key, server_id, &state.offsets)
                .await
                .map_err(|e| fail(e.to_string()))?;
            for w in &read.warnings {
                tracing::warn!("{w}");
            }
            if read.new {
                planned.nothing_new = false;
            }
            planned.source_lag.push(json!({
                "source": format!("read_changes('{connection}', '{table}')"),
                "lag_bytes": read.lag_bytes,
                "lag_seconds": read.lag_seconds,
            }));
            planned.offsets.extend(read.offsets);
            return Ok(Replacement::Table(
                self.session.register_scratch(read.provider)?,
            ));
        }
        let Connection::Postgres(cfg) = parsed else {
            return Err(fail(format!(
                "connection `{connection}` is of type `{}`; change feeds come from postgres and mysql connections",
                parsed.kind()
            )));
        };
        if validate {
            let schema = changes_feed::schema(&cfg, table)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let empty: Arc<dyn TableProvider> = Arc::new(MemTable::try_new(schema, vec![vec![]])?);
            return Ok(Replacement::Table(self.session.register_scratch(empty)?));
        }
        // One slot per flow and table; names PostgreSQL accepts, stable across runs.
        let id = fnv1a(&format!(
            "{}\0{}\0{connection}\0{table}",
            self.pipeline.name, planned.flow
        ));
        let slot = format!("confluo_feed_{id:016x}");
        let publication = format!(
            "confluo_feed_{:016x}",
            fnv1a(&format!("{connection}\0{table}"))
        );
        let key = format!("pg:{connection}:{table}");
        let read = changes_feed::read(&cfg, table, &key, &slot, &publication, &state.offsets)
            .await
            .map_err(|e| fail(e.to_string()))?;
        for w in &read.warnings {
            tracing::warn!("{w}");
        }
        if read.new {
            planned.nothing_new = false;
        }
        planned.source_lag.push(json!({
            "source": format!("read_changes('{connection}', '{table}')"),
            "lag_bytes": read.lag_bytes,
            "lag_seconds": read.lag_seconds,
        }));
        planned.offsets.extend(read.offsets);
        Ok(Replacement::Table(
            self.session.register_scratch(read.provider)?,
        ))
    }

    /// `STREAM read_kafka(...)` and the other stream table functions: their columns when
    /// validating, else every message the source held as this update starts, after the
    /// flow's offsets (kept with its commits under `<system>:<key>`, e.g. `kafka:orders/0`).
    /// Envelope columns lose their leading underscore (`_sequence` is `sequence`), as in
    /// `read_kafka`'s.
    #[allow(clippy::too_many_arguments)]
    async fn stream_source(
        &self,
        function: &str,
        options: &[(String, String)],
        stream: bool,
        validate: bool,
        here: &Pos,
        state: &FlowState,
        planned: &mut Planned,
        any_stream: &mut bool,
    ) -> Result<Replacement> {
        use confluo_core::source::{ReadLimits, SourceError};
        let fail = |m: String| PipelineError::at(here.clone(), m);
        let f = confluo_connectors::registry::stream_function(function)
            .ok_or_else(|| fail(format!("{function} is not a stream table function")))?;
        let label = f.label(options);
        if !stream {
            return Err(fail(format!(
                "{label}: a stream is read incrementally: write STREAM {}(...)",
                f.name
            )));
        }
        *any_stream = true;
        let err = |e: SourceError| fail(e.message);
        let mut source = (f.open)(options, &planned.flow).map_err(err)?;
        let schema = Arc::new(unprefixed(&source.columns().map_err(err)?));
        if validate {
            let empty: Arc<dyn TableProvider> = Arc::new(MemTable::try_new(schema, vec![vec![]])?);
            return Ok(Replacement::Table(self.session.register_scratch(empty)?));
        }
        let flow_key = |k: &str| {
            if k.is_empty() {
                format!("{}:{label}", f.system)
            } else {
                format!("{}:{k}", f.system)
            }
        };
        source.connect().await.map_err(err)?;
        let committed: BTreeMap<String, i64> = source
            .offset_keys()
            .into_iter()
            .filter_map(|k| state.offsets.get(&flow_key(&k)).map(|v| (k, *v)))
            .collect();
        source.seek(&committed).await.map_err(err)?;
        let limits = ReadLimits {
            wait: std::time::Duration::from_secs(2),
            ..ReadLimits::default()
        };
        let mut batches = Vec::new();
        // Where `startingOffsets => 'latest'` (or a timestamp) placed partitions the flow
        // held nothing of is kept with this update even when it reads nothing.
        let start = source.starting_batch().map_err(err)?;
        let kept_start = start.is_some();
        let mut offset = start.and_then(|b| b.offset);
        let mut records = 0u64;
        // Until the source has handed out what it held as it was positioned; a wait with
        // nothing new ends it too (Kafka's transaction markers take offsets no record has).
        while !source.caught_up() {
            let Some(b) = source.next_batch(&limits).await.map_err(err)? else {
                break;
            };
            // The flow's commit keeps the offsets; the server may forget these now.
            source.ack().await.map_err(err)?;
            records += b.messages;
            offset = b.offset;
            for t in b.tables {
                let rows = datafusion::arrow::array::RecordBatch::try_new(
                    schema.clone(),
                    t.rows.columns().to_vec(),
                )
                .map_err(|e| fail(format!("{label}: {e}")))?;
                batches.push(rows);
            }
        }
        if let Some(o) = offset {
            planned.nothing_new = planned.nothing_new && records == 0 && !kept_start;
            planned
                .offsets
                .extend(o.txns().into_iter().map(|(k, v)| (flow_key(&k), v)));
        }
        planned.source_lag.push(json!({
            "source": label,
            "records": records,
        }));
        let provider: Arc<dyn TableProvider> = Arc::new(MemTable::try_new(schema, vec![batches])?);
        Ok(Replacement::Table(self.session.register_scratch(provider)?))
    }

    /// Data files added to `table` since version `from` (all of them when `from` < 0).
    async fn new_files(
        &self,
        info: &TableInfo,
        table: &DeltaTable,
        from: i64,
        here: &Pos,
    ) -> Result<Vec<String>> {
        let now = file_paths(table)?;
        if from < 0 {
            return Ok(now);
        }
        let before = self
            .lh
            .open_delta(info, TableVersion::Version(from))
            .await?;
        let old: HashSet<String> = file_paths(&before)?.into_iter().collect();
        let current: HashSet<&String> = now.iter().collect();
        if let Some(gone) = old.iter().find(|p| !current.contains(p)) {
            return Err(PipelineError::at(
                here.clone(),
                format!(
                    "{} changed other than by appending since version {from} (file {gone} was removed), so it cannot be read as a stream\n  hint: rebuild the reader with --full-refresh-selection",
                    info.name
                ),
            ));
        }
        Ok(now.into_iter().filter(|p| !old.contains(p)).collect())
    }
}

fn file_paths(table: &DeltaTable) -> Result<Vec<String>> {
    let snapshot = table
        .snapshot()
        .map_err(|e| PipelineError::Config(e.to_string()))?;
    Ok(snapshot
        .log_data()
        .iter()
        .map(|f| f.path().to_string())
        .collect())
}

fn nullable(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect::<Vec<_>>(),
    )
}

fn nullable_ref(schema: &SchemaRef) -> SchemaRef {
    delta::delta_compatible_schema(&nullable(schema))
}

async fn ensure_schema(lh: &Lakehouse, catalog: &str, schema: &str) -> Result<()> {
    let ms = lh.metastore();
    if ms.get_catalog(catalog).await?.is_none() {
        ms.create_catalog(catalog, None, Some(&current_user()), true)
            .await?;
    }
    if ms.get_schema(catalog, schema).await?.is_none() {
        ms.create_schema(catalog, schema, None, Some(&current_user()), true)
            .await?;
    }
    Ok(())
}

struct Written {
    adds: Vec<deltalake::kernel::Add>,
    quarantine: Vec<deltalake::kernel::Add>,
    rows: u64,
    dropped: u64,
    quarantined: u64,
}

/// Runs the frame with the expectations' conditions as extra columns, one writer per
/// partition; returns the files for the table and for quarantine.
async fn write_checked(
    df: DataFrame,
    schema: &SchemaRef,
    checker: &Arc<Checker>,
    table: &DeltaTable,
    quarantine: Option<&DeltaTable>,
    progress: &Arc<AtomicU64>,
) -> Result<Written> {
    let mut exprs: Vec<Expr> = schema
        .fields()
        .iter()
        .map(|f| col(format!("\"{}\"", f.name())))
        .collect();
    for (i, e) in checker.expectations().iter().enumerate() {
        let cond = df.parse_sql_expr(&e.condition)?;
        exprs.push(cond.alias(format!("__expect_{i}")));
    }
    let df = df.select(exprs)?;
    let streams = df.execute_stream_partitioned().await?;
    let mut tasks = tokio::task::JoinSet::new();
    let qschema = Checker::quarantine_schema(schema);
    for mut stream in streams {
        let mut writer = TableWriter::new(table, schema.clone())?;
        let mut qwriter = match quarantine {
            Some(q) => Some(TableWriter::new(q, qschema.clone())?),
            None => None,
        };
        let checker = checker.clone();
        let schema = schema.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut dropped = 0;
            let mut quarantined = 0;
            while let Some(batch) = stream.next().await {
                let split = checker.apply(&batch?, &schema)?;
                dropped += split.dropped;
                if split.keep.num_rows() > 0 {
                    writer.write(&split.keep).await?;
                    progress.fetch_add(split.keep.num_rows() as u64, Ordering::Relaxed);
                }
                if let (Some(q), Some(w)) = (split.quarantine, qwriter.as_mut()) {
                    quarantined += q.num_rows() as u64;
                    w.write(&q).await?;
                }
            }
            let rows = writer.rows();
            let adds = writer.finish().await?;
            let qadds = match qwriter {
                Some(w) => w.finish().await?,
                None => vec![],
            };
            Ok::<_, PipelineError>((adds, qadds, rows, dropped, quarantined))
        });
    }
    let mut out = Written {
        adds: vec![],
        quarantine: vec![],
        rows: 0,
        dropped: 0,
        quarantined: 0,
    };
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok((a, q, n, d, qn))) => {
                out.adds.extend(a);
                out.quarantine.extend(q);
                out.rows += n;
                out.dropped += d;
                out.quarantined += qn;
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(PipelineError::Config(format!("writer task failed: {e}")));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

impl DatasetReport {
    /// The failure's message naming the dataset once (most messages name it already).
    pub fn failure(&self) -> Option<String> {
        match &self.status {
            Status::Failed(m) if m.starts_with(&format!("{}: ", self.key)) => Some(m.clone()),
            Status::Failed(m) => Some(format!("{}: {m}", self.key)),
            _ => None,
        }
    }

    fn new(ds: &Dataset, status: Status) -> Self {
        DatasetReport {
            key: ds.key.clone(),
            kind: ds.kind(),
            status,
            rows_written: 0,
            rows_dropped: 0,
            rows_quarantined: 0,
            files_read: 0,
            rows_upserted: 0,
            rows_deleted: 0,
            expectations: vec![],
            duration: Duration::ZERO,
            version: None,
        }
    }

    /// Metrics as JSON (for the event log and `--json`).
    pub fn metrics(&self) -> Value {
        json!({
            "dataset": self.key,
            "kind": self.kind.label(),
            "status": self.status.label(),
            "error": match &self.status { Status::Failed(m) => Some(m.clone()), Status::Skipped(u) => Some(format!("upstream {u} failed")), _ => None },
            "rows_written": self.rows_written,
            "rows_dropped": self.rows_dropped,
            "rows_quarantined": self.rows_quarantined,
            "files_read": self.files_read,
            "rows_upserted": self.rows_upserted,
            "rows_deleted": self.rows_deleted,
            "version": self.version,
            "duration_ms": self.duration.as_millis() as u64,
            "expectations": self.expectations.iter().map(|e| json!({
                "name": e.name, "action": e.action, "passed": e.passed, "failed": e.failed
            })).collect::<Vec<_>>(),
        })
    }
}

/// Reads the pipeline's updates from its event log (newest first).
pub async fn list_updates(
    session: &SqlSession,
    table: &TableName,
) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
    let sql = format!(
        "SELECT update_id, min(timestamp) AS started, \
         CAST(max(timestamp) - min(timestamp) AS VARCHAR) AS duration, \
         coalesce(max(CASE WHEN event_type = 'update_failed' THEN 'FAILED' END), \
                  max(CASE WHEN event_type = 'update_completed' THEN 'COMPLETED' END), \
                  'INCOMPLETE') AS status, \
         count(CASE WHEN event_type = 'flow_progress' THEN 1 END) AS batches \
         FROM {} GROUP BY update_id ORDER BY started DESC",
        quoted(table)
    );
    Ok(session.query(&sql).await?)
}

/// Reads one update's events (the latest update when `update` is None).
pub async fn update_events(
    session: &SqlSession,
    table: &TableName,
    update: Option<&str>,
) -> Result<Vec<datafusion::arrow::array::RecordBatch>> {
    let filter = match update {
        Some(u) => format!("update_id LIKE '{}%'", u.replace('\'', "''")),
        None => format!("update_id = (SELECT max(update_id) FROM {})", quoted(table)),
    };
    let sql = format!(
        "SELECT timestamp, level, event_type, dataset, flow, message, details, error FROM {} WHERE {filter} ORDER BY timestamp, id",
        quoted(table)
    );
    Ok(session.query(&sql).await?)
}

fn quoted(t: &TableName) -> String {
    format!(
        "\"{}\".\"{}\".\"{}\"",
        t.catalog.as_str(),
        t.schema.as_str(),
        t.table.as_str()
    )
}

/// Event details with the change feeds' lag, when the flow read any.
fn with_source_lag(mut details: Value, lag: &[Value]) -> Value {
    if !lag.is_empty()
        && let Some(map) = details.as_object_mut()
    {
        map.insert("source_lag".into(), Value::Array(lag.to_vec()));
    }
    details
}

/// FNV-1a: a small hash that stays the same across Rust versions (slot names depend on it).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// `schema` with the leading underscore taken off envelope column names (`_sequence` is
/// `sequence`), for the rows of a stream table function.
fn unprefixed(schema: &Schema) -> Schema {
    Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().strip_prefix('_').unwrap_or(f.name());
                f.as_ref().clone().with_name(name)
            })
            .collect::<Vec<_>>(),
    )
}
