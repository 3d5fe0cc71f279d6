//! A table's net changes as an Arrow batch: the table's columns typed as the snapshot types
//! them, then `_op`, `_lsn` (commit LSN) and `_commit_ts`, and a `__unchanged_<col>` flag for
//! each column with values the source did not send (unchanged TOAST).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};

use super::compact::{self, TableChanges};
use super::pgoutput::Value;
use super::text::decode_column;
use crate::postgres::types::ColumnMapping;

/// `pg_type` OID of `inet`.
const INET_OID: u32 = 869;

/// An inet value's text with its netmask, as `inet::text` writes it.
fn inet_with_mask(v: &[u8]) -> Vec<u8> {
    let mut out = v.to_vec();
    if !v.contains(&b'/') {
        out.extend_from_slice(if v.contains(&b':') { b"/128" } else { b"/32" });
    }
    out
}

/// Builds the batch. `mappings` holds every column of the relation by name (refresh it from
/// discovery when the source added a column); a missing one is an error naming it.
pub fn to_record_batch(
    t: &TableChanges,
    mappings: &[(String, ColumnMapping)],
) -> Result<RecordBatch, String> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    let mut unchanged_fields = Vec::new();
    let mut unchanged_columns: Vec<ArrayRef> = Vec::new();
    for (i, col) in t.relation.columns.iter().enumerate() {
        let mapping = mappings
            .iter()
            .find(|(n, _)| n == &col.name)
            .map(|(_, m)| m)
            .ok_or_else(|| format!("column `{}` has no type mapping", col.name))?;
        let raw: Vec<Option<&[u8]>> = t
            .rows
            .iter()
            .map(|r| TableChanges::raw(&r.values[i]).map(|b| b.as_ref()))
            .collect();
        // The copy reads inet as `inet::text`, which always writes the netmask; the stream
        // sends inet's output form, which leaves out /32 and /128. Same text for both.
        let with_mask: Vec<Option<Vec<u8>>>;
        let raw = if col.type_oid == INET_OID {
            with_mask = raw.iter().map(|v| v.map(inet_with_mask)).collect();
            with_mask.iter().map(|v| v.as_deref()).collect()
        } else {
            raw
        };
        let array = decode_column(&mapping.wire, &mapping.arrow, &raw)
            .map_err(|e| format!("column `{}`: {e}", col.name))?;
        fields.push(Field::new(&col.name, array.data_type().clone(), true));
        columns.push(array);
        if t.rows.iter().any(|r| r.values[i] == Value::Unchanged) {
            let flags: BooleanArray = t
                .rows
                .iter()
                .map(|r| Some(r.values[i] == Value::Unchanged))
                .collect();
            unchanged_fields.push(Field::new(
                format!("__unchanged_{}", col.name),
                DataType::Boolean,
                false,
            ));
            unchanged_columns.push(Arc::new(flags));
        }
    }
    for (field, column) in compact::change_columns(t) {
        fields.push(field);
        columns.push(column);
    }
    fields.extend(unchanged_fields);
    columns.extend(unchanged_columns);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}
