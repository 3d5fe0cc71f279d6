//! Jobs run by `confluo jobs run`: tasks in dependency order (ingest → pipeline → SQL check
//! → condition → notification), values passed downstream, retries, run conditions,
//! timeouts and cancels that stop the task's processes, and the history in the metastore.

use std::time::{Duration, Instant};

use crate::common::TestProject;

const JOBS: &str = r#"
pipelines:
  shop:
    libraries: ["pipelines/*.sql"]
    schema: shop
jobs:
  nightly:
    parameters: {min: "1"}
    tasks:
      - key: load
        ingest: {path: data/orders.csv, into: bronze.orders}
      - key: refresh
        pipeline: shop
        depends_on: [load]
      - key: check
        sql: "SELECT count(*) AS n, sum(amount) AS total FROM shop.big_orders"
        depends_on: [refresh]
      - key: flaky
        shell: "test -f .attempted || { touch .attempted; echo first try fails >&2; exit 3; }"
        retries: 2
        retry_backoff: 100ms
        depends_on: [check]
      - key: enough
        condition: "{{tasks.check.values.n}} >= {{job.parameters.min}}"
        depends_on: [flaky]
      - key: notify
        shell: "echo orders={{tasks.check.values.n}} total={{tasks.check.values.total}} > notified.txt"
        depends_on: [{task: enough, outcome: true}]
      - key: alarm
        shell: "echo too few > alarm.txt"
        depends_on: [{task: enough, outcome: false}]
"#;

fn project() -> TestProject {
    let p = TestProject::with_config(JOBS);
    p.write("data/orders.csv", "id,amount\n1,5\n2,20\n3,30\n");
    p.write(
        "pipelines/shop.sql",
        "CREATE OR REFRESH MATERIALIZED VIEW big_orders AS SELECT * FROM bronze.orders WHERE amount > 10;\n",
    );
    p
}

