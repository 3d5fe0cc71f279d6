//! Delta tables through delta-rs: open (at a version or a time), create, commit writes,
//! read history, vacuum, and evolve schemas.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use chrono::{DateTime, Utc};
use deltalake::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake::kernel::{Action, Add, MetadataExt, Remove, StructType, Transaction};
use deltalake::operations::vacuum::VacuumMode;
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use serde_json::Value;
use url::Url;

use crate::error::{LakehouseError, Result};
use crate::storage::StorageRoot;

/// Which snapshot of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableVersion {
    /// The newest version.
    Latest,
    /// A version number (`VERSION AS OF n`).
    Version(i64),
    /// The version current at a moment (`TIMESTAMP AS OF t`).
    Timestamp(DateTime<Utc>),
}

/// Opens the Delta table at `location`.
pub async fn open_table(
    storage: &StorageRoot,
    location: &str,
    version: TableVersion,
) -> Result<DeltaTable> {
    let url = Url::parse(location)
        .map_err(|e| LakehouseError::Invalid(format!("invalid table location {location}: {e}")))?;
    let store = storage.store_for(&url)?;
    let builder = DeltaTableBuilder::from_url(url.clone())
        .map_err(LakehouseError::delta(location))?
        .with_storage_backend(store, url.clone())
        .with_storage_options(storage.options());
    let builder = match version {
        TableVersion::Latest => builder,
        TableVersion::Version(v) => {
            if v < 0 {
                return Err(LakehouseError::Invalid(format!(
                    "version {v} is not valid: versions start at 0"
                )));
            }
            builder.with_version(v as u64)
        }
        TableVersion::Timestamp(ts) => builder.with_timestamp(ts),
    };
    let table = builder.load().await.map_err(|e| match (&e, version) {
        (deltalake::DeltaTableError::NotATable(_), _) => LakehouseError::Invalid(format!(
            "{location} is not a Delta table (no _delta_log found)"
        )),
        (_, TableVersion::Version(v)) => {
            LakehouseError::Invalid(format!("cannot read version {v} of {location}: {e}"))
        }
        (_, TableVersion::Timestamp(ts)) => LakehouseError::Invalid(format!(
            "cannot read {location} as of {ts}: {e} (the table may not have existed then)"
        )),
        _ => LakehouseError::Delta {
            table: location.to_string(),
            source: e,
        },
    })?;
    // A moment before the first commit falls back to version 0 in delta-rs; Delta's own
    // readers refuse it, as the table did not exist then.
    if let TableVersion::Timestamp(ts) = version
        && table_version(&table) == 0
        && let Some(first) = history(&table, Some(1))
            .await?
            .first()
            .and_then(|h| h.timestamp)
        && first > ts
    {
        return Err(LakehouseError::Invalid(format!(
            "{location} did not exist as of {ts}: its first commit is at {first}"
        )));
    }
    Ok(table)
}

/// The table's current version, or -1 for a table without commits.
pub fn table_version(table: &DeltaTable) -> i64 {
    table.version().map_or(-1, |v| v as i64)
}

/// The table's current schema in Arrow.
pub fn table_schema(table: &DeltaTable) -> Result<SchemaRef> {
    Ok(table
        .snapshot()
        .map_err(LakehouseError::delta(table.table_url()))?
        .snapshot()
        .arrow_schema())
}

/// The store holding `location` and the path of its `_delta_log` folder.
fn delta_log(
    storage: &StorageRoot,
    location: &str,
) -> Result<(std::sync::Arc<dyn object_store::ObjectStore>, ObjectPath)> {
    let url = Url::parse(location)
        .map_err(|e| LakehouseError::Invalid(format!("invalid table location {location}: {e}")))?;
    let store = storage.store_for(&url)?;
    let log = ObjectPath::from_url_path(format!("{}/_delta_log", url.path().trim_end_matches('/')))
        .map_err(|e| LakehouseError::Invalid(format!("invalid location {location}: {e}")))?;
    Ok((store, log))
}

/// Whether a Delta log exists at `location`.
pub async fn table_exists(storage: &StorageRoot, location: &str) -> Result<bool> {
    let (store, log) = delta_log(storage, location)?;
    let mut listing = store.list(Some(&log));
    Ok(listing
        .try_next()
        .await
        .map_err(LakehouseError::storage(location))?
        .is_some())
}

/// The newest commit's version at `location` (-1 without commits), from the names in
/// `_delta_log` alone: a trigger polling a table every second must not replay its log.
pub async fn latest_version(storage: &StorageRoot, location: &str) -> Result<i64> {
    let (store, log) = delta_log(storage, location)?;
    let mut listing = store.list(Some(&log));
    let mut newest = -1;
    while let Some(meta) = listing
        .try_next()
        .await
        .map_err(LakehouseError::storage(location))?
    {
        let name = meta.location.filename().unwrap_or_default();
        if let Some(v) = name
            .strip_suffix(".json")
            .filter(|v| v.len() == 20)
            .and_then(|v| v.parse::<i64>().ok())
        {
            newest = newest.max(v);
        }
    }
    Ok(newest)
}

