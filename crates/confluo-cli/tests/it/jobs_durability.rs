//! `confluo serve` under the worst a production scheduler meets: SIGKILLs at random moments
//! over simulated days of schedules, two workers on one PostgreSQL metastore with one
//! killed, and notifications to a real HTTP receiver and a real SMTP server.

use std::time::{Duration, Instant};

use crate::common::{SmtpServer, TestProject, receiver};
use crate::jobs::{json, lines, states, stop, wait_for};
use crate::pg::PgDb;

fn all_runs(p: &TestProject, job: &str) -> Vec<serde_json::Value> {
    json(&p.ok(&["jobs", "runs", job, "--limit", "10000", "--format", "json"]))
        .as_array()
        .unwrap()
        .clone()
}

fn serve_with(p: &TestProject, args: &[&str], env: &[(&str, String)]) -> std::process::Child {
    // Only the scheduler: these tests run side by side, and the SQL endpoint's port is one.
    let mut all = vec!["serve", "--postgres", "off", "--http", "off"];
    all.extend_from_slice(args);
    let mut c = p.command(&all);
    for (k, v) in env {
        c.env(k, v);
    }
    // Every worker's output, one after the other, for the assertion messages.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p.path("serve.log"))
        .unwrap();
    c.stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("spawn confluo serve")
}

fn stopped_cleanly(p: &TestProject, s: std::process::Child) {
    let status = stop(s, libc::SIGTERM);
    assert!(
        status.success(),
        "confluo serve ended {status} on SIGTERM; the workers printed:\n{}",
        std::fs::read_to_string(p.path("serve.log")).unwrap_or_default()
    );
}

/// Pauses `job` (no more fires), serves it until every run ended, stops cleanly; returns
/// its runs and their logical times, sorted, after checking none fired twice.
fn drain(
    p: &TestProject,
    job: &str,
    args: &[&str],
    env: &[(&str, String)],
) -> (Vec<serde_json::Value>, Vec<i64>) {
    p.ok(&["jobs", "pause", job]);
    let s = serve_with(p, args, env);
    // Its first poll resumes what was left (after the lease).
    std::thread::sleep(Duration::from_millis(1500));
    wait_for("every run to end", Duration::from_secs(60), || {
        all_runs(p, job).iter().all(|r| r["state"] == "succeeded")
    });
    stopped_cleanly(p, s);
    let runs = all_runs(p, job);
    let mut ticks: Vec<i64> = runs
        .iter()
        .map(|r| r["logical_ms"].as_i64().unwrap())
        .collect();
    ticks.sort_unstable();
    let n = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), n, "a tick fired twice");
    (runs, ticks)
}

/// A small xorshift: the kill moments differ per run but need no crate.
fn random(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn fifty_sigkills_over_simulated_days_lose_no_run_and_run_none_twice() {
    let p = TestProject::with_config(
        r#"
jobs:
  hourly:
    schedule: {cron: "0 * * * *", missed: all, max_catch_up: 10000}
    tasks:
      - key: extract
        shell: "echo {{job.logical_time}} >> extract.txt"
      - key: load
        shell: "echo {{job.logical_time}} >> load.txt"
        depends_on: [extract]
"#,
    );
    // Two simulated hours pass each real second; every process reads the same clock.
    let anchor = chrono::Utc::now().timestamp_millis();
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-01T00:30:00Z")
        .unwrap()
        .timestamp_millis();
    let env = [("CONFLUO_SIMULATED_CLOCK", format!("{anchor}:{start}:7200"))];
    let args = ["--poll", "100ms", "--lease", "1s"];
    let mut seed = (anchor as u64) | 1;
    let mut s = serve_with(&p, &args, &env);
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(200 + random(&mut seed) % 900));
        assert!(!stop(s, libc::SIGKILL).success());
        s = serve_with(&p, &args, &env);
    }
    // Let the last worker catch up, then stop it cleanly; paused, the schedule fires no
    // more, and one more worker resumes and ends every run the kills left.
    std::thread::sleep(Duration::from_secs(3));
    stopped_cleanly(&p, s);
    let (runs, ticks) = drain(&p, "hourly", &args, &env);
    let n = ticks.len();
    assert!(n >= 50, "only {n} runs over the simulated days");
    // One run per hour, every hour from the first to the last: none lost, none twice.
    for w in ticks.windows(2) {
        assert_eq!(w[1] - w[0], 3_600_000, "an hour was lost between {w:?}");
    }
    assert_eq!(ticks[0] % 3_600_000, 0);
    // Every task of every run succeeded exactly once; nothing was left running.
    for r in &runs {
        let id = r["run_id"].as_str().unwrap();
        let s = states(&p, id);
        for task in ["extract", "load"] {
            let ok = s
                .iter()
                .filter(|(t, _, st)| t == task && st == "succeeded")
                .count();
            assert_eq!(ok, 1, "run {id} task {task}: {s:?}");
        }
        assert!(s.iter().all(|(_, _, st)| st != "running"), "{s:?}");
    }
    // The side effects: each hour reached `load` (a task killed half-way runs again as a
    // new attempt, so a line may repeat; an hour is never missing).
    let loaded: std::collections::BTreeSet<String> = lines(&p, "load.txt").into_iter().collect();
    assert_eq!(loaded.len(), n);
}

