//! The MySQL / MariaDB connector (`type: mysql`): connection settings, discovery of tables
//! and types from `information_schema`, the MySQL → Arrow type mapping, and a consistent
//! parallel snapshot tied to the binary log position, and change data capture from the
//! binary log ([`cdc`]).

pub mod cdc;
pub mod config;
pub mod decode;
pub mod discover;
pub mod error;
pub mod range_read;
pub mod snapshot;
pub mod types;

pub use config::{MysqlConfig, UnsupportedTypes};
pub use discover::{SourceColumn, SourceTable, TableFilter, TableId, discover, resolve_tables};
pub use error::MysqlError;
pub use snapshot::{
    Snapshot, SnapshotEvent, SnapshotInfo, SnapshotRequest, TableSnapshot, snapshot,
};
pub use types::{ColumnMapping, MyType, map_type};