/// Makes an Arrow schema storable in Delta: view types become plain ones, timestamps are
/// microseconds in UTC, small unsigned ints widen to signed, and every column is nullable
/// unless the caller insists (Delta readers treat NOT NULL as a constraint).
pub fn delta_compatible_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            Field::new(
                f.name(),
                delta_compatible_type(f.data_type()),
                f.is_nullable(),
            )
            .with_metadata(f.metadata().clone())
        })
        .collect();
    Arc::new(Schema::new(fields))
}

fn delta_compatible_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            DataType::Binary
        }
        DataType::UInt8 => DataType::Int16,
        DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::UInt64 => DataType::Decimal128(20, 0),
        DataType::Float16 => DataType::Float32,
        DataType::Null => DataType::Utf8,
        DataType::Date64 => DataType::Date32,
        DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Microsecond, None),
        DataType::Timestamp(_, Some(_)) => {
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        }
        DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Interval(_)
        | DataType::Duration(_) => DataType::Utf8,
        DataType::Dictionary(_, v) => delta_compatible_type(v),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) => DataType::Decimal128(*p, *s),
        DataType::Decimal256(p, s) if *p <= 38 => DataType::Decimal128(*p, *s),
        DataType::Decimal256(_, _) => DataType::Utf8,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => DataType::List(Arc::new(Field::new(
            f.name(),
            delta_compatible_type(f.data_type()),
            true,
        ))),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Field::new(f.name(), delta_compatible_type(f.data_type()), true))
                .collect(),
        ),
        DataType::Map(entries, sorted) => {
            let DataType::Struct(kv) = entries.data_type() else {
                return dt.clone();
            };
            let kv: Vec<Field> = kv
                .iter()
                .enumerate()
                .map(|(i, f)| Field::new(f.name(), delta_compatible_type(f.data_type()), i != 0))
                .collect();
            DataType::Map(
                Arc::new(Field::new(
                    entries.name(),
                    DataType::Struct(kv.into()),
                    false,
                )),
                *sorted,
            )
        }
        other => other.clone(),
    }
}

/// Settings for a new Delta table.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// The table's name, recorded in Delta metadata.
    pub name: Option<String>,
    /// A description.
    pub comment: Option<String>,
    /// Partition columns.
    pub partition_by: Vec<String>,
    /// Delta configuration (`delta.*` properties).
    pub configuration: HashMap<String, String>,
}

/// Creates an empty Delta table with `schema` at `location`.
pub async fn create_table(
    storage: &StorageRoot,
    location: &str,
    schema: &Schema,
    options: CreateOptions,
) -> Result<DeltaTable> {
    let url = Url::parse(location)
        .map_err(|e| LakehouseError::Invalid(format!("invalid table location {location}: {e}")))?;
    let store = storage.store_for(&url)?;
    let table = DeltaTableBuilder::from_url(url.clone())
        .map_err(LakehouseError::delta(location))?
        .with_storage_backend(store, url)
        .with_storage_options(storage.options())
        .build()
        .map_err(LakehouseError::delta(location))?;
    let kernel = to_kernel_schema(&delta_compatible_schema(schema))?;
    for p in &options.partition_by {
        if kernel.field(p).is_none() {
            return Err(LakehouseError::Schema(format!(
                "partition column `{p}` is not a column of the table"
            )));
        }
    }
    let mut builder = table
        .create()
        .with_columns(kernel.fields().cloned())
        .with_partition_columns(options.partition_by.clone())
        .with_configuration(
            options
                .configuration
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect::<HashMap<_, _>>(),
        )
        .with_save_mode(SaveMode::ErrorIfExists);
    if let Some(name) = options.name {
        builder = builder.with_table_name(name);
    }
    if let Some(comment) = options.comment {
        builder = builder.with_comment(comment);
    }
    builder.await.map_err(LakehouseError::delta(location))
}

/// Converts an Arrow schema to Delta's.
pub fn to_kernel_schema(schema: &Schema) -> Result<StructType> {
    use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
    schema
        .try_into_kernel()
        .map_err(|e| LakehouseError::Schema(format!("schema cannot be stored in Delta: {e}")))
}

/// Whether a write adds to or replaces a table's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Add rows.
    #[default]
    Append,
    /// Replace all rows.
    Overwrite,
}

