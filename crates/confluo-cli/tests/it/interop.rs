//! Confluo's Delta tables read back identically with an independent implementation (the
//! Python `deltalake` package), and Confluo reads tables that package wrote.

use crate::common::{TestProject, orders_csv, run_python};

#[test]
fn python_deltalake_reads_confluo_tables_after_evolution_and_appends() {
    let p = TestProject::new();
    p.write("in/1.csv", orders_csv(1, 300));
    p.ingest(&p.path("in/1.csv"), "bronze.orders", &[]);
    p.write("in/2.csv", orders_csv(301, 200));
    p.ingest(&p.path("in/2.csv"), "bronze.orders", &[]);
    // A new column arrives in a later file.
    let mut evolved = String::from("order_id,customer_id,amount,status,order_date,channel\n");
    for i in 501..=600 {
        evolved.push_str(&format!(
            "{i},{},{}.25,paid,2025-06-{:02},web\n",
            i % 97,
            i,
            1 + i % 28
        ));
    }
    p.write("in/3.csv", evolved);
    p.ingest(&p.path("in/3.csv"), "bronze.orders", &[]);
    p.ok(&[
        "query",
        "INSERT INTO bronze.orders (order_id, amount, channel) VALUES (9001, 1.5, 'store')",
    ]);

    let ours = p.ok(&["query", "SELECT order_id, customer_id, amount, status, CAST(order_date AS VARCHAR) AS d, channel FROM bronze.orders ORDER BY order_id", "--format", "jsonl"]);
    let detail = p.rows("DESCRIBE DETAIL bronze.orders");
    let location = detail[0][4].clone();
    let theirs = run_python(&format!(
        r#"
import json, deltalake
t = deltalake.DeltaTable("{location}")
tbl = t.to_pyarrow_table().sort_by("order_id")
for r in tbl.to_pylist():
    d = r["order_date"]
    out = {{"order_id": r["order_id"], "customer_id": r["customer_id"], "amount": r["amount"], "status": r["status"], "d": None if d is None else d.isoformat(), "channel": r["channel"]}}
    print(json.dumps({{k: v for k, v in out.items() if v is not None}}, separators=(",", ":")))
print("VERSION", t.version())
"#
    ));
    let (rows, version) = theirs.rsplit_once("VERSION ").unwrap();
    let ours_rows: Vec<serde_json::Value> = ours
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let their_rows: Vec<serde_json::Value> = rows
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ours_rows.len(), 601);
    assert_eq!(ours_rows, their_rows);
    assert_eq!(version.trim(), "4");
}

#[test]
fn confluo_reads_tables_python_deltalake_wrote() {
    let p = TestProject::new();
    let path = p.path("external/sales");
    run_python(&format!(
        r#"
import pyarrow as pa, deltalake
t = pa.table({{"id": pa.array([1, 2, 3], pa.int64()), "region": ["north", "south", None], "amount": pa.array([1.5, 2.5, 3.5])}})
deltalake.write_deltalake("{0}", t)
deltalake.write_deltalake("{0}", pa.table({{"id": pa.array([4], pa.int64()), "region": ["east"], "amount": pa.array([4.5])}}), mode="append")
"#,
        path.display()
    ));
    // By path, and registered as an external table.
    assert_eq!(
        p.scalar(&format!(
            "SELECT sum(amount) FROM delta.`{}`",
            path.display()
        )),
        "12.0"
    );
    p.ok(&[
        "query",
        &format!("CREATE TABLE ext_sales LOCATION '{}'", path.display()),
    ]);
    assert_eq!(p.scalar("SELECT count(*) FROM ext_sales"), "4");
    assert_eq!(
        p.scalar("SELECT count(*) FROM ext_sales VERSION AS OF 0"),
        "3"
    );
    assert_eq!(
        p.rows("SELECT region FROM ext_sales WHERE region IS NULL")
            .len(),
        1
    );
    // Writing to it keeps it readable by Python.
    p.ok(&["query", "INSERT INTO ext_sales VALUES (5, 'west', 5.5)"]);
    let out = run_python(&format!(
        "import deltalake; print(deltalake.DeltaTable('{}').to_pyarrow_table().num_rows)",
        path.display()
    ));
    assert_eq!(out.trim(), "5");
    // Dropping an external table keeps its files.
    p.ok(&["query", "DROP TABLE ext_sales"]);
    assert!(path.join("_delta_log").exists());
}
