//! The PostgreSQL connector end to end: `confluo connections`, `confluo sync` in snapshot
//! mode, type mapping checked through `confluo query`, and the errors a user can cause.
//! Each test works in its own database `confluo_t_<random>`, dropped at the end.

use crate::common::TestProject;
use crate::pg::PgDb;

/// Runs confluo in `p` with the password variable set (trust auth ignores its value).
fn run(p: &TestProject, args: &[&str]) -> std::process::Output {
    p.command(args)
        .env("CONFLUO_T_PGPASS", "unused")
        .output()
        .expect("run confluo")
}

fn ok(p: &TestProject, args: &[&str]) -> String {
    crate::common::succeeded(args, run(p, args))
}

fn fail(p: &TestProject, args: &[&str]) -> String {
    let out = run(p, args);
    assert!(
        !out.status.success(),
        "confluo {args:?} should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sync_json(p: &TestProject) -> serde_json::Value {
    serde_json::from_str(ok(p, &["sync", "e", "--json"]).trim()).expect("sync summary")
}

/// The commit files of the lakehouse table folder named `table`, concatenated.
fn delta_log_text(p: &TestProject, table: &str) -> String {
    let mut out = String::new();
    let mut stack = vec![p.dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "json")
                && path.parent().is_some_and(|l| l.ends_with("_delta_log"))
                && path.to_string_lossy().contains(&format!("/{table}"))
            {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    out
}

pub(crate) const TYPES_SQL: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN price AS numeric(12, 2) CHECK (VALUE >= -1000000);
CREATE TABLE all_types (
  id int4 PRIMARY KEY, i2 int2, i8 int8, n numeric(10,2), nbig numeric(38,0), nfree numeric,
  f4 float4, f8 float8, b bool, t text, vc varchar(10), c char(3), nm name, by bytea,
  d date, tm time, ts timestamp, tstz timestamptz, iv interval, u uuid, j json, jb jsonb,
  ia int4[], ta text[], na numeric(6,1)[], e mood, ip inet, cid cidr, m money, p price
);
INSERT INTO all_types VALUES
 (1, -32768, 9223372036854775807, -12345678.91, 99999999999999999999999999999999999999,
  123456789012345678901234567890.123456789, 1.5, -2.25, true, 'héllo wörld ✓ 日本', 'abc', 'ab',
  'nm', '\x00ff10', '2024-02-29', '13:45:30.123456', '2024-01-02 03:04:05.678901',
  '2024-01-02 03:04:05+02', '1 year 2 months 3 days 04:05:06', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11',
  '{"a": [1, 2]}', '{"b": 1, "a": 2}', '{7,NULL,-1}', '{"x","y z",NULL}', '{1.5,-2.5}', 'happy',
  '192.168.0.1/24', '10.0.0.0/8', '-12.34', 19.99),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 0, 0, 0, 0, 'NaN', 'NaN', '-Infinity', false, '', '', '', '', '', 'infinity', '00:00:00',
  '-infinity', 'infinity', '0 seconds', '00000000-0000-0000-0000-000000000000', 'null', '[]', '{}',
  '{}', '{}', 'sad', '::1', '::/0', '0', 0);
"#;

#[test]
fn types_round_trip() {
    let db = PgDb::new();
    db.exec(TYPES_SQL);
    let p = db.project("", "[public.all_types]", "");
    let s = sync_json(&p);
    assert_eq!(s["tables"][0]["rows"], 3, "{s}");
    assert_eq!(s["tables"][0]["table"], "main.bronze.all_types");
    let q = |sql: &str| p.rows(sql);
    let row = |id: i32, cols: &str| {
        let r = q(&format!(
            "SELECT {cols} FROM bronze.all_types WHERE id = {id}"
        ));
        assert_eq!(r.len(), 1);
        r[0].clone()
    };
    let r1 = row(
        1,
        "i2, i8, CAST(n AS VARCHAR), CAST(nbig AS VARCHAR), nfree, f4, f8, b, t, vc, c, nm",
    );
    assert_eq!(
        r1,
        vec![
            "-32768",
            "9223372036854775807",
            "-12345678.91",
            "99999999999999999999999999999999999999",
            "123456789012345678901234567890.123456789",
            "1.5",
            "-2.25",
            "true",
            "héllo wörld ✓ 日本",
            "abc",
            "ab ",
            "nm"
        ]
    );
    let r1 = row(
        1,
        "encode(by, 'hex'), CAST(d AS VARCHAR), tm, CAST(ts AS VARCHAR), CAST(tstz AS VARCHAR), iv, u, j, jb",
    );
    assert_eq!(r1[0], "00ff10");
    assert_eq!(r1[1], "2024-02-29");
    assert!(r1[2].starts_with("13:45:30.123456"), "{r1:?}");
    assert!(r1[3].starts_with("2024-01-02T03:04:05.678901"), "{r1:?}");
    assert!(r1[4].starts_with("2024-01-02T01:04:05"), "{r1:?}");
    assert_eq!(r1[5], "P1Y2M3DT4H5M6S");
    assert_eq!(r1[6], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(r1[7], r#"{"a": [1, 2]}"#);
    assert_eq!(r1[8], r#"{"a": 2, "b": 1}"#);
    let r1 = row(
        1,
        "cardinality(ia), ia[1], ia[2] IS NULL, ia[3], ta[2], ta[3] IS NULL, CAST(na[2] AS VARCHAR), e, ip, cid, CAST(m AS VARCHAR), CAST(p AS VARCHAR)",
    );
    assert_eq!(
        r1,
        vec![
            "3",
            "7",
            "true",
            "-1",
            "y z",
            "true",
            "-2.5",
            "happy",
            "192.168.0.1/24",
            "10.0.0.0/8",
            "-12.34",
            "19.99"
        ]
    );
    // Row 2: every column NULL.
    let nulls = q(
        "SELECT count(*) FROM bronze.all_types WHERE id = 2 AND i2 IS NULL AND n IS NULL AND nfree IS NULL AND t IS NULL AND by IS NULL AND d IS NULL AND tstz IS NULL AND ia IS NULL AND e IS NULL AND m IS NULL AND p IS NULL AND iv IS NULL AND u IS NULL",
    );
    assert_eq!(nulls[0][0], "1");
    // Row 3: infinities become null (and are reported), NaN numeric(free) stays as text.
    let r3 = row(
        3,
        "nfree, f8, d IS NULL, ts IS NULL, tstz IS NULL, cardinality(ia), t, jb",
    );
    assert_eq!(
        r3,
        vec!["NaN", "-inf", "true", "true", "true", "0", "", "[]"]
    );
    let nulled = s["tables"][0]["nulled"].to_string();
    assert!(nulled.contains("\"d\"") && nulled.contains("\"ts\""), "{s}");
    // An independent reader (Python deltalake) sees the same values and types.
    let path = p.path("lakehouse/main/bronze/all_types");
    let out = crate::common::run_python(&format!(
        r#"
from deltalake import DeltaTable
t = DeltaTable({path:?}).to_pyarrow_table().sort_by("id").to_pylist()
r = t[0]
print(r["n"], r["nbig"], r["ia"], r["ta"], r["tstz"].isoformat(), r["by"].hex(), r["m"], t[1]["n"])
"#,
        path = path.to_str().unwrap()
    ));
    assert_eq!(
        out.trim(),
        "-12345678.91 99999999999999999999999999999999999999 [7, None, -1] ['x', 'y z', None] 2024-01-02T01:04:05+00:00 00ff10 -12.34 None"
    );
    // The Delta schema keeps the mapped types.
    let desc = ok(
        &p,
        &["query", "DESCRIBE bronze.all_types", "--format", "csv"],
    );
    for want in [
        "decimal(10,2)",
        "decimal(38,0)",
        "decimal(19,2)",
        "decimal(12,2)",
        "array<int>",
        "timestamp_ntz",
    ] {
        assert!(desc.contains(want), "{want} missing in\n{desc}");
    }
}

#[test]
fn parallel_snapshot_in_key_ranges_and_resync() {
    let db = PgDb::new();
    db.exec(
        "CREATE TABLE big (id int8 PRIMARY KEY, v int4 NOT NULL, s text);
         INSERT INTO big SELECT g, (g * 7919) % 100003, md5(g::text) FROM generate_series(1, 200000) g;
         CREATE TABLE small (k text PRIMARY KEY, x float8);
         INSERT INTO small VALUES ('a', 1.5), ('b', NULL);
         ANALYZE big;",
    );
    let p = db.project(
        "    snapshot_split_rows: 50000\n",
        "[\"public.*\"]",
        "    parallelism: 4\n",
    );
    let expected = db.scalar(
        "SELECT count(*) || ',' || sum(id) || ',' || sum(v) || ',' || md5(string_agg(s, '' ORDER BY id)) FROM big",
    );
    let check = || {
        let got = p.rows(
            "SELECT count(*), sum(id), sum(v), md5(string_agg(s, '' ORDER BY id)), count(DISTINCT id) FROM bronze.big",
        );
        assert_eq!(got[0][..4].join(","), expected);
        assert_eq!(got[0][4], "200000");
    };
    let s = sync_json(&p);
    let tables = s["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2, "{s}");
    let big = tables
        .iter()
        .find(|t| t["source"]["name"] == "big")
        .unwrap();
    assert_eq!(big["rows"], 200000);
    assert_eq!(big["ranges"], 4, "{s}");
    check();
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.small"), "2");
    let lsn = s["snapshot"]["wal_lsn"].as_str().unwrap().to_string();
    assert!(lsn.contains('/'), "{s}");
    // The commit records where the rows came from.
    let logs = delta_log_text(&p, "big");
    assert!(logs.contains("\"confluo.source\""), "{logs}");
    assert!(logs.contains(&format!("\"lsn\":\"{lsn}\"")), "{logs}");
    assert!(logs.contains("\"rows\":200000"), "{logs}");

    // A second sync replaces the rows: no duplicates, changes visible.
    db.exec("DELETE FROM small WHERE k = 'b'; INSERT INTO small VALUES ('c', 3)");
    let s2 = sync_json(&p);
    let big2 = s2["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["source"]["name"] == "big")
        .unwrap()
        .clone();
    assert!(big2["version"].as_i64() > big["version"].as_i64());
    assert_eq!(big2["created"], false);
    check();
    assert_eq!(
        p.rows("SELECT k FROM bronze.small ORDER BY k"),
        vec![vec!["a".to_string()], vec!["c".to_string()]]
    );
}

#[test]
fn connections_list_test_discover() {
    let db = PgDb::new();
    db.exec(
        "CREATE SCHEMA sales;
         CREATE DOMAIN positive AS int4 CHECK (VALUE > 0);
         CREATE TABLE sales.orders (id int8 PRIMARY KEY, qty positive NOT NULL, tags text[], note varchar(20));
         CREATE TABLE public.t (a int4, b int4, PRIMARY KEY (b, a));
         ALTER TABLE public.t REPLICA IDENTITY FULL;",
    );
    let p = db.project("", "[\"sales.*\"]", "");
    let list = ok(&p, &["connections", "list"]);
    assert!(
        list.contains("pg") && list.contains("postgres") && list.contains(&db.name),
        "{list}"
    );
    assert!(
        !list.contains("CONFLUO_T_PGPASS") && !list.contains("unused"),
        "{list}"
    );

    let t = ok(&p, &["connections", "test", "pg"]);
    assert!(t.contains("PASS"), "{t}");
    assert!(t.contains("PostgreSQL 1"), "{t}");
    assert!(t.contains("wal_level       logical"), "{t}");
    assert!(t.contains("may replicate"), "{t}");

    // Debian's server offers TLS with a self-signed certificate: `require` encrypts,
    // `verify-full` refuses the unknown issuer and says what to check.
    let with_mode = |mode: &str| {
        TestProject::with_config(
            &db.connection("")
                .replace("sslmode: disable", &format!("sslmode: {mode}")),
        )
    };
    if db.scalar("SELECT current_setting('ssl')") == "on" {
        let t = ok(&with_mode("require"), &["connections", "test", "pg"]);
        assert!(t.contains("TLS             on"), "{t}");
        let e = fail(&with_mode("verify-full"), &["connections", "test", "pg"]);
        assert!(e.contains("TLS failed") && e.contains("sslrootcert"), "{e}");
    } else {
        let e = fail(&with_mode("require"), &["connections", "test", "pg"]);
        assert!(e.contains("TLS") && e.contains("sslmode"), "{e}");
    }

    let d = ok(&p, &["connections", "discover", "pg"]);
    assert!(d.contains("sales.orders (table"), "{d}");
    assert!(d.contains("primary key (id)"), "{d}");
    assert!(d.contains("primary key (b, a)"), "{d}");
    let j: serde_json::Value = serde_json::from_str(&ok(
        &p,
        &[
            "connections",
            "discover",
            "pg",
            "--schema",
            "sales",
            "--json",
        ],
    ))
    .unwrap();
    let tables = j.as_array().unwrap();
    assert_eq!(tables.len(), 1, "{j}");
    let o = &tables[0];
    assert_eq!(o["name"], "orders");
    assert_eq!(o["primary_key"], serde_json::json!(["id"]));
    assert_eq!(o["replica_identity"], "default");
    let qty = &o["columns"][1];
    assert_eq!(qty["pg_type"], "positive");
    assert_eq!(qty["arrow_type"], "INT");
    assert_eq!(qty["nullable"], false);
    assert!(
        o["columns"][2]["arrow_type"]
            .as_str()
            .unwrap()
            .contains("ARRAY"),
        "{o}"
    );
    let all: serde_json::Value =
        serde_json::from_str(&ok(&p, &["connections", "discover", "pg", "--json"])).unwrap();
    let t = all
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "t")
        .unwrap();
    assert_eq!(t["replica_identity"], "full");
}

#[test]
fn connection_errors() {
    let db = PgDb::new();
    db.exec("CREATE TABLE docs (id int4 PRIMARY KEY, body tsvector, title text); INSERT INTO docs VALUES (1, 'a fat cat', 'x');");
    // Wrong database.
    let p = TestProject::with_config(&db.connection("").replace(
        &format!("database: {}", db.name),
        "database: confluo_no_such_db",
    ));
    let e = fail(&p, &["connections", "test", "pg"]);
    assert!(e.contains("connection `pg` (127.0.0.1:5432)"), "{e}");
    assert!(
        e.contains("confluo_no_such_db") && e.contains("does not exist"),
        "{e}"
    );
    // Nothing listens on port 1.
    let p = TestProject::with_config(&db.connection("").replace("port: 5432", "port: 1"));
    let e = fail(&p, &["connections", "test", "pg"]);
    assert!(
        e.contains("127.0.0.1:1") && e.contains("cannot reach"),
        "{e}"
    );
    // Bad TLS mode, unknown key.
    let p = TestProject::with_config(
        &db.connection("")
            .replace("sslmode: disable", "sslmode: sometimes"),
    );
    let e = fail(&p, &["connections", "test", "pg"]);
    assert!(e.contains("`sslmode`") && e.contains("verify-full"), "{e}");
    let p = TestProject::with_config(&db.connection("    databse: x\n"));
    let e = fail(&p, &["connections", "discover", "pg"]);
    assert!(
        e.contains("unknown key `databse`") && e.contains("did you mean `database`"),
        "{e}"
    );
    // Unset environment variable for the password.
    let p = TestProject::with_config(&db.connection(""));
    let out = p
        .command(&["connections", "test", "pg"])
        .env_remove("CONFLUO_T_PGPASS")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("CONFLUO_T_PGPASS") && e.contains("`password`"),
        "{e}"
    );
    // A missing connection name suggests the near one.
    let e = fail(&p, &["connections", "test", "pgg"]);
    assert!(e.contains("did you mean `pg`"), "{e}");

    // Unsupported type: an error naming table.column and type ...
    let p = db.project("", "[docs]", "");
    let e = fail(&p, &["sync", "e"]);
    assert!(
        e.contains("public.docs.body") && e.contains("tsvector"),
        "{e}"
    );
    assert!(e.contains("unsupported_types: text"), "{e}");
    // ... or text when configured.
    let p = db.project("    unsupported_types: text\n", "[docs]", "");
    let s = sync_json(&p);
    assert_eq!(s["tables"][0]["rows"], 1);
    assert_eq!(p.scalar("SELECT body FROM bronze.docs"), "'a' 'cat' 'fat'");
    // A pattern matching nothing.
    let p = db.project("", "[\"public.doc\"]", "");
    let e = fail(&p, &["sync", "e"]);
    assert!(e.contains("no table matches `public.doc`"), "{e}");
    assert!(e.contains("did you mean `public.docs`"), "{e}");
}
