//! Lakeflow SQL written as Databricks documents it: declared table schemas define the
//! table (types, NOT NULL, comments, generated columns), Spark's statement forms, and
//! CLUSTER BY clustering on OPTIMIZE.

use crate::common::TestProject;

const DECLARED: &str = r#"
CREATE OR REFRESH STREAMING TABLE orders (
  order_id INT NOT NULL COMMENT 'the order',
  total_price DECIMAL(10,2),
  ts TIMESTAMP,
  day DATE GENERATED ALWAYS AS (CAST(ts AS DATE)) COMMENT 'order day',
  CONSTRAINT positive EXPECT (total_price > 0)
)
COMMENT 'orders as declared'
AS SELECT * FROM STREAM read_files('data/orders', format => 'csv');

CREATE OR REFRESH MATERIALIZED VIEW daily (
  day DATE,
  revenue DECIMAL(12,2) COMMENT 'sum of total_price'
) AS SELECT day, sum(total_price) AS revenue FROM orders GROUP BY day;
"#;

fn declared_project(csv: &str) -> TestProject {
    let p = TestProject::with_config(
        "pipelines:\n  shop:\n    libraries: [\"pipelines/*.sql\"]\n    schema: shop\n",
    );
    p.write("pipelines/shop.sql", DECLARED);
    p.write("data/orders/1.csv", csv);
    p
}

/// `DESCRIBE` rows as `name|type|nullable|comment`.
fn described(p: &TestProject, table: &str) -> Vec<String> {
    p.rows(&format!("DESCRIBE {table}"))
        .into_iter()
        .map(|r| r.join("|"))
        .collect()
}

#[test]
fn a_declared_schema_defines_the_table() {
    let p = declared_project(
        "order_id,total_price,ts\n1,350.5,2026-01-01T10:00:00\n2,20.25,2026-01-02T11:30:00\n3,9,2026-01-02T12:00:00\n",
    );
    p.ok(&["run"]);
    assert_eq!(
        described(&p, "shop.orders"),
        vec![
            "order_id|int|false|the order",
            "total_price|decimal(10,2)|true|",
            "ts|timestamp|true|",
            "day|date|true|order day",
        ]
    );
    assert_eq!(
        described(&p, "shop.daily"),
        vec![
            "day|date|true|",
            "revenue|decimal(12,2)|true|sum of total_price"
        ]
    );
    // CSV prints the declared scale.
    let out = p.ok(&[
        "query",
        "SELECT order_id, total_price, day FROM shop.orders ORDER BY order_id",
        "--format",
        "csv",
    ]);
    assert_eq!(
        out.trim(),
        "order_id,total_price,day\n1,350.50,2026-01-01\n2,20.25,2026-01-02\n3,9.00,2026-01-02"
    );
    assert_eq!(
        p.scalar("SELECT revenue FROM shop.daily WHERE day = DATE '2026-01-02'"),
        "29.25"
    );

    // A row without its NOT NULL column fails the update and shows the row; nothing of the
    // file lands.
    p.write(
        "data/orders/2.csv",
        "order_id,total_price,ts\n4,1,2026-01-03T00:00:00\n,2,2026-01-03T01:00:00\n",
    );
    let e = p.fail(&["run"]);
    assert!(e.contains("order_id NOT NULL"), "{e}");
    assert!(
        e.contains("\"total_price\":\"2.00\"") || e.contains("2.00"),
        "{e}"
    );
    assert_eq!(p.scalar("SELECT count(*) FROM shop.orders"), "3");
}

#[test]
fn a_value_the_declared_type_cannot_hold_names_the_column_and_both_types() {
    let p = declared_project("order_id,total_price,ts\n1,12.345,2026-01-01T10:00:00\n");
    let e = p.fail(&["run"]);
    assert!(
        e.contains("declared column `total_price` is DECIMAL(10,2)")
            && e.contains("12.345")
            && e.contains("would lose digits"),
        "{e}"
    );
    let p = declared_project("order_id,total_price,ts\n99999999999,1,2026-01-01T10:00:00\n");
    let e = p.fail(&["run"]);
    assert!(
        e.contains("declared column `order_id` is INT") && e.contains("99999999999"),
        "{e}"
    );
    // A declared column the query does not produce is found before any data moves.
    let p = TestProject::with_config(
        "pipelines:\n  shop:\n    libraries: [\"pipelines/*.sql\"]\n    schema: shop\n",
    );
    p.write(
        "pipelines/shop.sql",
        "CREATE MATERIALIZED VIEW m (id INT, amout DOUBLE) AS SELECT 1 AS id, 2.5 AS amount;\n",
    );
    let e = p.fail(&["validate"]);
    assert!(
        e.contains("declared column `amout` is not among the query's columns")
            && e.contains("amount"),
        "{e}"
    );
}

