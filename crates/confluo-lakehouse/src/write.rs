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
//!
//! Columns whose values are nearly all distinct (keys, timestamps, amounts) are written
//! without a dictionary. Parquet would try one for every row group and give up once it passed
//! its page limit, after hashing the first hundred thousand values or so for nothing. The
//! first batch's distinct count predicts whether a row group's dictionary fits.

use std::num::NonZeroU64;

use ahash::AHashSet;
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
/// Rows per row group (Parquet's page and dictionary decisions are per row group).
const ROW_GROUP_ROWS: usize = 1024 * 1024;
/// Parquet's dictionary page limit: past it the writer abandons the dictionary.
const DICTIONARY_PAGE_LIMIT: usize = 1024 * 1024;
/// Values of a column counted to predict the size of its dictionary: about as many as a
/// dictionary of 8-byte values can hold, so values that repeat in a cycle shorter than that
/// are seen to repeat.
const DICTIONARY_SAMPLE_ROWS: usize = 128 * 1024;

/// Parquet settings for data files: Snappy, dictionaries for repetitive columns, statistics
/// per column chunk (what Delta's data skipping reads), row groups of about 1M rows.
fn properties_builder() -> WriterPropertiesBuilder {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_encoding(Encoding::PLAIN)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_LIMIT)
        .set_created_by(crate::delta::engine_info())
}

/// The data-file settings for batches like `sample`: compression turned off for the
/// top-level columns whose values Snappy would shrink by less than an eighth, and no
/// dictionary for those whose row-group dictionary would outgrow Parquet's limit.
pub fn writer_properties_for(sample: &RecordBatch) -> WriterProperties {
    let mut builder = properties_builder();
    if sample.num_rows() < MIN_TRIAL_ROWS {
        return builder.build();
    }
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        let path = ColumnPath::new(vec![field.name().clone()]);
        if let Some(values) = plain_values(column.as_ref())
            && values.len() >= MIN_TRIAL_BYTES
            && !worth_compressing(&values)
        {
            builder = builder.set_column_compression(path.clone(), Compression::UNCOMPRESSED);
        }
        let head = column.slice(0, column.len().min(DICTIONARY_SAMPLE_ROWS));
        if predicted_dictionary_bytes(head.as_ref())
            .is_some_and(|bytes| bytes > DICTIONARY_PAGE_LIMIT as f64)
        {
            builder = builder.set_column_dictionary_enabled(path, false);
        }
    }
    builder.build()
}

/// The predicted size of a row group's dictionary for a flat column whose values look like
/// `sample`'s, as Parquet counts it (value bytes, plus a length per string); `None` for types
/// not judged or samples too small to judge.
fn predicted_dictionary_bytes(sample: &dyn Array) -> Option<f64> {
    let data = sample.to_data();
    let mut distinct: AHashSet<&[u8]> = AHashSet::new();
    let mut valid = 0usize;
    // Strings carry a length in a dictionary; fixed-width values are stored bare.
    let length_bytes = match sample.data_type() {
        DataType::Utf8 => add_values(sample.as_string::<i32>(), &mut distinct, &mut valid),
        DataType::LargeUtf8 => add_values(sample.as_string::<i64>(), &mut distinct, &mut valid),
        DataType::Binary => add_values(sample.as_binary::<i32>(), &mut distinct, &mut valid),
        t => {
            let width = t.primitive_width()?;
            let values = &data.buffers().first()?.as_slice()[data.offset() * width..];
            for (i, v) in values.chunks_exact(width).take(data.len()).enumerate() {
                if data.is_valid(i) {
                    valid += 1;
                    distinct.insert(v);
                }
            }
            0
        }
    };
    if valid < MIN_TRIAL_ROWS {
        return None;
    }
    let bytes: usize = distinct.iter().map(|v| v.len() + length_bytes).sum();
    Some(distinct_in_row_group(valid, distinct.len()) * bytes as f64 / distinct.len() as f64)
}

