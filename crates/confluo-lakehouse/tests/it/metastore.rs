//! The same metastore behaviour on SQLite and on PostgreSQL.

use std::collections::BTreeMap;

use confluo_core::TableName;
use confluo_lakehouse::metastore::{IngestedFile, Metastore, TableInfo};
use sqlx::Connection;

async fn exercise(ms: &Metastore) {
    assert!(
        ms.create_catalog("main", None, Some("me"), false)
            .await
            .unwrap()
    );
    assert!(!ms.create_catalog("main", None, None, true).await.unwrap());
    let dup = ms
        .create_catalog("main", None, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(dup.contains("already exists"), "{dup}");
    ms.create_schema("main", "bronze", Some("raw"), None, false)
        .await
        .unwrap();
    let missing = ms
        .create_schema("nope", "x", None, None, false)
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("catalog nope does not exist"), "{missing}");
    let name = TableName::new("main", "bronze", "Orders");
    let info = TableInfo {
        id: "t1".into(),
        name: name.clone(),
        location: "file:///tmp/x/".into(),
        format: "delta".into(),
        managed: true,
        owner: Some("me".into()),
        comment: None,
        properties: BTreeMap::from([("k".to_string(), "v".to_string())]),
        created_at: 1,
        updated_at: 1,
    };
    ms.create_table(&info).await.unwrap();
    assert!(ms.create_table(&info).await.is_err());
    let got = ms.get_table(&name).await.unwrap().unwrap();
    assert_eq!(got.properties["k"], "v");
    // Names are exact: case folding happens before the metastore.
    assert!(
        ms.get_table(&TableName::new("main", "bronze", "orders"))
            .await
            .unwrap()
            .is_none()
    );
    ms.set_table_comment(&name, Some("c")).await.unwrap();
    assert_eq!(
        ms.get_table(&name)
            .await
            .unwrap()
            .unwrap()
            .comment
            .as_deref(),
        Some("c")
    );
    assert_eq!(
        ms.list_tables(Some("main"), Some("bronze"))
            .await
            .unwrap()
            .len(),
        1
    );
    let f = |p: &str| IngestedFile {
        path: p.into(),
        size: 10,
        modified_ms: 5,
        delta_version: 0,
    };
    ms.record_ingest("t1", 1, false, &[f("a"), f("b")])
        .await
        .unwrap();
    ms.record_ingest("t1", 2, false, &[f("c")]).await.unwrap();
    assert_eq!(ms.ingested_files("t1").await.unwrap().len(), 3);
    assert_eq!(ms.indexed_version("t1").await.unwrap(), Some(2));
    ms.record_ingest("t1", 3, true, &[f("d")]).await.unwrap();
    assert_eq!(ms.ingested_files("t1").await.unwrap().len(), 1);
    assert!(ms.drop_table(&name).await.unwrap().is_some());
    assert!(ms.ingested_files("t1").await.unwrap().is_empty());
    assert!(ms.drop_table(&name).await.unwrap().is_none());

    // Job runs and task attempts.
    ms.start_job_run(
        "r1",
        "nightly",
        "manual",
        &serde_json::json!({"day": "d"}),
        "w1",
    )
    .await
    .unwrap();
    assert_eq!(ms.job_run("r1").await.unwrap()[0].state, "queued");
    let fresh = chrono::Utc::now().timestamp_millis() - 30_000;
    assert!(
        ms.start_queued_run("r1", "nightly", 1, "w1", fresh)
            .await
            .unwrap()
    );
    let mut a = confluo_lakehouse::TaskAttempt {
        run_id: "r1".into(),
        task: "load".into(),
        attempt: 1,
        state: "running".into(),
        message: None,
        exit_code: None,
        values: None,
        log: None,
        started_ms: 10,
        ended_ms: None,
    };
    ms.record_task_attempt(&a).await.unwrap();
    a.state = "succeeded".into();
    a.exit_code = Some(0);
    a.values = Some(serde_json::json!({"n": 3}));
    a.log = Some("done\n".into());
    a.ended_ms = Some(20);
    ms.record_task_attempt(&a).await.unwrap();
    ms.end_job_run("r1", "succeeded", None).await.unwrap();
    ms.start_job_run("r2", "other", "manual", &serde_json::json!({}), "w1")
        .await
        .unwrap();
    let runs = ms.job_runs(Some("nightly"), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].state, "succeeded");
    assert_eq!(runs[0].parameters["day"], "d");
    assert!(runs[0].ended_ms.is_some());
    assert_eq!(ms.job_runs(None, 10).await.unwrap().len(), 2);
    assert_eq!(ms.job_run("r").await.unwrap().len(), 2);
    assert_eq!(ms.job_run("r2").await.unwrap()[0].state, "queued");
    // One slot: a second run of the job waits while the first runs, and starts once it
    // ended.
    ms.start_job_run("r3", "other", "manual", &serde_json::json!({}), "w1")
        .await
        .unwrap();
    assert!(
        ms.start_queued_run("r2", "other", 1, "w1", fresh)
            .await
            .unwrap()
    );
    assert!(
        !ms.start_queued_run("r3", "other", 1, "w2", fresh)
            .await
            .unwrap()
    );
    assert!(
        ms.start_queued_run("r3", "other", 2, "w2", fresh)
            .await
            .unwrap()
    );
    assert_eq!(ms.unfinished_job_runs("other").await.unwrap(), 2);
    ms.end_job_run("r2", "succeeded", None).await.unwrap();
    ms.end_job_run("r3", "failed", Some("x")).await.unwrap();
    let ended = ms.ended_job_runs("other", 0).await.unwrap();
    assert_eq!(ended.len(), 2);
    // A queued run is cancelled at once.
    ms.start_job_run("r4", "other", "manual", &serde_json::json!({}), "w1")
        .await
        .unwrap();
    assert_eq!(
        ms.request_cancel("r4").await.unwrap().as_deref(),
        Some("cancelled")
    );
    let attempts = ms.task_attempts("r1").await.unwrap();
    assert_eq!(attempts, vec![a]);

    // A tick fires once: the second worker to see it records nothing, and a worker whose
    // reading of the cursor is out of date moves nothing.
    assert_eq!(ms.trigger_cursor("nightly").await.unwrap(), None);
    let planned = |key: &str, id: &str| confluo_lakehouse::PlannedRun {
        key: key.into(),
        run_id: id.into(),
        logical_ms: 1000,
        trigger_info: [("files".to_string(), "a.csv".to_string())].into(),
    };
    let first = confluo_lakehouse::CursorMove {
        from: None,
        to: 1000,
        state: Some("[\"a.csv\"]".into()),
    };
    let fired = ms
        .fire_trigger(
            "nightly",
            "cron",
            &first,
            &[planned("cron:nightly:1000", "t1")],
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    assert_eq!(fired, vec!["t1".to_string()]);
    let fired = ms
        .fire_trigger(
            "nightly",
            "cron",
            &first,
            &[planned("cron:nightly:1000", "t2")],
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    assert!(fired.is_empty(), "the cursor moved: this fire is stale");
    let state = ms.trigger_state("nightly").await.unwrap().unwrap();
    assert_eq!(
        (state.cursor, state.state.as_deref()),
        (1000, Some("[\"a.csv\"]"))
    );
    let again = confluo_lakehouse::CursorMove {
        from: Some(state),
        to: 2000,
        state: None,
    };
    let fired = ms
        .fire_trigger(
            "nightly",
            "cron",
            &again,
            &[planned("cron:nightly:1000", "t2")],
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    assert!(fired.is_empty(), "the key was recorded already");
    assert_eq!(ms.trigger_cursor("nightly").await.unwrap(), Some(2000));
    assert_eq!(ms.job_run("t2").await.unwrap().len(), 0);
    let t1 = ms.job_run("t1").await.unwrap().remove(0);
    assert_eq!(
        (t1.trigger.as_str(), t1.logical_ms, t1.state.as_str()),
        ("cron", Some(1000), "queued")
    );
    assert_eq!(t1.trigger_info["files"], "a.csv");
    let queued = ms.queued_job_runs(fresh).await.unwrap();
    assert!(queued.iter().any(|r| r.run_id == "t1"), "{queued:?}");
    assert!(
        ms.start_queued_run("t1", "nightly", 1, "w1", fresh)
            .await
            .unwrap()
    );
    // Its worker goes silent: another claims it, once.
    let later = chrono::Utc::now().timestamp_millis() + 60_000;
    let orphans = ms.orphaned_job_runs(later).await.unwrap();
    assert!(orphans.iter().any(|r| r.run_id == "t1"), "{orphans:?}");
    assert!(ms.claim_job_run("t1", "w2", later).await.unwrap());
    let now = chrono::Utc::now().timestamp_millis() - 10_000;
    assert!(!ms.claim_job_run("t1", "w3", now).await.unwrap());
    assert_eq!(
        ms.job_run("t1").await.unwrap()[0].worker.as_deref(),
        Some("w2")
    );
}

#[tokio::test]
async fn sqlite_metastore() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/state/m.db?mode=rwc", dir.path().display());
    let ms = Metastore::connect(&url).await.unwrap();
    exercise(&ms).await;
    // Migrations run once: connecting again is fine.
    Metastore::connect(&url).await.unwrap();
}

#[tokio::test]
async fn postgres_metastore() {
    let db = format!("confluo_ms_{}", uuid::Uuid::new_v4().simple());
    let admin = "postgres://postgres@127.0.0.1:5432/postgres";
    let mut c = sqlx::PgConnection::connect(admin)
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (run scripts/test.sh)");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut c)
        .await
        .unwrap();
    let ms = Metastore::connect(&format!("postgres://postgres@127.0.0.1:5432/{db}"))
        .await
        .unwrap();
    exercise(&ms).await;
    ms.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {db} WITH (FORCE)"
    )))
    .execute(&mut c)
    .await
    .unwrap();
}

#[tokio::test]
async fn unreachable_and_bad_urls_are_clear() {
    let e = Metastore::connect("postgres://nobody@127.0.0.1:1/x")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot connect to the metastore at postgres://nobody@127.0.0.1:1/x"),
        "{e}"
    );
    let e = Metastore::connect("postgres://u:secret@127.0.0.1:1/x")
        .await
        .unwrap_err()
        .to_string();
    assert!(!e.contains("secret"), "{e}");
}
