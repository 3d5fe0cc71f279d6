//! Applying net changes to a Delta table: only the data files holding changed keys are
//! rewritten, every kind of change lands, a replayed batch is skipped, new source columns
//! evolve the table.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use confluo_core::{Project, ProjectConfig};
use confluo_lakehouse::changes::{self, NetChanges};
use confluo_lakehouse::delta;
use confluo_lakehouse::{Lakehouse, TableVersion};
use datafusion::prelude::SessionContext;
use deltalake::DeltaTable;

fn rows(ids: &[i64], names: &[&str]) -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names.to_vec())),
        ],
    )
    .unwrap()
}

/// A change batch: `(id, name, op)` rows, plus an optional extra column.
fn change_rows(changes: &[(i64, &str, &str)], extra: Option<&[Option<i64>]>) -> RecordBatch {
    let mut fields = vec![
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ];
    let mut cols: Vec<Arc<dyn Array>> = vec![
        Arc::new(Int64Array::from_iter_values(changes.iter().map(|c| c.0))),
        Arc::new(StringArray::from_iter_values(changes.iter().map(|c| c.1))),
    ];
    if let Some(extra) = extra {
        fields.push(Field::new("extra", DataType::Int64, true));
        cols.push(Arc::new(Int64Array::from(extra.to_vec())));
    }
    fields.push(Field::new("_op", DataType::Utf8, true));
    cols.push(Arc::new(StringArray::from_iter_values(
        changes.iter().map(|c| c.2),
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
}

/// An `_unchanged` column: per row, the columns the source did not send.
fn unchanged(rows: &[Option<&[&str]>]) -> arrow::array::ListArray {
    let mut b = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
    for r in rows {
        match r {
            Some(names) => {
                for n in *names {
                    b.values().append_value(n);
                }
                b.append(true);
            }
            None => b.append_null(),
        }
    }
    b.finish()
}

fn net(rows: RecordBatch, version: i64) -> NetChanges {
    NetChanges {
        rows,
        keys: vec!["id".into()],
        truncated: false,
        txns: vec![("test-app".into(), version)],
        metadata: HashMap::new(),
    }
}

/// Every row of the table, as DataFusion reads it.
async fn read_all(table: &DeltaTable) -> Vec<RecordBatch> {
    SessionContext::new()
        .read_table(table.table_provider().await.unwrap())
        .unwrap()
        .collect()
        .await
        .unwrap()
}

/// id → (name, extra) of every row of the table.
async fn contents(table: &DeltaTable) -> BTreeMap<i64, (String, Option<i64>)> {
    let mut out = BTreeMap::new();
    for b in read_all(table).await {
        let ids = b.column_by_name("id").unwrap().as_primitive::<Int64Type>();
        // The provider may read strings as views.
        let names =
            arrow::compute::cast(b.column_by_name("name").unwrap(), &DataType::Utf8).unwrap();
        let names = names.as_string::<i32>();
        let extra = b
            .column_by_name("extra")
            .map(|c| c.as_primitive::<Int64Type>().clone());
        for i in 0..b.num_rows() {
            let e = extra
                .as_ref()
                .and_then(|c| c.is_valid(i).then(|| c.value(i)));
            let dup = out.insert(ids.value(i), (names.value(i).to_string(), e));
            assert!(dup.is_none(), "id {} twice", ids.value(i));
        }
    }
    out
}

fn files(table: &DeltaTable) -> Vec<String> {
    let mut f: Vec<String> = table
        .snapshot()
        .unwrap()
        .log_data()
        .iter()
        .map(|f| f.path().to_string())
        .collect();
    f.sort();
    f
}

#[tokio::test]
async fn changes_rewrite_only_the_files_holding_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let project = Project::in_memory(dir.path().to_path_buf(), ProjectConfig::with_name("t"));
    let lh = Lakehouse::open(&project).await.unwrap();
    let (info, _) = crate::new_table(&lh, "mirror", &rows(&[], &[]).schema()).await;
    // Three commits, three files of 1,000 rows each: ids 1..=1000, 1001..=2000, 2001..=3000.
    let mut expected = BTreeMap::new();
    for part in 0..3i64 {
        let table = lh.open_delta(&info, TableVersion::Latest).await.unwrap();
        let ids: Vec<i64> = (part * 1000 + 1..=part * 1000 + 1000).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for (i, n) in ids.iter().zip(&names) {
            expected.insert(*i, (n.clone(), None));
        }
        crate::append(&table, &rows(&ids, &refs)).await;
    }
    let mut table = lh.open_delta(&info, TableVersion::Latest).await.unwrap();
    let before = files(&table);
    assert_eq!(before.len(), 3);

    // Updates in the first two files, a delete, a delete of a key the table never had, an
    // insert: the third file is kept as it is.
    let batch = change_rows(
        &[
            (5, "five", "UPDATE"),
            (1500, "fifteen hundred", "UPSERT"),
            (7, "", "DELETE"),
            (999_999, "", "DELETE"),
            (5000, "new", "INSERT"),
        ],
        None,
    );
    let report = changes::apply(&mut table, net(batch.clone(), 10))
        .await
        .unwrap();
    assert_eq!((report.inserted, report.updated, report.deleted), (1, 2, 1));
    expected.insert(5, ("five".into(), None));
    expected.insert(1500, ("fifteen hundred".into(), None));
    expected.remove(&7);
    expected.insert(5000, ("new".into(), None));
    assert_eq!(contents(&table).await, expected);
    let after = files(&table);
    assert_eq!(
        before.iter().filter(|f| after.contains(f)).count(),
        1,
        "only the file of ids 2001..=3000 is untouched: before {before:?}, after {after:?}"
    );
    let history = delta::history(&table, Some(1)).await.unwrap();
    assert_eq!(history[0].operation, "MERGE");
    // The key-rewrite path, not delta-rs's MERGE plan, applied it.
    assert!(
        history[0]
            .parameters
            .to_string()
            .contains("target keys (id)"),
        "{:?}",
        history[0].parameters
    );

    // The same batch again (a replay after a crash): skipped.
    let version = delta::table_version(&table);
    let again = changes::apply(&mut table, net(batch, 10)).await.unwrap();
    assert_eq!(again.version, None);
    assert_eq!(delta::table_version(&table), version);

    // Only deletes of keys the table does not hold: no data change, the batch is recorded.
    let nothing = change_rows(&[(424_242, "", "DELETE")], None);
    let report = changes::apply(&mut table, net(nothing, 11)).await.unwrap();
    assert_eq!(report.deleted, 0);
    assert!(report.version.is_some());
    assert_eq!(contents(&table).await, expected);

    // A new source column: the table gains it, old rows read null, changed rows carry it.
    let batch = change_rows(
        &[(2500, "x", "UPDATE"), (6000, "y", "INSERT")],
        Some(&[Some(25), None]),
    );
    let report = changes::apply(&mut table, net(batch, 12)).await.unwrap();
    assert_eq!((report.inserted, report.updated), (1, 1));
    expected.insert(2500, ("x".into(), Some(25)));
    expected.insert(6000, ("y".into(), None));
    assert_eq!(contents(&table).await, expected);

    // A value the source did not send (unchanged TOAST) keeps the target's, read from the
    // replaced row; the other columns of the row still change.
    let toast = change_rows(
        &[
            (10, "", "UPDATE"),
            (11, "eleven", "UPDATE"),
            (7000, "", "UPDATE"),
        ],
        Some(&[Some(1), Some(2), Some(3)]),
    );
    let mut fields = toast.schema().fields().to_vec();
    let mut cols = toast.columns().to_vec();
    fields.push(Arc::new(Field::new(
        "_unchanged",
        confluo_connectors::changes::unchanged_type(),
        true,
    )));
    cols.push(Arc::new(unchanged(&[
        Some(&["name"]),
        None,
        Some(&["name"]),
    ])));
    let toast = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap();
    let report = changes::apply(&mut table, net(toast, 13)).await.unwrap();
    assert_eq!((report.updated, report.inserted), (2, 1));
    expected.insert(10, ("n10".into(), Some(1)));
    expected.insert(11, ("eleven".into(), Some(2)));
    // A key the table does not hold has no value to keep: the row is inserted as sent.
    expected.insert(7000, ("".into(), Some(3)));
    assert_eq!(contents(&table).await, expected);
    let history = delta::history(&table, Some(1)).await.unwrap();
    assert!(
        history[0]
            .parameters
            .to_string()
            .contains("target keys (id)")
    );

    // Two changes of one key in a batch are not a net batch: MERGE is left to say so or
    // apply them, the rewrite never keeps both.
    let dup = change_rows(&[(1, "a", "UPDATE"), (1, "b", "UPDATE")], None);
    if changes::apply(&mut table, net(dup, 14)).await.is_ok() {
        let c = contents(&table).await;
        assert!(["a", "b"].contains(&c[&1].0.as_str()));
    }
}

#[tokio::test]
async fn composite_text_keys_rewrite_like_single_ones() {
    let dir = tempfile::tempdir().unwrap();
    let project = Project::in_memory(dir.path().to_path_buf(), ProjectConfig::with_name("t"));
    let lh = Lakehouse::open(&project).await.unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, true),
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
    ]));
    let (info, table) = crate::new_table(&lh, "regional", &schema).await;
    let batch = |regions: &[&str], ids: &[i64], names: &[&str], ops: Option<&[&str]>| {
        let mut fields = schema.fields().to_vec();
        let mut cols: Vec<Arc<dyn Array>> = vec![
            Arc::new(StringArray::from(regions.to_vec())),
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(names.to_vec())),
        ];
        if let Some(ops) = ops {
            fields.push(Arc::new(Field::new("_op", DataType::Utf8, true)));
            cols.push(Arc::new(StringArray::from(ops.to_vec())));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap()
    };
    crate::append(
        &table,
        &batch(
            &["eu", "eu", "us", "us"],
            &[1, 2, 1, 2],
            &["a", "b", "c", "d"],
            None,
        ),
    )
    .await;
    let mut table = lh.open_delta(&info, TableVersion::Latest).await.unwrap();
    // (eu, 1) changes, (us, 1) goes, (us, 3) is new; (eu, 2) and (us, 2) share an id with
    // changed rows and stay as they are.
    let changes = batch(
        &["eu", "us", "us"],
        &[1, 1, 3],
        &["a2", "", "e"],
        Some(&["UPDATE", "DELETE", "INSERT"]),
    );
    let report = changes::apply(
        &mut table,
        NetChanges {
            rows: changes,
            keys: vec!["region".into(), "id".into()],
            truncated: false,
            txns: vec![("regional".into(), 1)],
            metadata: HashMap::new(),
        },
    )
    .await
    .unwrap();
    assert_eq!((report.inserted, report.updated, report.deleted), (1, 1, 1));
    let mut got = Vec::new();
    for b in read_all(&table).await {
        let region = arrow::compute::cast(b.column(0), &DataType::Utf8).unwrap();
        let name = arrow::compute::cast(b.column(2), &DataType::Utf8).unwrap();
        let ids = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            got.push(format!(
                "{}/{}={}",
                region.as_string::<i32>().value(i),
                ids.value(i),
                name.as_string::<i32>().value(i)
            ));
        }
    }
    got.sort();
    assert_eq!(got, ["eu/1=a2", "eu/2=b", "us/2=d", "us/3=e"]);
    let history = delta::history(&table, Some(1)).await.unwrap();
    assert!(
        history[0]
            .parameters
            .to_string()
            .contains("target keys (region, id)"),
        "{:?}",
        history[0].parameters
    );
}