/// Adds the valid values of a string or binary array to `distinct`, counting them in
/// `valid`; returns the 4 bytes Parquet stores with each such value in a dictionary.
fn add_values<'a, T: ByteArrayType>(
    a: &'a GenericByteArray<T>,
    distinct: &mut AHashSet<&'a [u8]>,
    valid: &mut usize,
) -> usize {
    for v in a.iter().flatten() {
        *valid += 1;
        distinct.insert(AsRef::<[u8]>::as_ref(v));
    }
    4
}

/// The expected number of distinct values in a row group, given `distinct` of `sampled`
/// values. Values are modelled as drawn uniformly from `D` possible ones, so a sample of `n`
/// holds `D (1 - e^(-n/D))` distinct values: solve that for `D`, then project to a row group.
fn distinct_in_row_group(sampled: usize, distinct: usize) -> f64 {
    let (n, d) = (sampled as f64, distinct as f64);
    let expected = |pool: f64, draws: f64| pool * -(-draws / pool).exp_m1();
    if distinct >= sampled {
        return ROW_GROUP_ROWS as f64;
    }
    // `expected(D, n)` grows with D from below d (at D = d) towards n: bisect in log space.
    let (mut lo, mut hi) = (d.ln(), (n * n).max(1e12).ln());
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if expected(mid.exp(), n) < d {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    expected(lo.exp(), ROW_GROUP_ROWS as f64)
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

    fn dictionary(props: &WriterProperties, column: &str) -> bool {
        props.dictionary_enabled(&ColumnPath::new(vec![column.to_string()]))
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

    #[test]
    fn dictionaries_are_kept_only_where_a_row_group_s_fits() {
        let rows = 60_000u64;
        // Draws from a pool of `pool` values, as random as a hash makes them (splitmix64).
        let drawn = |pool: u64| {
            Int64Array::from_iter_values((0..rows).map(move |i| {
                let mut z = i.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                ((z ^ (z >> 31)) % pool) as i64
            }))
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("price", DataType::Int64, false),
            Field::new("customer", DataType::Int64, false),
            Field::new("cycle", DataType::Int64, false),
            Field::new("status", DataType::Utf8, true),
            Field::new("sku", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                // 100,000 prices: 800 KB of dictionary, under the 1 MiB limit.
                Arc::new(drawn(100_000)),
                // 500,000 customers: about 3.5 MB in a row group of a million rows.
                Arc::new(drawn(500_000)),
                // Every value twice in the batch: a sequence that repeats is seen to repeat.
                Arc::new(Int64Array::from_iter_values(
                    (0..rows as i64).map(|i| i % 30_000),
                )),
                Arc::new(StringArray::from_iter((0..rows).map(|i| {
                    (i % 7 != 0).then_some(["paid", "shipped"][i as usize % 2])
                }))),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("SKU-{:05}", (i * 7919) % 20_000)),
                )),
            ],
        )
        .unwrap();
        let props = writer_properties_for(&batch);
        assert!(!dictionary(&props, "id"));
        assert!(dictionary(&props, "price"));
        assert!(!dictionary(&props, "customer"));
        assert!(dictionary(&props, "cycle"));
        assert!(dictionary(&props, "status"));
        assert!(dictionary(&props, "sku"));
        // Too few rows to judge: Parquet decides as it goes.
        let props = writer_properties_for(&batch.slice(0, 100));
        assert!(dictionary(&props, "id"));
    }

    #[test]
    fn distinct_values_project_from_a_sample_to_a_row_group() {
        // All distinct: every row of a row group is a new value.
        assert_eq!(distinct_in_row_group(1000, 1000), ROW_GROUP_ROWS as f64);
        // 16,384 draws from 100,000 values hold about 15,112 distinct ones.
        let projected = distinct_in_row_group(16_384, 15_112);
        assert!((95_000.0..105_000.0).contains(&projected), "{projected}");
        // A handful of values stays a handful.
        assert!(distinct_in_row_group(16_384, 5) < 6.0);
    }
}
