//! `confluo ingest`: formats, incremental runs, schema evolution, compression.

use std::io::Write;

use crate::common::{TestProject, orders_csv};

#[test]
fn ingests_a_folder_of_csv_json_and_parquet() {
    let p = TestProject::new();
    p.write("in/csv/a.csv", orders_csv(1, 100));
    p.write("in/csv/b.csv", orders_csv(101, 50));
    p.write(
        "in/json/c.json",
        "{\"id\": 1, \"name\": \"ann\", \"tags\": [\"a\"], \"addr\": {\"city\": \"Oslo\"}}\n{\"id\": 2, \"name\": \"bob\", \"tags\": [], \"addr\": {\"city\": \"Rome\"}}\n",
    );
    // Parquet written through Confluo itself, then ingested as a file.
    p.ok(&[
        "query",
        "SELECT 1 AS id, 'x' AS v UNION ALL SELECT 2, 'y'",
        "--output",
        p.path("in/pq/d.parquet").to_str().unwrap(),
    ]);

    let s = p.ingest(&p.path("in/csv"), "bronze.orders", &[]);
    assert_eq!(s["files_ingested"], 2);
    assert_eq!(s["rows"], 150);
    assert_eq!(s["created"], true);
    let s = p.ingest(&p.path("in/json"), "bronze.people", &[]);
    assert_eq!(s["rows"], 2);
    let s = p.ingest(&p.path("in/pq"), "bronze.kv", &[]);
    assert_eq!(s["rows"], 2);

    assert_eq!(p.scalar("SELECT count(*) FROM bronze.orders"), "150");
    assert_eq!(
        p.scalar("SELECT sum(order_id) FROM main.bronze.orders"),
        (1..=150).sum::<u64>().to_string()
    );
    assert_eq!(
        p.scalar("SELECT name FROM bronze.people WHERE addr['city'] = 'Rome'"),
        "bob"
    );
    assert_eq!(
        p.scalar(
            "SELECT v FROM kv WHERE id = 2"
                .replace("kv", "bronze.kv")
                .as_str()
        ),
        "y"
    );
    // Types were inferred.
    let cols = p.rows("DESCRIBE bronze.orders");
    let ty = |c: &str| {
        cols.iter()
            .find(|r| r[0] == c)
            .map(|r| r[1].clone())
            .unwrap()
    };
    assert_eq!(ty("order_id"), "bigint");
    assert_eq!(ty("amount"), "double");
    assert_eq!(ty("order_date"), "date");
    assert_eq!(ty("status"), "string");
}

#[test]
fn reingest_adds_nothing_and_new_files_add_exactly_their_rows() {
    let p = TestProject::new();
    p.write("in/a.csv", orders_csv(1, 1000));
    p.write("in/b.csv", orders_csv(1001, 1000));
    let s = p.ingest(&p.path("in"), "orders", &[]);
    assert_eq!(s["rows"], 2000);
    let s = p.ingest(&p.path("in"), "orders", &[]);
    assert_eq!(s["files_ingested"], 0);
    assert_eq!(s["files_skipped"], 2);
    let versions = p.rows("DESCRIBE HISTORY orders");
    p.write("in/c.csv", orders_csv(2001, 333));
    let s = p.ingest(&p.path("in"), "orders", &[]);
    assert_eq!(s["files_ingested"], 1);
    assert_eq!(s["rows"], 333);
    assert_eq!(p.scalar("SELECT count(*) FROM orders"), "2333");
    assert_eq!(
        p.scalar("SELECT count(DISTINCT order_id) FROM orders"),
        "2333"
    );
    assert_eq!(p.rows("DESCRIBE HISTORY orders").len(), versions.len() + 1);
    // A changed file is ingested again (its size or time differs).
    let text = "order_id,customer_id,amount,status,order_date\n9999,1,1.00,new,2025-01-01\n";
    p.write("in/c.csv", text);
    let s = p.ingest(&p.path("in"), "orders", &[]);
    assert_eq!(s["files_ingested"], 1);
    // Overwrite replaces everything with what the path holds now.
    let s = p.ingest(&p.path("in"), "orders", &["--mode", "overwrite"]);
    assert_eq!(s["files_ingested"], 3);
    assert_eq!(p.scalar("SELECT count(*) FROM orders"), "2001");
}

