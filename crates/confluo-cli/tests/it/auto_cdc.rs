//! AUTO CDC flows end to end: a change feed arriving as files in several runs, applied as
//! SCD 1 and SCD 2 with out-of-order events and deletes; crashes between the commits of a
//! batch; the targets read by the Python `deltalake` package.

use crate::common::{TestProject, run_python};

const PIPELINE: &str = "\
CREATE OR REFRESH STREAMING TABLE changes
AS SELECT * FROM STREAM read_files('changes', format => 'csv', header => true);

CREATE OR REFRESH STREAMING TABLE customers;
CREATE FLOW customers_cdc AS AUTO CDC INTO customers
FROM STREAM(changes)
KEYS (id)
APPLY AS DELETE WHEN op = 'DELETE'
SEQUENCE BY seq
COLUMNS * EXCEPT (op, seq, _rescued_data)
STORED AS SCD TYPE 1;

CREATE OR REFRESH STREAMING TABLE customers_history;
CREATE FLOW customers_history_cdc AS AUTO CDC INTO customers_history
FROM STREAM(changes)
KEYS (id)
APPLY AS DELETE WHEN op = 'DELETE'
SEQUENCE BY seq
COLUMNS * EXCEPT (op, seq, _rescued_data)
STORED AS SCD TYPE 2;
";

/// The scripted feed, one file per run. Run 2 and 3 bring events older than what the
/// target holds (an update between two versions, updates older than a delete), a delete of
/// a key that does not exist yet, and a redelivered event.
const RUNS: [&str; 3] = [
    "id,name,city,op,seq\n\
     1,Ann,Paris,UPSERT,1\n\
     2,Bob,Rome,UPSERT,2\n\
     1,Ann,Lyon,UPSERT,5\n\
     3,Cid,Oslo,UPSERT,3\n",
    "id,name,city,op,seq\n\
     2,Bob,Rome,DELETE,6\n\
     1,Ann,Nice,UPSERT,3\n\
     3,Cid,Oslo,UPSERT,4\n",
    "id,name,city,op,seq\n\
     2,Bob,Rome,UPSERT,4\n\
     2,Bob,Milan,UPSERT,5\n\
     4,Dan,Kyiv,DELETE,1\n\
     4,Dan,Kyiv,UPSERT,2\n\
     1,Ann,Lyon,UPSERT,5\n",
];

fn project() -> TestProject {
    let p = TestProject::with_config(
        "pipelines:\n  p:\n    libraries: [\"pipelines/*.sql\"]\n    schema: p\n",
    );
    p.write("pipelines/cdc.sql", PIPELINE);
    p
}

fn history(p: &TestProject) -> Vec<Vec<String>> {
    p.rows(
        "SELECT id, name, city, `__START_AT` AS s, `__END_AT` AS e \
         FROM p.customers_history ORDER BY id, s",
    )
}

fn current(p: &TestProject) -> Vec<Vec<String>> {
    p.rows("SELECT id, name, city FROM p.customers ORDER BY id")
}

fn rows(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split(',').map(String::from).collect())
        .collect()
}

#[test]
fn scd2_history_with_out_of_order_events_and_deletes_across_three_runs() {
    let p = project();
    p.write("changes/1.csv", RUNS[0]);
    p.ok(&["run"]);
    assert_eq!(
        history(&p),
        rows("1,Ann,Paris,1,5\n1,Ann,Lyon,5,\n2,Bob,Rome,2,\n3,Cid,Oslo,3,")
    );
    assert_eq!(current(&p), rows("1,Ann,Lyon\n2,Bob,Rome\n3,Cid,Oslo"));

    p.write("changes/2.csv", RUNS[1]);
    p.ok(&["run"]);
    // The late update lands between the versions it falls between; an event that changes
    // nothing makes no version; the delete ends Bob's.
    assert_eq!(
        history(&p),
        rows("1,Ann,Paris,1,3\n1,Ann,Nice,3,5\n1,Ann,Lyon,5,\n2,Bob,Rome,2,6\n3,Cid,Oslo,3,")
    );
    assert_eq!(current(&p), rows("1,Ann,Lyon\n3,Cid,Oslo"));

    p.write("changes/3.csv", RUNS[2]);
    p.ok(&["run"]);
    assert_eq!(
        history(&p),
        rows(
            "1,Ann,Paris,1,3\n1,Ann,Nice,3,5\n1,Ann,Lyon,5,\n2,Bob,Rome,2,5\n2,Bob,Milan,5,6\n\
             3,Cid,Oslo,3,\n4,Dan,Kyiv,2,"
        )
    );
    // SCD 1: the updates older than Bob's delete do not bring him back.
    assert_eq!(current(&p), rows("1,Ann,Lyon\n3,Cid,Oslo\n4,Dan,Kyiv"));
    // The user-visible columns are the change rows' minus COLUMNS EXCEPT.
    let cols: Vec<String> = p
        .rows("DESCRIBE p.customers")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert_eq!(cols, ["id", "name", "city"]);

    // Nothing new: nothing applied.
    let again: serde_json::Value = serde_json::from_str(&p.ok(&["run", "--json"])).unwrap();
    assert!(
        !again.to_string().contains("\"rows_upserted\":1"),
        "{again}"
    );
    // A full refresh rebuilds both targets from the whole feed.
    p.ok(&["run", "--full-refresh"]);
    assert_eq!(current(&p), rows("1,Ann,Lyon\n3,Cid,Oslo\n4,Dan,Kyiv"));
    assert_eq!(history(&p).len(), 7);
}

