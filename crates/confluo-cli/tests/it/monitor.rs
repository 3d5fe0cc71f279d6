//! Data quality monitors end to end: checks on real Delta tables, failing rows kept in a
//! Delta table, the history in `system.quality.*`, alerts to a real HTTP receiver and a
//! real SMTP server, once per change of status.

use std::time::Duration;

use serde_json::Value;

use crate::common::{SmtpServer, TestProject, receiver};

const CUSTOMERS: &str = "id,name\n1,Ann\n2,Bob\n3,Cy\n";

/// Ten orders with planted problems: two missing e-mails, order 4 twice, one unknown
/// status, one negative amount, one unknown customer (9).
const BAD_ORDERS: &str = "\
id,customer_id,email,status,amount,region
1,1,a@x.com,open,10.5,EU
2,2,,shipped,20,EU
3,3,c@x.com,open,5,US
4,1,d@x.com,shipped,7,US
4,1,d@x.com,shipped,7,US
5,2,,open,3,EU
6,3,f@x.com,lost,8,US
7,1,g@x.com,open,-2,EU
8,9,h@x.com,open,4,US
9,2,i@x.com,shipped,6,EU
";

const GOOD_ORDERS: &str = "\
id,customer_id,email,status,amount,region
1,1,a@x.com,open,10.5,EU
2,2,b@x.com,shipped,20,EU
3,3,c@x.com,open,5,US
4,1,d@x.com,shipped,7,US
5,2,e@x.com,open,3,EU
";

fn monitors(hook: u16, extra: &str) -> String {
    format!(
        r#"
monitors:
  bronze.orders:
    key: [id]
    checks:
      - {{check: row_count, fail: "< 5"}}
      - {{check: null_percent, column: email, warn: "> 5", fail: "> 50"}}
      - {{check: duplicate_count, column: id}}
      - {{check: accepted_values, column: status, values: [open, shipped]}}
      - {{check: sql, name: positive_amount, condition: "amount >= 0"}}
      - {{check: references, column: customer_id, table: bronze.customers, to: id}}
      - {{check: freshness, fail: "> 1h"}}
      - {{check: row_count, name: rows_per_region, group_by: [region], fail: "< 1"}}
      - {{check: schema, required: [id, email], types: {{id: bigint}}}}
      - check: metric
        name: unknown_customers
        query: "SELECT count(*) FROM bronze.orders o WHERE NOT EXISTS (SELECT 1 FROM bronze.customers c WHERE c.id = o.customer_id)"
        warn: "> 0"
    alerts:
      - {{webhook: "http://127.0.0.1:{hook}/hook", secret: "s3cret", on: warn}}
{extra}"#
    )
}

pub(crate) fn run_json(p: &TestProject, args: &[&str]) -> (bool, Value) {
    let out = p.run(args);
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}):\n{text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

pub(crate) fn result<'a>(report: &'a Value, check: &str) -> &'a Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["check"] == check)
        .unwrap_or_else(|| panic!("no result for {check}: {report:#}"))
}

