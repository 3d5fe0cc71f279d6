//! Detection end to end: anomalies judged against a table's own history (its Delta log and
//! the metric store), schema and distribution drift between versions, the backtest, and the
//! Prometheus textfile.

use std::time::Duration;

use serde_json::Value;

use crate::common::TestProject;

fn orders(from: u64, n: u64, null_every: u64) -> String {
    let mut s = String::from("id,email,amount\n");
    for i in from..from + n {
        let email = if null_every > 0 && i % null_every == 0 {
            String::new()
        } else {
            format!("u{i}@x.com")
        };
        s.push_str(&format!("{i},{email},{}\n", i % 100));
    }
    s
}

/// `confluo monitor run --format json` with `extra` arguments.
fn run(p: &TestProject, extra: &[&str]) -> (bool, Value) {
    let mut args = vec!["monitor", "run", "--format", "json"];
    args.extend_from_slice(extra);
    crate::monitor::run_json(p, &args)
}

/// The result of check `name` in the first monitor's report.
fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    crate::monitor::result(&report[0], name)
}

#[test]
fn anomalies_in_volume_null_rate_and_freshness_are_caught_and_backtested() {
    let p = TestProject::with_config(
        r#"
monitors:
  bronze.orders:
    anomalies:
      - {metric: volume, min_history: 8}
      - {metric: null_percent, column: email, min_history: 8, min_change: 5}
      - {metric: freshness, min_history: 8, min_change: 4s, level: warn}
"#,
    );
    // Twelve ordinary loads: about a hundred rows each, one e-mail in fifty missing.
    let mut next = 0;
    for i in 0..12u64 {
        let n = 95 + (i * 7) % 11;
        p.write("data/batch.csv", orders(next, n, 50));
        p.ingest(&p.path("data/batch.csv"), "bronze.orders", &[]);
        next += n;
        let (ok, r) = run(&p, &[]);
        assert!(ok, "ordinary load {i} alerted: {r:#}");
    }
    let (_, r) = run(&p, &[]);
    assert_eq!(check(&r, "anomaly(volume)")["status"], "pass", "{r:#}");
    assert!(
        check(&r, "anomaly(null_percent(email))")["message"]
            .as_str()
            .unwrap()
            .contains("reference values"),
        "{r:#}"
    );

    // A short load with half the e-mails missing: both anomalies fail.
    p.write("data/batch.csv", orders(next, 6, 2));
    p.ingest(&p.path("data/batch.csv"), "bronze.orders", &[]);
    let (ok, r) = run(&p, &[]);
    assert!(!ok);
    let vol = check(&r, "anomaly(volume)");
    assert_eq!(vol["status"], "fail", "{r:#}");
    assert_eq!(vol["value"], 6.0);
    assert!(
        vol["message"]
            .as_str()
            .unwrap()
            .starts_with("anomaly: 6 against an expected"),
        "{vol:#}"
    );
    // The null rate of the whole table moved only a little: under the 5-point floor.
    assert_eq!(
        check(&r, "anomaly(null_percent(email))")["status"],
        "pass",
        "{r:#}"
    );

    // Nothing arrives for a while: freshness warns once the gap is far beyond the usual.
    std::thread::sleep(Duration::from_secs(8));
    let (_, r) = run(&p, &[]);
    let fresh = check(&r, "anomaly(freshness)");
    assert_eq!(fresh["status"], "warn", "{r:#}");

    // The backtest replays the stored history: the short load would have alerted.
    let out = p.ok(&["monitor", "backtest", "--format", "json"]);
    let b: Value = serde_json::from_str(&out).unwrap();
    let vol = b
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["check"] == "anomaly(volume)")
        .unwrap();
    assert_eq!(vol["values"], 13, "{vol:#}");
    assert_eq!(vol["would_alert"], 1, "{vol:#}");
    assert_eq!(vol["replayed"][0]["score"]["value"], 6.0);
    let table = p.ok(&["monitor", "backtest"]);
    assert!(
        table.contains("anomaly(volume): 13 values, 5 judged, 1 would have alerted"),
        "{table}"
    );
}

