//! Streaming writes of Arrow batches into a Delta table's data files.
//!
//! A [`TableWriter`] encodes Parquet as batches arrive and streams it to the object store,
//! rolling files at a target size, so memory stays bounded whatever the input size. Several
//! writers can work on one table in parallel; their `Add` actions are committed together
//! with [`crate::delta::commit`].
//!
//! Columns that Snappy barely shrinks (hashes, random identifiers, already dense values) are
//! stored uncompressed: compressing them costs a large share of the write's CPU and saves
//! almost no space. The choice is made once per writer from a trial compression of the
//! first batch's values.

use std::num::NonZeroU64;

use arrow::array::{Array, AsArray, GenericByteArray, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::{ArrowNativeType, ByteArrayType};
use arrow::datatypes::{DataType, SchemaRef};
use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::DeltaTable;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::Add;
use deltalake::kernel::schema::cast_record_batch;
use deltalake::logstore::ObjectStoreRef;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{
    EnabledStatistics, WriterProperties, WriterPropertiesBuilder, WriterVersion,
};
use parquet::schema::types::ColumnPath;

use crate::error::{LakehouseError, Result};

/// Target size of one data file.
pub const TARGET_FILE_SIZE: u64 = 256 * 1024 * 1024;

/// A first batch with fewer rows than this is too small to judge: every column is compressed.
const MIN_TRIAL_ROWS: usize = 4096;
/// A column with fewer bytes of values than this in the first batch keeps Snappy.
const MIN_TRIAL_BYTES: usize = 4096;
/// Bytes of one column's values compressed on trial.
const TRIAL_BYTES: usize = 1 << 20;

/// Parquet settings for data files: Snappy, dictionaries for repetitive columns, statistics
/// per column chunk (what Delta's data skipping reads), row groups of about 1M rows.
fn properties_builder() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_encoding(Encoding::PLAIN)
        .set_max_row_group_row_count(Some(1024 * 1024))
        .set_created_by(crate::delta::engine_info())
}

/// The data-file settings, with compression turned off for the top-level columns of `sample`
/// whose values Snappy would shrink by less than an eighth.
pub fn writer_properties_for(sample: &RecordBatch) -> WriterProperties {
    let mut builder = properties_builder();
    if sample.num_rows() < MIN_TRIAL_ROWS {
        return builder.build();
    }
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        if let Some(values) = plain_values(column.as_ref())
            && values.len() >= MIN_TRIAL_BYTES
            && !worth_compressing(&values)
        {
            builder = builder.set_column_compression(
                ColumnPath::new(vec![field.name().clone()]),
                Compression::UNCOMPRESSED,
            );
        }
    }
    builder.build()
}

/// Up to [`TRIAL_BYTES`] of a flat column's values as Parquet's PLAIN encoding lays them out
/// (fixed-width values, or the bytes of strings); `None` for types not judged.
fn plain_values(column: &dyn Array) -> Option<Buffer> {
    let (values, start, end) = match column.data_type() {
        DataType::Utf8 => byte_range(column.as_string::<i32>()),
        DataType::LargeUtf8 => byte_range(column.as_string::<i64>()),
        DataType::Binary => byte_range(column.as_binary::<i32>()),
        t => {
            let width = t.primitive_width()?;
            let data = column.to_data();
            let start = data.offset() * width;
            (
                data.buffers().first()?.clone(),
                start,
                start + data.len() * width,
            )
        }
    };
    let end = end.min(values.len()).min(start + TRIAL_BYTES);
    (start <= end).then(|| values.slice_with_length(start, end - start))
}

/// The values buffer of a string or binary array, and where the array's values lie in it.
fn byte_range<T: ByteArrayType>(a: &GenericByteArray<T>) -> (Buffer, usize, usize) {
    let offsets = a.value_offsets();
    (
        a.values().clone(),
        offsets[0].as_usize(),
        offsets[a.len()].as_usize(),
    )
}

/// Whether Snappy shrinks `values` by at least an eighth.
fn worth_compressing(values: &[u8]) -> bool {
    match snap::raw::Encoder::new().compress_vec(values) {
        Ok(compressed) => compressed.len() * 8 <= values.len() * 7,
        Err(_) => true,
    }
}

/// Writes batches into new data files of one table.
pub struct TableWriter {
    /// Created with the first batch, whose values choose the columns' compression.
    writer: Option<DeltaWriter>,
    store: ObjectStoreRef,
    partition_columns: Vec<String>,
    schema: SchemaRef,
    rows: u64,
    table: String,
}

impl TableWriter {
    /// A writer producing files with the table schema `schema` (which may be newer than the
    /// table's current one, when the commit will evolve it).
    pub fn new(table: &DeltaTable, schema: SchemaRef) -> Result<Self> {
        let name = table.table_url().to_string();
        let partition_columns = table
            .snapshot()
            .map(|s| s.metadata().partition_columns().to_vec())
            .unwrap_or_default();
        Ok(TableWriter {
            writer: None,
            store: table.log_store().object_store(None),
            partition_columns,
            schema,
            rows: 0,
            table: name,
        })
    }

    /// The schema batches are written with.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Writes one batch. Columns are matched by name and cast to the file schema; columns
    /// the batch lacks are written as nulls.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let batch = if batch.schema() == self.schema {
            batch.clone()
        } else {
            cast_record_batch(batch, self.schema.clone(), true, true).map_err(|e| {
                LakehouseError::Schema(format!("cannot write rows to {}: {e}", self.table))
            })?
        };
        self.rows += batch.num_rows() as u64;
        let writer = match &mut self.writer {
            Some(w) => w,
            None => {
                let config = WriterConfig::new(
                    self.schema.clone(),
                    self.partition_columns.clone(),
                    Some(writer_properties_for(&batch)),
                    NonZeroU64::new(TARGET_FILE_SIZE),
                    Some(8192),
                    DataSkippingNumIndexedCols::NumColumns(32),
                    None,
                );
                self.writer
                    .insert(DeltaWriter::new(self.store.clone(), config))
            }
        };
        writer
            .write(&batch)
            .await
            .map_err(LakehouseError::delta(&self.table))
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes and closes every open file, returning their `Add` actions.
    pub async fn finish(self) -> Result<Vec<Add>> {
        let Some(writer) = self.writer else {
            return Ok(Vec::new());
        };
        writer
            .close()
            .await
            .map_err(LakehouseError::delta(&self.table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn compression(props: &WriterProperties, column: &str) -> Compression {
        props.compression(&ColumnPath::new(vec![column.to_string()]))
    }

    #[test]
    fn incompressible_columns_are_stored_uncompressed() {
        let rows = 20_000;
        // Hex digests: Snappy finds next to no repeats in them.
        let digests: Vec<String> = (0..rows)
            .map(|i: u64| {
                format!(
                    "{:016x}{:016x}",
                    i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
                )
            })
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("digest", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            Field::new("small", DataType::Int32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(StringArray::from_iter_values(&digests)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| ["placed", "paid", "shipped"][i as usize % 3]),
                )),
                Arc::new(Int32Array::from_iter_values(0..rows as i32)),
            ],
        )
        .unwrap();
        let props = writer_properties_for(&batch);
        assert_eq!(compression(&props, "id"), Compression::SNAPPY);
        assert_eq!(compression(&props, "digest"), Compression::UNCOMPRESSED);
        assert_eq!(compression(&props, "status"), Compression::SNAPPY);
        // A first batch too small to judge keeps Snappy everywhere.
        let props = writer_properties_for(&batch.slice(0, 100));
        assert_eq!(compression(&props, "digest"), Compression::SNAPPY);
    }
}