#[test]
fn two_workers_share_a_postgresql_metastore_and_one_is_killed() {
    let db = PgDb::new();
    let p = TestProject::with_config(&format!(
        r#"
metastore:
  url: {}
jobs:
  every_second:
    schedule: {{cron: "* * * * * *", missed: all, max_catch_up: 100}}
    max_concurrent_runs: 4
    tasks:
      - key: work
        shell: "sleep 0.7; echo {{{{job.logical_time}}}} >> work.txt"
"#,
        db.url()
    ));
    let args = ["--poll", "200ms", "--lease", "2s"];
    let a = serve_with(&p, &args, &[]);
    let b = serve_with(&p, &args, &[]);
    wait_for("runs on both workers", Duration::from_secs(40), || {
        let workers: std::collections::BTreeSet<String> = all_runs(&p, "every_second")
            .iter()
            .filter_map(|r| r["worker"].as_str().map(str::to_string))
            .collect();
        workers.len() >= 2
    });
    // Worker a dies mid-task: its runs' leases lapse and b takes them over.
    assert!(!stop(a, libc::SIGKILL).success());
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        all_runs(&p, "every_second")
            .iter()
            .any(|r| r["state"] == "succeeded" && r["worker"].as_str().is_some()),
    );
    stopped_cleanly(&p, b);
    let (runs, _) = drain(&p, "every_second", &args, &[]);
    for r in &runs {
        let id = r["run_id"].as_str().unwrap();
        let ok = states(&p, id)
            .iter()
            .filter(|(_, _, st)| st == "succeeded")
            .count();
        assert_eq!(ok, 1, "run {id} succeeded {ok} times");
    }
}