#[test]
fn schema_and_distribution_drift_are_measured_between_versions_and_exported() {
    let p = TestProject::with_config(
        r#"
monitors:
  bronze.orders:
    checks:
      - {check: schema_drift}
      - {check: drift, column: amount}
      - {check: drift, column: email, name: email_mix, fail: "> 5"}
"#,
    );
    p.write("data/a.csv", orders(0, 1000, 0));
    p.ingest(&p.path("data/a.csv"), "bronze.orders", &[]);
    let (ok, r) = run(&p, &[]);
    assert!(ok, "{r:#}");
    assert!(
        check(&r, "schema_drift")["message"]
            .as_str()
            .unwrap()
            .starts_with("first run")
    );

    // Same shape again: no drift.
    p.write("data/b.csv", orders(1000, 1000, 0));
    p.ingest(&p.path("data/b.csv"), "bronze.orders", &[]);
    let (ok, r) = run(&p, &[]);
    assert!(ok, "{r:#}");
    assert!(
        check(&r, "drift(amount)")["value"].as_f64().unwrap() < 0.05,
        "{r:#}"
    );

    // Amounts shift up and a column appears.
    let mut shifted = String::from("id,email,amount,channel\n");
    for i in 2000..4000 {
        shifted.push_str(&format!("{i},u{i}@x.com,{},web\n", 80 + i % 40));
    }
    p.write("data/c.csv", shifted);
    p.ingest(&p.path("data/c.csv"), "bronze.orders", &[]);
    let textfile = p.path("quality.prom");
    let (ok, r) = run(&p, &["--textfile", textfile.to_str().unwrap()]);
    assert!(!ok, "{r:#}");
    let d = check(&r, "drift(amount)");
    assert_eq!(d["status"], "fail", "{d:#}");
    assert!(d["message"].as_str().unwrap().contains("KS"), "{d:#}");
    let s = check(&r, "schema_drift");
    assert_eq!(s["status"], "warn");
    assert_eq!(s["message"], "since version 2: added `channel` STRING");
    let prom = std::fs::read_to_string(&textfile).unwrap();
    assert!(
        prom.contains(r#"confluo_quality_check_status{table="main.bronze.orders",check="drift(amount)",slice=""} 2"#),
        "{prom}"
    );
    assert!(
        prom.contains(r#"confluo_quality_check_status{table="main.bronze.orders",check="schema_drift",slice=""} 1"#),
        "{prom}"
    );
}

#[test]
fn pipeline_behaviour_drift_is_read_from_the_event_log() {
    let p = TestProject::with_config(
        r#"
pipelines:
  shop:
    libraries: ["pipelines/*.sql"]
    schema: shop
monitors:
  shop.shop_event_log:
    anomalies:
      - {metric: update_rows, min_history: 8, direction: down}
      - {metric: expectation_failure_rate, min_history: 8, min_change: 10}
"#,
    );
    p.write(
        "pipelines/shop.sql",
        "CREATE OR REFRESH STREAMING TABLE orders (CONSTRAINT has_email EXPECT (email IS NOT NULL))
         AS SELECT * FROM STREAM read_files('data/*.csv', format => 'csv');",
    );
    let mut next = 0;
    for i in 0..10u64 {
        let n = 95 + (i * 7) % 11;
        p.write(&format!("data/{i:02}.csv"), orders(next, n, 50));
        next += n;
        p.ok(&["run"]);
    }
    let (ok, r) = run(&p, &[]);
    assert!(ok, "{r:#}");
    // An update that reads a short file, most of it without e-mails.
    p.write("data/99.csv", orders(next, 5, 1));
    p.ok(&["run"]);
    let (ok, r) = run(&p, &[]);
    assert!(!ok, "{r:#}");
    let rows = check(&r, "anomaly(update_rows)");
    assert_eq!(rows["status"], "fail", "{r:#}");
    assert_eq!(rows["value"], 5.0);
    let rate = check(&r, "anomaly(expectation_failure_rate)");
    assert_eq!(rate["status"], "fail", "{r:#}");
    assert_eq!(rate["value"], 100.0);
    // A table that is not an event log is refused with the reason.
    let p = TestProject::with_config(
        "monitors:\n  bronze.orders:\n    anomalies: [{metric: update_rows}]\n",
    );
    p.write("data/a.csv", orders(0, 10, 0));
    p.ingest(&p.path("data/a.csv"), "bronze.orders", &[]);
    let (_, r) = run(&p, &[]);
    assert!(
        check(&r, "anomaly(update_rows)")["message"]
            .as_str()
            .unwrap()
            .contains("is not a pipeline's event log"),
        "{r:#}"
    );
}
