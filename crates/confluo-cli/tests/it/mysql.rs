//! The MySQL / MariaDB connector end to end: `confluo connections`, `confluo sync` in
//! snapshot mode, type mapping checked through `confluo query`, and the errors a user can
//! cause. Runs against the MariaDB on 127.0.0.1:3306 (user root, no password); each test
//! works in its own database `confluo_t_<random>`, dropped at the end.

use sqlx::Connection;

use crate::common::TestProject;

pub(crate) const ADMIN: &str = "mysql://root@127.0.0.1:3306/mysql";

/// A database of its own for one test; dropped when the test ends.
pub(crate) struct MyDb {
    pub(crate) name: String,
    pub(crate) rt: tokio::runtime::Runtime,
}

impl MyDb {
    pub(crate) fn new() -> Self {
        let name = format!("confluo_t_{}", uuid::Uuid::new_v4().simple());
        let db = MyDb {
            name: name.clone(),
            rt: tokio::runtime::Runtime::new().unwrap(),
        };
        db.admin(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"));
        db
    }

    /// Runs one statement as root outside the test database.
    pub(crate) fn admin(&self, sql: &str) {
        self.rt.block_on(async {
            let mut c = sqlx::MySqlConnection::connect(ADMIN).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// Runs statements separated by `;` at line ends, with an empty sql_mode so zero dates
    /// can be inserted.
    pub(crate) fn exec(&self, sql: &str) {
        self.rt.block_on(async {
            let url = format!("mysql://root@127.0.0.1:3306/{}", self.name);
            let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
            sqlx::raw_sql("SET SESSION sql_mode = ''")
                .execute(&mut c)
                .await
                .unwrap();
            for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::raw_sql(sqlx::AssertSqlSafe(stmt.to_string()))
                    .execute(&mut c)
                    .await
                    .unwrap_or_else(|e| panic!("{stmt}: {e}"));
            }
        });
    }

    /// The `connections:` entry `my` for this database, plus `extra` keys.
    pub(crate) fn connection(&self, extra: &str) -> String {
        format!(
            "connections:\n  my:\n    type: mysql\n    host: 127.0.0.1\n    port: 3306\n    database: {}\n    user: root\n    password: ${{env:CONFLUO_T_MYPASS}}\n    ssl_mode: disabled\n{extra}",
            self.name
        )
    }

    /// A project with connection `my` and ingest entry `e` syncing `tables` into `bronze`.
    pub(crate) fn project(&self, conn_extra: &str, tables: &str, entry_extra: &str) -> TestProject {
        TestProject::with_config(&format!(
            "{}ingest:\n  e:\n    connection: my\n    tables: {tables}\n    schema: bronze\n{entry_extra}",
            self.connection(conn_extra)
        ))
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        self.rt.block_on(async {
            if let Ok(mut c) = sqlx::MySqlConnection::connect(ADMIN).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name}"
                )))
                .execute(&mut c)
                .await;
            }
        });
    }
}

/// Runs confluo in `p` with the password variable set (empty: root has no password).
pub(crate) fn run(p: &TestProject, args: &[&str]) -> std::process::Output {
    p.command(args)
        .env("CONFLUO_T_MYPASS", "")
        .output()
        .expect("run confluo")
}

pub(crate) fn ok(p: &TestProject, args: &[&str]) -> String {
    crate::common::succeeded(args, run(p, args))
}

