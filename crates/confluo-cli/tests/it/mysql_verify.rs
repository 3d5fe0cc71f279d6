//! `confluo verify` against MySQL / MariaDB sources: a table of many types synced by
//! `confluo sync` verifies equal; rows changed behind Confluo's back are named key by key;
//! tables verify cannot split say why. Runs against the MariaDB on 127.0.0.1:3306 (user
//! root, no password); each test works in its own database `confluo_t_<random>`, dropped at
//! the end.

use std::collections::BTreeMap;

use crate::common::TestProject;
use crate::mysql::{MyDb, ok, run};

/// Runs and expects exit status 1; returns stdout and stderr together.
fn fails(p: &TestProject, args: &[&str]) -> String {
    let out = run(p, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "confluo {args:?}:\n{text}");
    text
}

/// 50,000 rows over many types, with NULLs every tenth row, and a row of zero dates (null
/// on both sides).
const TYPES_SQL: &str = r#"
CREATE TABLE t (
  id INT UNSIGNED PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT UNSIGNED, i INT, iu INT UNSIGNED,
  bi BIGINT, bu BIGINT UNSIGNED, d DECIMAL(12,3), db DOUBLE, f FLOAT,
  vc VARCHAR(40), l1 VARCHAR(20) CHARACTER SET latin1, dtm DATETIME(6),
  ts TIMESTAMP(3) NULL DEFAULT NULL, dt DATE, tm TIME(6), bl BLOB, j JSON
);
INSERT INTO t SELECT seq,
  seq % 256 - 128, seq % 256, seq, seq * 7 - 100000, seq * 85899,
  -seq * 3037000499, 18446744073709551615 - seq, seq * 1.125 - 1000, seq / 7, seq / 3,
  IF(seq % 10 = 0, NULL, CONCAT('row ', seq, ' é😀')), CONCAT('café ', seq),
  TIMESTAMPADD(MICROSECOND, seq * 1000003, '2024-01-01 00:00:00'),
  IF(seq % 10 = 0, NULL, TIMESTAMPADD(MICROSECOND, seq * 1000, '2024-06-01 12:00:00')),
  DATE_ADD('1990-01-01', INTERVAL seq DAY), SEC_TO_TIME(seq + 0.25),
  IF(seq % 10 = 0, NULL, UNHEX(SHA1(seq))),
  IF(seq % 10 = 0, NULL, JSON_OBJECT('n', seq, 'tags', JSON_ARRAY('a', seq)))
FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_1_to_50000) q;
INSERT INTO t (id, dtm, dt) VALUES (50001, '0000-00-00 00:00:00', '2024-00-10')
"#;

/// The differences of a `--json` report, by key: `kind` and the columns that differ.
fn differences(report: &serde_json::Value) -> BTreeMap<String, (String, Vec<String>)> {
    report["differences"]
        .as_array()
        .expect("differences")
        .iter()
        .map(|d| {
            let columns = d["columns"]
                .as_array()
                .map(|c| {
                    c.iter()
                        .map(|c| c[0].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            (
                d["key"].as_str().unwrap().to_string(),
                (d["kind"].as_str().unwrap().to_string(), columns),
            )
        })
        .collect()
}

#[test]
fn synced_table_verifies_equal_then_changes_are_named() {
    let db = MyDb::new();
    db.exec(TYPES_SQL);
    let p = db.project("", "[t]", "");
    ok(&p, &["sync", "e"]);

    // `connection.table` (the connection's database) and `connection.database.table`.
    let out = ok(&p, &["verify", "my.t", "bronze.t"]);
    assert!(
        out.starts_with(&format!(
            "equal: my.{}.t and main.bronze.t hold the same 50,001 rows (19 columns",
            db.name
        )),
        "{out}"
    );
    let source = format!("my.{}.t", db.name);
    let r: serde_json::Value =
        serde_json::from_str(ok(&p, &["verify", &source, "bronze.t", "--json"]).trim()).unwrap();
    assert_eq!(r["equal"], true, "{r}");
    assert_eq!(r["source"], source.as_str(), "{r}");
    assert_eq!(r["source_rows"], 50_001, "{r}");
    assert_eq!(r["target_rows"], 50_001, "{r}");
    assert_eq!(r["columns"].as_array().unwrap().len(), 19, "{r}");

    // Behind Confluo's back: one row updated, one deleted, one inserted past the largest key.
    db.exec(
        "UPDATE t SET vc = 'changed', bu = 1 WHERE id = 777;
         DELETE FROM t WHERE id = 31337;
         INSERT INTO t (id, vc) VALUES (60000, 'new')",
    );
    let text = fails(&p, &["verify", "my.t", "bronze.t"]);
    assert!(
        text.starts_with(&format!(
            "different: my.{}.t has 50,001 rows, main.bronze.t has 50,001 rows",
            db.name
        )),
        "{text}"
    );
    assert!(
        text.contains("key 777: differs (bu: source 1, lakehouse 18446744073709550838; vc: source changed, lakehouse row 777 é😀)"),
        "{text}"
    );
    assert!(
        text.contains("key 31337: in main.bronze.t but not in the source"),
        "{text}"
    );
    assert!(
        text.contains("key 60000: missing in main.bronze.t"),
        "{text}"
    );
    assert_eq!(text.matches("  key ").count(), 3, "{text}");

    // Two first ranges of ~25,000 rows: each is split again before rows are compared.
    let out = run(
        &p,
        &["verify", &source, "bronze.t", "--json", "--ranges", "2"],
    );
    assert_eq!(out.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["equal"], false, "{r}");
    assert_eq!(r["truncated"], false, "{r}");
    let d = differences(&r);
    assert_eq!(
        d.into_iter().collect::<Vec<_>>(),
        vec![
            ("31337".to_string(), ("extra_in_target".to_string(), vec![])),
            (
                "60000".to_string(),
                ("missing_in_target".to_string(), vec![])
            ),
            (
                "777".to_string(),
                (
                    "changed".to_string(),
                    vec!["bu".to_string(), "vc".to_string()]
                )
            ),
        ],
        "{r}"
    );

    // Synced again, the tables are equal again.
    ok(&p, &["sync", "e"]);
    let out = ok(&p, &["verify", "my.t", "bronze.t"]);
    assert!(out.starts_with("equal:"), "{out}");
}

#[test]
fn tables_without_an_integer_key_are_refused() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE nopk (a INT, b VARCHAR(10));
         INSERT INTO nopk VALUES (1, 'x'), (2, 'y');
         CREATE TABLE twokeys (a INT, b INT, PRIMARY KEY (a, b));
         CREATE TABLE textkey (code VARCHAR(10) PRIMARY KEY)",
    );
    let p = db.project("", "[nopk, twokeys, textkey]", "");
    ok(&p, &["sync", "e"]);
    let e = fails(&p, &["verify", "my.nopk", "bronze.nopk"]);
    assert!(
        e.contains(&format!("{}.nopk", db.name))
            && e.contains("verify compares by a one-column primary key; this table has none"),
        "{e}"
    );
    let e = fails(&p, &["verify", "my.twokeys", "bronze.twokeys"]);
    assert!(e.contains("this table has 2 key columns"), "{e}");
    let e = fails(&p, &["verify", "my.textkey", "bronze.textkey"]);
    assert!(
        e.contains("verify splits the table by an integer primary key; `code` is varchar(10)"),
        "{e}"
    );
    // A table that does not exist: near names are suggested.
    let e = fails(&p, &["verify", "my.nopkk", "bronze.nopk"]);
    assert!(e.contains("no table matches") && e.contains("nopk"), "{e}");
}
