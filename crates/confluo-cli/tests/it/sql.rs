//! `confluo query`: names, catalogs, DDL and DML, time travel, history, vacuum, outputs.

use crate::common::{TestProject, orders_csv, parse_csv};

#[test]
fn catalogs_schemas_tables_and_names() {
    let p = TestProject::new();
    p.ok(&["query", "CREATE CATALOG sales COMMENT 'the sales org'; CREATE SCHEMA sales.raw; CREATE SCHEMA IF NOT EXISTS sales.raw"]);
    let cats = p.rows("SHOW CATALOGS");
    assert_eq!(
        cats.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["main", "sales"]
    );
    let schemas = p.rows("SHOW SCHEMAS IN sales");
    assert_eq!(
        schemas.iter().map(|r| r[1].as_str()).collect::<Vec<_>>(),
        ["default", "raw"]
    );
    p.ok(&["query", "CREATE TABLE sales.raw.Orders (Id BIGINT NOT NULL, `Mixed Case` STRING COMMENT 'kept as written', amt DECIMAL(10,2)) COMMENT 'orders' TBLPROPERTIES ('team' = 'x')"]);
    // Unquoted names fold to lower case; quoted ones are exact.
    p.ok(&[
        "query",
        "INSERT INTO SALES.RAW.ORDERS VALUES (1, 'a', 1.25), (2, 'b', 2.5)",
    ]);
    assert_eq!(p.scalar("SELECT sum(amt) FROM sales.raw.orders"), "3.75");
    assert_eq!(
        p.scalar("SELECT `Mixed Case` FROM sales.raw.orders WHERE id = 2"),
        "b"
    );
    let tables = p.rows("SHOW TABLES IN sales.raw");
    assert_eq!(tables[0][2], "orders");
    assert_eq!(tables[0][4], "orders");
    let desc = p.rows("DESCRIBE sales.raw.orders");
    assert_eq!(desc[0], vec!["id", "bigint", "false", ""]);
    assert_eq!(desc[1][3], "kept as written");
    assert_eq!(desc[2][1], "decimal(10,2)");
    // One-, two- and three-part names.
    p.ok(&[
        "query",
        "CREATE TABLE t1 AS SELECT 1 AS x; CREATE SCHEMA s2; CREATE TABLE s2.t2 AS SELECT 2 AS x",
    ]);
    assert_eq!(p.scalar("SELECT x FROM t1"), "1");
    assert_eq!(p.scalar("SELECT x FROM default.t1"), "1");
    assert_eq!(p.scalar("SELECT x FROM main.default.t1"), "1");
    assert_eq!(p.scalar("SELECT x FROM s2.t2"), "2");
    // Comments and properties.
    p.ok(&["query", "COMMENT ON TABLE t1 IS 'one row'; ALTER TABLE t1 SET TBLPROPERTIES ('owner.team' = 'data', 'delta.appendOnly' = 'false')"]);
    let props = p.rows("SHOW TBLPROPERTIES t1");
    assert!(
        props
            .iter()
            .any(|r| r == &vec!["owner.team".to_string(), "data".to_string()]),
        "{props:?}"
    );
    assert!(
        props.iter().any(|r| r[0] == "delta.appendOnly"),
        "{props:?}"
    );
    assert_eq!(p.rows("SHOW TABLES")[0][4], "one row");
    p.ok(&["query", "DROP TABLE t1"]);
    assert!(p.rows("SHOW TABLES").is_empty());
    p.ok(&["query", "DROP TABLE IF EXISTS t1"]);
}