pub(crate) fn fail(p: &TestProject, args: &[&str]) -> String {
    let out = run(p, args);
    assert!(
        !out.status.success(),
        "confluo {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn sync_json(p: &TestProject) -> serde_json::Value {
    serde_json::from_str(ok(p, &["sync", "e", "--json"]).trim()).expect("sync summary")
}

pub(crate) const TYPES_SQL: &str = r#"
CREATE TABLE all_types (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT,
  mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, b BOOL,
  bt BIT(10), d DECIMAL(10,2), dbig DECIMAL(50,5), f FLOAT, db DOUBLE, c CHAR(3),
  vc VARCHAR(20), l1 VARCHAR(20) CHARACTER SET latin1, tx TEXT, bin BINARY(3),
  vb VARBINARY(10), bl BLOB, dt DATE, dtm DATETIME(6), ts TIMESTAMP(3) NULL DEFAULT NULL,
  tm TIME(6), tlong TIME, y YEAR, j JSON, e ENUM('a','b'), st SET('x','y'), g GEOMETRY
);
INSERT INTO all_types VALUES
 (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
  -9223372036854775808, 18446744073709551615, 1, b'1010', -12345678.91,
  -123456789012345678901234567890123456789012345.12345, 1.2345678, -2.25, 'ab', 'héllo 😀',
  'café àé', 'long text', 'abc', 0x00ff10, 'blob', '2024-02-29',
  '2024-01-02 03:04:05.678901', '2024-01-02 03:04:05.123', '13:45:30.123456', '100:00:00',
  2024, '{"a": [1, 2]}', 'b', 'x,y', ST_GeomFromText('POINT(1 2)'));
INSERT INTO all_types (id) VALUES (2);
INSERT INTO all_types (id, dt, dtm, ts) VALUES
 (3, '0000-00-00', '0000-00-00 00:00:00', '0000-00-00 00:00:00');
INSERT INTO all_types (id, dt, dtm) VALUES (4, '2024-00-10', '2024-05-00 10:00:00')
"#;

#[test]
fn types_round_trip() {
    let db = MyDb::new();
    db.exec(TYPES_SQL);
    let p = db.project("", &format!("[{}.all_types]", db.name), "");
    let s = sync_json(&p);
    assert_eq!(s["tables"][0]["rows"], 4, "{s}");
    assert_eq!(s["tables"][0]["table"], "main.bronze.all_types");
    assert!(s["snapshot"]["binlog_file"].is_string(), "{s}");
    assert_eq!(s["snapshot"]["exact"], true, "{s}");
    let row = |id: i32, cols: &str| {
        let r = p.rows(&format!(
            "SELECT {cols} FROM bronze.all_types WHERE id = {id}"
        ));
        assert_eq!(r.len(), 1);
        r[0].clone()
    };
    assert_eq!(
        row(
            1,
            "ti, tu, si, su, mi, mu, i, iu, bi, CAST(bu AS VARCHAR), b, bt"
        ),
        vec![
            "-128",
            "255",
            "-32768",
            "65535",
            "-8388608",
            "16777215",
            "-2147483648",
            "4294967295",
            "-9223372036854775808",
            "18446744073709551615",
            "1",
            "10"
        ]
    );
    assert_eq!(
        row(1, "CAST(d AS VARCHAR), dbig, f, db, c, vc, l1, tx"),
        vec![
            "-12345678.91",
            "-123456789012345678901234567890123456789012345.12345",
            "1.2345678",
            "-2.25",
            "ab",
            "héllo 😀",
            "café àé",
            "long text"
        ]
    );
    let r = row(
        1,
        "encode(bin, 'hex'), encode(vb, 'hex'), encode(bl, 'hex'), CAST(dt AS VARCHAR), CAST(dtm AS VARCHAR), CAST(ts AS VARCHAR), tm, tlong, y, j, e, st, encode(g, 'hex')",
    );
    assert_eq!(r[0], "616263");
    assert_eq!(r[1], "00ff10");
    assert_eq!(r[2], "626c6f62");
    assert_eq!(r[3], "2024-02-29");
    assert!(r[4].starts_with("2024-01-02T03:04:05.678901"), "{r:?}");
    assert!(r[5].starts_with("2024-01-02T03:04:05.123"), "{r:?}");
    assert_eq!(r[6], "13:45:30.123456", "TIME is the server's text");
    assert_eq!(
        r[7..12],
        ["100:00:00", "2024", r#"{"a": [1, 2]}"#, "b", "x,y"]
    );
    assert_eq!(r[12], "0101000000000000000000f03f0000000000000040");
    // Row 2: every column NULL.
    let nulls = p.rows(
        "SELECT count(*) FROM bronze.all_types WHERE id = 2 AND ti IS NULL AND bu IS NULL AND d IS NULL AND dbig IS NULL AND l1 IS NULL AND bl IS NULL AND dt IS NULL AND ts IS NULL AND tm IS NULL AND j IS NULL AND g IS NULL AND bt IS NULL",
    );
    assert_eq!(nulls[0][0], "1");
    // Rows 3 and 4: zero dates (whole or in part) become null and are counted.
    assert_eq!(
        row(3, "dt IS NULL, dtm IS NULL, ts IS NULL"),
        ["true", "true", "true"]
    );
    assert_eq!(row(4, "dt IS NULL, dtm IS NULL"), ["true", "true"]);
    let nulled = s["tables"][0]["nulled"].to_string();
    for col in ["\"dt\",2", "\"dtm\",2", "\"ts\",1"] {
        assert!(nulled.contains(col), "{col} in {nulled}");
    }
    assert!(
        !nulled.contains("tlong"),
        "a TIME beyond 24 h is kept: {nulled}"
    );
}

#[test]
fn key_ranges_and_resync() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE big (id BIGINT PRIMARY KEY, v INT NOT NULL, s VARCHAR(10));
         INSERT INTO big SELECT seq, seq % 1000, CONCAT('r', seq) FROM seq_1_to_100000;
         ANALYZE TABLE big",
    );
    let p = db.project(
        "    snapshot_split_rows: 1000\n",
        "[big]",
        "    parallelism: 4\n",
    );
    let s = sync_json(&p);
    assert_eq!(s["tables"][0]["rows"], 100_000, "{s}");
    assert_eq!(s["tables"][0]["ranges"], 4, "{s}");
    assert_eq!(
        p.rows("SELECT count(*), sum(id), sum(v), count(DISTINCT s) FROM bronze.big"),
        vec![vec!["100000", "5000050000", "49950000", "100000"]]
    );
    // A second sync replaces the rows (overwrite, not append).
    db.exec("DELETE FROM big WHERE id > 50000;\nUPDATE big SET v = 0");
    let s = sync_json(&p);
    assert_eq!(s["tables"][0]["rows"], 50_000, "{s}");
    assert_eq!(s["tables"][0]["version"], 2, "{s}");
    assert_eq!(
        p.rows("SELECT count(*), sum(v) FROM bronze.big"),
        vec![vec!["50000", "0"]]
    );
    // The commit records the source position.
    let log = std::fs::read_to_string(
        p.path("lakehouse/main/bronze/big/_delta_log/00000000000000000002.json"),
    )
    .unwrap();
    assert!(
        log.contains("confluo.source") && log.contains("binlog_file") && log.contains("gtid_set"),
        "{log}"
    );
}

