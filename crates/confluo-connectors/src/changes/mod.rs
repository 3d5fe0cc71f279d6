//! The source-neutral change model: a table's shape, row images, and the folding of row
//! changes into the net effect per key ([`compact`]). PostgreSQL's `pgoutput` decoder and
//! MySQL's binlog reader both produce these, so one folding and one lakehouse apply serve
//! every change source.

pub mod compact;

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields};
use bytes::Bytes;

/// The change kind: `INSERT`, `UPDATE`, `DELETE` or `TRUNCATE`.
pub const OP_COLUMN: &str = "_op";
/// The transaction's sequence (PostgreSQL commit LSN, MySQL binlog sequence).
pub const LSN_COLUMN: &str = "_lsn";
/// The transaction's commit time.
pub const COMMIT_TS_COLUMN: &str = "_commit_ts";
/// Per row, the columns whose values the source did not send because they did not change
/// (PostgreSQL's unchanged TOAST, MySQL's minimal row images); NULL when it sent them all.
/// Whoever applies the row keeps the row's earlier value of each.
pub const UNCHANGED_COLUMN: &str = "_unchanged";
/// Per row, the key the row had before when an update changed its key (a struct of the key
/// columns); NULL otherwise. The values in `_unchanged` come from the row under that key.
pub const OLD_KEY_COLUMN: &str = "_old_key";
/// Columns of a change row that describe the change rather than the row.
pub const CHANGE_COLUMNS: &[&str] = &[
    OP_COLUMN,
    LSN_COLUMN,
    COMMIT_TS_COLUMN,
    UNCHANGED_COLUMN,
    OLD_KEY_COLUMN,
];

/// The type of [`UNCHANGED_COLUMN`]: a list of column names.
pub fn unchanged_type() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

/// The type of [`OLD_KEY_COLUMN`] for a table whose key columns are `key` (as the table's
/// fields type them).
pub fn old_key_type(key: &[Field]) -> DataType {
    DataType::Struct(Fields::from(
        key.iter()
            .map(|f| f.clone().with_nullable(true))
            .collect::<Vec<_>>(),
    ))
}

/// A table's shape as the change stream describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    /// The source's id of the table (PostgreSQL: its OID; 0 where the source has none).
    pub id: u32,
    /// Schema (MySQL: database) name.
    pub schema: String,
    /// Table name.
    pub name: String,
    /// PostgreSQL replica identity: `d` default, `n` nothing, `f` full, `i` index
    /// (`f` for sources that always send whole rows).
    pub replica_identity: u8,
    /// Columns in stream order.
    pub columns: Vec<RelationColumn>,
}

/// One column of a [`Relation`].
#[derive(Debug, Clone, PartialEq)]
pub struct RelationColumn {
    /// Part of the key.
    pub key: bool,
    /// Column name.
    pub name: String,
    /// The source's type id (PostgreSQL: type OID); a change of it is a change of type.
    pub type_oid: u32,
    /// Type modifier (PostgreSQL `atttypmod`, e.g. numeric precision and scale).
    pub type_modifier: i32,
}

/// The values of one row.
pub type Tuple = Vec<Value>;

/// One column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A value the change did not send because it did not change (PostgreSQL TOAST).
    Unchanged,
    /// The value's text (PostgreSQL text output; MySQL text-protocol form).
    Text(Bytes),
    /// Binary send format (PostgreSQL `binary` option).
    Binary(Bytes),
}
