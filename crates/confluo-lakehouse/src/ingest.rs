//! `confluo ingest`: files into a Delta table, incrementally and exactly once.
//!
//! Each commit carries the list of source files it read (path, size, modification time) in
//! its `commitInfo`, so the Delta log itself records what was ingested: a file is read again
//! only if it is new or changed. A crash before a commit leaves only unreferenced data files
//! (removed by VACUUM) and the next run reads those files again; a crash after it finds
//! them recorded. Files are committed in groups, so a long run keeps its progress.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use confluo_connectors::files::{
    self, BatchSink, FileFormat, FileScan, ReadOptions, ScanProgress, SourceFile,
};
use deltalake::DeltaTable;
use serde_json::{Value, json};

use crate::delta::{self, CommitRequest, TableVersion, WriteMode};
use crate::error::{LakehouseError, Result};
use crate::lakehouse::{Lakehouse, NewTable};
use crate::metastore::{IngestedFile, TableInfo};
use crate::write::TableWriter;
use confluo_core::TableName;

/// Key under which a commit's `commitInfo` lists the files it ingested.
pub const INGEST_KEY: &str = "confluo.ingest";

/// Most input bytes read before a commit.
const GROUP_BYTES: u64 = 2 << 30;
/// Most files per commit.
const GROUP_FILES: usize = 5_000;

/// What an ingest did.
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    /// The table written.
    pub table: String,
    /// Files the path named.
    pub files_listed: usize,
    /// Files skipped because they were already ingested.
    pub files_skipped: usize,
    /// Files read now.
    pub files_ingested: usize,
    /// Bytes of the files read.
    pub bytes: u64,
    /// Rows written.
    pub rows: u64,
    /// Rows with rescued data.
    pub rescued: u64,
    /// The Delta versions committed.
    pub versions: Vec<i64>,
    /// Whether the table was created by this ingest.
    pub created: bool,
    /// Columns added to the table.
    pub new_columns: Vec<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Called once with the plan of an ingest.
type PlanCallback<'a> = Box<dyn FnOnce(&IngestPlan) + Send + 'a>;

/// Builds an ingest: `IngestBuilder::new(&lh, path, table).with_mode(..).await`.
pub struct IngestBuilder<'a> {
    lakehouse: &'a Lakehouse,
    path: String,
    table: TableName,
    options: ReadOptions,
    mode: WriteMode,
    progress: Arc<ScanProgress>,
    workers: usize,
    group_bytes: u64,
    on_plan: Option<PlanCallback<'a>>,
}

/// What an ingest is about to do, for progress displays.
#[derive(Debug, Clone)]
pub struct IngestPlan {
    /// Files to read.
    pub files: usize,
    /// Their total size.
    pub bytes: u64,
    /// Files skipped.
    pub skipped: usize,
}

impl<'a> IngestBuilder<'a> {
    /// Ingests `path` (file, folder or glob) into `table`.
    pub fn new(lakehouse: &'a Lakehouse, path: impl Into<String>, table: TableName) -> Self {
        IngestBuilder {
            lakehouse,
            path: path.into(),
            table,
            options: ReadOptions::default(),
            mode: WriteMode::Append,
            progress: Arc::new(ScanProgress::default()),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            group_bytes: GROUP_BYTES,
            on_plan: None,
        }
    }

    /// Read options (format, CSV dialect, ...).
    pub fn with_options(mut self, options: ReadOptions) -> Self {
        self.options = options;
        self
    }

    /// Append (default) or overwrite.
    pub fn with_mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// Shares live counters with the caller.
    pub fn with_progress(mut self, progress: Arc<ScanProgress>) -> Self {
        self.progress = progress;
        self
    }

    /// Parallel decode/encode workers.
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Commits after about this many input bytes (at least one file per commit).
    pub fn with_commit_bytes(mut self, bytes: u64) -> Self {
        self.group_bytes = bytes.max(1);
        self
    }

    /// Called once the files to read are known.
    pub fn on_plan(mut self, f: impl FnOnce(&IngestPlan) + Send + 'a) -> Self {
        self.on_plan = Some(Box::new(f));
        self
    }

