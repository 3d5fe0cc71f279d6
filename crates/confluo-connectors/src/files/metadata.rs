//! The `_metadata` column of a file read: where each row came from.
//!
//! Databricks' `read_files` exposes the same struct; bronze tables keep it (or
//! `_metadata.file_path`) to trace a row back to its file.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Array, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Fields, SchemaRef, TimeUnit};

use super::listing::SourceFile;

/// The column's name.
pub const METADATA_COLUMN: &str = "_metadata";

fn fields() -> Fields {
    Fields::from(vec![
        Field::new("file_path", DataType::Utf8, false),
        Field::new("file_name", DataType::Utf8, false),
        Field::new("file_size", DataType::Int64, false),
        Field::new(
            "file_modification_time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ])
}

/// The `_metadata` field: file path (as listed: an absolute path or a URL), file name, size
/// in bytes and modification time. Block offsets are left out: a CSV or JSON file is cut
/// into chunks by content, so a row's block would not be a stable fact about it.
pub fn field() -> Field {
    Field::new(METADATA_COLUMN, DataType::Struct(fields()), false)
}

/// `batch` with the `_metadata` of `file` appended as its last column (`schema` is the
/// batch's schema plus [`field`]).
pub fn attach(
    batch: RecordBatch,
    file: &SourceFile,
    schema: &SchemaRef,
) -> arrow::error::Result<RecordBatch> {
    let n = batch.num_rows();
    let name = file
        .location
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or(&file.location);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![file.location.as_str(); n])),
        Arc::new(StringArray::from(vec![name; n])),
        Arc::new(Int64Array::from(vec![file.size as i64; n])),
        Arc::new(
            TimestampMicrosecondArray::from(vec![file.modified_ms * 1000; n]).with_timezone("UTC"),
        ),
    ];
    let meta = StructArray::try_new(fields(), columns, None)?;
    let mut all = batch.columns().to_vec();
    all.push(Arc::new(meta));
    RecordBatch::try_new(schema.clone(), all)
}
