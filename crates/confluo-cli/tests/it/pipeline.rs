//! Declarative pipelines through the CLI: Lakeflow SQL, incremental runs, expectations with
//! every action, the event log, and errors before data moves.

use crate::common::TestProject;

const PIPELINE: &str = r#"
-- bronze: new files only
CREATE OR REFRESH STREAMING TABLE orders_raw
COMMENT 'raw orders'
AS SELECT * FROM STREAM read_files('${source}', format => 'csv');

-- silver: expectations with every action
CREATE OR REFRESH STREAMING TABLE orders (
  CONSTRAINT has_id EXPECT (order_id IS NOT NULL) ON VIOLATION DROP ROW,
  CONSTRAINT positive EXPECT (amount > 0) ON VIOLATION QUARANTINE,
  CONSTRAINT known_country EXPECT (country IN ('US', 'DE', 'FR'))
)
AS SELECT order_id, lower(trim(email)) AS email, amount, country FROM STREAM(LIVE.orders_raw);

CREATE TEMPORARY VIEW big_orders AS SELECT * FROM orders WHERE amount >= 100;

-- gold
CREATE OR REFRESH MATERIALIZED VIEW revenue_by_country
AS SELECT country, count(*) AS orders, sum(amount) AS revenue FROM orders GROUP BY country;

CREATE MATERIALIZED VIEW big_count AS SELECT count(*) AS n FROM big_orders;
"#;

fn project() -> TestProject {
    let p = TestProject::with_config(
        "pipelines:\n  shop:\n    libraries: [\"pipelines/*.sql\"]\n    schema: shop\n    configuration:\n      source: data/orders\n",
    );
    p.write("pipelines/shop.sql", PIPELINE);
    p.write(
        "data/orders/1.csv",
        "order_id,email,amount,country\n1, Ann@X.com ,50,US\n2,bob@y.com,150,DE\n,nobody@z.com,10,US\n3,c@d.com,-5,FR\n",
    );
    p
}

fn run_json(p: &TestProject, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["run", "--json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&p.ok(&args)).expect("run --json")
}

fn dataset<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == name)
        .unwrap_or_else(|| panic!("{name} not in {report}"))
}

fn version_count(p: &TestProject, table: &str) -> usize {
    p.rows(&format!("DESCRIBE HISTORY {table}")).len()
}

#[test]
fn lakeflow_pipeline_runs_incrementally_with_expectations() {
    let p = project();
    let out = p.ok(&["validate"]);
    assert!(
        out.contains("streaming table main.shop.orders_raw"),
        "{out}"
    );
    assert!(out.contains("<- STREAM main.shop.orders_raw"), "{out}");
    assert!(
        p.ok(&["validate", "--format", "dot"])
            .starts_with("digraph")
    );
    assert!(
        p.ok(&["validate", "--format", "mermaid"])
            .starts_with("flowchart LR")
    );

    let r = run_json(&p, &[]);
    assert_eq!(r["ok"], true, "{r}");
    let orders = dataset(&r, "main.shop.orders");
    assert_eq!(orders["rows_written"], 2, "{orders}");
    assert_eq!(orders["rows_dropped"], 1);
    assert_eq!(orders["rows_quarantined"], 1);
    let exps = orders["expectations"].as_array().unwrap();
    let get = |n: &str| exps.iter().find(|e| e["name"] == n).unwrap().clone();
    assert_eq!(
        (
            get("has_id")["passed"].as_u64(),
            get("has_id")["failed"].as_u64()
        ),
        (Some(3), Some(1))
    );
    assert_eq!(get("positive")["failed"], 1);
    assert_eq!(get("known_country")["action"], "warn");
    assert_eq!(
        p.rows("SELECT order_id, email FROM shop.orders ORDER BY order_id"),
        vec![vec!["1", "ann@x.com"], vec!["2", "bob@y.com"]]
    );
    assert_eq!(
        p.rows("SELECT order_id, _failed_expectations FROM shop.orders_quarantine"),
        vec![vec!["3", "positive"]]
    );
    assert_eq!(p.scalar("SELECT n FROM shop.big_count"), "1");

    // No new input: no new Delta versions anywhere.
    let before: Vec<usize> = ["shop.orders_raw", "shop.orders", "shop.revenue_by_country"]
        .iter()
        .map(|t| version_count(&p, t))
        .collect();
    let r = run_json(&p, &[]);
    for d in r["datasets"].as_array().unwrap() {
        assert_eq!(d["status"], "up to date", "{d}");
    }
    let after: Vec<usize> = ["shop.orders_raw", "shop.orders", "shop.revenue_by_country"]
        .iter()
        .map(|t| version_count(&p, t))
        .collect();
    assert_eq!(before, after);

    // One new file: only its rows are processed.
    p.write(
        "data/orders/2.csv",
        "order_id,email,amount,country\n4,e@f.com,200,US\n",
    );
    let r = run_json(&p, &[]);
    assert_eq!(
        dataset(&r, "main.shop.orders_raw")["rows_written"],
        1,
        "{r}"
    );
    assert_eq!(dataset(&r, "main.shop.orders")["rows_written"], 1);
    assert_eq!(p.scalar("SELECT count(*) FROM shop.orders_raw"), "5");
    assert_eq!(
        p.rows("SELECT country, orders FROM shop.revenue_by_country ORDER BY country"),
        vec![vec!["DE", "1"], vec!["US", "2"]]
    );

    // A full refresh rebuilds the same result.
    let snapshot = p.rows("SELECT * FROM shop.orders ORDER BY order_id");
    let r = run_json(&p, &["--full-refresh"]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        p.rows("SELECT * FROM shop.orders ORDER BY order_id"),
        snapshot
    );
    assert_eq!(p.scalar("SELECT count(*) FROM shop.orders_raw"), "5");
    assert_eq!(p.scalar("SELECT count(*) FROM shop.orders_quarantine"), "1");

    // The event log is a table; runs and events read it.
    let runs = p.ok(&["runs"]);
    assert!(runs.contains("COMPLETED"), "{runs}");
    let n: usize = p
        .scalar("SELECT count(DISTINCT update_id) FROM shop.shop_event_log")
        .parse()
        .unwrap();
    assert_eq!(n, 4);
    let events = p.ok(&["events"]);
    assert!(events.contains("update_completed"), "{events}");
    assert!(events.contains("flow_progress"), "{events}");
}

