//! Binlog change data capture from the machine's MariaDB into the lakehouse: a `mode: cdc`
//! entry over a `type: mysql` connection copies the tables, then applies inserts, updates,
//! deletes, key changes, multi-statement transactions, a truncate, a new column and a
//! binlog rotation; every type streamed lands exactly as the copy lands it; SIGKILL while
//! streaming and a MariaDB restart lose and duplicate nothing; and the errors a user can
//! cause say what to fix. Each test works in its own database (see `mysql::MyDb`).

use std::time::Duration;

use sqlx::Connection;

use crate::common::TestProject;
use crate::mysql::{MyDb, fail, ok, run};

/// First column of each row of `sql` in the test database, as text (NULL as "∅").
fn source_rows(db: &MyDb, sql: &str) -> Vec<String> {
    db.rt.block_on(async {
        let url = format!("mysql://root@127.0.0.1:3306/{}", db.name);
        let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|r| {
                use sqlx::Row;
                r.try_get_unchecked::<Option<&[u8]>, _>(0)
                    .unwrap()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_else(|| "∅".into())
            })
            .collect()
    })
}

/// Rows of a lakehouse query, each as its CSV line.
fn lake(p: &TestProject, sql: &str) -> Vec<String> {
    let out = ok(p, &["query", sql, "--format", "csv"]);
    out.lines().skip(1).map(str::to_string).collect()
}

fn cdc_project(db: &MyDb, tables: &str, entry_extra: &str) -> TestProject {
    db.project("", tables, &format!("    mode: cdc\n{entry_extra}"))
}

const SCHEMA: &str = "
CREATE TABLE orders (
  id BIGINT PRIMARY KEY, customer INT NOT NULL, amount DECIMAL(12,2), note VARCHAR(100),
  l1 VARCHAR(20) CHARACTER SET latin1, created DATETIME(6), flag BOOL, u INT UNSIGNED,
  e ENUM('new','paid','shipped'), s SET('a','b','c'), doc JSON, raw BLOB
);
CREATE TABLE items (id INT PRIMARY KEY, order_id BIGINT, qty SMALLINT);
CREATE TABLE events (k VARCHAR(20) PRIMARY KEY, v INT);
INSERT INTO orders SELECT seq, seq % 97, seq * 1.25, CONCAT('note ', seq), 'café',
  TIMESTAMPADD(MINUTE, seq, '2024-01-01 00:00:00.000001'), seq % 2, 4000000000 + seq,
  ELT(seq % 3 + 1, 'new', 'paid', 'shipped'), 'a,c', JSON_OBJECT('g', seq), UNHEX(HEX(seq))
  FROM seq_1_to_3000;
INSERT INTO items SELECT seq, seq % 3000 + 1, seq % 7 FROM seq_1_to_2000;
INSERT INTO events SELECT CONCAT('k', seq), seq FROM seq_1_to_100;
";

/// Changes of every kind, in transactions of mixed sizes, with a binlog rotation and a new
/// column in the middle.
const WORKLOAD: &str = "
START TRANSACTION;
INSERT INTO orders (id, customer, amount, note) SELECT seq, 1, 9.99, CONCAT('new ', seq) FROM seq_3001_to_3500;
COMMIT;
UPDATE orders SET amount = amount + 1, e = 'paid', s = 'b' WHERE id % 10 = 0 AND id <= 1000;
UPDATE orders SET note = NULL, doc = NULL, l1 = 'àéîõü' WHERE id BETWEEN 100 AND 150;
DELETE FROM orders WHERE id BETWEEN 200 AND 260;
UPDATE orders SET id = 100000 WHERE id = 5;
FLUSH BINARY LOGS;
START TRANSACTION;
UPDATE orders SET customer = customer + 1 WHERE id > 1000;
INSERT INTO orders (id, customer) VALUES (200, 7);
DELETE FROM orders WHERE id = 3001;
COMMIT;
TRUNCATE items;
INSERT INTO items SELECT seq, seq, 1 FROM seq_1_to_300;
DELETE FROM events WHERE v > 90;
ALTER TABLE events ADD COLUMN extra VARCHAR(10) NULL;
UPDATE events SET v = -v, extra = CONCAT('x', v) WHERE v < 10;
";