#[test]
fn mixed_case_columns_match_unquoted_names() {
    let p = TestProject::new();
    // CSV headers keep their case in the table, as Spark and Databricks keep them.
    let csv = p.write(
        "m.csv",
        "Id,Amount,Customer Name,note\n1,2.5,a,x\n2,3.5,b,y\n",
    );
    p.ingest(&csv, "m", &[]);
    assert_eq!(p.scalar("SELECT sum(amount) FROM m WHERE ID = 2"), "3.5");
    assert_eq!(p.scalar("SELECT max(m.AMOUNT) FROM m"), "3.5");
    assert_eq!(p.scalar("SELECT `Amount` FROM m WHERE Id = 1"), "2.5");
    assert_eq!(p.scalar("SELECT `Customer Name` FROM m WHERE id = 1"), "a");
    assert_eq!(p.scalar("SELECT NOTE FROM m WHERE id = 2"), "y");
    let path = csv.display().to_string();
    assert_eq!(
        p.scalar(&format!(
            "SELECT count(amount) FROM read_files('{path}', format => 'csv')"
        )),
        "2"
    );
    p.ok(&[
        "query",
        "CREATE TABLE m2 AS SELECT id, amount * 2 AS twice FROM m",
    ]);
    assert_eq!(p.scalar("SELECT sum(twice) FROM m2"), "12.0");
    // A name no column has, whatever the case, is still an error that names it.
    let err = p.fail(&["query", "SELECT amout FROM m"]);
    assert!(err.contains("amout"), "{err}");
}

#[test]
fn insert_overwrite_ctas_and_time_travel() {
    let p = TestProject::new();
    p.ok(&["query", "CREATE TABLE t (id INT, name STRING)"]);
    p.ok(&["query", "INSERT INTO t VALUES (1, 'a'), (2, 'b')"]);
    p.ok(&["query", "INSERT INTO t (name, id) SELECT 'c', 3"]);
    p.ok(&["query", "INSERT INTO t BY NAME SELECT 'd' AS name, 4 AS id"]);
    assert_eq!(p.scalar("SELECT count(*) FROM t"), "4");
    let before = chrono_now();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    p.ok(&["query", "INSERT OVERWRITE t SELECT 10, 'z'"]);
    assert_eq!(p.scalar("SELECT count(*) FROM t"), "1");
    assert_eq!(p.scalar("SELECT count(*) FROM t VERSION AS OF 1"), "2");
    assert_eq!(p.scalar("SELECT count(*) FROM t VERSION AS OF 3"), "4");
    assert_eq!(
        p.scalar(&format!(
            "SELECT count(*) FROM t TIMESTAMP AS OF '{before}'"
        )),
        "4"
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM main.default.t FOR SYSTEM_TIME AS OF current_timestamp()"),
        "1"
    );
    let history = p.rows("DESCRIBE HISTORY t");
    assert_eq!(history.len(), 5);
    assert_eq!(history[0][0], "4");
    assert_eq!(history.last().unwrap()[2], "CREATE TABLE");
    assert_eq!(p.rows("DESCRIBE HISTORY t LIMIT 2").len(), 2);
    p.ok(&[
        "query",
        "CREATE TABLE agg AS SELECT name, count(*) AS n FROM t VERSION AS OF 3 GROUP BY name",
    ]);
    assert_eq!(p.scalar("SELECT count(*) FROM agg"), "4");
    p.ok(&["query", "CREATE OR REPLACE TABLE agg AS SELECT 1 AS only"]);
    assert_eq!(p.rows("SELECT * FROM agg"), vec![vec!["1"]]);
    assert_eq!(p.scalar("SELECT count(*) FROM agg VERSION AS OF 1"), "4");
    // Vacuum with zero retention removes the overwritten files; the latest still reads.
    let listed = p.rows("VACUUM t RETAIN 0 HOURS DRY RUN");
    assert!(!listed.is_empty());
    p.ok(&["query", "VACUUM t RETAIN 0 HOURS"]);
    assert_eq!(p.scalar("SELECT count(*) FROM t"), "1");
    assert!(p.rows("VACUUM t RETAIN 0 HOURS DRY RUN").is_empty());
}

