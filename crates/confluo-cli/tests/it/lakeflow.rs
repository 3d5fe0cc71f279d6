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
