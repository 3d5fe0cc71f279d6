//! Delta tables through the lakehouse: create, append, overwrite, evolve, history, time
//! travel, vacuum.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use confluo_core::{Project, ProjectConfig};
use confluo_lakehouse::delta::{self, CommitRequest, WriteMode};
use confluo_lakehouse::write::TableWriter;
use confluo_lakehouse::{Lakehouse, NewTable, TableVersion};

fn batch(ids: &[i64], names: Option<&[&str]>) -> RecordBatch {
    let mut fields = vec![Field::new("id", DataType::Int64, true)];
    let mut cols: Vec<Arc<dyn arrow::array::Array>> =
        vec![Arc::new(Int64Array::from(ids.to_vec()))];
    if let Some(n) = names {
        fields.push(Field::new("name", DataType::Utf8, true));
        cols.push(Arc::new(StringArray::from(n.to_vec())));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

#[tokio::test]
async fn table_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let project = Project::in_memory(dir.path().to_path_buf(), ProjectConfig::with_name("t"));
    let lh = Lakehouse::open(&project).await.unwrap();
    let name = lh.resolve("events").unwrap();
    let (info, table) = lh
        .create_table(NewTable {
            name: name.clone(),
            schema: Schema::new(vec![Field::new("id", DataType::Int64, true)]),
            partition_by: vec![],
            comment: Some("c".into()),
            properties: Default::default(),
            location: None,
        })
        .await
        .unwrap();
    assert!(info.location.ends_with("/main/default/events/"));
    // Append.
    assert_eq!(crate::append(&table, &batch(&[1, 2, 3], None)).await, 1);
    // Append with a new nullable column: the schema evolves.
    let table = lh.open_delta(&info, TableVersion::Latest).await.unwrap();
    let current = delta::table_schema(&table).unwrap();
    let incoming = batch(&[4], Some(&["d"])).schema();
    let evolved = delta::evolve_schema(&current, &incoming, "test")
        .unwrap()
        .expect("a new column");
    let mut w = TableWriter::new(&table, evolved.clone()).unwrap();
    w.write(&batch(&[4], Some(&["d"]))).await.unwrap();
    let adds = w.finish().await.unwrap();
    delta::commit(
        &table,
        CommitRequest {
            adds,
            new_schema: Some(evolved),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // Overwrite.
    let table = lh.open_delta(&info, TableVersion::Latest).await.unwrap();
    let mut w = TableWriter::new(&table, delta::table_schema(&table).unwrap()).unwrap();
    w.write(&batch(&[9], Some(&["z"]))).await.unwrap();
    let adds = w.finish().await.unwrap();
    let v = delta::commit(
        &table,
        CommitRequest {
            adds,
            mode: WriteMode::Overwrite,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(v, 3);
    let table = lh.open_delta(&info, TableVersion::Latest).await.unwrap();
    assert_eq!(table.snapshot().unwrap().log_data().num_files(), 1);
    let old = lh
        .open_delta(&info, TableVersion::Version(1))
        .await
        .unwrap();
    assert_eq!(delta::table_schema(&old).unwrap().fields().len(), 1);
    let history = delta::history(&table, None).await.unwrap();
    assert_eq!(
        history.iter().map(|h| h.version).collect::<Vec<_>>(),
        vec![3, 2, 1, 0]
    );
    assert_eq!(history[0].operation, "WRITE");
    // Incompatible types are refused, naming the column and both types.
    let bad = Schema::new(vec![Field::new("id", DataType::Utf8, true)]);
    let e = delta::evolve_schema(&delta::table_schema(&table).unwrap(), &bad, "f.parquet")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("f.parquet")
            && e.contains("`id`")
            && e.contains("STRING")
            && e.contains("BIGINT"),
        "{e}"
    );
    // Vacuum removes files of versions beyond retention.
    let report = delta::vacuum(table, Some(0), false).await.unwrap();
    assert_eq!(report.files.len(), 2);
    // Versions that do not exist are clear errors.
    let e = lh
        .open_delta(&info, TableVersion::Version(42))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("version 42"), "{e}");
    assert!(lh.drop_table(&name, false).await.unwrap());
    assert!(!dir.path().join("lakehouse/main/default/events").exists());
}
