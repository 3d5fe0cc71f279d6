//! A table's net changes as an Arrow batch: the table's columns typed exactly as the
//! snapshot types them (the same parser reads both), then `_op`, `_lsn` (the transaction's
//! binlog sequence), `_commit_ts`, `_unchanged` (columns a minimal row image left out) and
//! `_old_key` (the key before a key change).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};

use crate::changes::Value;
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
    let decode = |rows: &mut dyn Iterator<Item = Vec<Option<&[u8]>>>| {
        let mut builder =
            BatchBuilder::new(&cfg.name, &table.id.to_string(), schema.clone(), &mappings);
        for row in rows {
            builder.append_raw(row)?;
        }
        builder.finish()
    };
    let data = decode(&mut t.rows.iter().map(|r| raw(&r.values)))?;
    // The old keys go through the same parser, as rows whose other columns are NULL.
    let none = vec![Value::Null; t.relation.columns.len()];
    let old = decode(
        &mut t
            .rows
            .iter()
            .map(|r| raw(r.old_key.as_deref().unwrap_or(&none))),
    )?;
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
    let error = |e: arrow::error::ArrowError| MysqlError::Decode {
        connection: cfg.name.clone(),
        table: table.id.to_string(),
        column: "(changes)".into(),
        message: e.to_string(),
    };
    let key = t
        .key
        .iter()
        .map(|&i| (fields[i].clone(), old.column(i).clone()))
        .collect();
    let (field, column) = compact::old_key_column(t, key).map_err(error)?;
    fields.push(field);
    columns.push(column);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(error)
}

/// A row's raw values (`None` for NULL or a value not sent).
fn raw(values: &[Value]) -> Vec<Option<&[u8]>> {
    values
        .iter()
        .map(|v| TableChanges::raw(v).map(|b| b.as_ref()))
        .collect()
}
