//! Folds a run of decoded changes into the net effect per table and key: the last image of
//! each row, or its deletion, or a truncate followed by what came after it. Readers of the
//! lakehouse see whole source transactions, so intermediate states inside a batch never need
//! to be materialised; folding also makes each key appear once in the MERGE that applies it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Array, ListBuilder, StringArray, StringBuilder, StructArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, TimeUnit};
use bytes::Bytes;

use super::{Relation, Tuple, Value};

/// What happened to a key in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The row is new.
    Insert,
    /// The row existed and has these values now.
    Update,
    /// The row is gone.
    Delete,
    /// The whole table was emptied (only when folding per transaction; the values are null).
    Truncate,
}

impl Op {
    /// The `_op` column's text.
    pub fn label(self) -> &'static str {
        match self {
            Op::Insert => "INSERT",
            Op::Update => "UPDATE",
            Op::Delete => "DELETE",
            Op::Truncate => "TRUNCATE",
        }
    }

    /// The net effect of `self` followed by `next` on one key.
    fn then(self, next: Op) -> Op {
        match (self, next) {
            (Op::Insert, Op::Update) => Op::Insert,
            (Op::Delete, Op::Insert | Op::Update) => Op::Update,
            (_, n) => n,
        }
    }

    /// Whether the row exists after this change.
    pub fn keeps_row(self) -> bool {
        matches!(self, Op::Insert | Op::Update)
    }
}

/// The net change of one key.
#[derive(Debug, Clone)]
pub struct NetRow {
    /// Upsert or delete.
    pub op: Op,
    /// Commit LSN of the transaction that made this change.
    pub lsn: u64,
    /// Commit time of that transaction, microseconds since the Unix epoch.
    pub commit_ts_micros: i64,
    /// Column values in the relation's order; [`Value::Unchanged`] means "keep the row's
    /// earlier value": the target's under this key, or under `old_key` when that is set.
    pub values: Tuple,
    /// The key the row had before this batch (per transaction: before this transaction)
    /// when an update moved it to a new key, as a tuple of the relation's width with only the
    /// key positions set. The values the source did not send come from the row under it.
    pub old_key: Option<Tuple>,
}

/// The net changes of one table within a batch.
#[derive(Debug, Clone)]
pub struct TableChanges {
    /// The table's shape as of the last change folded in.
    pub relation: Relation,
    /// Positions of the key columns in `relation.columns`.
    pub key: Vec<usize>,
    /// The table was truncated in this batch: the target must be emptied before `rows` apply.
    pub truncated: bool,
    /// Net rows in first-touched order.
    pub rows: Vec<NetRow>,
    index: HashMap<Vec<u8>, usize>,
    /// Raw changes folded in (for progress and metrics).
    pub changes: u64,
    /// Fold only within a transaction: each transaction's net change per key is kept (a
    /// change feed that keeps history), instead of one net change per key for the batch.
    pub per_transaction: bool,
}

/// Encodes the key columns of a tuple into one comparable byte string.
fn key_bytes(values: &Tuple, key: &[usize]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 * key.len() + 8);
    for &i in key {
        match values.get(i) {
            Some(Value::Text(b) | Value::Binary(b)) => {
                out.push(1);
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            _ => out.push(0),
        }
    }
    out
}

impl TableChanges {
    /// Starts an empty set of changes for a table keyed by `key`.
    pub fn new(relation: Relation, key: Vec<usize>) -> Self {
        TableChanges {
            relation,
            key,
            truncated: false,
            rows: Vec::new(),
            index: HashMap::new(),
            changes: 0,
            per_transaction: false,
        }
    }

    /// `values` with every column but the key's set to NULL.
    fn key_only(&self, values: &Tuple) -> Tuple {
        let mut out = vec![Value::Null; values.len()];
        for &i in &self.key {
            if let Some(v) = values.get(i) {
                out[i] = v.clone();
            }
        }
        out
    }

    fn index_key(&self, row: &NetRow) -> Vec<u8> {
        let mut k = key_bytes(&row.values, &self.key);
        if self.per_transaction {
            k.extend_from_slice(&row.lsn.to_le_bytes());
        }
        k
    }