#[test]
fn spark_statement_forms_and_cluster_by() {
    let p = TestProject::new();
    p.ok(&[
        "query",
        "CREATE TABLE t (id BIGINT, region STRING, v DOUBLE) CLUSTER BY (region)",
    ]);
    for i in 0..4 {
        p.ok(&[
            "query",
            &format!("INSERT INTO t VALUES ({i}, 'r{}', {i}.5)", i % 2),
        ]);
    }
    let extended = p.rows("DESCRIBE TABLE EXTENDED t");
    assert!(
        extended
            .iter()
            .any(|r| r[0] == "Properties" && r[1].contains("clusteringColumns")),
        "{extended:?}"
    );
    // OPTIMIZE without ZORDER BY clusters on the declared columns.
    p.ok(&["query", "OPTIMIZE t"]);
    let history = p.ok(&["query", "DESCRIBE HISTORY t", "--format", "csv"]);
    assert!(history.contains("region"), "{history}");
    assert_eq!(p.scalar("SELECT count(*) FROM t"), "4");
    let e = p.fail(&["query", "CREATE TABLE u (id BIGINT) CLUSTER BY (nope)"]);
    assert!(e.contains("clustering column `nope`"), "{e}");
}

#[test]
fn metadata_records_each_rows_file_and_star_leaves_it_out() {
    let p = TestProject::with_config(
        "pipelines:\n  b:\n    libraries: [\"pipelines/*.sql\"]\n    schema: bronze\n",
    );
    let a = p.write("data/in/a.csv", "id,v\n1,x\n2,y\n");
    let b = p.write("data/in/b.csv", "id,v\n3,z\n");
    p.write(
        "pipelines/b.sql",
        "CREATE OR REFRESH STREAMING TABLE events AS\n\
         SELECT *, _metadata.file_name AS source_file, _metadata.file_size AS bytes\n\
         FROM STREAM read_files('data/in', format => 'csv');\n",
    );
    p.ok(&["run"]);
    let size = std::fs::metadata(&a).unwrap().len().to_string();
    assert_eq!(
        p.rows("SELECT id, v, source_file, bytes FROM bronze.events ORDER BY id"),
        vec![
            vec!["1", "x", "a.csv", size.as_str()],
            vec!["2", "y", "a.csv", size.as_str()],
            vec!["3", "z", "b.csv", "9"],
        ]
    );
    // `*` read the data columns (and the rescued-data column) only: the table has no
    // `_metadata` column of its own.
    let columns: Vec<String> = p
        .rows("DESCRIBE bronze.events")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(
        columns,
        vec!["id", "v", "_rescued_data", "source_file", "bytes"]
    );

    // Through `confluo query`: the struct's fields, and `*` without it.
    let (a, b) = (a.display().to_string(), b.display().to_string());
    assert_eq!(
        p.rows(&format!("SELECT DISTINCT _metadata.file_path, _metadata.file_modification_time IS NOT NULL FROM read_files('{a}')")),
        vec![vec![a, "true".to_string()]]
    );
    let out = p.ok(&[
        "query",
        &format!("SELECT *, _metadata.file_name AS f FROM read_files('{b}')"),
        "--format",
        "csv",
    ]);
    assert_eq!(out.trim(), "id,v,_rescued_data,f\n3,z,,b.csv");
    let out = p.ok(&[
        "query",
        &format!("SELECT r.* FROM read_files('{b}') AS r WHERE r._metadata.file_name = 'b.csv'"),
        "--format",
        "csv",
    ]);
    assert_eq!(out.trim(), "id,v,_rescued_data\n3,z,");
}

#[test]
fn errors_name_the_users_relations_not_internal_ones() {
    let p = TestProject::new();
    let a = p.write("data/in/a.csv", "order_id,v\n1,x\n");
    let a = a.display();
    for sql in [
        format!("SELECT order_idd FROM read_files('{a}')"),
        format!("SELECT read_files.order_idd FROM read_files('{a}')"),
    ] {
        let e = p.fail(&["query", &sql]);
        assert!(!e.contains("__confluo"), "{e}");
        assert!(e.contains("order_id"), "{e}");
    }
    let p = TestProject::with_config(
        "pipelines:\n  b:\n    libraries: [\"pipelines/*.sql\"]\n    schema: bronze\n",
    );
    p.write("data/in/a.csv", "order_id,v\n1,x\n");
    p.write(
        "pipelines/b.sql",
        "CREATE OR REFRESH STREAMING TABLE events AS\n\
         SELECT order_idd FROM STREAM read_files('data/in', format => 'csv');\n",
    );
    let e = p.fail(&["run"]);
    assert!(!e.contains("__confluo"), "{e}");
    assert!(e.contains("order_id"), "{e}");
}