fn chrono_now() -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn read_files_in_queries() {
    let p = TestProject::new();
    p.write("in/a.csv", orders_csv(1, 10));
    p.write("in/b.csv", orders_csv(11, 10));
    let glob = p.path("in/*.csv");
    let n = p.scalar(&format!(
        "SELECT count(*) FROM read_files('{}', format => 'csv', header => true)",
        glob.display()
    ));
    assert_eq!(n, "20");
    let typed = p.rows(&format!(
        "SELECT order_id, amount FROM read_files('{}', schema => 'order_id INT, customer_id INT, amount DECIMAL(10,2), status STRING, order_date DATE') WHERE order_id = 3",
        p.path("in").display()
    ));
    assert_eq!(typed, vec![vec!["3", "3.03"]]);
    p.write("in2/x.tsv", "a\tb\n1\thello\n");
    assert_eq!(
        p.scalar(&format!(
            "SELECT b FROM read_files('{}', format => 'csv', sep => '\\t')",
            p.path("in2/x.tsv").display()
        )),
        "hello"
    );
    p.ok(&[
        "query",
        &format!(
            "CREATE TABLE from_files AS SELECT * FROM read_files('{}')",
            glob.display()
        ),
    ]);
    assert_eq!(p.scalar("SELECT count(*) FROM from_files"), "20");
}

#[test]
fn output_formats() {
    let p = TestProject::new();
    let sql = "SELECT 1 AS a, 'x,y' AS b UNION ALL SELECT 2, NULL ORDER BY a";
    let csv = p.ok(&["query", sql, "--format", "csv"]);
    assert_eq!(
        parse_csv(&csv),
        vec![vec!["a", "b"], vec!["1", "x,y"], vec!["2", ""]]
    );
    let json: serde_json::Value =
        serde_json::from_str(&p.ok(&["query", sql, "--format", "json"])).unwrap();
    assert_eq!(json, serde_json::json!([{"a": 1, "b": "x,y"}, {"a": 2}]));
    // CSV has no nested values: arrays and structs are written as their text.
    let nested = p.ok(&[
        "query",
        "SELECT [1, 2] AS l, named_struct('x', 1, 'y', 'z') AS s, CAST(NULL AS ARRAY<INT>) AS n",
        "--format",
        "csv",
    ]);
    assert_eq!(
        parse_csv(&nested),
        vec![vec!["l", "s", "n"], vec!["[1, 2]", "{x: 1, y: z}", ""]]
    );
    let table = p.ok(&["query", sql, "--format", "table"]);
    assert!(
        table.contains("x,y") && table.contains("NULL") && table.contains("(2 rows)"),
        "{table}"
    );
    let out = p.path("out.parquet");
    p.ok(&["query", sql, "--output", out.to_str().unwrap()]);
    assert_eq!(
        p.scalar(&format!(
            "SELECT sum(a) FROM read_files('{}')",
            out.display()
        )),
        "3"
    );
    let out = p.path("out.csv");
    p.ok(&[
        "query",
        sql,
        "--format",
        "csv",
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(std::fs::read_to_string(out).unwrap().starts_with("a,b\n"));
}

#[test]
fn metastore_in_postgresql() {
    use sqlx::Connection;
    let db = format!("confluo_it_{}", uuid::Uuid::new_v4().simple());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
            .execute(&mut c)
            .await
            .unwrap();
    });
    let p = TestProject::with_config(&format!(
        "metastore:\n  url: postgres://postgres@127.0.0.1:5432/{db}\n"
    ));
    p.write("in/a.csv", orders_csv(1, 50));
    p.ingest(&p.path("in"), "bronze.orders", &[]);
    p.ok(&["query", "CREATE SCHEMA silver; CREATE TABLE silver.o AS SELECT * FROM bronze.orders WHERE amount > 10"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.orders"), "50");
    let s = p.ingest(&p.path("in"), "bronze.orders", &[]);
    assert_eq!(s["files_ingested"], 0);
    assert_eq!(p.rows("SHOW TABLES IN silver").len(), 1);
    assert!(!p.path(".confluo/metastore.db").exists());
    rt.block_on(async {
        let mut c = sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {db} WITH (FORCE)"
        )))
        .execute(&mut c)
        .await
        .unwrap();
    });
}