/// Each order as one line, the same text on both sides.
const ORDERS_SOURCE: &str = "SELECT CONCAT_WS('|', id, customer, COALESCE(amount, '∅'), COALESCE(note, '∅'), COALESCE(CONVERT(l1 USING utf8mb4), '∅'), COALESCE(u, '∅'), COALESCE(e, '∅'), COALESCE(REPLACE(s, ',', '+'), '∅')) FROM orders ORDER BY id";
const ORDERS_LAKE: &str = "SELECT concat_ws('|', id, customer, coalesce(CAST(amount AS VARCHAR), '∅'), coalesce(note, '∅'), coalesce(l1, '∅'), coalesce(CAST(u AS VARCHAR), '∅'), coalesce(e, '∅'), coalesce(replace(s, ',', '+'), '∅')) AS line FROM bronze.orders ORDER BY id";

#[test]
fn binlog_copy_then_every_kind_of_change_matches_the_source() {
    let db = MyDb::new();
    db.exec(SCHEMA);
    let p = cdc_project(&db, "[\"*\"]", "");
    let first: serde_json::Value =
        serde_json::from_str(ok(&p, &["sync", "e", "--json"]).trim()).expect("json");
    let copied = first["report"]["copied"].to_string();
    assert!(
        copied.contains("orders") && copied.contains("3000"),
        "{first}"
    );
    assert_eq!(lake(&p, "SELECT count(*) FROM bronze.orders"), ["3000"]);

    db.exec(WORKLOAD);
    let second: serde_json::Value =
        serde_json::from_str(ok(&p, &["sync", "e", "--json"]).trim()).expect("json");
    let r = &second["report"];
    assert!(r["changes"].as_u64().unwrap() > 1000, "{second}");
    assert!(
        r["copied"].as_array().unwrap().is_empty(),
        "no copy again: {second}"
    );

    assert_eq!(lake(&p, ORDERS_LAKE), source_rows(&db, ORDERS_SOURCE));
    assert_eq!(
        lake(
            &p,
            "SELECT concat_ws('|', id, order_id, qty) FROM bronze.items ORDER BY id"
        ),
        source_rows(
            &db,
            "SELECT CONCAT_WS('|', id, order_id, qty) FROM items ORDER BY id"
        )
    );
    assert_eq!(
        lake(
            &p,
            "SELECT concat_ws('|', k, v, coalesce(extra, '∅')) FROM bronze.events ORDER BY k"
        ),
        source_rows(
            &db,
            "SELECT CONCAT_WS('|', k, v, COALESCE(extra, '∅')) FROM events ORDER BY k"
        )
    );
    // The datetime and JSON columns round-trip too.
    assert_eq!(
        lake(
            &p,
            "SELECT CAST(created AS VARCHAR) FROM bronze.orders WHERE id = 7"
        ),
        ["2024-01-01T00:07:00.000001"]
    );
    assert_eq!(
        lake(&p, "SELECT doc FROM bronze.orders WHERE id = 7"),
        source_rows(&db, "SELECT doc FROM orders WHERE id = 7")
            .iter()
            .map(|d| format!("\"{}\"", d.replace('"', "\"\"")))
            .collect::<Vec<_>>()
    );
    for (src, dst) in [("orders", "bronze.orders"), ("items", "bronze.items")] {
        let out = ok(&p, &["verify", &format!("my.{src}"), dst]);
        assert!(out.starts_with("equal"), "{out}");
    }
    // Nothing new: a sync applies nothing and copies nothing.
    let third: serde_json::Value =
        serde_json::from_str(ok(&p, &["sync", "e", "--json"]).trim()).expect("json");
    assert_eq!(third["report"]["changes"], 0, "{third}");
    // The binlog position is recorded with every commit.
    let history = ok(
        &p,
        &[
            "query",
            "DESCRIBE HISTORY bronze.orders",
            "--format",
            "json",
        ],
    );
    assert!(history.contains("binlog"), "{history}");
}

