//! The customer-360 example through `confluo demo` and `confluo run`: the generator's known
//! truth comes out of the pipeline, new files are the only thing an update reads, a no-op
//! update writes nothing, a full refresh gives the same tables, and SIGKILL at any moment
//! followed by a re-run gives the same tables as one clean run.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{bin, command_in, parse_csv, succeeded};

fn ok(dir: &Path, args: &[&str]) -> String {
    succeeded(args, command_in(dir, args).output().unwrap())
}

fn demo(dir: &Path, scale: &str, quarters: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--scale",
        scale,
        "--quarters",
        quarters,
    ];
    args.extend_from_slice(extra);
    succeeded(&args, Command::new(bin()).args(&args).output().unwrap())
}

fn scalar(dir: &Path, sql: &str) -> u64 {
    let out = ok(dir, &["query", sql, "--format", "csv"]);
    parse_csv(&out)[1][0].parse().unwrap()
}

fn truth(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("data/generator.json")).unwrap())
        .unwrap()
}

/// Every pipeline table's rows, sorted, by table name (the event log left out).
fn snapshot(dir: &Path) -> Vec<(String, Vec<String>)> {
    let tables = parse_csv(&ok(
        dir,
        &["query", "SHOW TABLES IN customer_360", "--format", "csv"],
    ));
    let mut out = Vec::new();
    for row in tables.iter().skip(1) {
        // catalog, schema, table, owner, comment
        let name = row[2].clone();
        if name.ends_with("_event_log") {
            continue;
        }
        let csv = ok(
            dir,
            &[
                "query",
                &format!("SELECT * FROM customer_360.{name}"),
                "--format",
                "csv",
            ],
        );
        // Rescued values name their file: compare them relative to the project.
        let prefix = dir.to_str().unwrap();
        let mut lines: Vec<String> = csv.lines().map(|l| l.replace(prefix, "")).collect();
        lines.sort();
        out.push((name, lines));
    }
    out.sort();
    out
}

fn check_truth(dir: &Path) {
    let t = truth(dir);
    let n = |k: &str| t[k].as_u64().unwrap();
    assert_eq!(scalar(dir, "SELECT count(*) FROM customers"), n("accounts"));
    assert_eq!(
        scalar(dir, "SELECT count(*) FROM opportunities"),
        n("opportunities")
    );
    assert_eq!(
        scalar(dir, "SELECT count(*) FROM engagement"),
        n("engagement_events")
    );
    assert_eq!(
        scalar(
            dir,
            "SELECT count(*) FROM engagement WHERE customer_id IS NOT NULL"
        ),
        n("engagement_events_of_customers")
    );
    assert_eq!(scalar(dir, "SELECT count(*) FROM tickets"), n("tickets"));
    assert_eq!(
        scalar(
            dir,
            "SELECT count(*) FROM tickets WHERE customer_id IS NOT NULL"
        ),
        n("tickets_of_customers")
    );
    // Every raw row is in bronze (broken ones in _rescued_data), none lost.
    let bronze = scalar(
        dir,
        "SELECT (SELECT count(*) FROM crm_accounts_raw) + (SELECT count(*) FROM crm_opportunities_raw)
              + (SELECT count(*) FROM marketing_events_raw) + (SELECT count(*) FROM support_tickets_raw)",
    );
    assert_eq!(bronze, n("raw_rows"));
}

#[test]
fn demo_answers_match_the_generator_and_updates_are_incremental() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c360");
    let out = demo(&dir, "0.05", "7", &[]);
    for heading in [
        "Which campaigns influence opportunities?",
        "Do customers with frequent support tickets renew less?",
        "Which segments respond to which product features?",
    ] {
        assert!(out.contains(heading), "{heading} missing from:\n{out}");
    }
    check_truth(&dir);
    // The monitors on the gold tables ran and passed.
    assert!(out.contains("== Data quality"), "{out}");
    assert!(
        out.contains("thin_ticket_quarters") && !out.contains("FAIL"),
        "{out}"
    );

    // The planted signals come out: many tickets, fewer renewals; a campaign that works.
    let rates = parse_csv(&ok(
        &dir,
        &[
            "query",
            "SELECT bucket_floor, renewal_rate FROM renewals_by_support_load WHERE renewals >= 20 ORDER BY bucket_floor",
            "--format",
            "csv",
        ],
    ));
    let first: f64 = rates[1][1].parse().unwrap();
    let last: f64 = rates.last().unwrap()[1].parse().unwrap();
    assert!(first > last + 0.1, "renewal rates: {rates:?}");

    // One more quarter: only its four files are read.
    demo(&dir, "0.05", "8", &["--generate-only"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&dir, &["run", "--json"])).unwrap();
    let files: u64 = report["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["dataset"].as_str().unwrap().ends_with("_raw"))
        .map(|d| d["files_read"].as_u64().unwrap())
        .sum();
    assert_eq!(files, 4, "{report:#}");
    check_truth(&dir);

    // Nothing new: every dataset is up to date, no Delta version written.
    let report: serde_json::Value = serde_json::from_str(&ok(&dir, &["run", "--json"])).unwrap();
    for d in report["datasets"].as_array().unwrap() {
        assert_eq!(d["status"], "up to date", "{d:#}");
    }

    // A full refresh rebuilds the same tables.
    let before = snapshot(&dir);
    ok(&dir, &["run", "--full-refresh"]);
    assert_eq!(before, snapshot(&dir));
}

#[test]
fn sigkill_during_run_then_rerun_equals_one_clean_run() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    demo(&clean, "0.03", "8", &["--generate-only"]);
    let started = std::time::Instant::now();
    ok(&clean, &["run"]);
    let clean_run = started.elapsed();
    let expected = snapshot(&clean);

    // Each kill hits a fresh copy at a different moment of a whole run (bronze, silver, gold
    // and the commits between); the re-run must give exactly the clean tables.
    let mut kills = 0;
    // Early moments too: under a loaded machine the clean run may have been slower than the
    // killed ones, and a kill that comes after the end does not count.
    for (n, frac) in [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9].into_iter().enumerate() {
        let killed = tmp.path().join(format!("killed{n}"));
        demo(&killed, "0.03", "8", &["--generate-only"]);
        let mut child = command_in(&killed, &["run"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(clean_run.mul_f64(frac));
        match child.try_wait().unwrap() {
            Some(status) => assert!(status.success(), "run at {frac} failed on its own"),
            None => {
                // SAFETY: plain kill(2) on our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                let _ = child.wait();
                kills += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
        ok(&killed, &["run"]);
        assert_eq!(expected, snapshot(&killed), "killed at {frac} of a run");
    }
    assert!(kills >= 3, "only {kills} kills landed");
}

#[test]
fn demo_monitor_catches_a_quarter_of_missing_tickets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("c360");
    let args = [
        "demo",
        "--dir",
        dir.to_str().unwrap(),
        "--scale",
        "0.03",
        "--fault",
        "missing-tickets",
    ];
    let out = Command::new(bin()).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "the failing monitor fails the demo:\n{stdout}"
    );
    assert!(stdout.contains("fault injected"), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("thin_ticket_quarters"))
        .unwrap_or_else(|| panic!("no thin_ticket_quarters in:\n{stdout}"));
    assert!(line.contains("FAIL"), "{line}\n{stdout}");
    // Its state is kept for `monitor status`, and the other checks pass.
    let status = ok(&dir, &["monitor", "status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    let failed: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] != "pass")
        .map(|s| s["check"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["thin_ticket_quarters"], "{status:#}");
}
