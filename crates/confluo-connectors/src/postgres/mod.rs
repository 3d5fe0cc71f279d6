//! The PostgreSQL connector (`type: postgres`): connection settings, discovery of tables
//! and types, the PostgreSQL → Arrow type mapping, binary `COPY` decoded into Arrow, and a
//! consistent parallel snapshot shared by every table.

pub mod cdc;
pub mod config;
pub mod copy;
pub mod decode;
pub mod discover;
pub mod error;
pub mod snapshot;
pub mod types;

pub use config::{PostgresConfig, UnsupportedTypes};
pub use discover::{
    ReplicaIdentity, SourceColumn, SourceTable, TableFilter, TableId, TableKind, discover,
    resolve_tables,
};
pub use error::PostgresError;
pub use snapshot::{
    Snapshot, SnapshotEvent, SnapshotInfo, SnapshotRequest, TableSnapshot, begin_snapshot,
    snapshot, snapshot_in_transaction,
};
pub use types::{ColumnMapping, PgType, map_type};