/// Every type through the binlog lands exactly as the copy lands it: a twin table filled
/// after the copy (so only through the stream) holds the same lakehouse rows.
#[test]
fn binlog_every_type_equals_the_copy() {
    let db = MyDb::new();
    db.exec(crate::mysql::TYPES_SQL);
    db.exec("CREATE TABLE all_types_s LIKE all_types");
    let p = cdc_project(&db, "[\"*\"]", "");
    ok(&p, &["sync", "e"]);
    db.exec("INSERT INTO all_types_s SELECT * FROM all_types");
    ok(&p, &["sync", "e"]);
    let diff = |a: &str, b: &str| {
        lake(
            &p,
            &format!(
                "SELECT count(*) FROM (SELECT * FROM bronze.{a} EXCEPT ALL SELECT * FROM bronze.{b})"
            ),
        )
    };
    assert_eq!(lake(&p, "SELECT count(*) FROM bronze.all_types_s"), ["4"]);
    assert_eq!(diff("all_types", "all_types_s"), ["0"]);
    assert_eq!(diff("all_types_s", "all_types"), ["0"]);
    // Updates carry whole rows (before and after images) of every type too.
    db.exec(
        "UPDATE all_types SET vc = 'changed' WHERE id = 1;
         UPDATE all_types_s SET vc = 'changed' WHERE id = 1",
    );
    ok(&p, &["sync", "e"]);
    assert_eq!(diff("all_types", "all_types_s"), ["0"]);
    assert_eq!(
        lake(
            &p,
            "SELECT vc, bu, l1, e, st FROM bronze.all_types_s WHERE id = 1"
        ),
        ["changed,18446744073709551615,café àé,b,\"x,y\""]
    );
}

/// SIGKILL of `sync --continuous` at several moments while transfers run, then a final
/// sync: the lakehouse equals the source, and the total balance is what the transfers keep.
#[test]
fn binlog_sigkill_while_streaming_loses_and_duplicates_nothing() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE acct (id INT PRIMARY KEY, balance BIGINT NOT NULL);
         INSERT INTO acct SELECT seq, 100 FROM seq_1_to_500",
    );
    let p = cdc_project(&db, "[acct]", "");
    ok(&p, &["sync", "e"]);
    let url = format!("mysql://root@127.0.0.1:3306/{}", db.name);
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
            for i in 0..400i64 {
                if i == 200 {
                    // A schema change while Confluo streams (and is killed).
                    sqlx::raw_sql("ALTER TABLE acct ADD COLUMN note VARCHAR(20) NULL")
                        .execute(&mut c)
                        .await
                        .unwrap();
                }
                let (a, b) = ((i * 7) % 500 + 1, (i * 13 + 5) % 500 + 1);
                let note = if i >= 200 {
                    format!("UPDATE acct SET note = 'n{i}' WHERE id = {a};")
                } else {
                    String::new()
                };
                let sql = format!(
                    "START TRANSACTION; UPDATE acct SET balance = balance - 3 WHERE id = {a}; UPDATE acct SET balance = balance + 3 WHERE id = {b}; {note} {} COMMIT",
                    if i % 50 == 0 {
                        format!("INSERT INTO acct (id, balance) VALUES ({}, 0);", 1000 + i)
                    } else {
                        String::new()
                    }
                );
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    });
    let mut kills = 0;
    while !writer.is_finished() || kills < 3 {
        let mut child = p
            .command(&["sync", "e", "--continuous", "--interval", "100ms"])
            .env("CONFLUO_T_MYPASS", "")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(400 + (kills * 230) % 700));
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        kills += 1;
    }
    writer.join().unwrap();
    ok(&p, &["sync", "e"]);
    assert_eq!(
        lake(
            &p,
            "SELECT concat_ws('|', id, balance) FROM bronze.acct ORDER BY id"
        ),
        source_rows(
            &db,
            "SELECT CONCAT_WS('|', id, balance) FROM acct ORDER BY id"
        )
    );
    assert_eq!(lake(&p, "SELECT sum(balance) FROM bronze.acct"), ["50000"]);
}