#[test]
fn a_table_that_must_not_be_reset_survives_a_full_refresh() {
    let p = TestProject::with_config(
        "pipelines:\n  b:\n    libraries: [\"pipelines/*.sql\"]\n    schema: bronze\n",
    );
    p.write("data/in/a.csv", "id,v\n1,first\n");
    p.write(
        "pipelines/b.sql",
        "CREATE OR REFRESH STREAMING TABLE kept TBLPROPERTIES ('pipelines.reset.allowed' = 'false')\n\
         AS SELECT * FROM STREAM read_files('data/in', format => 'csv');\n\
         CREATE OR REFRESH STREAMING TABLE rebuilt\n\
         AS SELECT * FROM STREAM read_files('data/in', format => 'csv');\n",
    );
    p.ok(&["run"]);
    // The source file is rewritten in place (a file already read is not read again), and a
    // second file arrives.
    p.write("data/in/a.csv", "id,v\n1,second\n");
    p.write("data/in/b.csv", "id,v\n2,new\n");
    p.ok(&["run", "--full-refresh"]);
    assert_eq!(
        p.rows("SELECT id, v FROM bronze.kept ORDER BY id"),
        vec![vec!["1", "first"], vec!["2", "new"]]
    );
    assert_eq!(
        p.rows("SELECT id, v FROM bronze.rebuilt ORDER BY id"),
        vec![vec!["1", "second"], vec!["2", "new"]]
    );

    // The other documented pipelines.* properties either work or are refused.
    for (props, expected) in [
        (
            "'pipelines.trigger.interval' = '1 hour'",
            "not supported yet: pipelines.trigger.interval",
        ),
        (
            "'pipelines.autoOptimize.managed' = 'true'",
            "not supported yet: pipelines.autoOptimize.managed",
        ),
        (
            "'pipelines.reset.alowed' = 'false'",
            "pipelines.reset.allowed",
        ),
        (
            "'pipelines.reset.allowed' = 'no'",
            "takes 'true' or 'false'",
        ),
    ] {
        p.write(
            "pipelines/b.sql",
            format!(
                "CREATE OR REFRESH STREAMING TABLE kept TBLPROPERTIES ({props})\n\
                 AS SELECT * FROM STREAM read_files('data/in', format => 'csv');\n"
            ),
        );
        let e = p.fail(&["validate"]);
        assert!(e.contains(expected), "{props}: {e}");
    }
    p.write(
        "pipelines/b.sql",
        "CREATE TEMPORARY VIEW v TBLPROPERTIES ('a' = 'b') AS SELECT 1 AS x;\n",
    );
    let e = p.fail(&["validate"]);
    assert!(
        e.contains("not supported yet: TBLPROPERTIES on a view"),
        "{e}"
    );
}

#[test]
fn show_create_table_recreates_the_definition_and_analyze_reports_statistics() {
    let p = TestProject::new();
    p.ok(&["query", "CREATE SCHEMA shop"]);
    p.ok(&[
        "query",
        "CREATE TABLE shop.orders (id BIGINT NOT NULL COMMENT 'the order', `Region` STRING, \
         total DECIMAL(10,2), day DATE) PARTITIONED BY (day) COMMENT 'it''s orders' \
         TBLPROPERTIES ('owner.team' = 'sales', 'delta.appendOnly' = 'true')",
    ]);
    p.ok(&[
        "query",
        "INSERT INTO shop.orders VALUES (1, 'eu', 10.50, DATE '2026-01-01'), (2, NULL, 3.25, DATE '2026-01-01'), (3, 'us', NULL, DATE '2026-01-02')",
    ]);
    let ddl = p.scalar("SHOW CREATE TABLE shop.orders");
    assert!(
        ddl.contains("id BIGINT NOT NULL COMMENT 'the order'"),
        "{ddl}"
    );
    assert!(ddl.contains("`Region` STRING"), "{ddl}");
    assert!(ddl.contains("PARTITIONED BY (day)"), "{ddl}");
    assert!(ddl.contains("'delta.appendOnly' = 'true'"), "{ddl}");
    let described = |t: &str| p.rows(&format!("DESCRIBE {t}"));
    let before = described("shop.orders");
    // The statement runs as printed and makes the same table.
    let again = ddl.replace("shop.orders", "shop.orders_copy");
    p.ok(&["query", &again]);
    assert_eq!(described("shop.orders_copy"), before);
    let props = p.rows("SHOW TBLPROPERTIES shop.orders_copy");
    assert!(
        props
            .iter()
            .any(|r| r[0] == "owner.team" && r[1] == "sales"),
        "{props:?}"
    );

    // Table statistics come from the Delta log; column statistics from one scan.
    let stats = p.rows("ANALYZE TABLE shop.orders COMPUTE STATISTICS");
    assert_eq!(stats[0][3], "3", "{stats:?}");
    assert_eq!(stats[0][2], "2", "{stats:?}"); // one file per day partition
    assert_eq!(
        p.rows("ANALYZE TABLE shop.orders COMPUTE STATISTICS FOR COLUMNS total, Region"),
        vec![
            vec!["total", "decimal(10,2)", "3", "1", "2", "3.25", "10.50"],
            vec!["Region", "string", "3", "1", "2", "eu", "us"],
        ]
    );
    let e = p.fail(&[
        "query",
        "ANALYZE TABLE shop.orders COMPUTE STATISTICS FOR COLUMNS totl",
    ]);
    assert!(e.contains("no column `totl`") && e.contains("total"), "{e}");
    let e = p.fail(&[
        "query",
        "ANALYZE TABLE shop.orders PARTITION (day = '2026-01-01') COMPUTE STATISTICS",
    ]);
    assert!(e.contains("not supported yet"), "{e}");
}
