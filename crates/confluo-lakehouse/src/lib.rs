//! The lakehouse: storage roots (object_store), Delta tables (delta-rs) and the metastore
//! (sqlx) that names them `catalog.schema.table`, plus the operations that write into them.

pub mod changes;
pub mod delta;
pub mod error;
pub mod ingest;
pub mod lakehouse;
pub mod metastore;
pub mod optimize;
pub mod storage;
pub mod write;

pub use delta::TableVersion;
pub use error::{LakehouseError, Result};
pub use ingest::{IngestBuilder, IngestReport};
pub use lakehouse::{Lakehouse, NewTable};
pub use metastore::{
    CursorMove, JobRun, Metastore, PlannedRun, TableInfo, TaskAttempt, TriggerState,
};
pub use storage::StorageRoot;