/// A MariaDB restart while `sync --continuous` streams: it reconnects by itself (the
/// restart also starts a new binlog file) and, after catch-up, the table equals the source.
/// Runs alone (see .config/nextest.toml): other tests would lose their connections.
#[test]
fn mariadb_restart_while_streaming() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE acct (id INT PRIMARY KEY, balance BIGINT NOT NULL);
         INSERT INTO acct SELECT seq, 100 FROM seq_1_to_500",
    );
    let p = cdc_project(&db, "[acct]", "");
    ok(&p, &["sync", "e"]);
    let url = format!("mysql://root@127.0.0.1:3306/{}", db.name);
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut done = 0;
            while done < 300 {
                let Ok(mut c) = sqlx::MySqlConnection::connect(&url).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                while done < 300 {
                    let sql = format!(
                        "UPDATE acct SET balance = balance + 1 WHERE id = {}",
                        (done * 7) % 500 + 1
                    );
                    if sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                        .execute(&mut c)
                        .await
                        .is_err()
                    {
                        break;
                    }
                    done += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    });
    let child = p
        .command(&["sync", "e", "--continuous", "--interval", "100ms"])
        .env("CONFLUO_T_MYPASS", "")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    restart_mariadb();
    writer.join().unwrap();
    std::thread::sleep(Duration::from_millis(3000));
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("reconnecting"),
        "no reconnect reported: {stderr}"
    );
    ok(&p, &["sync", "e"]);
    assert_eq!(
        lake(
            &p,
            "SELECT concat_ws('|', id, balance) FROM bronze.acct ORDER BY id"
        ),
        source_rows(
            &db,
            "SELECT CONCAT_WS('|', id, balance) FROM acct ORDER BY id"
        )
    );
}

/// Stops MariaDB and starts it again the way scripts/setup-services.sh does.
fn restart_mariadb() {
    let status = std::process::Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-u", "root", "-e", "SHUTDOWN"])
        .status()
        .expect("run mariadb client");
    assert!(status.success(), "SHUTDOWN failed");
    for _ in 0..120 {
        let running = std::process::Command::new("pgrep")
            .args(["-x", "mariadbd"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let started = std::process::Command::new("bash")
        .args(["-c", "mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld; start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd"])
        .status()
        .expect("start mariadbd");
    assert!(started.success(), "could not start mariadbd");
    for _ in 0..120 {
        let ready = std::process::Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e", "SELECT 1"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ready {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("MariaDB did not come back");
}

/// SCD type 2: each transaction's version of a row is kept, with `__START_AT` /
/// `__END_AT` in binlog order, and a delete closes the last version.
#[test]
fn binlog_scd_type_2_keeps_every_version() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE dim (id INT PRIMARY KEY, name VARCHAR(20));
         INSERT INTO dim VALUES (1, 'a'), (2, 'b')",
    );
    let p = cdc_project(&db, "[dim]", "    scd_type: 2\n");
    ok(&p, &["sync", "e"]);
    db.exec(
        "UPDATE dim SET name = 'a2' WHERE id = 1;
         UPDATE dim SET name = 'a3' WHERE id = 1;
         DELETE FROM dim WHERE id = 2",
    );
    ok(&p, &["sync", "e"]);
    assert_eq!(
        lake(
            &p,
            // The history columns by their names as written, unquoted.
            "SELECT concat_ws('|', id, name, __END_AT IS NULL) FROM bronze.dim ORDER BY id, __START_AT"
        ),
        ["1|a|false", "1|a2|false", "1|a3|true", "2|b|false"]
    );
}

/// What a user can get wrong: a user without replication privileges, a table without a
/// primary key, a wrong password, an unreachable server.
#[test]
fn binlog_capture_errors_say_what_to_fix() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE keyed (id INT PRIMARY KEY, v INT);
         CREATE TABLE heap (v INT)",
    );
    let p = cdc_project(&db, "[heap]", "");
    let e = fail(&p, &["sync", "e"]);
    assert!(
        e.contains("heap") && e.contains("no primary key") && e.contains("mode: snapshot"),
        "{e}"
    );

    let user = format!("u{}", &db.name[db.name.len() - 10..]);
    db.admin(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'"));
    db.admin(&format!("GRANT SELECT ON {}.* TO '{user}'@'%'", db.name));
    let p = TestProject::with_config(&format!(
        "connections:\n  my:\n    type: mysql\n    host: 127.0.0.1\n    database: {}\n    user: {user}\n    password: pw\n    ssl_mode: disabled\ningest:\n  e:\n    connection: my\n    tables: [keyed]\n    schema: bronze\n    mode: cdc\n",
        db.name
    ));
    let e = fail(&p, &["sync", "e"]);
    db.admin(&format!("DROP USER '{user}'@'%'"));
    assert!(
        e.contains("lacks REPLICATION SLAVE") && e.contains("GRANT REPLICATION SLAVE"),
        "{e}"
    );

    let p = db.project("    connect_timeout: 3\n", "[keyed]", "    mode: cdc\n");
    let out = p
        .command(&["sync", "e"])
        .env("CONFLUO_T_MYPASS", "wrong")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(e.contains("password"), "{e}");

    let p = TestProject::with_config(
        "connections:\n  my:\n    type: mysql\n    host: 127.0.0.1\n    port: 1\n    database: x\n    user: root\n    ssl_mode: disabled\ningest:\n  e:\n    connection: my\n    tables: [t]\n    schema: bronze\n    mode: cdc\n",
    );
    let out = run(&p, &["sync", "e"]);
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert!(
        e.contains("127.0.0.1:1") && e.contains("cannot reach"),
        "{e}"
    );
}

/// Server settings change capture cannot work with, each a clear error: STATEMENT and MIXED
/// binlog formats and minimal row images (set globally for the test, then restored; binary
/// logging off needs a restart and is covered by the connector's unit test). Runs alone
/// (see .config/nextest.toml): the global settings would reach other tests' sessions.
#[test]
fn mariadb_global_binlog_settings_are_clear_errors() {
    struct Restore<'a>(&'a MyDb);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0
                .admin("SET GLOBAL binlog_format = 'ROW', GLOBAL binlog_row_image = 'FULL'");
        }
    }
    let db = MyDb::new();
    db.exec("CREATE TABLE t (id INT PRIMARY KEY)");
    let p = cdc_project(&db, "[t]", "");
    let _restore = Restore(&db);
    for format in ["STATEMENT", "MIXED"] {
        db.admin(&format!("SET GLOBAL binlog_format = '{format}'"));
        let e = fail(&p, &["sync", "e"]);
        assert!(
            e.contains(&format!("{format} format")) && e.contains("binlog_format = 'ROW'"),
            "{e}"
        );
    }
    db.admin("SET GLOBAL binlog_format = 'ROW', GLOBAL binlog_row_image = 'MINIMAL'");
    let e = fail(&p, &["sync", "e"]);
    assert!(e.contains("binlog_row_image is MINIMAL"), "{e}");
    let out = ok(&p, &["connections", "test", "my"]);
    assert!(out.contains("change capture  not possible"), "{out}");
}