#[test]
fn a_five_task_job_on_cron_retries_notifies_and_is_repaired() {
    let (hook, got) = receiver(true);
    let smtpd = SmtpServer::start();
    let (smtp, maildir) = (smtpd.port, smtpd.maildir.clone());
    let p = TestProject::with_config(&format!(
        r#"
smtp: {{host: 127.0.0.1, port: {smtp}, security: none, from: confluo@example.com}}
pipelines:
  shop:
    libraries: ["pipelines/*.sql"]
    schema: shop
jobs:
  daily:
    schedule: {{cron: "* * * * * *", missed: none}}
    notifications:
      - {{on: [success, failure], webhook: "http://127.0.0.1:{hook}/hook", secret: "${{env:HOOK_SECRET}}"}}
      - {{on: [failure], email: [oncall@example.com]}}
    tasks:
      - key: load
        ingest: {{path: data/orders.csv, into: bronze.orders}}
      - key: refresh
        pipeline: shop
        depends_on: [load]
      - key: check
        sql: "SELECT count(*) AS n FROM shop.big_orders"
        depends_on: [refresh]
      - key: flaky
        shell: "test -f .attempted || {{ touch .attempted; exit 3; }}"
        retries: 2
        retry_backoff: 100ms
        depends_on: [check]
      - key: enough
        condition: "{{{{tasks.check.values.n}}}} >= 2"
        depends_on: [flaky]
      - key: publish
        shell: "test -f approved.txt && echo published {{{{tasks.check.values.n}}}} > published.txt"
        depends_on: [{{task: enough, outcome: true}}]
"#
    ));
    p.write("data/orders.csv", "id,amount\n1,5\n2,20\n3,30\n");
    p.write(
        "pipelines/shop.sql",
        "CREATE OR REFRESH MATERIALIZED VIEW big_orders AS SELECT * FROM bronze.orders WHERE amount > 10;\n",
    );
    let s = {
        let mut c = p.command(&[
            "serve",
            "--poll",
            "200ms",
            "--postgres",
            "off",
            "--http",
            "off",
        ]);
        let log = std::fs::File::create(p.path("serve.log")).unwrap();
        c.env("HOOK_SECRET", "s3cret")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        c.spawn().unwrap()
    };
    wait_for("the first run", Duration::from_secs(30), || {
        !all_runs(&p, "daily").is_empty()
    });
    p.ok(&["jobs", "pause", "daily"]);
    let run = all_runs(&p, "daily").last().unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the run to end", Duration::from_secs(60), || {
        all_runs(&p, "daily")
            .iter()
            .find(|r| r["run_id"] == run.as_str())
            .is_some_and(|r| r["ended_ms"].is_i64())
    });
    // `publish` failed for good (nobody approved); `flaky` succeeded on its retry.
    let st = states(&p, &run);
    assert!(st.contains(&("flaky".into(), 1, "failed".into())), "{st:?}");
    assert!(
        st.contains(&("flaky".into(), 2, "succeeded".into())),
        "{st:?}"
    );
    assert!(
        st.contains(&("publish".into(), 1, "failed".into())),
        "{st:?}"
    );
    let notice_of = |event: &str| {
        got.lock()
            .unwrap()
            .iter()
            .find(|(_, body)| {
                let n = json(body);
                n["event"] == event && n["run_id"] == run.as_str()
            })
            .cloned()
    };
    wait_for("the failure webhook", Duration::from_secs(30), || {
        notice_of("run.failed").is_some()
    });
    let (headers, body) = notice_of("run.failed").unwrap();
    let notice = json(&body);
    assert_eq!(notice["event"], "run.failed");
    assert_eq!(notice["run_id"], run.as_str());
    assert!(
        notice["message"].as_str().unwrap().contains("publish"),
        "{notice}"
    );
    // The signature is HMAC-SHA256 of "timestamp.body" under the secret.
    let body_file = p.write("body.json", &body);
    let expected = crate::common::run_python(&format!(
        "import hmac, hashlib\nbody = open({:?}, 'rb').read()\nprint('sha256=' + hmac.new(b's3cret', b'{}.' + body, hashlib.sha256).hexdigest())",
        body_file.display().to_string(),
        headers["x-confluo-timestamp"]
    ));
    assert_eq!(headers["x-confluo-signature"], expected.trim());
    // The e-mail reached the SMTP server.
    let serve_log = || std::fs::read_to_string(p.path("serve.log")).unwrap_or_default();
    wait_for(
        &format!("the failure e-mail; serve printed:\n{}", serve_log()),
        Duration::from_secs(30),
        || {
            std::fs::read_dir(maildir.join("new"))
                .map(|d| d.count() > 0)
                .unwrap_or(false)
        },
    );
    let mail = std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mail = std::fs::read_to_string(mail).unwrap();
    assert!(mail.contains("oncall@example.com"), "{mail}");
    assert!(
        mail.contains("daily: run") && mail.contains("failed"),
        "{mail}"
    );
    assert!(mail.contains("publish"), "{mail}");

    // Approved: the repair runs `publish` alone, in the same run, and tells the webhook.
    p.write("approved.txt", "yes");
    let out = p
        .command(&["jobs", "repair", &run])
        .env("HOOK_SECRET", "s3cret")
        .output()
        .unwrap();
    let out = crate::common::succeeded(&["jobs", "repair", &run], out);
    assert!(out.contains("daily succeeded"), "{out}");
    assert_eq!(
        std::fs::read_to_string(p.path("published.txt"))
            .unwrap()
            .trim(),
        "published 2"
    );
    let st = states(&p, &run);
    assert!(
        st.contains(&("publish".into(), 2, "succeeded".into())),
        "{st:?}"
    );
    assert_eq!(st.iter().filter(|(t, _, _)| t == "load").count(), 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    while notice_of("run.succeeded").is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, body) = notice_of("run.succeeded").expect("the success webhook after the repair");
    assert_eq!(json(&body)["state"], "succeeded");
    assert!(stop(s, libc::SIGTERM).success());
    drop(smtpd);
}