fn wait_for_alerts(got: &crate::common::Received, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let have: Vec<Value> = got
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_str(b).unwrap())
            .collect();
        if have.len() >= n || std::time::Instant::now() > deadline {
            return have;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn checks_find_planted_problems_keep_failing_rows_and_alert_once_per_change() {
    let (hook, got) = receiver(false);
    let p = TestProject::with_config(&monitors(hook, ""));
    p.write("data/customers.csv", CUSTOMERS);
    p.write("data/orders.csv", BAD_ORDERS);
    p.ingest(&p.path("data/customers.csv"), "bronze.customers", &[]);
    p.ingest(&p.path("data/orders.csv"), "bronze.orders", &[]);

    let (ok, reports) = run_json(&p, &["monitor", "run", "--format", "json"]);
    assert!(!ok, "a failing check fails the run: {reports:#}");
    let r = &reports[0];
    assert_eq!(r["table"], "main.bronze.orders");
    let status = |c: &str| result(r, c)["status"].as_str().unwrap().to_string();
    let value = |c: &str| result(r, c)["value"].as_f64().unwrap();
    assert_eq!(status("row_count"), "pass");
    assert_eq!(value("row_count"), 10.0);
    assert_eq!(status("null_percent(email)"), "warn");
    assert_eq!(value("null_percent(email)"), 20.0);
    assert_eq!(result(r, "null_percent(email)")["bad_rows"], 2);
    assert_eq!(status("duplicate_count(id)"), "fail");
    assert_eq!(value("duplicate_count(id)"), 1.0);
    assert_eq!(status("accepted_values(status)"), "fail");
    assert_eq!(value("accepted_values(status)"), 1.0);
    assert_eq!(status("positive_amount"), "fail");
    assert_eq!(status("references(customer_id)"), "fail");
    assert_eq!(value("references(customer_id)"), 1.0);
    assert_eq!(status("freshness"), "pass");
    assert_eq!(status("schema"), "pass", "{:#}", result(r, "schema"));
    assert_eq!(status("unknown_customers"), "warn");
    assert_eq!(value("unknown_customers"), 1.0);
    let slices: Vec<(String, f64)> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["check"] == "rows_per_region")
        .map(|x| {
            (
                x["slice"].as_str().unwrap().to_string(),
                x["value"].as_f64().unwrap(),
            )
        })
        .collect();
    let mut slices = slices;
    slices.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        slices,
        [
            ("region=EU".to_string(), 5.0),
            ("region=US".to_string(), 5.0)
        ]
    );

    // Every failing row is kept, typed, with the run and the check.
    let run1 = r["run_id"].as_str().unwrap().to_string();
    let kept = p.rows(
        "SELECT _check, count(*), min(id), max(id) FROM bronze.orders_failures GROUP BY _check ORDER BY _check",
    );
    assert_eq!(
        kept,
        [
            ["accepted_values(status)", "1", "6", "6"],
            ["duplicate_count(id)", "2", "4", "4"],
            ["null_percent(email)", "2", "2", "5"],
            ["positive_amount", "1", "7", "7"],
            ["references(customer_id)", "1", "8", "8"],
        ]
    );
    assert_eq!(r["failing_rows_kept"], 7, "{r:#}");
    assert_eq!(
        p.scalar(&format!(
            "SELECT count(*) FROM bronze.orders_failures WHERE _run_id = '{run1}' AND _table_version = 1 AND amount = -2"
        )),
        "1"
    );

    // One alert per check that did not pass (four failures, two warnings), signed.
    let alerts = wait_for_alerts(&got, 6);
    assert_eq!(alerts.len(), 6, "{alerts:#?}");
    assert!(
        alerts
            .iter()
            .all(|a| a["event"] == "quality.alert" && a["transition"] == "opened")
    );
    let headers = got.lock().unwrap()[0].0.clone();
    assert!(
        headers["x-confluo-signature"].starts_with("sha256="),
        "{headers:?}"
    );
    assert_eq!(headers["x-confluo-event"], "quality.alert");
    let dup = alerts
        .iter()
        .find(|a| a["check"] == "duplicate_count(id)")
        .unwrap();
    assert_eq!(dup["status"], "fail");
    assert_eq!(dup["failures_table"], "main.bronze.orders_failures");

    // Unchanged: the history grows, the alerts do not repeat.
    let (ok, _) = run_json(&p, &["monitor", "run", "--format", "json"]);
    assert!(!ok);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        got.lock().unwrap().len(),
        6,
        "no second alert while nothing changed"
    );
    assert_eq!(
        p.scalar("SELECT count(DISTINCT run_id) FROM system.quality.check_results WHERE table_name = 'main.bronze.orders'"),
        "2"
    );
    assert_eq!(
        p.scalar(
            "SELECT count(*) FROM system.quality.metrics WHERE metric = 'row_count' AND value = 10"
        ),
        "2"
    );

    // Fixed: every open alert is resolved, the run passes, the status says since when.
    p.write("data/orders.csv", GOOD_ORDERS);
    p.ingest(
        &p.path("data/orders.csv"),
        "bronze.orders",
        &["--mode", "overwrite"],
    );
    let (ok, reports) = run_json(&p, &["monitor", "run", "--format", "json"]);
    assert!(ok, "{reports:#}");
    let alerts = wait_for_alerts(&got, 12);
    let resolved: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["transition"] == "resolved")
        .collect();
    assert_eq!(resolved.len(), 6, "{alerts:#?}");
    assert!(
        resolved
            .iter()
            .all(|a| a["event"] == "quality.resolved" && a["status"] == "pass")
    );
    let (_, status) = run_json(&p, &["monitor", "status", "--format", "json"]);
    let rows = status.as_array().unwrap();
    assert!(
        rows.iter()
            .all(|s| s["status"] == "pass" && s["alert_open"].is_null()),
        "{status:#}"
    );
    assert_eq!(
        rows.iter().filter(|s| s["table_version"] == 2).count(),
        rows.len()
    );
    let table = p.ok(&["monitor", "status"]);
    assert!(
        table.contains("duplicate_count(id)") && table.contains("PASS"),
        "{table}"
    );
}