fn run_all(p: &TestProject, crash_in_run_2: Option<&str>) {
    p.write("changes/1.csv", RUNS[0]);
    p.ok(&["run"]);
    p.write("changes/2.csv", RUNS[1]);
    if let Some(point) = crash_in_run_2 {
        let out = p
            .command(&["run"])
            .env("CONFLUO_FAILPOINT", point)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "the run should have crashed at {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    p.ok(&["run"]);
    p.write("changes/3.csv", RUNS[2]);
    p.ok(&["run"]);
}

#[test]
fn crash_between_commits_then_rerun_equals_one_clean_run() {
    let clean = project();
    run_all(&clean, None);
    let expected = (history(&clean), current(&clean));
    for point in [
        "auto_cdc.after_state_commit",
        "auto_cdc.after_target_commit",
    ] {
        let p = project();
        run_all(&p, Some(point));
        assert_eq!((history(&p), current(&p)), expected, "crashed at {point}");
    }
}

#[test]
fn sigkill_during_a_run_then_rerun_equals_one_clean_run() {
    let clean = project();
    clean.write("changes/1.csv", RUNS[0]);
    clean.ok(&["run"]);
    clean.write("changes/2.csv", RUNS[1]);
    let started = std::time::Instant::now();
    clean.ok(&["run"]);
    let run_time = started.elapsed();
    clean.write("changes/3.csv", RUNS[2]);
    clean.ok(&["run"]);
    let expected = (history(&clean), current(&clean));
    for frac in [0.2, 0.4, 0.6, 0.8, 0.95] {
        let p = project();
        p.write("changes/1.csv", RUNS[0]);
        p.ok(&["run"]);
        p.write("changes/2.csv", RUNS[1]);
        let mut child = p
            .command(&["run"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(run_time.mul_f64(frac));
        if child.try_wait().unwrap().is_none() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        }
        let _ = child.wait();
        p.ok(&["run"]);
        p.write("changes/3.csv", RUNS[2]);
        p.ok(&["run"]);
        assert_eq!(
            (history(&p), current(&p)),
            expected,
            "killed at {frac} of a run"
        );
    }
}

#[test]
fn python_deltalake_reads_the_targets() {
    let p = project();
    for (i, run) in RUNS.iter().enumerate() {
        p.write(&format!("changes/{}.csv", i + 1), run);
        p.ok(&["run"]);
    }
    let location = |t: &str| p.rows(&format!("DESCRIBE DETAIL p.{t}"))[0][4].clone();
    let theirs = run_python(&format!(
        r#"
import deltalake
h = deltalake.DeltaTable("{}").to_pyarrow_table().sort_by([("id", "ascending"), ("__START_AT", "ascending")])
for r in h.to_pylist():
    print("H", r["id"], r["name"], r["city"], r["__START_AT"], r["__END_AT"])
c = deltalake.DeltaTable("{}").to_pyarrow_table().sort_by("id")
print("C", c.column_names)
for r in c.to_pylist():
    print("C", r["id"], r["name"], r["city"])
"#,
        location("customers_history"),
        location("customers")
    ));
    let expected = "\
H 1 Ann Paris 1 3
H 1 Ann Nice 3 5
H 1 Ann Lyon 5 None
H 2 Bob Rome 2 5
H 2 Bob Milan 5 6
H 3 Cid Oslo 3 None
H 4 Dan Kyiv 2 None
C ['id', 'name', 'city']
C 1 Ann Lyon
C 3 Cid Oslo
C 4 Dan Kyiv
";
    assert_eq!(theirs, expected);
}
