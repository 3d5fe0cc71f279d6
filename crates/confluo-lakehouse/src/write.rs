//! Streaming writes of Arrow batches into a Delta table's data files.
//!
//! A [`TableWriter`] encodes Parquet as batches arrive and streams it to the object store,
//! rolling files at a target size, so memory stays bounded whatever the input size. Several
//! writers can work on one table in parallel; their `Add` actions are committed together
//! with [`crate::delta::commit`].

use std::num::NonZeroU64;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use delta_kernel::table_properties::DataSkippingNumIndexedCols;
use deltalake::DeltaTable;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::Add;
use deltalake::kernel::schema::cast_record_batch;
use parquet::basic::{Compression, Encoding};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};

use crate::error::{LakehouseError, Result};

/// Target size of one data file.
pub const TARGET_FILE_SIZE: u64 = 256 * 1024 * 1024;

/// Parquet settings for data files: Snappy, dictionaries for repetitive columns, statistics
/// per column chunk (what Delta's data skipping reads), row groups of about 1M rows.
pub fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(true)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_encoding(Encoding::PLAIN)
        .set_max_row_group_row_count(Some(1024 * 1024))
        .set_created_by(crate::delta::engine_info())
        .build()
}

/// Writes batches into new data files of one table.
pub struct TableWriter {
    writer: DeltaWriter,
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
        let config = WriterConfig::new(
            schema.clone(),
            partition_columns,
            Some(writer_properties()),
            NonZeroU64::new(TARGET_FILE_SIZE),
            Some(8192),
            DataSkippingNumIndexedCols::NumColumns(32),
            None,
        );
        Ok(TableWriter {
            writer: DeltaWriter::new(table.log_store().object_store(None), config),
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
        self.writer
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
        self.writer
            .close()
            .await
            .map_err(LakehouseError::delta(&self.table))
    }
}