    fn put(&mut self, row: NetRow) {
        let k = self.index_key(&row);
        match self.index.get(&k) {
            Some(&i) => {
                let prev = std::mem::replace(&mut self.rows[i], row);
                let cur = &mut self.rows[i];
                cur.op = prev.op.then(cur.op);
                // An unchanged TOASTed value keeps what an earlier change in this batch set,
                // and where that one still lacks it, the key it came from supplies it.
                if cur.op.keeps_row() && prev.op.keeps_row() {
                    for (v, p) in cur.values.iter_mut().zip(prev.values) {
                        if *v == Value::Unchanged {
                            *v = p;
                        }
                    }
                    if cur.old_key.is_none() {
                        cur.old_key = prev.old_key;
                    }
                }
            }
            None => {
                self.index.insert(k, self.rows.len());
                self.rows.push(row);
            }
        }
    }

    /// Folds in an insert.
    pub fn insert(&mut self, lsn: u64, ts: i64, new: Tuple) {
        self.changes += 1;
        self.put(NetRow {
            op: Op::Insert,
            lsn,
            commit_ts_micros: ts,
            values: new,
            old_key: None,
        });
    }

    /// The row this batch (per transaction: this transaction) holds for `key`, if it still
    /// exists after what was folded so far.
    fn live_row(&self, key: &Tuple, lsn: u64) -> Option<&NetRow> {
        let mut k = key_bytes(key, &self.key);
        if self.per_transaction {
            k.extend_from_slice(&lsn.to_le_bytes());
        }
        let row = &self.rows[*self.index.get(&k)?];
        row.op.keeps_row().then_some(row)
    }

    /// Folds in an update. `old` is the old key (sent when the key changed) or the old row
    /// (replica identity full); when its key differs, the row under the old key is gone.
    pub fn update(&mut self, lsn: u64, ts: i64, old: Option<Tuple>, mut new: Tuple) {
        self.changes += 1;
        // With replica identity full the old row is whole: an unchanged TOASTed value is
        // the old one.
        if let Some(old) = &old {
            for (v, o) in new.iter_mut().zip(old) {
                if *v == Value::Unchanged && matches!(o, Value::Text(_) | Value::Binary(_)) {
                    *v = o.clone();
                }
            }
        }
        if let Some(old) = old
            && key_bytes(&old, &self.key) != key_bytes(&new, &self.key)
        {
            // A key change: the values the source did not send are those of the row under
            // the old key, which this batch may hold (then they are copied now) or the
            // target holds (then `old_key` says where to read them).
            let mut old_key = Some(self.key_only(&old));
            if new.contains(&Value::Unchanged)
                && let Some(prev) = self.live_row(&old, lsn)
            {
                for (v, p) in new.iter_mut().zip(&prev.values) {
                    if *v == Value::Unchanged {
                        *v = p.clone();
                    }
                }
                if prev.old_key.is_some() {
                    old_key.clone_from(&prev.old_key);
                } else if prev.op == Op::Insert {
                    // The old row is new in this batch: there is nothing earlier to read.
                    old_key = None;
                }
            }
            if old_key
                .as_ref()
                .is_some_and(|k| key_bytes(k, &self.key) == key_bytes(&new, &self.key))
            {
                old_key = None;
            }
            self.put(NetRow {
                op: Op::Delete,
                lsn,
                commit_ts_micros: ts,
                values: old,
                old_key: None,
            });
            self.put(NetRow {
                op: Op::Insert,
                lsn,
                commit_ts_micros: ts,
                values: new,
                old_key,
            });
            return;
        }
        self.put(NetRow {
            op: Op::Update,
            lsn,
            commit_ts_micros: ts,
            values: new,
            old_key: None,
        });
    }

    /// Folds in a delete (the old key, or the whole old row).
    pub fn delete(&mut self, lsn: u64, ts: i64, old: Tuple) {
        self.changes += 1;
        self.put(NetRow {
            op: Op::Delete,
            lsn,
            commit_ts_micros: ts,
            values: old,
            old_key: None,
        });
    }