/// One commit of written files.
#[derive(Debug, Default)]
pub struct CommitRequest {
    /// Files written.
    pub adds: Vec<Add>,
    /// Append or overwrite.
    pub mode: WriteMode,
    /// The new table schema, when this write evolves it.
    pub new_schema: Option<SchemaRef>,
    /// Provenance stored in the commit's `commitInfo` (e.g. the files an ingest read).
    pub app_metadata: HashMap<String, Value>,
    /// Application transactions `(app id, version)` recorded atomically with the data (a
    /// source's position; one per Kafka partition, say).
    pub txns: Vec<(String, i64)>,
    /// Files this commit replaces (a rewrite), beside the ones an overwrite removes.
    pub removes: Vec<Remove>,
    /// The operation recorded in the history; a write (append or overwrite) when `None`.
    pub operation: Option<DeltaOperation>,
    /// Operation metrics recorded beside the file and row counts.
    pub metrics: Option<Value>,
}

/// Commits written files to the table; returns the new version.
pub async fn commit(table: &DeltaTable, req: CommitRequest) -> Result<i64> {
    let name = table.table_url().to_string();
    let snapshot = table.snapshot().map_err(LakehouseError::delta(&name))?;
    let mut actions: Vec<Action> = Vec::with_capacity(req.adds.len() + 2);
    if let Some(schema) = &req.new_schema {
        let kernel = to_kernel_schema(schema)?;
        let metadata = snapshot
            .metadata()
            .clone()
            .with_schema(&kernel)
            .map_err(|e| LakehouseError::delta(&name)(e.into()))?;
        actions.push(Action::Metadata(metadata));
    }
    actions.extend(req.removes.into_iter().map(Action::Remove));
    if req.mode == WriteMode::Overwrite {
        for file in snapshot.log_data().iter() {
            actions.push(Action::Remove(file.remove_action(true)));
        }
    }
    let rows: i64 = req
        .adds
        .iter()
        .filter_map(|a| a.get_stats().ok().flatten().map(|s| s.num_records))
        .sum();
    let files = req.adds.len();
    actions.extend(req.adds.into_iter().map(Action::Add));
    let mut metadata = req.app_metadata;
    let mut metrics = serde_json::json!({ "numFiles": files, "numOutputRows": rows });
    if let Some(Value::Object(extra)) = req.metrics {
        metrics.as_object_mut().expect("an object").extend(extra);
    }
    metadata.insert("operationMetrics".into(), metrics);
    metadata.insert("engineInfo".into(), Value::String(engine_info()));
    let mut props = CommitProperties::default().with_metadata(metadata);
    for (app, version) in req.txns {
        props = props.with_application_transaction(Transaction::new(app, version));
    }
    let partition_by = snapshot.metadata().partition_columns();
    let operation = req.operation.unwrap_or_else(|| DeltaOperation::Write {
        mode: match req.mode {
            WriteMode::Append => SaveMode::Append,
            WriteMode::Overwrite => SaveMode::Overwrite,
        },
        partition_by: (!partition_by.is_empty()).then(|| partition_by.to_vec()),
        predicate: None,
    });
    let finalized = CommitBuilder::from(props)
        .with_actions(actions)
        .build(Some(snapshot), table.log_store(), operation)
        .await
        .map_err(LakehouseError::delta(&name))?;
    Ok(finalized.version() as i64)
}

/// The engine string recorded in every commit.
pub fn engine_info() -> String {
    format!("confluo/{}", env!("CARGO_PKG_VERSION"))
}

/// One entry of a table's history, read from its commit file.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    /// The table version this commit produced.
    pub version: i64,
    /// Commit time.
    pub timestamp: Option<DateTime<Utc>>,
    /// `WRITE`, `CREATE TABLE`, `MERGE`, ...
    pub operation: String,
    /// Operation parameters as JSON.
    pub parameters: Value,
    /// Operation metrics as JSON.
    pub metrics: Value,
    /// The engine that wrote it.
    pub engine: Option<String>,
    /// The whole `commitInfo` object.
    pub commit_info: Value,
}

/// Reads the `commitInfo` of one version; `None` when its commit file is gone (cleaned up
/// after a checkpoint).
pub async fn read_commit_info(table: &DeltaTable, version: i64) -> Result<Option<Value>> {
    let store = table.log_store().object_store(None);
    let path = ObjectPath::from(format!("_delta_log/{version:020}.json"));
    let bytes = match store.get(&path).await {
        Ok(r) => r.bytes().await.map_err(LakehouseError::storage(&path))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(LakehouseError::storage(&path)(e)),
    };
    for line in bytes.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_slice(line)
            .map_err(|e| LakehouseError::Invalid(format!("corrupt Delta commit {path}: {e}")))?;
        if let Some(info) = v.get("commitInfo") {
            return Ok(Some(info.clone()));
        }
    }
    Ok(Some(Value::Null))
}