/// The binlog file an entry stands in is purged (as `expire_logs_days` or an operator
/// would): the next sync resumes from the MariaDB GTID position saved beside it, and the
/// table still equals the source. Runs alone (see .config/nextest.toml): purging binlogs
/// would pull the ground from under other tests' entries.
#[test]
fn mariadb_global_purged_binlog_resumes_by_gtid() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE t (id INT PRIMARY KEY, v INT);
         INSERT INTO t SELECT seq, seq FROM seq_1_to_100",
    );
    let p = cdc_project(&db, "[t]", "");
    ok(&p, &["sync", "e"]);
    db.exec("UPDATE t SET v = v + 1 WHERE id <= 10");
    ok(&p, &["sync", "e"]);
    // Where the entry stands, as the metastore records it: binlog file, position and GTID.
    let status: serde_json::Value =
        serde_json::from_str(&ok(&p, &["sync", "--status", "--json"])).unwrap();
    let saved = &status[0]["offset"];
    assert_eq!(saved["source"], "mysql", "{status}");
    assert!(saved["gtid"].is_string(), "{status}");
    let saved_file = saved["file"].as_str().unwrap().to_string();
    // MariaDB keeps a file until its binlog checkpoint is written: rotate and purge until
    // the entry's file is really gone.
    let mut gone = false;
    for _ in 0..40 {
        db.admin("FLUSH BINARY LOGS");
        let current = source_rows(&db, "SHOW MASTER STATUS");
        db.admin(&format!("PURGE BINARY LOGS TO '{}'", current[0]));
        if !source_rows(&db, "SHOW BINARY LOGS").contains(&saved_file) {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(gone, "MariaDB kept {saved_file}");
    db.exec("DELETE FROM t WHERE id = 1; INSERT INTO t VALUES (1000, 1); UPDATE t SET v = 0 WHERE id = 50");
    let out = run(&p, &["sync", "e"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming from GTID position"), "{stderr}");
    assert_eq!(
        lake(&p, "SELECT concat_ws('|', id, v) FROM bronze.t ORDER BY id"),
        source_rows(&db, "SELECT CONCAT_WS('|', id, v) FROM t ORDER BY id")
    );
}

/// `STREAM read_changes('my', 'db.customers')` in a pipeline: the MariaDB table's change
/// feed from the binlog, applied by AUTO CDC flows (SCD 1 equals the source, SCD 2 keeps the
/// versions), one change per key per transaction.
#[test]
fn binlog_read_changes_feeds_auto_cdc_flows() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(20), city VARCHAR(20));
         INSERT INTO customers VALUES (1, 'Ann', 'Paris'), (2, 'Bob', 'Rome'), (3, 'Cid', 'Oslo')",
    );
    let p = TestProject::with_config(&format!(
        "{}pipelines:\n  crm:\n    libraries: [\"pipelines/*.sql\"]\n    schema: crm\n",
        db.connection("")
    ));
    p.write(
        "pipelines/cdc.sql",
        format!(
            "CREATE OR REFRESH STREAMING TABLE customer_changes
AS SELECT * FROM STREAM read_changes('my', '{}.customers');

CREATE OR REFRESH STREAMING TABLE customers;
CREATE FLOW customers_scd1 AS AUTO CDC INTO customers
FROM STREAM(customer_changes)
KEYS (id)
APPLY AS DELETE WHEN _op = 'DELETE'
SEQUENCE BY _lsn
COLUMNS * EXCEPT (_op, _lsn, _commit_ts)
STORED AS SCD TYPE 1;

CREATE OR REFRESH STREAMING TABLE customers_history;
CREATE FLOW customers_scd2 AS AUTO CDC INTO customers_history
FROM STREAM(customer_changes)
KEYS (id)
APPLY AS DELETE WHEN _op = 'DELETE'
SEQUENCE BY _lsn
COLUMNS * EXCEPT (_op, _lsn, _commit_ts)
STORED AS SCD TYPE 2;
",
            db.name
        ),
    );
    ok(&p, &["validate"]);
    ok(&p, &["run"]);
    assert_eq!(
        lake(
            &p,
            "SELECT count(*) FROM crm.customer_changes WHERE _op = 'INSERT'"
        ),
        ["3"]
    );
    db.exec(
        "UPDATE customers SET city = 'Lyon' WHERE id = 1;
         DELETE FROM customers WHERE id = 2;
         INSERT INTO customers VALUES (4, 'Dee', 'Rome');
         START TRANSACTION;
         UPDATE customers SET city = 'Nice' WHERE id = 1;
         UPDATE customers SET name = 'Cyd' WHERE id = 3;
         COMMIT",
    );
    ok(&p, &["run"]);
    let source = "SELECT CONCAT_WS('|', id, name, city) FROM customers ORDER BY id";
    assert_eq!(
        lake(
            &p,
            "SELECT concat_ws('|', id, name, city) FROM crm.customers ORDER BY id"
        ),
        source_rows(&db, source)
    );
    assert_eq!(
        lake(
            &p,
            "SELECT _op, count(*) FROM crm.customer_changes GROUP BY _op ORDER BY _op"
        ),
        ["DELETE,1", "INSERT,4", "UPDATE,3"]
    );
    assert_eq!(
        lake(
            &p,
            "SELECT concat_ws('|', id, city) FROM crm.customers_history WHERE id = 1 ORDER BY `__START_AT`"
        ),
        ["1|Paris", "1|Lyon", "1|Nice"]
    );
    // Nothing new: the next run reads nothing and changes nothing.
    ok(&p, &["run"]);
    assert_eq!(lake(&p, "SELECT count(*) FROM crm.customer_changes"), ["8"]);
}