    /// A truncate wipes the target and everything folded so far (per transaction: a
    /// `TRUNCATE` row, so readers of the change feed see it in order).
    pub fn truncate(&mut self, lsn: u64, ts: i64) {
        self.changes += 1;
        if self.per_transaction {
            let n = self.relation.columns.len();
            self.rows.push(NetRow {
                op: Op::Truncate,
                lsn,
                commit_ts_micros: ts,
                values: vec![Value::Null; n],
                old_key: None,
            });
            return;
        }
        self.truncated = true;
        self.rows.clear();
        self.index.clear();
    }

    /// Moves the rows folded so far to a new shape of the table (columns added or dropped
    /// inside a transaction that also changed rows). Values follow their column by name; a
    /// column whose type changed cannot be carried over and is an error.
    pub fn reshape(&mut self, relation: &Relation, key: Vec<usize>) -> Result<(), String> {
        let map: Vec<Option<usize>> = relation
            .columns
            .iter()
            .map(|c| {
                self.relation
                    .columns
                    .iter()
                    .position(|o| o.name == c.name)
                    .filter(|&i| self.relation.columns[i].type_oid == c.type_oid)
            })
            .collect();
        for (c, m) in relation.columns.iter().zip(&map) {
            if m.is_none() && self.relation.columns.iter().any(|o| o.name == c.name) {
                return Err(format!(
                    "column `{}` changed type while the same transaction changed rows",
                    c.name
                ));
            }
        }
        let remap = |old: &Tuple| -> Tuple {
            map.iter()
                .map(|m| m.map_or(Value::Null, |i| old.get(i).cloned().unwrap_or(Value::Null)))
                .collect()
        };
        for row in &mut self.rows {
            row.values = remap(&row.values);
            row.old_key = row.old_key.as_ref().map(remap);
        }
        self.relation = relation.clone();
        self.key = key;
        self.index = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| (self.index_key(r), i))
            .collect();
        Ok(())
    }

    /// Whether any row still has a value the source did not send (unchanged TOAST).
    pub fn has_unchanged(&self) -> bool {
        self.rows
            .iter()
            .any(|r| r.op.keeps_row() && r.values.contains(&Value::Unchanged))
    }

    /// The raw bytes of one value, `None` for NULL or unchanged.
    pub fn raw(value: &Value) -> Option<&Bytes> {
        match value {
            Value::Text(b) | Value::Binary(b) => Some(b),
            _ => None,
        }
    }
}

/// The change columns of a folded batch, in order: `_op`, `_lsn` (the transaction's
/// sequence: PostgreSQL commit LSN, MySQL binlog sequence), `_commit_ts` and `_unchanged`.
/// The connector adds `_old_key` ([`old_key_column`]), whose values it decodes itself.
pub fn change_columns(t: &TableChanges) -> Vec<(Field, ArrayRef)> {
    let names: Vec<&str> = t.relation.columns.iter().map(|c| c.name.as_str()).collect();
    let mut unchanged = ListBuilder::new(StringBuilder::new());
    for r in &t.rows {
        if r.op.keeps_row() && r.values.contains(&Value::Unchanged) {
            for (v, n) in r.values.iter().zip(&names) {
                if *v == Value::Unchanged {
                    unchanged.values().append_value(n);
                }
            }
            unchanged.append(true);
        } else {
            unchanged.append_null();
        }
    }
    vec![
        (
            Field::new(super::OP_COLUMN, DataType::Utf8, false),
            Arc::new(StringArray::from_iter_values(
                t.rows.iter().map(|r| r.op.label()),
            )),
        ),
        (
            Field::new(super::LSN_COLUMN, DataType::Int64, false),
            Arc::new(Int64Array::from_iter_values(
                t.rows.iter().map(|r| r.lsn as i64),
            )),
        ),
        (
            Field::new(
                super::COMMIT_TS_COLUMN,
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(
                    t.rows.iter().map(|r| r.commit_ts_micros),
                )
                .with_timezone("UTC"),
            ),
        ),
        (
            Field::new(super::UNCHANGED_COLUMN, super::unchanged_type(), true),
            Arc::new(unchanged.finish()),
        ),
    ]
}