#[test]
fn connections_test_and_discover() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE orders (id INT UNSIGNED PRIMARY KEY, total DECIMAL(10,2) NOT NULL, note VARCHAR(20) CHARACTER SET latin1)",
    );
    let p = db.project("", "[orders]", "");
    let out = ok(&p, &["connections", "test", "my"]);
    assert!(out.starts_with("PASS  connection `my`"), "{out}");
    assert!(
        out.contains("MariaDB") && out.contains("binary log"),
        "{out}"
    );
    let out = ok(&p, &["connections", "discover", "my"]);
    assert!(
        out.contains(&format!("{}.orders (table", db.name)) && out.contains("primary key (id)"),
        "{out}"
    );
    assert!(
        out.contains("int(10) unsigned") && out.contains("1 table"),
        "{out}"
    );
    let v: serde_json::Value =
        serde_json::from_str(ok(&p, &["connections", "discover", "my", "--json"]).trim()).unwrap();
    let cols = &v[0]["columns"];
    assert_eq!(cols[0]["name"], "id");
    assert_eq!(cols[0]["nullable"], false);
    assert_eq!(cols[2]["charset"], "latin1");
}

#[test]
fn connection_errors() {
    let db = MyDb::new();
    db.exec("CREATE TABLE t (id INT PRIMARY KEY)");
    // Unknown database.
    let p = TestProject::with_config(&db.connection("").replace(&db.name, "confluo_t_nope"));
    let e = fail(&p, &["connections", "test", "my"]);
    assert!(
        e.contains("127.0.0.1:3306")
            && e.contains("confluo_t_nope")
            && e.contains("does not exist"),
        "{e}"
    );
    // Unreachable port.
    let p = TestProject::with_config(&db.connection("").replace("3306", "1"));
    let e = fail(&p, &["connections", "test", "my"]);
    assert!(
        e.contains("connection `my` (127.0.0.1:1)") && e.contains("cannot reach"),
        "{e}"
    );
    // Wrong password.
    let user = format!("confluo_t_user_{}", &db.name["confluo_t_".len()..][..12]);
    db.admin(&format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'x'"));
    db.admin(&format!(
        "CREATE USER '{user}'@'localhost' IDENTIFIED BY 'x'"
    ));
    let p = TestProject::with_config(
        &db.connection("")
            .replace("user: root", &format!("user: {user}"))
            .replace("${env:CONFLUO_T_MYPASS}", "y"),
    );
    let e = fail(&p, &["connections", "test", "my"]);
    db.admin(&format!("DROP USER '{user}'@'%'"));
    db.admin(&format!("DROP USER '{user}'@'localhost'"));
    assert!(
        e.contains("127.0.0.1:3306") && e.contains("Access denied") && e.contains("`password`"),
        "{e}"
    );
    // Unknown key.
    let p = TestProject::with_config(&db.connection("    hots: x\n"));
    let e = fail(&p, &["connections", "test", "my"]);
    assert!(
        e.contains("connection `my`") && e.contains("`hots`") && e.contains("did you mean `host`"),
        "{e}"
    );
}

#[test]
fn unsupported_types() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE u (id INT PRIMARY KEY, addr INET6, uid UUID);
         INSERT INTO u VALUES (1, '::1', '123e4567-e89b-12d3-a456-426655440000')",
    );
    let p = db.project("", "[u]", "");
    let e = fail(&p, &["sync", "e"]);
    assert!(
        e.contains(&format!("{}.u.addr", db.name))
            && e.contains("inet6")
            && e.contains("unsupported_types: text"),
        "{e}"
    );
    let p = db.project("    unsupported_types: text\n", "[u]", "");
    let s = sync_json(&p);
    assert_eq!(s["tables"][0]["rows"], 1, "{s}");
    assert_eq!(
        p.rows("SELECT addr, uid FROM bronze.u"),
        vec![vec!["::1", "123e4567-e89b-12d3-a456-426655440000"]]
    );
}