#[test]
fn new_columns_evolve_the_table() {
    let p = TestProject::new();
    p.write("in/1.csv", "id,name\n1,a\n2,b\n");
    p.ingest(&p.path("in/1.csv"), "t", &[]);
    p.write("in/2.csv", "id,name,score\n3,c,9.5\n");
    let s = p.ingest(&p.path("in/2.csv"), "t", &[]);
    assert_eq!(s["new_columns"], serde_json::json!(["score"]));
    let rows = p.rows("SELECT id, name, score FROM t ORDER BY id");
    assert_eq!(
        rows,
        vec![
            vec!["1", "a", ""],
            vec!["2", "b", ""],
            vec!["3", "c", "9.5"]
        ]
    );
    // JSON with a new nested field.
    p.write("in/3.json", "{\"id\": 4, \"extra\": {\"k\": 1}}\n");
    let s = p.ingest(&p.path("in/3.json"), "t", &[]);
    assert_eq!(s["new_columns"], serde_json::json!(["extra"]));
    assert_eq!(p.scalar("SELECT extra['k'] FROM t WHERE id = 4"), "1");
}

#[test]
fn incompatible_parquet_type_is_a_clear_error() {
    let p = TestProject::new();
    let a = p.path("in/a.parquet");
    p.ok(&[
        "query",
        "SELECT CAST(1 AS BIGINT) AS amount",
        "--output",
        a.to_str().unwrap(),
    ]);
    p.ingest(&a, "t", &[]);
    let b = p.path("in/b.parquet");
    p.ok(&[
        "query",
        "SELECT 'lots' AS amount",
        "--output",
        b.to_str().unwrap(),
    ]);
    let err = p.fail(&["ingest", b.to_str().unwrap(), "--into", "t"]);
    assert!(err.contains("b.parquet"), "{err}");
    assert!(err.contains("amount"), "{err}");
    assert!(err.contains("STRING") && err.contains("BIGINT"), "{err}");
    // Nothing was written.
    assert_eq!(p.scalar("SELECT count(*) FROM t"), "1");
}

#[test]
fn compressed_and_multiline_inputs() {
    let p = TestProject::new();
    let text = orders_csv(1, 500);
    let mut gz = flate2_writer(p.path("in/a.csv.gz"));
    gz.write_all(text.as_bytes()).unwrap();
    drop(gz);
    let zst = zstd_bytes(orders_csv(501, 500).as_bytes());
    p.write("in/b.csv.zst", zst);
    let s = p.ingest(&p.path("in"), "orders", &["--format", "csv"]);
    assert_eq!(s["rows"], 1000);
    assert_eq!(p.scalar("SELECT max(order_id) FROM orders"), "1000");

    p.write(
        "ml/a.csv",
        "id,note\n1,\"first line\nsecond line\"\n2,plain\n",
    );
    p.ingest(&p.path("ml/a.csv"), "notes", &["-o", "multiLine=true"]);
    assert_eq!(
        p.scalar("SELECT note FROM notes WHERE id = 1"),
        "first line\nsecond line"
    );

    p.write(
        "docs/a.json",
        "[\n {\"id\": 1,\n  \"v\": \"x\"},\n {\"id\": 2, \"v\": \"y\"}\n]\n",
    );
    p.ingest(&p.path("docs/a.json"), "docs", &["-o", "multiLine=true"]);
    assert_eq!(p.scalar("SELECT count(*) FROM docs"), "2");

    p.write("semi/a.txt", "id;amount;day\n1;2,5;15/03/2024\n");
    p.ingest(
        &p.path("semi/a.txt"),
        "semi",
        &[
            "--format",
            "csv",
            "-o",
            "sep=;",
            "-o",
            "dateFormat=dd/MM/yyyy",
            "-o",
            "schemaHints=amount STRING",
        ],
    );
    assert_eq!(
        p.rows("SELECT id, amount, day FROM semi"),
        vec![vec!["1", "2,5", "2024-03-15"]]
    );
}

fn flate2_writer(path: std::path::PathBuf) -> impl Write {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    )
}

fn zstd_bytes(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}