/// `num_files` of `DESCRIBE DETAIL`.
fn num_files(p: &TestProject, table: &str) -> u64 {
    let detail = p.rows(&format!("DESCRIBE DETAIL {table}"));
    detail[0][8].parse().unwrap()
}

#[test]
fn optimize_compacts_small_files_and_zorders_without_changing_data() {
    let p = TestProject::new();
    p.ok(&[
        "query",
        "CREATE SCHEMA s; CREATE TABLE s.t (id BIGINT, day STRING, v DOUBLE) PARTITIONED BY (day); CREATE TABLE s.flat (id BIGINT, k STRING, v DOUBLE)",
    ]);
    // One INSERT, one file per partition it touches.
    for i in 0..12 {
        p.ok(&[
            "query",
            &format!(
                "INSERT INTO s.t VALUES ({a}, 'd1', {a}.5), ({b}, 'd2', 1.0); INSERT INTO s.flat VALUES ({a}, 'k{m}', 2.0)",
                a = i * 2,
                b = i * 2 + 1,
                m = i % 5
            ),
        ]);
    }
    let before = p.rows("SELECT count(*), sum(id), sum(v) FROM s.t");
    assert_eq!(num_files(&p, "s.t"), 24);
    // Only partition d1: its 12 files become one, d2's stay.
    let out = p.rows("OPTIMIZE s.t WHERE day = 'd1'");
    assert_eq!((&out[0][1][..], &out[0][2][..]), ("1", "12"), "{out:?}");
    assert_eq!(num_files(&p, "s.t"), 13);
    let out = p.rows("OPTIMIZE s.t");
    assert_eq!((&out[0][1][..], &out[0][2][..]), ("1", "12"), "{out:?}");
    assert_eq!(num_files(&p, "s.t"), 2);
    assert_eq!(p.rows("SELECT count(*), sum(id), sum(v) FROM s.t"), before);
    // Nothing left to do: no commit.
    let out = p.rows("OPTIMIZE s.t");
    assert_eq!((&out[0][2][..], &out[0][8][..]), ("0", ""), "{out:?}");
    // Z-order over a column of an unpartitioned table.
    let out = p.rows("OPTIMIZE s.flat ZORDER BY (k, id)");
    assert_eq!(&out[0][2], "12", "{out:?}");
    assert_eq!(num_files(&p, "s.flat"), 1);
    assert_eq!(p.scalar("SELECT count(*) FROM s.flat"), "12");
    let history = p.ok(&["query", "DESCRIBE HISTORY s.flat", "--format", "csv"]);
    assert!(history.contains("OPTIMIZE"), "{history}");
    // Another Delta implementation reads the compacted tables.
    let detail = p.rows("DESCRIBE DETAIL s.t");
    let out = crate::common::run_python(&format!(
        "import deltalake\nt = deltalake.DeltaTable('{}')\nprint(t.to_pyarrow_table().num_rows, len(t.file_uris()))",
        detail[0][4]
    ));
    assert_eq!(out.trim(), "24 2");
    // What a user can get wrong.
    let e = p.fail(&["query", "OPTIMIZE s.t WHERE id = 3"]);
    assert!(e.contains("may only name partition columns (day)"), "{e}");
    let e = p.fail(&["query", "OPTIMIZE s.flat WHERE k = 'k1'"]);
    assert!(e.contains("not partitioned"), "{e}");
    let e = p.fail(&["query", "OPTIMIZE s.flat ZORDER BY (kk)"]);
    assert!(e.contains("no column `kk`") && e.contains("`k`"), "{e}");
    let e = p.fail(&["query", "OPTIMIZE s.t ZORDER BY (day)"]);
    assert!(e.contains("is a partition column"), "{e}");
    let e = p.fail(&["query", "OPTIMIZE s.t WHERE day LIKE 'd%'"]);
    assert!(e.contains("is not a comparison"), "{e}");
    let e = p.fail(&["query", "OPTIMIZE s.nope"]);
    assert!(e.contains("s.nope"), "{e}");
}
