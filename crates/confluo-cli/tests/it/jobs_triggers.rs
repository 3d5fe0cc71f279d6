//! Jobs started by what happens rather than by the clock: files arriving in a folder, a
//! table's new versions, another job's end, continuously; runs waiting their turn under
//! `max_concurrent_runs`; and the run history as SQL tables.

use std::time::Duration;

use crate::common::TestProject;
use crate::jobs::{json, lines, serve, stop, wait_for};

fn runs(p: &TestProject, job: &str) -> Vec<serde_json::Value> {
    json(&p.ok(&["jobs", "runs", job, "--limit", "1000", "--format", "json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn ended(p: &TestProject, job: &str) -> Vec<serde_json::Value> {
    runs(p, job)
        .into_iter()
        .filter(|r| r["ended_ms"].is_i64())
        .collect()
}

#[test]
fn new_files_start_one_run_each_batch_and_pass_their_names() {
    let p = TestProject::with_config(
        r#"
jobs:
  on_files:
    trigger:
      file_arrival: {path: landing, wait_after_last_change: 0s}
    tasks:
      - key: load
        shell: "echo '{{job.trigger.type}} {{job.trigger.file_count}} {{job.trigger.files}}' >> seen.txt"
"#,
    );
    p.write("landing/old.csv", "a\n1\n");
    let s = serve(&p, &[]);
    // The trigger is first served with old.csv there: it is not new.
    std::thread::sleep(Duration::from_millis(2000));
    p.write("landing/a.csv", "a\n1\n");
    p.write("landing/sub/b.csv", "a\n2\n");
    p.write("landing/_tmp.csv", "being written");
    wait_for("a run for the new files", Duration::from_secs(20), || {
        !lines(&p, "seen.txt").is_empty()
    });
    wait_for("the run to end", Duration::from_secs(20), || {
        ended(&p, "on_files").len() == 1
    });
    p.write("landing/c.csv", "a\n3\n");
    wait_for("a second run", Duration::from_secs(20), || {
        lines(&p, "seen.txt").len() == 2
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert!(stop(s, libc::SIGTERM).success());
    assert_eq!(
        lines(&p, "seen.txt"),
        vec!["file_arrival 2 a.csv,sub/b.csv", "file_arrival 1 c.csv"]
    );
    let all = runs(&p, "on_files");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all.iter()
            .all(|r| r["trigger"] == "file_arrival" && r["state"] == "succeeded")
    );
    // A manual run of the same job gets empty trigger values rather than an error.
    p.ok(&["jobs", "run", "on_files"]);
    assert_eq!(lines(&p, "seen.txt")[2].trim(), "manual");
}

#[test]
fn a_table_update_starts_a_run_with_the_new_version_range() {
    let p = TestProject::with_config(
        r#"
jobs:
  on_orders:
    trigger:
      table_update: {tables: [shop.orders]}
    tasks:
      - key: changes
        sql: "SELECT count(*) AS n FROM shop.orders VERSION AS OF {{job.trigger.to_version}}"
      - key: note
        shell: "echo {{job.trigger.tables}} {{job.trigger.from_version}}-{{job.trigger.to_version}} n={{tasks.changes.values.n}} >> versions.txt"
        depends_on: [changes]
"#,
    );
    p.ok(&[
        "query",
        "CREATE SCHEMA shop; CREATE TABLE shop.orders (id INT, amount DOUBLE)",
    ]);
    let s = serve(&p, &[]);
    std::thread::sleep(Duration::from_millis(1500));
    p.ok(&["query", "INSERT INTO shop.orders VALUES (1, 5.0), (2, 7.5)"]);
    wait_for("a run for version 1", Duration::from_secs(30), || {
        !lines(&p, "versions.txt").is_empty()
    });
    p.ok(&["query", "INSERT INTO shop.orders VALUES (3, 1.0)"]);
    wait_for("a run for version 2", Duration::from_secs(30), || {
        lines(&p, "versions.txt").len() == 2
    });
    std::thread::sleep(Duration::from_millis(800));
    assert!(stop(s, libc::SIGTERM).success());
    assert_eq!(
        lines(&p, "versions.txt"),
        vec!["shop.orders 1-1 n=2", "shop.orders 2-2 n=3"]
    );
}

#[test]
fn a_job_runs_after_another_and_runs_wait_their_turn() {
    let p = TestProject::with_config(
        r#"
jobs:
  upstream:
    max_concurrent_runs: 1
    tasks:
      - key: work
        shell: "echo start >> up.txt; sleep 1.5; echo end >> up.txt"
  downstream:
    trigger:
      job_completion: {job: upstream, on: [succeeded, failed]}
    tasks:
      - key: after
        shell: "echo {{job.trigger.job}} {{job.trigger.state}} {{job.trigger.run_id}} >> after.txt"
"#,
    );
    let s = serve(&p, &[]);
    std::thread::sleep(Duration::from_millis(1200));
    // Two runs asked at once: the second waits queued, they never overlap.
    let a = p
        .command(&["jobs", "run", "upstream"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Not --quiet: it says it waits.
    let b = std::process::Command::new(crate::common::bin())
        .arg("--project")
        .arg(p.dir.path())
        .args(["jobs", "run", "upstream"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();
    assert!(a.status.success() && b.status.success());
    let b_out = String::from_utf8_lossy(&b.stdout);
    assert!(
        b_out.contains("queued: 1 run of the job already running"),
        "{b_out}"
    );
    assert_eq!(lines(&p, "up.txt"), vec!["start", "end", "start", "end"]);
    wait_for("two downstream runs", Duration::from_secs(30), || {
        lines(&p, "after.txt").len() == 2
    });
    std::thread::sleep(Duration::from_millis(1000));
    assert!(stop(s, libc::SIGTERM).success());
    let ups: Vec<String> = runs(&p, "upstream")
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    let after = lines(&p, "after.txt");
    assert_eq!(after.len(), 2, "{after:?}");
    for up in &ups {
        assert!(
            after.contains(&format!("upstream succeeded {up}")),
            "{after:?} {ups:?}"
        );
    }
    // The history is a table.
    let by_state = p.rows(
        "SELECT job, trigger, state, count(*) AS n FROM system.jobs.runs GROUP BY 1, 2, 3 ORDER BY 1",
    );
    assert_eq!(
        by_state,
        vec![
            vec!["downstream", "job_completion", "succeeded", "2"],
            vec!["upstream", "manual", "succeeded", "2"],
        ]
    );
    let attempts = p.scalar(
        "SELECT count(*) FROM system.jobs.task_runs t JOIN system.jobs.runs r USING (run_id) WHERE r.job = 'upstream' AND t.state = 'succeeded'",
    );
    assert_eq!(attempts, "2");
}

#[test]
fn a_continuous_job_runs_again_as_each_run_ends_until_paused() {
    let p = TestProject::with_config(
        r#"
jobs:
  loop:
    trigger: {continuous: true}
    tasks:
      - key: once
        shell: "echo {{job.run_id}} >> loop.txt"
"#,
    );
    let s = serve(&p, &[]);
    wait_for("three runs", Duration::from_secs(30), || {
        lines(&p, "loop.txt").len() >= 3
    });
    p.ok(&["jobs", "pause", "loop"]);
    std::thread::sleep(Duration::from_millis(1500));
    let paused_at = lines(&p, "loop.txt").len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(lines(&p, "loop.txt").len(), paused_at, "ran while paused");
    assert!(stop(s, libc::SIGTERM).success());
    let all = runs(&p, "loop");
    // Never two at once: each run started after the one before ended.
    let mut spans: Vec<(i64, i64)> = all
        .iter()
        .map(|r| {
            (
                r["started_ms"].as_i64().unwrap(),
                r["ended_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "overlapping runs: {spans:?}");
    }
}

#[test]
fn triggers_are_checked_with_clear_errors() {
    let p = TestProject::with_config(
        r#"
jobs:
  both:
    schedule: {cron: "@daily"}
    trigger: {continuous: true}
    tasks: [{key: a, shell: "true"}]
  none_given:
    trigger: {}
    tasks: [{key: a, shell: "true"}]
  after_itself:
    trigger: {job_completion: {job: after_itself}}
    tasks: [{key: a, shell: "true"}]
  wrong_key:
    trigger: {file_arrival: {path: in}}
    tasks: [{key: a, shell: "echo {{job.trigger.to_version}}"}]
  zero:
    max_concurrent_runs: 0
    tasks: [{key: a, shell: "true"}]
  mail:
    notifications: [{on: [failure], email: [ops@example.com]}]
    tasks: [{key: a, shell: "true"}]
  late:
    notifications: [{on: [duration], webhook: "http://127.0.0.1:1/x"}]
    tasks: [{key: a, shell: "true"}]
"#,
    );
    let err = |job: &str| p.fail(&["jobs", "run", job]);
    assert!(err("both").contains("both `schedule:` and `trigger:`"));
    assert!(err("none_given").contains("exactly one of"));
    assert!(err("after_itself").contains("its own runs"));
    let e = err("wrong_key");
    assert!(
        e.contains("{{job.trigger.to_version}}") && e.contains("{{job.trigger.files}}"),
        "{e}"
    );
    assert!(err("zero").contains("max_concurrent_runs: 0"));
    assert!(err("mail").contains("need an SMTP server"));
    assert!(err("late").contains("duration_warning"));
}

#[test]
fn jobs_created_in_the_metastore_are_served_without_a_restart() {
    let p = TestProject::with_config(
        r#"
jobs:
  in_yaml:
    tasks: [{key: a, shell: "true"}]
"#,
    );
    let s = serve(&p, &[]);
    let f = |name: &str| p.path(name).display().to_string();
    p.write(
        "ticker.yaml",
        "schedule: {cron: \"* * * * * *\", missed: none}\ntasks:\n  - {key: tick, shell: \"echo {{job.name}} >> created.txt\"}\n",
    );
    let out = p.ok(&["jobs", "create", "ticker", "--file", &f("ticker.yaml")]);
    assert!(out.contains("job ticker created"), "{out}");
    let listed = p.ok(&["jobs", "list"]);
    assert!(
        listed.contains("ticker") && listed.contains("in_yaml"),
        "{listed}"
    );
    // The running serve picks it up at its next reload.
    wait_for("the created job's ticks", Duration::from_secs(30), || {
        lines(&p, "created.txt").len() >= 2
    });
    p.ok(&["jobs", "delete", "ticker"]);
    std::thread::sleep(Duration::from_secs(7));
    let after_delete = lines(&p, "created.txt").len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        lines(&p, "created.txt").len(),
        after_delete,
        "a deleted job still ran"
    );
    assert!(stop(s, libc::SIGTERM).success());
    assert!(lines(&p, "created.txt").iter().all(|l| l == "ticker"));

    // Checked before it is stored, with where the YAML is wrong.
    p.write("bad.yaml", "tasks:\n  - {key: a, shel: \"true\"}\n");
    let e = p.fail(&["jobs", "create", "bad", "--file", &f("bad.yaml")]);
    assert!(
        e.contains("unknown field `shel`") && e.contains("line 2"),
        "{e}"
    );
    p.write("dep.yaml", "tasks:\n  - {key: a, run_job: nope}\n");
    let e = p.fail(&["jobs", "create", "dep", "--file", &f("dep.yaml")]);
    assert!(e.contains("no job `nope`"), "{e}");
    let e = p.fail(&["jobs", "create", "in_yaml", "--file", &f("ticker.yaml")]);
    assert!(e.contains("confluo.yaml defines it already"), "{e}");
    p.write(
        "ok.yaml",
        "tasks:\n  - {key: a, shell: \"echo one >> ok.txt\"}\n",
    );
    p.ok(&["jobs", "create", "ok", "--file", &f("ok.yaml")]);
    let e = p.fail(&["jobs", "create", "ok", "--file", &f("ok.yaml")]);
    assert!(e.contains("--replace"), "{e}");
    p.write(
        "ok.yaml",
        "tasks:\n  - {key: a, shell: \"echo two >> ok.txt\"}\n",
    );
    let out = p.ok(&["jobs", "create", "ok", "--file", &f("ok.yaml"), "--replace"]);
    assert!(out.contains("replaced"), "{out}");
    p.ok(&["jobs", "run", "ok"]);
    assert_eq!(lines(&p, "ok.txt"), vec!["two"]);
    let e = p.fail(&["jobs", "delete", "in_yaml"]);
    assert!(e.contains("remove it there"), "{e}");
    let e = p.fail(&["jobs", "delete", "nope"]);
    assert!(e.contains("no job `nope` in the metastore"), "{e}");
}

#[test]
fn file_arrival_watches_a_url_through_the_object_store() {
    let p = TestProject::new();
    let landing = p.path("remote/landing");
    std::fs::create_dir_all(&landing).unwrap();
    p.write(
        "confluo.yaml",
        format!(
            "name: test\njobs:\n  on_url:\n    trigger:\n      file_arrival: {{path: \"file://{}\", wait_after_last_change: 0s}}\n    tasks:\n      - {{key: a, shell: \"echo {{{{job.trigger.files}}}} >> got.txt\"}}\n",
            landing.display()
        ),
    );
    let s = serve(&p, &[]);
    std::thread::sleep(Duration::from_millis(2000));
    p.write("remote/landing/day=1/x.json", "{}");
    p.write("remote/landing/.hidden", "x");
    wait_for("a run for the new file", Duration::from_secs(20), || {
        !lines(&p, "got.txt").is_empty()
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(stop(s, libc::SIGTERM).success());
    assert_eq!(lines(&p, "got.txt"), vec!["day=1/x.json"]);
}
