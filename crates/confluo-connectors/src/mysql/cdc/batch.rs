//! A table's net changes as an Arrow batch: the table's columns typed exactly as the
//! snapshot types them (the same parser reads both), then `_op`, `_lsn` (the transaction's
//! binlog sequence) and `_commit_ts`.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};

use crate::changes::compact::{self, TableChanges};
use crate::mysql::config::MysqlConfig;
use crate::mysql::decode::BatchBuilder;
use crate::mysql::discover::SourceTable;
use crate::mysql::error::MysqlError;

/// Builds the batch of `t`, whose relation has `table`'s columns.
pub fn to_record_batch(
    cfg: &MysqlConfig,
    table: &SourceTable,
    t: &TableChanges,
) -> Result<RecordBatch, MysqlError> {
    let mappings: Vec<_> = table.mappings(cfg)?.into_iter().map(|(_, m)| m).collect();
    let schema = table.arrow_schema(cfg)?;
    let mut builder = BatchBuilder::new(&cfg.name, &table.id.to_string(), schema, &mappings);
    for row in &t.rows {
        builder.append_raw(
            row.values
                .iter()
                .map(|v| TableChanges::raw(v).map(|b| b.as_ref())),
        )?;
    }
    let data = builder.finish()?;
    let mut fields: Vec<Field> = data
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<ArrayRef> = data.columns().to_vec();
    for (field, column) in compact::change_columns(t) {
        fields.push(field);
        columns.push(column);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| MysqlError::Decode {
        connection: cfg.name.clone(),
        table: table.id.to_string(),
        column: "(changes)".into(),
        message: e.to_string(),
    })
}