#[test]
fn without_reload_one_transaction_and_approximate_position() {
    let db = MyDb::new();
    db.exec(
        "CREATE TABLE a (id INT PRIMARY KEY, v INT);
         INSERT INTO a SELECT seq, seq FROM seq_1_to_5000;
         CREATE TABLE b (id INT PRIMARY KEY);
         INSERT INTO b VALUES (1), (2)",
    );
    let user = format!("confluo_t_user_{}", &db.name["confluo_t_".len()..][..12]);
    for host in ["%", "localhost"] {
        db.admin(&format!("CREATE USER '{user}'@'{host}' IDENTIFIED BY 'x'"));
        db.admin(&format!(
            "GRANT SELECT ON {}.* TO '{user}'@'{host}'",
            db.name
        ));
    }
    let p = TestProject::with_config(&format!(
        "{}    snapshot_split_rows: 10\ningest:\n  e:\n    connection: my\n    tables: [\"*\"]\n    schema: bronze\n    parallelism: 4\n",
        db.connection("")
            .replace("user: root", &format!("user: {user}"))
            .replace("${env:CONFLUO_T_MYPASS}", "x")
    ));
    let out = run(&p, &["sync", "e", "--json"]);
    for host in ["%", "localhost"] {
        db.admin(&format!("DROP USER '{user}'@'{host}'"));
    }
    let s: serde_json::Value =
        serde_json::from_str(crate::common::succeeded(&["sync"], out).trim()).unwrap();
    assert_eq!(s["snapshot"]["exact"], false, "{s}");
    assert_eq!(s["tables"][0]["rows"], 5000, "{s}");
    assert_eq!(s["tables"][1]["rows"], 2, "{s}");
    assert_eq!(
        p.rows("SELECT count(*), sum(v) FROM bronze.a"),
        vec![vec!["5000", "12502500"]]
    );
}