/// The raw old-key value of column `i` per row (`None` where the row has no old key).
pub fn old_key_raw(t: &TableChanges, i: usize) -> Vec<Option<&[u8]>> {
    t.rows
        .iter()
        .map(|r| {
            r.old_key
                .as_ref()
                .and_then(|k| TableChanges::raw(&k[i]))
                .map(|b| b.as_ref())
        })
        .collect()
}

/// The `_old_key` column out of the decoded key columns (one entry per row, as
/// [`old_key_raw`] read them), NULL where a row has no old key.
pub fn old_key_column(
    t: &TableChanges,
    key: Vec<(Field, ArrayRef)>,
) -> Result<(Field, ArrayRef), arrow::error::ArrowError> {
    let fields: Vec<Field> = key.iter().map(|(f, _)| f.clone()).collect();
    let data_type = super::old_key_type(&fields);
    let DataType::Struct(struct_fields) = &data_type else {
        unreachable!("old_key_type is a struct")
    };
    let validity = NullBuffer::from(
        t.rows
            .iter()
            .map(|r| r.old_key.is_some())
            .collect::<Vec<_>>(),
    );
    let array = StructArray::try_new(
        struct_fields.clone(),
        key.into_iter().map(|(_, a)| a).collect(),
        Some(validity),
    )?;
    Ok((
        Field::new(super::OLD_KEY_COLUMN, data_type, true),
        Arc::new(array),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::changes::RelationColumn;

    fn rel() -> Relation {
        let col = |name: &str, key| RelationColumn {
            key,
            name: name.into(),
            type_oid: 25,
            type_modifier: -1,
        };
        Relation {
            id: 1,
            schema: "public".into(),
            name: "t".into(),
            replica_identity: b'd',
            columns: vec![col("id", true), col("a", false), col("big", false)],
        }
    }
    fn v(s: &str) -> Value {
        Value::Binary(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn last_image_wins_and_unchanged_values_are_filled_from_earlier_changes() {
        let mut t = TableChanges::new(rel(), vec![0]);
        t.insert(10, 0, vec![v("1"), v("a"), v("toast")]);
        t.update(20, 0, None, vec![v("1"), v("b"), Value::Unchanged]);
        t.update(20, 0, None, vec![v("2"), v("c"), Value::Unchanged]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[0].values, vec![v("1"), v("b"), v("toast")]);
        assert_eq!(t.rows[0].lsn, 20);
        assert_eq!(
            t.rows[0].op,
            Op::Insert,
            "inserted then updated in one batch"
        );
        assert!(
            t.has_unchanged(),
            "key 2 never had its TOASTed value in this batch"
        );
    }

    #[test]
    fn key_changes_delete_the_old_key_and_truncate_forgets_everything_before() {
        let mut t = TableChanges::new(rel(), vec![0]);
        t.update(10, 0, None, vec![v("1"), v("a"), Value::Null]);
        t.update(
            20,
            0,
            Some(vec![v("1"), Value::Null, Value::Null]),
            vec![v("9"), v("a"), Value::Null],
        );
        assert_eq!(
            t.rows.iter().map(|r| r.op).collect::<Vec<_>>(),
            [Op::Delete, Op::Insert]
        );
        t.truncate(30, 0);
        t.delete(30, 0, vec![v("9"), Value::Null, Value::Null]);
        assert!(t.truncated);
        assert_eq!(t.rows.len(), 1);
        assert_eq!(t.changes, 4);
    }

    #[test]
    fn per_transaction_folding_keeps_each_transaction() {
        let mut t = TableChanges::new(rel(), vec![0]);
        t.per_transaction = true;
        t.insert(10, 0, vec![v("1"), v("a"), Value::Null]);
        t.update(10, 0, None, vec![v("1"), v("b"), Value::Null]);
        t.update(20, 0, None, vec![v("1"), v("c"), Value::Null]);
        t.truncate(30, 0);
        t.insert(40, 0, vec![v("1"), v("d"), Value::Null]);
        let ops: Vec<(Op, u64)> = t.rows.iter().map(|r| (r.op, r.lsn)).collect();
        assert_eq!(
            ops,
            [
                (Op::Insert, 10),
                (Op::Update, 20),
                (Op::Truncate, 30),
                (Op::Insert, 40)
            ]
        );
    }
}