#[test]
fn fail_update_stops_the_dataset_and_skips_downstream() {
    let p = TestProject::new();
    p.write("data/a.csv", "id,v\n1,10\n2,-3\n");
    p.write(
        "pipelines/p.sql",
        "CREATE STREAMING TABLE a (CONSTRAINT pos EXPECT (v > 0) ON VIOLATION FAIL UPDATE)\n\
         AS SELECT * FROM STREAM read_files('data/a.csv');\n\
         CREATE MATERIALIZED VIEW b AS SELECT sum(v) AS s FROM a;\n",
    );
    let out = p.run(&["run"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("expectation `pos` failed"), "{stderr}");
    assert!(stderr.contains("\"v\":-3"), "{stderr}");
    assert!(stderr.contains("skipped: main.default.b"), "{stderr}");
    // Nothing was committed for `a`: the failed batch is retried whole next time.
    assert_eq!(p.scalar("SELECT count(*) FROM a"), "0");
}

#[test]
fn flows_append_into_one_table_and_once_runs_once() {
    let p = TestProject::new();
    p.write("data/eu/1.json", "{\"id\": 1, \"region\": \"eu\"}\n");
    p.write("data/us/1.json", "{\"id\": 2, \"region\": \"us\"}\n");
    p.write("data/old.json", "{\"id\": 0, \"region\": \"old\"}\n");
    p.write(
        "pipelines/p.sql",
        "SET fmt = json;\n\
         CREATE STREAMING TABLE all_orders;\n\
         CREATE FLOW eu AS INSERT INTO all_orders BY NAME SELECT * FROM STREAM read_files('data/eu', format => '${fmt}');\n\
         CREATE FLOW us AS INSERT INTO all_orders BY NAME SELECT * FROM STREAM(read_files('data/us', format => '${fmt}'));\n\
         CREATE FLOW backfill AS INSERT INTO ONCE all_orders BY NAME SELECT * FROM read_files('data/old.json');\n",
    );
    p.ok(&["run"]);
    assert_eq!(p.scalar("SELECT count(*) FROM all_orders"), "3");
    p.write("data/us/2.json", "{\"id\": 3, \"region\": \"us\"}\n");
    p.ok(&["run"]);
    assert_eq!(
        p.rows("SELECT id FROM all_orders ORDER BY id"),
        vec![vec!["0"], vec!["1"], vec!["2"], vec!["3"]]
    );
}

#[test]
fn definition_errors_stop_before_data_moves() {
    let cases: &[(&str, &str)] = &[
        (
            "CREATE MATERIALIZED VIEW a AS SELECT * FROM b;\nCREATE MATERIALIZED VIEW b AS SELECT * FROM a;\n",
            "cycle",
        ),
        (
            "CREATE MATERIALIZED VIEW a AS SELECT 1 AS x;\nCREATE MATERIALIZED VIEW b AS SELECT * FROM aa;\n",
            "p.sql:2:",
        ),
        (
            "CREATE MATERIALIZED VIEW a AS SELECT 1 AS x;\nCREATE MATERIALIZED VIEW b AS SELECT nope FROM a;\n",
            "p.sql:2:",
        ),
        (
            "CREATE MATERIALIZED VIEW a AS SELECT 1 AS x;\nCREATE MATERIALIZED VEIW b AS SELECT 1;\n",
            "p.sql:2:8",
        ),
        (
            "CREATE MATERIALIZED VIEW a AS SELECT 1 AS x;\nCREATE MATERIALIZED VIEW a AS SELECT 2 AS x;\n",
            "defined twice",
        ),
        (
            "CREATE MATERIALIZED VIEW a (CONSTRAINT c EXPECT (y > 0)) AS SELECT 1 AS x;\n",
            "expectation `c`",
        ),
        (
            "CREATE STREAMING TABLE a AS SELECT 1 AS x;\n",
            "reads nothing through STREAM",
        ),
        // Documented clauses Confluo cannot honour yet are refused where they stand.
        (
            "CREATE MATERIALIZED VIEW a\n  SCHEDULE EVERY 2 HOURS\nAS SELECT 1 AS x;\n",
            "p.sql:2:3: not supported yet: SCHEDULE",
        ),
        (
            "CREATE MATERIALIZED VIEW a SCHEDULE CRON '0 0 * * * ?' AT TIME ZONE 'UTC' AS SELECT 1 AS x;\n",
            "not supported yet: SCHEDULE",
        ),
        (
            "CREATE MATERIALIZED VIEW a (x INT, y STRING MASK mask_y) AS SELECT 1 AS x, 'b' AS y;\n",
            "p.sql:1:45: not supported yet: MASK",
        ),
        (
            "CREATE MATERIALIZED VIEW a (x INT) WITH ROW FILTER f ON (x) AS SELECT 1 AS x;\n",
            "not supported yet: WITH ROW FILTER",
        ),
        (
            "CREATE VIEW v PARTITIONED BY (x) AS SELECT 1 AS x;\nCREATE MATERIALIZED VIEW a AS SELECT * FROM v;\n",
            "p.sql:1:15: not supported yet: PARTITIONED BY / CLUSTER BY on a view",
        ),
    ];
    for (sql, expect) in cases {
        let p = TestProject::new();
        p.write("pipelines/p.sql", sql);
        let err = p.fail(&["run"]);
        assert!(
            err.contains(expect),
            "for {sql:?}: expected {expect:?} in\n{err}"
        );
        // Nothing was created but the event log recording the failed update.
        let tables = p.ok(&["query", "SHOW TABLES", "--format", "csv"]);
        let made: Vec<&str> = tables
            .lines()
            .skip(1)
            .filter(|l| !l.contains("event_log"))
            .collect();
        assert!(made.is_empty(), "tables were created for {sql:?}: {made:?}");
    }
    // A suggestion for the misspelt table.
    let p = TestProject::new();
    p.write(
        "pipelines/p.sql",
        "CREATE MATERIALIZED VIEW orders AS SELECT 1 AS x;\nCREATE MATERIALIZED VIEW b AS SELECT * FROM ordrs;\n",
    );
    let err = p.fail(&["validate"]);
    assert!(err.contains("did you mean"), "{err}");
    assert!(err.contains("^"), "{err}");
}

#[test]
fn spark_declarative_pipelines_project_runs_as_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("spark-pipeline.yml"),
        "name: sdp\nstorage: file:///tmp/unused-checkpoints\ndatabase: analytics\nconfiguration:\n  min_amount: \"10\"\nlibraries:\n  - glob:\n      include: transformations/**\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("transformations")).unwrap();
    std::fs::write(dir.path().join("data.csv"), "id,amount\n1,5\n2,50\n").unwrap();
    std::fs::write(
        dir.path().join("transformations/t.sql"),
        "CREATE MATERIALIZED VIEW big AS SELECT * FROM read_files('data.csv', format => 'csv') WHERE amount >= ${min_amount};\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::common::bin())
            .current_dir(dir.path())
            .arg("--quiet")
            .args(args)
            .env_remove("CONFLUO_PROJECT")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    run(&["run"]);
    let out = run(&["query", "SELECT id FROM analytics.big", "--format", "csv"]);
    assert_eq!(out.trim(), "id\n2");
}

/// Two flows into one table whose array types differ: the error names the table once and
/// says where the types differ (the element), not two identical type names.
#[test]
fn a_type_mismatch_says_where_the_types_differ() {
    let p = TestProject::new();
    p.write(
        "pipelines/p.sql",
        "CREATE STREAMING TABLE t;\n\
         CREATE FLOW a AS INSERT INTO ONCE t BY NAME SELECT 1 AS id, [1, 2] AS arr;\n\
         CREATE FLOW b AS INSERT INTO ONCE t BY NAME SELECT 2 AS id, [[1], [2]] AS arr;\n",
    );
    let err = p.fail(&["run"]);
    assert!(
        err.contains("column `arr` has type ARRAY<ARRAY<BIGINT>> but the table has ARRAY<BIGINT>: element ARRAY<BIGINT> here but BIGINT in the table"),
        "{err}"
    );
    assert_eq!(err.matches("main.default.t").count(), 1, "{err}");
}