    async fn execute(self) -> Result<IngestReport> {
        let started = Instant::now();
        let lh = self.lakehouse;
        let mut report = IngestReport {
            table: self.table.to_string(),
            ..Default::default()
        };
        let store = if self.path.contains("://") && !self.path.starts_with("file://") {
            let url = url::Url::parse(&self.path)
                .map_err(|e| LakehouseError::Invalid(format!("invalid URL {}: {e}", self.path)))?;
            Some(lh.storage().store_for(&url)?)
        } else {
            None
        };
        let (listed, opener) = files::list(&self.path, &self.options, store).await?;
        report.files_listed = listed.len();

        let existing = lh.metastore().get_table(&self.table).await?;
        let mut todo = listed.clone();
        if let (Some(info), WriteMode::Append) = (&existing, self.mode) {
            let table = lh.open_delta(info, TableVersion::Latest).await?;
            catch_up_index(lh, info, &table).await?;
            let done = lh.metastore().ingested_files(&info.id).await?;
            todo.retain(|f| {
                !done
                    .get(&f.location)
                    .is_some_and(|d| d.size == f.size as i64 && d.modified_ms == f.modified_ms)
            });
        }
        report.files_skipped = listed.len() - todo.len();
        let bytes: u64 = todo.iter().map(|f| f.size).sum();
        if let Some(cb) = self.on_plan {
            cb(&IngestPlan {
                files: todo.len(),
                bytes,
                skipped: report.files_skipped,
            });
        }
        if todo.is_empty() {
            report.elapsed = started.elapsed();
            return Ok(report);
        }

        // The schema: the table's, evolved with new columns, or inferred for a new table.
        let sample_scan = {
            let (o, op, f) = (self.options.clone(), opener.clone(), todo.clone());
            tokio::task::spawn_blocking(move || files::infer::infer_schema(&f, &o, &op))
                .await
                .map_err(|e| LakehouseError::Invalid(e.to_string()))??
        };
        let rescue_col = self.options.rescued_data_column.clone();
        let with_rescue = |s: &Schema| -> SchemaRef {
            let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
            if let Some(r) = &rescue_col
                && !fields.iter().any(|f| f.name() == r)
            {
                fields.push(Field::new(r, DataType::Utf8, true));
            }
            Arc::new(Schema::new(fields))
        };
        let typed_input = todo.iter().any(|f| {
            matches!(
                files::infer::format_of(f, &self.options),
                Ok(FileFormat::Parquet | FileFormat::Avro)
            )
        });
        let (info, mut table, new_schema) = match existing {
            Some(info) => {
                let table = lh.open_delta(&info, TableVersion::Latest).await?;
                let current = delta::table_schema(&table)?;
                let incoming = with_rescue(&sample_scan);
                let evolved = if typed_input {
                    delta::evolve_schema(&current, &incoming, &self.path)?
                } else {
                    // Text formats: only new columns; values that do not fit are rescued.
                    add_new_columns(&current, &incoming)
                };
                if let Some(s) = &evolved {
                    report.new_columns = s
                        .fields()
                        .iter()
                        .filter(|f| current.field_with_name(f.name()).is_err())
                        .map(|f| f.name().clone())
                        .collect();
                }
                if self.mode == WriteMode::Overwrite && evolved.is_none() {
                    (info, table, None)
                } else {
                    (info, table, evolved)
                }
            }
            None => {
                let schema = with_rescue(&sample_scan);
                let (info, table) = lh
                    .create_table(NewTable {
                        name: self.table.clone(),
                        schema: delta::delta_compatible_schema(&schema).as_ref().clone(),
                        partition_by: vec![],
                        comment: None,
                        properties: Default::default(),
                        location: None,
                    })
                    .await?;
                report.created = true;
                (info, table, None)
            }
        };
        let write_schema: SchemaRef = match &new_schema {
            Some(s) => s.clone(),
            None => delta::table_schema(&table)?,
        };

        let mut first = true;
        for group in groups(todo, self.group_bytes) {
            let scan = FileScan::new(
                group.clone(),
                self.options.clone(),
                write_schema.clone(),
                opener.clone(),
                "table schema",
            );
            let handle = tokio::runtime::Handle::current();
            let mut sinks = Vec::with_capacity(self.workers);
            for _ in 0..self.workers {
                sinks.push(WriterSink {
                    writer: TableWriter::new(&table, write_schema.clone())?,
                    handle: handle.clone(),
                });
            }
            let progress = self.progress.clone();
            let sinks = tokio::task::spawn_blocking(move || scan.run(sinks, &progress))
                .await
                .map_err(|e| LakehouseError::Invalid(format!("ingest worker failed: {e}")))??;
            let mut adds = Vec::new();
            for sink in sinks {
                adds.extend(sink.writer.finish().await?);
            }
            let mode = if first { self.mode } else { WriteMode::Append };
            let records: Vec<Value> = group
                .iter()
                .map(|f| json!({"path": f.location, "size": f.size, "modified_ms": f.modified_ms}))
                .collect();
            let mut app_metadata = HashMap::new();
            app_metadata.insert(
                INGEST_KEY.to_string(),
                json!({
                    "mode": if mode == WriteMode::Overwrite { "overwrite" } else { "append" },
                    "source": self.path,
                    "files": records,
                }),
            );
            let version = delta::commit(
                &table,
                CommitRequest {
                    adds,
                    mode,
                    new_schema: if first { new_schema.clone() } else { None },
                    app_metadata,
                    ..Default::default()
                },
            )
            .await?;
            report.versions.push(version);
            let ingested: Vec<IngestedFile> = group
                .iter()
                .map(|f| IngestedFile {
                    path: f.location.clone(),
                    size: f.size as i64,
                    modified_ms: f.modified_ms,
                    delta_version: version,
                })
                .collect();
            lh.metastore()
                .record_ingest(&info.id, version, mode == WriteMode::Overwrite, &ingested)
                .await?;
            report.files_ingested += group.len();
            report.bytes += group.iter().map(|f| f.size).sum::<u64>();
            table = lh.open_delta(&info, TableVersion::Latest).await?;
            first = false;
        }
        lh.metastore().touch_table(&self.table).await?;
        report.rows = self
            .progress
            .rows
            .load(std::sync::atomic::Ordering::Relaxed);
        report.rescued = self
            .progress
            .rescued
            .load(std::sync::atomic::Ordering::Relaxed);
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

impl<'a> IntoFuture for IngestBuilder<'a> {
    type Output = Result<IngestReport>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.execute())
    }
}

