//! Files on local disk or object storage: CSV, JSON, Parquet and Avro, plain or gzip/zstd
//! compressed, read in parallel into Arrow with schema inference and rescue of bad records.

pub mod chunker;
pub mod csv;
pub mod error;
pub mod infer;
pub mod json;
pub mod listing;
pub mod metadata;
pub mod options;
pub mod rescue;
pub mod scan;
pub mod schema_ddl;
pub mod source;
pub mod typed;
pub mod values;

pub use error::{FilesError, Result};
pub use listing::{FileLocation, SourceFile};
pub use options::{Compression, FileFormat, RESCUED_DATA, ReadOptions};
pub use scan::{BatchSink, CollectSink, FileScan, ScanProgress};
pub use source::Opener;

use std::sync::Arc;

/// Lists the files a path, folder or glob names (local, or `s3://` with `store`).
pub async fn list(
    path: &str,
    options: &ReadOptions,
    store: Option<Arc<dyn object_store::ObjectStore>>,
) -> Result<(Vec<SourceFile>, Opener)> {
    if path.contains("://") && !path.starts_with("file://") {
        let url = url::Url::parse(path).map_err(|e| FilesError::BadOption {
            option: "path".into(),
            message: format!("invalid URL {path}: {e}"),
        })?;
        let store = store.ok_or_else(|| FilesError::Unreadable {
            path: path.to_string(),
            message: "no object store is configured for this URL".into(),
        })?;
        let files = listing::list_objects(store.clone(), &url, options).await?;
        Ok((
            files,
            Opener::object_store(store, tokio::runtime::Handle::current()),
        ))
    } else {
        let local = path.strip_prefix("file://").unwrap_or(path).to_string();
        let options = options.clone();
        let files = tokio::task::spawn_blocking(move || listing::list_local(&local, &options))
            .await
            .map_err(|e| FilesError::Sink(e.to_string()))??;
        Ok((files, Opener::local()))
    }
}

/// Lists files and infers their schema: the usual way to plan a read.
pub async fn plan(
    path: &str,
    options: ReadOptions,
    store: Option<Arc<dyn object_store::ObjectStore>>,
) -> Result<FileScan> {
    let (files, opener) = list(path, &options, store).await?;
    let o2 = options.clone();
    let op2 = opener.clone();
    let f2 = files.clone();
    let schema = tokio::task::spawn_blocking(move || infer::infer_schema(&f2, &o2, &op2))
        .await
        .map_err(|e| FilesError::Sink(e.to_string()))??;
    Ok(FileScan::new(
        files,
        options,
        schema,
        opener,
        "schema inferred from earlier files",
    ))
}
