//! `for_each` tasks: the inner task once per input (a list or a query's rows), a few at a
//! time, each iteration with its own attempts and retries; a repair runs them again.

use crate::common::TestProject;
use crate::jobs::{json, lines, states};

#[test]
fn a_for_each_task_runs_once_per_input_and_is_repaired() {
    let p = TestProject::with_config(
        r#"
jobs:
  regions:
    tasks:
      - key: each
        for_each:
          sql: "SELECT region FROM (VALUES ('eu'), ('us'), ('apac')) AS t(region) ORDER BY region"
          concurrency: 2
          task:
            shell: "echo {{input}} >> regions.txt; test {{input}} != us || test -f us_ok"
            retries: 1
            retry_backoff: 100ms
      - key: after
        depends_on: [each]
        shell: "echo after >> regions.txt"
  fixed:
    parameters: {p: "b"}
    tasks:
      - key: each
        for_each: {inputs: ["a", "{{job.parameters.p}}"], task: {shell: "echo {{input}} >> fixed.txt"}}
  outside:
    tasks: [{key: a, shell: "echo {{input}}"}]
"#,
    );
    p.fail(&["jobs", "run", "regions"]);
    let runs = json(&p.ok(&["jobs", "runs", "regions", "--format", "json"]));
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["state"], "failed");
    assert!(
        runs[0]["message"]
            .as_str()
            .unwrap()
            .contains("1 of 3 iterations failed: each[2] (us)"),
        "{runs}"
    );
    let st = states(&p, &run);
    for (task, attempts) in [("each[0]", 1), ("each[1]", 1), ("each[2]", 2)] {
        assert!(
            st.contains(&(
                task.into(),
                attempts,
                if task == "each[2]" {
                    "failed"
                } else {
                    "succeeded"
                }
                .into()
            )),
            "{st:?}"
        );
    }
    assert!(
        st.contains(&("after".into(), 0, "skipped".into())),
        "{st:?}"
    );
    let mut seen = lines(&p, "regions.txt");
    seen.sort();
    assert_eq!(seen, vec!["apac", "eu", "us", "us"]);

    // Fixed: the repair runs the for-each again (new attempts) and what follows it.
    p.write("us_ok", "");
    let out = p.ok(&["jobs", "repair", &run]);
    assert!(out.contains("regions succeeded"), "{out}");
    let st = states(&p, &run);
    assert!(
        st.contains(&("each[2]".into(), 3, "succeeded".into())),
        "{st:?}"
    );
    assert!(
        st.contains(&("each".into(), 2, "succeeded".into())),
        "{st:?}"
    );
    assert!(
        st.contains(&("after".into(), 1, "succeeded".into())),
        "{st:?}"
    );

    p.ok(&["jobs", "run", "fixed"]);
    let mut fixed = lines(&p, "fixed.txt");
    fixed.sort();
    assert_eq!(fixed, vec!["a", "b"]);
    let e = p.fail(&["jobs", "run", "outside"]);
    assert!(e.contains("only a for_each task's inner task has"), "{e}");
}

#[test]
fn a_pipeline_task_updates_only_its_selection() {
    let p = TestProject::with_config(
        r#"
pipelines:
  shop:
    libraries: ["pipelines/*.sql"]
    schema: shop
jobs:
  only_big:
    tasks:
      - key: load
        ingest: {path: data/orders.csv, into: bronze.orders}
      - key: refresh
        pipeline: shop
        refresh: [big_orders]
        depends_on: [load]
  wrong:
    tasks: [{key: a, shell: "true", refresh: [big_orders]}]
"#,
    );
    p.write("data/orders.csv", "id,amount\n1,5\n2,20\n3,30\n");
    p.write(
        "pipelines/shop.sql",
        "CREATE OR REFRESH MATERIALIZED VIEW big_orders AS SELECT * FROM bronze.orders WHERE amount > 10;\n\
         CREATE OR REFRESH MATERIALIZED VIEW small_orders AS SELECT * FROM bronze.orders WHERE amount <= 10;\n",
    );
    p.ok(&["jobs", "run", "only_big"]);
    assert_eq!(p.scalar("SELECT count(*) FROM shop.big_orders"), "2");
    let tables: Vec<String> = p
        .rows("SHOW TABLES IN shop")
        .into_iter()
        .flatten()
        .collect();
    assert!(!tables.iter().any(|t| t == "small_orders"), "{tables:?}");
    let e = p.fail(&["jobs", "run", "wrong"]);
    assert!(e.contains("are for `pipeline` tasks"), "{e}");
}