#[test]
fn failing_rows_expire_after_their_retention() {
    let (hook, _got) = receiver(false);
    let p = TestProject::with_config(&monitors(hook, "    failures_retention: 2s\n"));
    p.write("data/customers.csv", CUSTOMERS);
    p.write("data/orders.csv", BAD_ORDERS);
    p.ingest(&p.path("data/customers.csv"), "bronze.customers", &[]);
    p.ingest(&p.path("data/orders.csv"), "bronze.orders", &[]);
    let (_, r) = run_json(&p, &["monitor", "run", "--format", "json"]);
    assert_eq!(r[0]["failing_rows_kept"], 7);
    std::thread::sleep(Duration::from_millis(2500));
    p.write("data/orders.csv", GOOD_ORDERS);
    p.ingest(
        &p.path("data/orders.csv"),
        "bronze.orders",
        &["--mode", "overwrite"],
    );
    let (ok, r) = run_json(&p, &["monitor", "run", "--format", "json"]);
    assert!(ok, "{r:#}");
    assert_eq!(r[0]["failing_rows_expired"], 7, "{r:#}");
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.orders_failures"), "0");
}

#[test]
fn slack_and_email_alerts_reach_real_receivers() {
    let (slack, got) = receiver(false);
    let smtp = SmtpServer::start();
    let p = TestProject::with_config(&format!(
        r#"
smtp: {{host: 127.0.0.1, port: {}, security: none, from: confluo@example.com}}
monitors:
  shop.orders:
    checks:
      - {{check: null_count, column: email, warn: "> 0", fail: "> 3"}}
    alerts:
      - {{slack: "http://127.0.0.1:{slack}/services/T/B/X", on: warn}}
      - {{email: [oncall@example.com]}}
"#,
        smtp.port
    ));
    p.write("data/orders.csv", BAD_ORDERS);
    p.ingest(&p.path("data/orders.csv"), "shop.orders", &[]);
    // Two nulls: a warning, which the Slack route hears and the e-mail route (failures
    // only) does not.
    assert!(p.run(&["monitor", "run"]).status.success());
    let msgs = wait_for_alerts(&got, 1);
    assert_eq!(msgs.len(), 1);
    let text = msgs[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            ":warning: main.shop.orders null_count(email): warn — 2 of 10 rows bad (2)"
        ),
        "{text}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(smtp.messages().is_empty());
    // Five more nulls: the warning turns into a failure; both routes hear it.
    p.write(
        "data/more.csv",
        "id,customer_id,email,status,amount,region\n20,1,,open,1,EU\n21,1,,open,1,EU\n",
    );
    p.ingest(&p.path("data/more.csv"), "shop.orders", &[]);
    let out = p.run(&["monitor", "run"]);
    assert!(!out.status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while smtp.messages().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let mail = smtp.messages().join("\n");
    assert!(mail.contains("oncall@example.com"), "{mail}");
    assert!(mail.contains("null_count(email): fail"), "{mail}");
    assert!(mail.contains("shop.orders_failures"), "{mail}");
    let msgs = wait_for_alerts(&got, 2);
    assert!(
        msgs[1]["text"]
            .as_str()
            .unwrap()
            .starts_with(":red_circle:"),
        "{msgs:?}"
    );
}

#[test]
fn bad_monitors_and_unreachable_alerts_say_where_and_what() {
    // A typo in a check kind: the file, the monitor and the check are named.
    let p = TestProject::with_config(
        "monitors:\n  bronze.orders:\n    checks:\n      - {check: nul_percent, column: email}\n",
    );
    let err = p.fail(&["monitor", "run"]);
    assert!(
        err.contains("monitors.bronze.orders.checks[0]: unknown check `nul_percent` (did you mean `null_percent`?)"),
        "{err}"
    );
    // An unknown key is refused with its line.
    let p = TestProject::with_config(
        "monitors:\n  bronze.orders:\n    checks:\n      - {check: row_count, colum: email}\n",
    );
    let err = p.fail(&["monitor", "run"]);
    assert!(
        err.contains("unknown field `colum`") && err.contains("confluo.yaml:"),
        "{err}"
    );

    // A missing column and a missing table end as `error`, the other checks still run, and
    // an alert that cannot be delivered is reported and retried by the next run.
    let dead = crate::common::free_port();
    let p = TestProject::with_config(&format!(
        r#"
monitors:
  bronze.orders:
    checks:
      - {{check: null_percent, column: emial}}
      - {{check: row_count}}
      - {{check: sql, name: bad_sql, condition: "amount >>> 0"}}
    alerts: [{{webhook: "http://127.0.0.1:{dead}/hook"}}]
  bronze.nothing:
    checks: [{{check: row_count}}]
"#
    ));
    p.write("data/orders.csv", BAD_ORDERS);
    p.ingest(&p.path("data/orders.csv"), "bronze.orders", &[]);
    let out = p
        .command(&["monitor", "run", "--format", "json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    let orders = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == "main.bronze.orders")
        .unwrap();
    let e = result(orders, "null_percent(emial)");
    assert_eq!(e["status"], "error");
    assert_eq!(
        e["message"],
        "column `emial` does not exist (did you mean `email`?)"
    );
    assert_eq!(result(orders, "row_count")["status"], "pass");
    assert_eq!(result(orders, "bad_sql")["status"], "error");
    assert!(
        orders["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["error"].as_str().unwrap().contains("cannot reach")),
        "{orders:#}"
    );
    let nothing = reports
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["table"] == "bronze.nothing")
        .unwrap();
    let e = result(nothing, "row_count");
    assert_eq!(e["status"], "error");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("cannot read bronze.nothing")
            && e["message"].as_str().unwrap().contains("bronze.orders"),
        "{e:#}"
    );
    // Undelivered, so still to announce: the status shows no open alert.
    let (_, status) = run_json(&p, &["monitor", "status", "--format", "json"]);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["table"] == "main.bronze.orders")
            .all(|s| s["alert_open"].is_null()),
        "{status:#}"
    );
    // Naming a table without a monitor is an error with a suggestion.
    let err = p.fail(&["monitor", "run", "bronze.order"]);
    assert!(
        err.contains("no monitor for `bronze.order`") && err.contains("did you mean bronze.orders"),
        "{err}"
    );
}

