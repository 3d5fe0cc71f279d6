//! `read_files(path, format => 'csv', ...)`: files as a table.
//!
//! The provider streams batches from a [`FileScan`] running on blocking threads; dropping
//! the stream (a `LIMIT` was met, the user pressed Ctrl-C) stops the scan.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::scalar::ScalarValue;
use tokio::sync::mpsc;

use confluo_connectors::files::{self, BatchSink, FileScan, ReadOptions, ScanProgress};

/// The progress of every `read_files` of a statement, for the rescued-rows notice.
pub type ScanRegistry = Arc<std::sync::Mutex<Vec<(String, Arc<ScanProgress>)>>>;

/// Plans `read_files` from a path and `(key, value)` options; `metadata` adds the
/// `_metadata` column (the statement names it).
pub async fn plan_read_files(
    path: &str,
    options: &[(String, String)],
    store: Option<Arc<dyn object_store::ObjectStore>>,
    metadata: bool,
) -> Result<FileScan, files::FilesError> {
    let mut o = ReadOptions {
        metadata_column: metadata,
        ..ReadOptions::default()
    };
    for (k, v) in options {
        o.set(k, v)?;
    }
    files::plan(path, o, store).await
}

/// A table provider over a file scan.
pub fn provider(
    scan: FileScan,
    registry: Option<&ScanRegistry>,
    label: &str,
) -> DfResult<Arc<dyn TableProvider>> {
    let progress = Arc::new(ScanProgress::default());
    if let Some(r) = registry {
        r.lock()
            .expect("registry lock")
            .push((label.to_string(), progress.clone()));
    }
    let part = Arc::new(FilePartition {
        schema: scan.schema(),
        scan,
        progress,
    });
    Ok(Arc::new(StreamingTable::try_new(
        part.schema.clone(),
        vec![part],
    )?))
}

#[derive(Debug)]
struct FilePartition {
    schema: SchemaRef,
    scan: FileScan,
    progress: Arc<ScanProgress>,
}

struct ChannelSink(mpsc::Sender<DfResult<RecordBatch>>);

impl BatchSink for ChannelSink {
    fn write(&mut self, batch: RecordBatch) -> Result<(), String> {
        self.0
            .blocking_send(Ok(batch))
            .map_err(|_| "the query stopped reading".to_string())
    }
}

impl PartitionStream for FilePartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = mpsc::channel::<DfResult<RecordBatch>>(4);
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let scan = self.scan.clone();
        let progress = self.progress.clone();
        let err_tx = tx.clone();
        tokio::task::spawn_blocking(move || {
            let sinks: Vec<ChannelSink> = (0..workers).map(|_| ChannelSink(tx.clone())).collect();
            drop(tx);
            if let Err(e) = scan.run(sinks, &progress)
                && !matches!(e, files::FilesError::Sink(_) | files::FilesError::Cancelled)
            {
                let _ = err_tx.blocking_send(Err(DataFusionError::External(Box::new(e))));
            }
        });
        let stop = StopOnDrop(self.progress.clone());
        let stream = futures::stream::unfold((rx, stop), |(mut rx, stop)| async move {
            rx.recv().await.map(|item| (item, (rx, stop)))
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

struct StopOnDrop(Arc<ScanProgress>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel.store(true, Ordering::Relaxed);
    }
}

/// Evaluates a literal argument to text.
pub fn arg_text(e: &Expr) -> Option<String> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Some(s.clone()),
            ScalarValue::Boolean(Some(b)) => Some(b.to_string()),
            v if !v.is_null() => Some(v.to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// `read_files` as a DataFusion table function: `read_files('path', 'key', 'value', ...)`.
/// (Confluo's own SQL front end turns `key => value` into these pairs.)
#[derive(Debug, Default)]
pub struct ReadFilesFunc;

impl TableFunctionImpl for ReadFilesFunc {
    fn call_with_args(&self, args: TableFunctionArgs) -> DfResult<Arc<dyn TableProvider>> {
        let exprs = args.exprs();
        let path = exprs.first().and_then(arg_text).ok_or_else(|| {
            DataFusionError::Plan("read_files needs a path or glob as its first argument".into())
        })?;
        let rest: Vec<String> = exprs[1..]
            .iter()
            .map(|e| {
                arg_text(e).ok_or_else(|| {
                    DataFusionError::Plan(format!("read_files options must be literals, not {e}"))
                })
            })
            .collect::<DfResult<_>>()?;
        if !rest.len().is_multiple_of(2) {
            return Err(DataFusionError::Plan(
                "read_files options come in key, value pairs".into(),
            ));
        }
        let options: Vec<(String, String)> = rest
            .chunks(2)
            .map(|c| (c[0].clone(), c[1].clone()))
            .collect();
        let scan = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(plan_read_files(&path, &options, None, false))
        })
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        provider(scan, None, &path)
    }
}
