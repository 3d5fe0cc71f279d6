//! A table's net changes as an Arrow batch: the table's columns typed as the snapshot types
//! them, then `_op`, `_lsn` (commit LSN), `_commit_ts`, `_unchanged` (the columns whose values
//! the source did not send: unchanged TOAST) and `_old_key` (the key before a key change).

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};

use super::compact::{self, TableChanges};
use super::text::decode_column;
use crate::postgres::types::ColumnMapping;

/// `pg_type` OID of `inet`.
const INET_OID: u32 = 869;
/// `pg_type` OID of `inet[]`.
const INET_ARRAY_OID: u32 = 1041;

/// An inet value's text with its netmask, as `inet::text` writes it.
fn inet_with_mask(v: &[u8]) -> Vec<u8> {
    let mut out = v.to_vec();
    if !v.contains(&b'/') {
        out.extend_from_slice(if v.contains(&b':') { b"/128" } else { b"/32" });
    }
    out
}

/// An `inet[]` literal (`{10.0.0.1,NULL}`) with each address's netmask.
fn inet_array_with_masks(v: &[u8]) -> Vec<u8> {
    let inner = v
        .strip_prefix(b"{")
        .and_then(|v| v.strip_suffix(b"}"))
        .unwrap_or(v);
    let mut out = b"{".to_vec();
    for (i, e) in inner.split(|&b| b == b',').enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if e.is_empty() || e == b"NULL" {
            out.extend_from_slice(e);
        } else {
            out.extend_from_slice(&inet_with_mask(e));
        }
    }
    out.push(b'}');
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
    let mut old_key = Vec::new();
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
        let array = decode(col.type_oid, mapping, &raw)
            .map_err(|e| format!("column `{}`: {e}", col.name))?;
        let field = Field::new(&col.name, array.data_type().clone(), true);
        if t.key.contains(&i) {
            let keys = decode(col.type_oid, mapping, &compact::old_key_raw(t, i))
                .map_err(|e| format!("column `{}`: {e}", col.name))?;
            old_key.push((field.clone(), keys));
        }
        fields.push(field);
        columns.push(array);
    }
    for (field, column) in compact::change_columns(t) {
        fields.push(field);
        columns.push(column);
    }
    let (field, column) = compact::old_key_column(t, old_key).map_err(|e| e.to_string())?;
    fields.push(field);
    columns.push(column);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| e.to_string())
}

/// One column's values decoded from their text.
fn decode(
    type_oid: u32,
    mapping: &ColumnMapping,
    raw: &[Option<&[u8]>],
) -> Result<ArrayRef, String> {
    // The copy reads inet as `inet::text`, which always writes the netmask; the stream
    // sends inet's output form, which leaves out /32 and /128. Same text for both, in
    // arrays too.
    type Mask = fn(&[u8]) -> Vec<u8>;
    let masked: Option<Mask> = match type_oid {
        INET_OID => Some(inet_with_mask),
        INET_ARRAY_OID => Some(inet_array_with_masks),
        _ => None,
    };
    if let Some(mask) = masked {
        let with_mask: Vec<Option<Vec<u8>>> = raw.iter().map(|v| v.map(mask)).collect();
        let raw: Vec<Option<&[u8]>> = with_mask.iter().map(|v| v.as_deref()).collect();
        return decode_column(&mapping.wire, &mapping.arrow, &raw);
    }
    decode_column(&mapping.wire, &mapping.arrow, raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inet_text_gets_its_netmask_in_arrays_too() {
        assert_eq!(inet_with_mask(b"10.0.0.1"), b"10.0.0.1/32");
        assert_eq!(inet_with_mask(b"10.0.0.0/8"), b"10.0.0.0/8");
        assert_eq!(
            inet_array_with_masks(b"{10.9.8.12,::1,NULL,10.0.0.0/8}"),
            b"{10.9.8.12/32,::1/128,NULL,10.0.0.0/8}"
        );
        assert_eq!(inet_array_with_masks(b"{}"), b"{}");
    }
}