/// The newest `limit` commits (all when `None`), newest first.
pub async fn history(table: &DeltaTable, limit: Option<usize>) -> Result<Vec<HistoryEntry>> {
    let latest = table_version(table);
    let oldest = match limit {
        Some(n) => (latest - n as i64 + 1).max(0),
        None => 0,
    };
    let mut out = Vec::new();
    for version in (oldest..=latest).rev() {
        let Some(info) = read_commit_info(table, version).await? else {
            break;
        };
        let get = |k: &str| info.get(k).cloned().unwrap_or(Value::Null);
        out.push(HistoryEntry {
            version,
            timestamp: info
                .get("timestamp")
                .and_then(Value::as_i64)
                .and_then(DateTime::from_timestamp_millis),
            operation: info
                .get("operation")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            parameters: get("operationParameters"),
            metrics: get("operationMetrics"),
            engine: info
                .get("engineInfo")
                .and_then(Value::as_str)
                .map(str::to_string),
            commit_info: info,
        });
    }
    Ok(out)
}

/// What a vacuum removed (or would remove, in a dry run).
#[derive(Debug, Clone)]
pub struct VacuumReport {
    /// Files deleted, relative to the table root.
    pub files: Vec<String>,
    /// Whether nothing was actually deleted.
    pub dry_run: bool,
}

/// Deletes data files no longer referenced by versions within the retention period, and
/// files never committed (left by an interrupted write).
pub async fn vacuum(
    table: DeltaTable,
    retention_hours: Option<u64>,
    dry_run: bool,
) -> Result<VacuumReport> {
    let name = table.table_url().to_string();
    let store = table.log_store().object_store(None);
    let plan = |t: DeltaTable, dry: bool| {
        let mut b = t.vacuum().with_dry_run(dry).with_mode(VacuumMode::Full);
        if let Some(h) = retention_hours {
            b = b
                .with_retention_period(chrono::Duration::hours(h as i64))
                .with_enforce_retention_duration(false);
        }
        b
    };
    // delta-rs lists files removed from the log even when an earlier vacuum already
    // deleted them: report only files that are really there.
    let (table, candidates) = plan(table, true)
        .await
        .map_err(LakehouseError::delta(&name))?;
    let root = table.table_url().path().to_string();
    let mut files = Vec::new();
    for f in candidates.files_deleted {
        let rel = f
            .strip_prefix(root.trim_start_matches('/'))
            .unwrap_or(&f)
            .trim_start_matches('/')
            .to_string();
        if store.head(&ObjectPath::from(rel.as_str())).await.is_ok() {
            files.push(rel);
        }
    }
    if !dry_run && !files.is_empty() {
        plan(table, false)
            .await
            .map_err(LakehouseError::delta(&name))?;
    }
    Ok(VacuumReport { files, dry_run })
}

/// Compares an incoming schema with the table's and returns the evolved table schema when
/// the incoming one adds columns (appended, nullable). Columns absent from the incoming
/// schema stay. A column whose type cannot be widened is an error naming it and both types.
pub fn evolve_schema(table: &Schema, incoming: &Schema, source: &str) -> Result<Option<SchemaRef>> {
    let mut fields: Vec<Field> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut changed = false;
    for inc in incoming.fields() {
        match fields
            .iter_mut()
            .find(|f| f.name().eq_ignore_ascii_case(inc.name()))
        {
            Some(existing) => {
                let have = existing.data_type().clone();
                let got = delta_compatible_type(inc.data_type());
                let Some(why) = mismatch(&have, &got) else {
                    continue;
                };
                if can_cast_losslessly(&got, &have) {
                    continue;
                }
                if let Some(wider) = widen(&have, &got) {
                    *existing = existing.clone().with_data_type(wider);
                    changed = true;
                    continue;
                }
                return Err(LakehouseError::Schema(format!(
                    "{source}: column `{}` has type {} but the table has {}: {why}\n  hint: cast the column, or write into a new table",
                    inc.name(),
                    type_name(&got),
                    type_name(&have)
                )));
            }
            None => {
                fields.push(Field::new(
                    inc.name(),
                    delta_compatible_type(inc.data_type()),
                    true,
                ));
                changed = true;
            }
        }
    }
    Ok(changed.then(|| Arc::new(Schema::new(fields))))
}

/// Delta's type-widening: the table type grows to hold the incoming type.
fn widen(table: &DataType, incoming: &DataType) -> Option<DataType> {
    use DataType::*;
    match (table, incoming) {
        (Int8 | Int16, Int32) | (Int8 | Int16 | Int32, Int64) => Some(incoming.clone()),
        (Int8 | Int16 | Int32, Float64) | (Float32, Float64) => Some(Float64),
        (Date32, Timestamp(..)) => Some(incoming.clone()),
        _ => None,
    }
}

/// The type comparison and names shared with the file readers and every writer.
pub use confluo_connectors::arrow_types::{
    can_cast_losslessly, mismatch, same_stored_type, type_name,
};