#[test]
fn profiles_describe_every_column_in_one_run_and_are_stored() {
    let p = TestProject::new();
    p.write("data/orders.csv", BAD_ORDERS);
    p.ingest(&p.path("data/orders.csv"), "bronze.orders", &[]);
    let (ok, prof) = run_json(
        &p,
        &["monitor", "profile", "bronze.orders", "--format", "json"],
    );
    assert!(ok, "{prof:#}");
    let metric = |col: Option<&str>, m: &str| -> Value {
        prof["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["metric"] == m && x["column"].as_str() == col)
            .unwrap_or_else(|| panic!("no {m} of {col:?}: {prof:#}"))
            .clone()
    };
    assert_eq!(metric(None, "row_count")["value"], 10.0);
    assert_eq!(metric(Some("email"), "null_count")["value"], 2.0);
    assert_eq!(metric(Some("email"), "null_percent")["value"], 20.0);
    assert_eq!(metric(Some("id"), "approx_distinct")["value"], 9.0);
    assert_eq!(metric(Some("amount"), "min")["value"], -2.0);
    assert_eq!(metric(Some("amount"), "max")["value"], 20.0);
    assert_eq!(metric(Some("amount"), "mean")["value"], 6.85);
    assert!(metric(Some("amount"), "p50")["value"].as_f64().is_some());
    assert_eq!(metric(Some("status"), "max_length")["value"], 7.0);
    assert_eq!(metric(Some("status"), "min")["text"], "lost");
    let top: Value = serde_json::from_str(
        metric(Some("status"), "top_values")["text"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(top[0]["value"], "open");
    assert_eq!(top[0]["count"], 5);
    assert_eq!(
        p.scalar("SELECT value FROM system.quality.metrics WHERE column_name = 'email' AND metric = 'null_count'"),
        "2.0"
    );
    let shown = p.ok(&["monitor", "profile", "bronze.orders"]);
    assert!(
        shown.contains("main.bronze.orders version 1: 10 rows"),
        "{shown}"
    );
}

#[test]
fn a_job_task_runs_monitors_and_fails_when_a_check_fails() {
    let p = TestProject::with_config(
        r#"
monitors:
  bronze.orders:
    checks: [{check: duplicate_count, column: id}]
jobs:
  nightly:
    tasks:
      - {key: quality, monitor: [bronze.orders]}
      - {key: publish, shell: "touch published", depends_on: [quality]}
  typo:
    tasks: [{key: q, monitor: [bronze.order]}]
"#,
    );
    p.write("data/orders.csv", BAD_ORDERS);
    p.ingest(&p.path("data/orders.csv"), "bronze.orders", &[]);
    let out = p.run(&["jobs", "run", "nightly", "--format", "json"]);
    assert!(!out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let state = |t: &str| {
        report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["task"] == t)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state("quality"), "failed", "{report:#}");
    assert_ne!(state("publish"), "succeeded");
    assert!(!p.path("published").exists());
    let err = p.fail(&["jobs", "run", "typo"]);
    assert!(err.contains("runs the monitor of `bronze.order`"), "{err}");
}

#[test]
fn compare_checks_a_lakehouse_count_against_a_postgresql_source() {
    let db = crate::pg::PgDb::new();
    db.exec(
        "CREATE TABLE accounts (id int PRIMARY KEY); INSERT INTO accounts SELECT generate_series(1, 3);",
    );
    let p = TestProject::with_config(&format!(
        r#"{}  down:
    type: postgres
    host: 127.0.0.1
    port: {}
    database: nowhere
    user: postgres
    connect_timeout: 2s
monitors:
  bronze.customers:
    checks:
      - check: compare
        name: crm_agrees
        query: "SELECT count(*) FROM bronze.customers"
        source: {{connection: pg, query: "SELECT count(*) FROM accounts"}}
      - check: compare
        name: crm_down
        query: "SELECT count(*) FROM bronze.customers"
        source: {{connection: down, query: "SELECT 1"}}
"#,
        db.connection(""),
        crate::common::free_port()
    ));
    p.write("data/customers.csv", CUSTOMERS);
    p.ingest(&p.path("data/customers.csv"), "bronze.customers", &[]);
    let out = p
        .command(&["monitor", "run", "--format", "json"])
        .env("CONFLUO_T_PGPASS", "unused")
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let agrees = result(&r[0], "crm_agrees");
    assert_eq!(agrees["status"], "pass", "{r:#}");
    assert_eq!(agrees["value"], 0.0);
    assert_eq!(
        agrees["message"],
        "lakehouse 3 against 3 in `pg` (difference 0)"
    );
    // The source cannot be reached: the error names the connection and where it points.
    let down = result(&r[0], "crm_down");
    assert_eq!(down["status"], "error");
    let msg = down["message"].as_str().unwrap();
    assert!(msg.contains("down") && msg.contains("127.0.0.1"), "{msg}");
    // The CRM gains an account the lakehouse has not seen: the check fails by one.
    db.exec("INSERT INTO accounts VALUES (4)");
    let out = p
        .command(&["monitor", "run", "--format", "json"])
        .env("CONFLUO_T_PGPASS", "unused")
        .output()
        .unwrap();
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let agrees = result(&r[0], "crm_agrees");
    assert_eq!(agrees["status"], "fail", "{r:#}");
    assert_eq!(agrees["value"], -1.0);
}

#[test]
fn failing_rows_checks_read_a_sql_file_and_keep_its_rows_with_their_own_columns() {
    let p = TestProject::with_config(
        r#"
monitors:
  bronze.orders:
    checks:
      - {check: failing_rows, name: big_eu_orders, file: checks/big_eu_orders.sql}
      - {check: failing_rows, name: missing_file, file: checks/nope.sql}
"#,
    );
    p.write(
        "checks/big_eu_orders.sql",
        "-- EU orders above 15 need a second look\nSELECT id, amount, 'too big' AS reason FROM bronze.orders WHERE region = 'EU' AND amount > 15;\n",
    );
    let err = p.fail(&["monitor", "run"]);
    assert!(
        err.contains("monitors.bronze.orders.checks[1] (failing_rows): cannot read")
            && err.contains("nope.sql"),
        "{err}"
    );
    let p2 = TestProject::with_config(
        "monitors:\n  bronze.orders:\n    checks:\n      - {check: failing_rows, name: big_eu_orders, file: checks/big_eu_orders.sql}\n",
    );
    p2.write(
        "checks/big_eu_orders.sql",
        std::fs::read_to_string(p.path("checks/big_eu_orders.sql")).unwrap(),
    );
    p2.write("data/orders.csv", BAD_ORDERS);
    p2.ingest(&p2.path("data/orders.csv"), "bronze.orders", &[]);
    let (ok, r) = run_json(&p2, &["monitor", "run", "--format", "json"]);
    assert!(!ok);
    let c = result(&r[0], "big_eu_orders");
    assert_eq!(c["status"], "fail", "{r:#}");
    assert_eq!(c["value"], 1.0);
    assert_eq!(
        p2.rows("SELECT _check, id, reason FROM bronze.orders_failures"),
        [["big_eu_orders", "2", "too big"]]
    );
}

#[test]
fn a_pipeline_with_monitors_runs_them_after_each_update() {
    let p = TestProject::with_config(
        r#"
pipelines:
  shop:
    libraries: ["pipelines/*.sql"]
    schema: shop
    monitors: true
monitors:
  shop.orders:
    checks: [{check: duplicate_count, column: id}]
  shop.elsewhere:
    checks: [{check: row_count}]
"#,
    );
    p.write(
        "pipelines/shop.sql",
        "CREATE OR REFRESH STREAMING TABLE orders AS SELECT * FROM STREAM read_files('data/*.csv', format => 'csv');",
    );
    p.write("data/a.csv", GOOD_ORDERS);
    let out: Value = serde_json::from_str(&p.ok(&["run", "--json"])).unwrap();
    let q = out["quality"].as_array().unwrap();
    assert_eq!(
        q.len(),
        1,
        "only the monitors of tables the update wrote: {out:#}"
    );
    assert_eq!(q[0]["table"], "main.shop.orders");
    assert_eq!(q[0]["results"][0]["status"], "pass");
    // A file repeating order 4: the update succeeds, its monitor fails the run.
    p.write(
        "data/b.csv",
        "id,customer_id,email,status,amount,region\n4,1,d@x.com,shipped,7,US\n",
    );
    let run = p.run(&["run"]);
    assert!(!run.status.success());
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        text.contains("duplicate_count(id)") && text.contains("FAIL"),
        "{text}"
    );
}