/// Appends the incoming columns the table lacks (nullable, text types widened).
fn add_new_columns(current: &Schema, incoming: &Schema) -> Option<SchemaRef> {
    let mut fields: Vec<Field> = current
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut changed = false;
    for f in incoming.fields() {
        if !fields
            .iter()
            .any(|x| x.name().eq_ignore_ascii_case(f.name()))
        {
            fields.push(Field::new(f.name(), f.data_type().clone(), true));
            changed = true;
        }
    }
    changed.then(|| delta::delta_compatible_schema(&Schema::new(fields)))
}

fn groups(files: Vec<SourceFile>, group_bytes: u64) -> Vec<Vec<SourceFile>> {
    let mut out = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0u64;
    for f in files {
        if !current.is_empty() && (bytes + f.size > group_bytes || current.len() >= GROUP_FILES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += f.size;
        current.push(f);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Brings the metastore's index of ingested files up to date with the Delta log (commits
/// made by a run that stopped before updating the index, or by other writers).
pub async fn catch_up_index(lh: &Lakehouse, info: &TableInfo, table: &DeltaTable) -> Result<()> {
    let ms = lh.metastore();
    let indexed = ms.indexed_version(&info.id).await?.unwrap_or(-1);
    let latest = delta::table_version(table);
    for version in (indexed + 1)..=latest {
        let Some(commit) = delta::read_commit_info(table, version).await? else {
            continue;
        };
        if let Some(ing) = commit.get(INGEST_KEY) {
            let overwrite = ing.get("mode").and_then(Value::as_str) == Some("overwrite");
            let files = files_in_commit(ing, version);
            ms.record_ingest(&info.id, version, overwrite, &files)
                .await?;
        } else if is_overwrite(&commit) {
            ms.clear_ingested(&info.id).await?;
        }
    }
    if latest > indexed {
        ms.set_indexed_version(&info.id, latest).await?;
    }
    Ok(())
}

/// The `files` list (path, size, modified_ms) a commit's Confluo record carries.
pub fn files_in_commit(record: &Value, version: i64) -> Vec<IngestedFile> {
    record
        .get("files")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| {
                    Some(IngestedFile {
                        path: f.get("path")?.as_str()?.to_string(),
                        size: f.get("size")?.as_i64()?,
                        modified_ms: f.get("modified_ms")?.as_i64()?,
                        delta_version: version,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_overwrite(commit: &Value) -> bool {
    let op = commit
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mode = commit
        .get("operationParameters")
        .and_then(|p| p.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or("");
    (op == "WRITE" && mode.eq_ignore_ascii_case("overwrite"))
        || op == "CREATE OR REPLACE TABLE"
        || op == "RESTORE"
}

struct WriterSink {
    writer: TableWriter,
    handle: tokio::runtime::Handle,
}

impl BatchSink for WriterSink {
    fn write(&mut self, batch: RecordBatch) -> std::result::Result<(), String> {
        self.handle
            .block_on(self.writer.write(&batch))
            .map_err(|e| e.to_string())
    }
}