pub(crate) fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `state` of each task in `jobs show --format json`, attempts in order.
pub(crate) fn states(p: &TestProject, run: &str) -> Vec<(String, i64, String)> {
    let shown = json(&p.ok(&["jobs", "show", run, "--format", "json"]));
    shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["task"].as_str().unwrap().to_string(),
                a["attempt"].as_i64().unwrap(),
                a["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_job_runs_its_tasks_in_order_passing_values_retrying_and_branching() {
    let p = project();
    let listed = p.ok(&["jobs", "list"]);
    assert!(
        listed.contains("load → refresh → check → flaky → enough"),
        "{listed}"
    );

    // Without --quiet, as a user runs it: one line per event.
    let out = std::process::Command::new(crate::common::bin())
        .arg("--project")
        .arg(p.path(""))
        .args(["jobs", "run", "nightly"])
        .output()
        .unwrap();
    let out = crate::common::succeeded(&["jobs", "run", "nightly"], out);
    assert!(
        out.contains("flaky: attempt 1 failed (exit code 3: first try fails); retrying"),
        "{out}"
    );
    assert!(
        out.contains("enough: succeeded") && out.contains("alarm: excluded"),
        "{out}"
    );
    assert!(out.contains("nightly succeeded"), "{out}");
    assert_eq!(
        std::fs::read_to_string(p.path("notified.txt"))
            .unwrap()
            .trim(),
        "orders=2 total=50"
    );
    assert!(!p.path("alarm.txt").exists());
    assert_eq!(p.scalar("SELECT count(*) FROM shop.big_orders"), "2");

    let runs = json(&p.ok(&["jobs", "runs", "nightly", "--format", "json"]));
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["state"], "succeeded");
    assert_eq!(runs[0]["trigger"], "manual");
    let s = states(&p, &run[..12]);
    let of = |task: &str| -> Vec<(i64, String)> {
        s.iter()
            .filter(|(t, _, _)| t == task)
            .map(|(_, a, st)| (*a, st.clone()))
            .collect()
    };
    assert_eq!(
        of("flaky"),
        vec![(1, "failed".into()), (2, "succeeded".into())]
    );
    assert_eq!(of("alarm"), vec![(0, "excluded".into())]);
    assert_eq!(of("check"), vec![(1, "succeeded".into())]);
    let logs = p.ok(&["jobs", "logs", &run, "flaky"]);
    assert!(
        logs.contains("=== flaky attempt 1 (failed) ===") && logs.contains("first try fails"),
        "{logs}"
    );
    let shown = json(&p.ok(&["jobs", "show", &run, "--format", "json"]));
    let check = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["task"] == "check")
        .unwrap()
        .clone();
    assert_eq!(check["values"]["n"], 2);

    // A parameter for this run takes the other branch; the load adds nothing new.
    let out = p.ok(&[
        "jobs", "run", "nightly", "--param", "min=100", "--format", "json",
    ]);
    let report = json(&out);
    assert_eq!(report["state"], "succeeded");
    let by_task = |t: &str| {
        report["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["task"] == t)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(by_task("notify"), "excluded");
    assert_eq!(by_task("alarm"), "succeeded");
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.orders"), "3");
    let e = p.fail(&["jobs", "run", "nightly", "--param", "mni=3"]);
    assert!(e.contains("no parameter `mni`") && e.contains("min"), "{e}");
}

#[test]
fn a_failed_task_skips_its_dependents_and_a_timeout_stops_the_process() {
    let p = TestProject::with_config(
        r#"
jobs:
  broken:
    tasks:
      - key: bad
        sql: "SELECT * FROM no_such_table"
        retries: 1
        retry_backoff: 50ms
      - key: after
        shell: "touch after.txt"
        depends_on: [bad]
      - key: cleanup
        shell: "touch cleaned.txt"
        depends_on: [bad]
        run_if: at_least_one_failed
  slow:
    tasks:
      - key: sleepy
        shell: "sleep 30; touch woke.txt"
        timeout: 1s
"#,
    );
    let out = p.run(&["jobs", "run", "broken"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("broken failed") && text.contains("no_such_table"),
        "{text}"
    );
    assert!(!p.path("after.txt").exists());
    assert!(p.path("cleaned.txt").exists());
    let runs = json(&p.ok(&["jobs", "runs", "--format", "json"]));
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    let s = states(&p, &run);
    assert!(s.contains(&("bad".into(), 2, "failed".into())), "{s:?}");
    assert!(s.contains(&("after".into(), 0, "skipped".into())), "{s:?}");
    assert!(
        s.contains(&("cleanup".into(), 1, "succeeded".into())),
        "{s:?}"
    );

    let started = Instant::now();
    let out = p.run(&["jobs", "run", "slow"]);
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(20));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("slow failed")
            && text.contains("task `sleepy` timed out: timed out after 1s"),
        "{text}"
    );
    // The shell's child was stopped with it: nothing wakes up later.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!p.path("woke.txt").exists());
}

