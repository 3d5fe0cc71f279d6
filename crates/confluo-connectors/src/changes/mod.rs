//! The source-neutral change model: a table's shape, row images, and the folding of row
//! changes into the net effect per key ([`compact`]). PostgreSQL's `pgoutput` decoder and
//! MySQL's binlog reader both produce these, so one folding and one lakehouse apply serve
//! every change source.

pub mod compact;

use bytes::Bytes;

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
