//! Integration tests of the lakehouse crate: the metastore on SQLite and PostgreSQL, and
//! Delta operations on local storage.

mod changes_apply;
mod delta_ops;
mod metastore;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use confluo_lakehouse::delta::{self, CommitRequest};
use confluo_lakehouse::write::TableWriter;
use confluo_lakehouse::{Lakehouse, NewTable, TableInfo};
use deltalake::DeltaTable;

/// A new table `name` of `schema`, without partitions, comment or properties.
pub async fn new_table(lh: &Lakehouse, name: &str, schema: &Schema) -> (TableInfo, DeltaTable) {
    lh.create_table(NewTable {
        name: lh.resolve(name).unwrap(),
        schema: schema.clone(),
        partition_by: vec![],
        comment: None,
        properties: Default::default(),
        location: None,
    })
    .await
    .unwrap()
}

/// Appends `rows` to `table` in a commit of their own (one new data file); returns the
/// version committed.
pub async fn append(table: &DeltaTable, rows: &RecordBatch) -> i64 {
    let mut w = TableWriter::new(table, rows.schema()).unwrap();
    w.write(rows).await.unwrap();
    let adds = w.finish().await.unwrap();
    delta::commit(
        table,
        CommitRequest {
            adds,
            ..Default::default()
        },
    )
    .await
    .unwrap()
}