#[test]
fn sigterm_cancels_a_run_and_stops_its_tasks() {
    let p = TestProject::with_config(
        r#"
jobs:
  long:
    tasks:
      - key: wait
        shell: "touch started.txt; sleep 30; touch woke.txt"
      - key: next
        shell: "touch next.txt"
        depends_on: [wait]
"#,
    );
    let child = p
        .command(&["jobs", "run", "long"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.path("started.txt").exists() {
        assert!(Instant::now() < deadline, "the task never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("long cancelled"), "{text}");
    let runs = json(&p.ok(&["jobs", "runs", "long", "--format", "json"]));
    assert_eq!(runs[0]["state"], "cancelled");
    let s = states(&p, runs[0]["run_id"].as_str().unwrap());
    assert!(s.contains(&("wait".into(), 1, "cancelled".into())), "{s:?}");
    assert!(s.contains(&("next".into(), 0, "cancelled".into())), "{s:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!p.path("woke.txt").exists() && !p.path("next.txt").exists());
}

#[test]
fn job_definitions_are_checked_before_anything_runs() {
    let p = TestProject::with_config(
        "jobs:\n  j:\n    tasks:\n      - {key: a, shell: 'touch ran.txt', depends_on: [b]}\n      - {key: b, shell: x, depends_on: [a]}\n",
    );
    let e = p.fail(&["jobs", "run", "j"]);
    assert!(e.contains("job `j`") && e.contains("cycle"), "{e}");
    assert!(!p.path("ran.txt").exists());
    let e = p.fail(&["jobs", "run", "nope"]);
    assert!(e.contains("no job `nope`"), "{e}");
    let p = TestProject::with_config("jobs:\n  j:\n    tasks:\n      - {key: a, shel: 'true'}\n");
    let e = p.fail(&["jobs", "list"]);
    assert!(e.contains("confluo.yaml:") && e.contains("shel"), "{e}");
}

#[test]
fn sql_files_and_other_jobs_run_as_tasks() {
    let p = TestProject::with_config(
        r#"
jobs:
  setup:
    tasks:
      - key: create
        sql_file: sql/setup.sql
  main:
    parameters: {who: "ann"}
    tasks:
      - key: prepare
        run_job: setup
      - key: add
        sql: "INSERT INTO people VALUES ('{{job.parameters.who}}')"
        depends_on: [prepare]
      - key: count
        sql: "SELECT count(*) AS n FROM people"
        depends_on: [add]
"#,
    );
    p.write(
        "sql/setup.sql",
        "CREATE TABLE IF NOT EXISTS people (name STRING);\nINSERT INTO people VALUES ('setup');\n",
    );
    let report = json(&p.ok(&[
        "jobs", "run", "main", "--param", "who=bob", "--format", "json",
    ]));
    assert_eq!(report["state"], "succeeded", "{report}");
    assert_eq!(
        p.rows("SELECT name FROM people ORDER BY name"),
        vec![vec!["bob"], vec!["setup"]]
    );
    // The job run by `prepare` has its own run in the history.
    let runs = json(&p.ok(&["jobs", "runs", "--format", "json"]));
    let jobs: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["job"].as_str().unwrap())
        .collect();
    // Newest first: `setup` started after `main`, from within it.
    assert_eq!(jobs, vec!["setup", "main"]);
    let shown = json(&p.ok(&[
        "jobs",
        "show",
        runs[1]["run_id"].as_str().unwrap(),
        "--format",
        "json",
    ]));
    let count = shown["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["task"] == "count")
        .unwrap()
        .clone();
    assert_eq!(count["values"]["n"], 2);
}

#[test]
fn a_repair_reruns_the_failed_task_and_what_follows_it_in_the_same_run() {
    let p = TestProject::with_config(
        r#"
jobs:
  fix:
    tasks:
      - key: first
        shell: "echo once >> first.txt"
      - key: needs_fix
        shell: "test -f fixed.txt || { echo not fixed yet >&2; exit 1; }"
        depends_on: [first]
      - key: last
        shell: "echo done >> last.txt"
        depends_on: [needs_fix]
"#,
    );
    let out = p.run(&["jobs", "run", "fix"]);
    assert!(!out.status.success());
    let runs = json(&p.ok(&["jobs", "runs", "--format", "json"]));
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    assert_eq!(runs[0]["state"], "failed");
    p.write("fixed.txt", "");
    let report = json(&p.ok(&["jobs", "repair", &run[..10], "--format", "json"]));
    assert_eq!(report["state"], "succeeded", "{report}");
    assert_eq!(report["run_id"], run.as_str());
    // `first` succeeded before and is not run again; the history keeps both attempts.
    assert_eq!(
        std::fs::read_to_string(p.path("first.txt")).unwrap(),
        "once\n"
    );
    assert_eq!(
        std::fs::read_to_string(p.path("last.txt")).unwrap(),
        "done\n"
    );
    let s = states(&p, &run);
    assert!(
        s.contains(&("first".into(), 1, "succeeded".into())),
        "{s:?}"
    );
    assert!(
        s.contains(&("needs_fix".into(), 1, "failed".into())),
        "{s:?}"
    );
    assert!(
        s.contains(&("needs_fix".into(), 2, "succeeded".into())),
        "{s:?}"
    );
    assert!(s.contains(&("last".into(), 1, "succeeded".into())), "{s:?}");
    let runs = json(&p.ok(&["jobs", "runs", "--format", "json"]));
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["state"], "succeeded");
    let e = p.fail(&["jobs", "repair", &run]);
    assert!(e.contains("nothing to repair"), "{e}");
}

/// `confluo serve` in the background for `p`.
pub(crate) fn serve(p: &TestProject, extra: &[&str]) -> std::process::Child {
    // Only the scheduler: these tests run side by side, and the SQL endpoint's port is one.
    let mut args = vec![
        "serve",
        "--poll",
        "200ms",
        "--postgres",
        "off",
        "--http",
        "off",
    ];
    args.extend_from_slice(extra);
    p.command(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn confluo serve")
}

pub(crate) fn lines(p: &TestProject, file: &str) -> Vec<String> {
    std::fs::read_to_string(p.path(file))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

pub(crate) fn wait_for(what: &str, within: Duration, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn stop(child: std::process::Child, signal: i32) -> std::process::ExitStatus {
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let mut child = child;
    child.wait().unwrap()
}

#[test]
fn serve_fires_each_tick_exactly_once_across_restarts() {
    let p = TestProject::with_config(
        r#"
jobs:
  every_second:
    schedule: {cron: "* * * * * *", missed: all, max_catch_up: 100}
    tasks:
      - key: tick
        shell: "echo {{job.logical_time}} >> ticks.txt"
"#,
    );
    let s = serve(&p, &[]);
    wait_for("3 ticks", Duration::from_secs(30), || {
        lines(&p, "ticks.txt").len() >= 3
    });
    assert!(stop(s, libc::SIGTERM).success());
    // Down for a while: the ticks missed meanwhile are caught up, none twice.
    std::thread::sleep(Duration::from_millis(2500));
    let before = lines(&p, "ticks.txt").len();
    let s = serve(&p, &[]);
    wait_for("3 more ticks", Duration::from_secs(30), || {
        lines(&p, "ticks.txt").len() >= before + 5
    });
    assert!(stop(s, libc::SIGTERM).success());
    let ticks = lines(&p, "ticks.txt");
    let mut seconds: Vec<i64> = ticks
        .iter()
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp())
        .collect();
    let n = seconds.len();
    seconds.sort_unstable();
    seconds.dedup();
    assert_eq!(seconds.len(), n, "a tick ran twice: {ticks:?}");
    // Every second from the first tick to the last ran: none lost across the restart.
    assert_eq!(
        (seconds[n - 1] - seconds[0] + 1) as usize,
        n,
        "a tick was lost: {ticks:?}"
    );
    let runs = json(&p.ok(&[
        "jobs",
        "runs",
        "every_second",
        "--limit",
        "1000",
        "--format",
        "json",
    ]));
    let runs = runs.as_array().unwrap();
    assert!(runs.len() >= n, "{} runs for {n} ticks", runs.len());
    assert!(
        runs.iter().all(|r| r["trigger"] == "cron"
            && matches!(
                r["state"].as_str(),
                Some("succeeded" | "interrupted" | "queued")
            )),
        "{runs:?}"
    );
}

#[test]
fn a_run_whose_worker_was_killed_is_resumed_by_the_next() {
    let p = TestProject::with_config(
        r#"
jobs:
  once:
    schedule: {cron: "* * * * * *", missed: none}
    tasks:
      - key: first
        shell: "test -f started.txt && exit 0; echo first >> first.txt; touch started.txt"
      - key: slow
        shell: "test -f slow.pid && exit 0; echo $$ > slow.pid; echo attempt >> slow.txt; sleep 20; touch late.txt"
        depends_on: [first]
"#,
    );
    let s = serve(&p, &["--lease", "2s"]);
    wait_for("the slow task", Duration::from_secs(30), || {
        p.path("slow.txt").exists()
    });
    // Its process is noted in the metastore just after it starts.
    std::thread::sleep(Duration::from_millis(500));
    // SIGKILL: no goodbye, the run stays `running` with a lease that lapses.
    assert!(!stop(s, libc::SIGKILL).success());
    let runs = json(&p.ok(&["jobs", "runs", "once", "--format", "json"]));
    let killed = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["state"] == "running")
        .expect("a run left running")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::thread::sleep(Duration::from_millis(2500));
    let s = serve(&p, &["--lease", "2s"]);
    wait_for(
        "the killed run to be resumed",
        Duration::from_secs(30),
        || {
            let r = json(&p.ok(&["jobs", "show", &killed, "--format", "json"]));
            r["run"]["state"] == "succeeded"
        },
    );
    assert!(stop(s, libc::SIGTERM).success());
    // `first` had succeeded and was not run again; `slow` ran again as attempt 2, and the
    // killed worker's attempt was stopped rather than left running beside it.
    assert_eq!(lines(&p, "first.txt"), vec!["first"]);
    let s = states(&p, &killed);
    assert!(
        s.contains(&("first".into(), 1, "succeeded".into())),
        "{s:?}"
    );
    assert!(
        s.contains(&("slow".into(), 1, "interrupted".into())),
        "{s:?}"
    );
    assert!(s.contains(&("slow".into(), 2, "succeeded".into())), "{s:?}");
    let pid = lines(&p, "slow.pid")[0].clone();
    // Gone, or a zombie nobody reaped yet (a container's init may not).
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(") ").map(|(_, r)| r.chars().next());
    assert!(
        matches!(state, None | Some(Some('Z'))),
        "the killed worker's task {pid} still runs: {stat}"
    );
    let shown = json(&p.ok(&["jobs", "show", &killed, "--format", "json"]));
    assert!(
        shown.to_string().contains("its processes were stopped"),
        "{shown}"
    );
    // Nothing is left running.
    let runs = json(&p.ok(&[
        "jobs", "runs", "once", "--limit", "1000", "--format", "json",
    ]));
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] != "running"),
        "{runs}"
    );
}

#[test]
fn a_run_is_cancelled_from_another_process_and_a_paused_schedule_waits() {
    let p = TestProject::with_config(
        r#"
jobs:
  long:
    tasks:
      - key: wait
        shell: "touch started.txt; sleep 30; touch woke.txt"
  ticking:
    schedule: {cron: "* * * * * *", missed: none}
    tasks:
      - key: tick
        shell: "echo {{job.logical_time}} >> ticks.txt"
"#,
    );
    let child = p
        .command(&["jobs", "run", "long"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the task", Duration::from_secs(20), || {
        p.path("started.txt").exists()
    });
    let runs = json(&p.ok(&["jobs", "runs", "long", "--format", "json"]));
    let run = runs[0]["run_id"].as_str().unwrap().to_string();
    let out = p.ok(&["jobs", "cancel", &run]);
    assert!(out.contains("cancelled"), "{out}");
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("long cancelled") && text.contains("jobs cancel"),
        "{text}"
    );
    assert!(!p.path("woke.txt").exists());
    let e = p.fail(&["jobs", "cancel", &run]);
    assert!(e.contains("has ended already"), "{e}");

    // Paused before serving: nothing runs; resumed: ticks run again (none caught up).
    p.ok(&["jobs", "pause", "ticking"]);
    let s = serve(&p, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(lines(&p, "ticks.txt").is_empty());
    let resumed = chrono::Utc::now().timestamp();
    p.ok(&["jobs", "resume", "ticking"]);
    wait_for("ticks after resume", Duration::from_secs(20), || {
        lines(&p, "ticks.txt").len() >= 2
    });
    assert!(stop(s, libc::SIGTERM).success());
    for t in lines(&p, "ticks.txt") {
        let at = chrono::DateTime::parse_from_rfc3339(&t)
            .unwrap()
            .timestamp();
        assert!(at >= resumed - 1, "a tick from the pause ran: {t}");
    }
    let e = p.fail(&["jobs", "pause", "long"]);
    assert!(e.contains("has no schedule"), "{e}");
}

#[test]
fn a_backfill_runs_each_logical_date_once() {
    let p = TestProject::with_config(
        r#"
jobs:
  daily:
    parameters: {tag: "x"}
    tasks:
      - key: load
        shell: "echo {{job.logical_time}} {{job.parameters.tag}} >> days.txt"
  hourly:
    schedule: {cron: "0 */6 * * *"}
    tasks:
      - key: load
        shell: "echo {{job.logical_time}} >> hours.txt"
"#,
    );
    let report = json(&p.ok(&[
        "jobs",
        "backfill",
        "daily",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-05",
        "--concurrency",
        "3",
        "--param",
        "tag=y",
        "--format",
        "json",
    ]));
    assert_eq!(report["ran"].as_array().unwrap().len(), 5);
    let mut days = lines(&p, "days.txt");
    days.sort();
    assert_eq!(days.len(), 5);
    assert_eq!(days[0], "2026-01-01T00:00:00+00:00 y");
    assert_eq!(days[4], "2026-01-05T00:00:00+00:00 y");
    // Asked again over a wider range: only the new dates run.
    let out = p.ok(&[
        "jobs",
        "backfill",
        "daily",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-07",
    ]);
    assert!(
        out.contains("daily: 2 runs (0 failed), 5 ran before"),
        "{out}"
    );
    assert_eq!(lines(&p, "days.txt").len(), 7);
    // A scheduled job's logical times are its ticks.
    p.ok(&[
        "jobs",
        "backfill",
        "hourly",
        "--from",
        "2026-01-01",
        "--to",
        "2026-01-01T23:59:59Z",
    ]);
    let mut hours = lines(&p, "hours.txt");
    hours.sort();
    assert_eq!(
        hours,
        vec![
            "2026-01-01T00:00:00+00:00",
            "2026-01-01T06:00:00+00:00",
            "2026-01-01T12:00:00+00:00",
            "2026-01-01T18:00:00+00:00"
        ]
    );
    let e = p.fail(&[
        "jobs",
        "backfill",
        "daily",
        "--from",
        "2026-02-01",
        "--to",
        "2026-01-01",
    ]);
    assert!(e.contains("is before"), "{e}");
    let e = p.fail(&[
        "jobs",
        "backfill",
        "daily",
        "--from",
        "yesterday",
        "--to",
        "2026-01-01",
    ]);
    assert!(e.contains("is not a date"), "{e}");
}

#[test]
fn what_tasks_name_is_checked_against_the_project() {
    let p = TestProject::with_config(
        "jobs:\n  j:\n    tasks:\n      - {key: a, sync: crmm}\n  k:\n    tasks:\n      - {key: b, sql_file: nope.sql}\n",
    );
    let e = p.fail(&["jobs", "run", "j"]);
    assert!(
        e.contains("syncs `crmm`, which is not an ingest entry"),
        "{e}"
    );
    let e = p.fail(&["jobs", "run", "k"]);
    assert!(e.contains("runs nope.sql, which is not a file"), "{e}");
    let e = p.fail(&["jobs", "list"]);
    assert!(e.contains("job `j`"), "{e}");
}

#[test]
fn a_job_runs_as_its_service_principal() {
    let p = TestProject::with_config(
        r#"
jobs:
  nightly:
    run_as: etl_bot
    tasks:
      - key: make
        sql: "CREATE TABLE made_by_job AS SELECT 1 AS x"
      - key: who
        shell: "echo $CONFLUO_RUN_AS > who.txt"
        depends_on: [make]
"#,
    );
    // No such principal yet: the run is refused, saying how to make one.
    let err = p.fail(&["jobs", "run", "nightly"]);
    assert!(
        err.contains("runs as `etl_bot`, which does not exist")
            && err.contains("--service-principal"),
        "{err}"
    );
    // A person is not a service principal.
    crate::server::add_user(&p, "etl_bot", "a-long-password", &[]);
    let err = p.fail(&["jobs", "run", "nightly"]);
    assert!(err.contains("is a user, not a service principal"), "{err}");
    p.ok(&["users", "remove", "etl_bot"]);
    p.ok(&["users", "add", "etl_bot", "--service-principal"]);
    p.ok(&["jobs", "run", "nightly"]);
    // What the job made is the principal's; its processes knew whom they ran as.
    let tables = p.ok(&["query", "SHOW TABLES", "--format", "csv"]);
    let row = tables
        .lines()
        .find(|l| l.contains("made_by_job"))
        .unwrap_or_else(|| panic!("{tables}"));
    assert!(row.contains("etl_bot"), "{row}");
    assert_eq!(
        std::fs::read_to_string(p.path("who.txt")).unwrap().trim(),
        "etl_bot"
    );
}
