//! Every MySQL / MariaDB type the connector maps, through every way changes land: managed
//! `confluo sync` with `scd_type: 1` and `2`, a plain streaming table of `read_changes`, and
//! AUTO CDC SCD 1 and SCD 2 flows (straight from the feed and from that streaming table),
//! over inserts, updates, deletes, key changes (of rows written in the same batch and in an
//! earlier one) and a TRUNCATE. Afterwards every target equals the source: `confluo verify`
//! for the current-row tables, and the SCD 2 tables' open versions row for row against them.

use crate::common::TestProject;
use crate::mysql::MyDb;

/// Every mapped type, including durations beyond a day, 65-digit decimals, text in eleven
/// character sets, geometry with and without an SRID, generated columns and MariaDB's UUID / INET6 / INET4 (read as text with `unsupported_types: text`).
const SCHEMA: &str = "
CREATE TABLE t (
  id INT PRIMARY KEY,
  ti TINYINT, tu TINYINT UNSIGNED, si SMALLINT, su SMALLINT UNSIGNED, mi MEDIUMINT,
  mu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, bu BIGINT UNSIGNED, b BOOL,
  bt BIT(10), b64 BIT(64), d DECIMAL(10,2), dbig DECIMAL(50,5), f FLOAT, db DOUBLE,
  c CHAR(3), vc VARCHAR(20), l1 VARCHAR(20) CHARACTER SET latin1, tx TEXT, mt MEDIUMTEXT,
  bin BINARY(3), vb VARBINARY(10), bl BLOB, dt DATE, dtm DATETIME(6), dt0 DATETIME,
  ts TIMESTAMP(3) NULL DEFAULT NULL, tm TIME(6), tlong TIME, tm1 TIME(1), y YEAR, j JSON,
  e ENUM('a','b','ç'), st SET('x','y','z'), g GEOMETRY, pt POINT, u UUID, ip6 INET6, ip4 INET4,
  gsrid GEOMETRY, w1251 VARCHAR(20) CHARACTER SET cp1251, wsjis VARCHAR(20) CHARACTER SET sjis,
  wgbk VARCHAR(20) CHARACTER SET gbk, w16 VARCHAR(20) CHARACTER SET utf16,
  w32 VARCHAR(20) CHARACTER SET utf32, wucs2 VARCHAR(20) CHARACTER SET ucs2,
  wl2 VARCHAR(20) CHARACTER SET latin2, wkoi TEXT CHARACTER SET koi8r,
  weuckr VARCHAR(20) CHARACTER SET euckr, wbig5 VARCHAR(20) CHARACTER SET big5,
  gv BIGINT AS (i + 1) VIRTUAL, gp VARCHAR(40) AS (CONCAT(vc, '!')) PERSISTENT
);
CREATE TABLE tt LIKE t;
";

/// Rows `lo..=hi` of `table`, every column a function of the id (`seq`), with the edges
/// of each type on the first rows.
fn rows(table: &str, lo: i32, hi: i32, salt: &str) -> String {
    format!(
        "INSERT INTO {table} (id, ti, tu, si, su, mi, mu, i, iu, bi, bu, b, bt, b64, d, dbig, f, db, c,
  vc, l1, tx, mt, bin, vb, bl, dt, dtm, dt0, ts, tm, tlong, tm1, y, j, e, st, g, pt, u, ip6, ip4,
  gsrid, w1251, wsjis, wgbk, w16, w32, wucs2, wl2, wkoi, weuckr, wbig5)
SELECT seq,
  IF(seq = 1, -128, seq % 100), IF(seq = 1, 255, seq), IF(seq = 1, -32768, -seq), IF(seq = 1, 65535, seq),
  IF(seq = 1, -8388608, seq * 1000), IF(seq = 1, 16777215, seq), IF(seq = 1, -2147483648, seq * 70000),
  IF(seq = 1, 4294967295, seq), IF(seq = 1, -9223372036854775808, seq * 1000000007),
  IF(seq = 1, 18446744073709551615, seq), seq % 3 - 1, seq % 1024,
  IF(seq = 1, 18446744073709551615, seq * 3), seq * -12.34,
  IF(seq = 1, -123456789012345678901234567890123456789012345.12345, seq / 7),
  seq / 3, IF(seq = 1, -1.7976931348623157e308, seq / 7),
  LEFT(CONCAT('c', seq), 3), CONCAT('v{salt}', seq, ' 😀'), CONCAT('café ', seq),
  CONCAT('text ', seq, ' ✓ 日本'), REPEAT(CONCAT('m', seq, '{salt}'), 2000),
  IF(seq % 2 = 1, UNHEX(LPAD(HEX(seq), 2, '0')), UNHEX(LPAD(HEX(seq), 6, '0'))), UNHEX(HEX(seq)), UNHEX(REPEAT(MD5(seq), 50)),
  '2024-01-01' + INTERVAL seq DAY, '2024-01-01 00:00:00.000001' + INTERVAL seq * 61 MINUTE,
  IF(seq = 1, '9999-12-31 23:59:59', '1000-01-01 00:00:00' + INTERVAL seq YEAR),
  '2024-06-01 00:00:00.5' + INTERVAL seq HOUR,
  CASE seq WHEN 1 THEN '-838:59:59.000000' WHEN 2 THEN '838:59:59.999999' WHEN 3 THEN '-00:00:00.5'
    ELSE SEC_TO_TIME(seq * 3601.25) END,
  IF(seq = 1, '-100:00:00', SEC_TO_TIME(seq * 86401)), SEC_TO_TIME(seq * 0.5),
  IF(seq = 1, 1901, 2000 + seq), JSON_OBJECT('g', seq, 'a', JSON_ARRAY(seq, NULL), 's', '{salt}'),
  ELT(seq % 3 + 1, 'a', 'b', 'ç'), IF(seq % 2 = 0, 'x,z', ''),
  ST_GeomFromText(CONCAT('LINESTRING(0 0, ', seq, ' ', seq, ')')), POINT(seq, -seq),
  UUID(), ELT(LEAST(seq, 8), '::ffff:1.2.3.4', '::1.2.3.4', '1:0:2:3:4:5:6:7', '1:0:0:2:0:0:0:3', '::',
    '::1', 'fe80::', CONCAT('2001:db8::', HEX(seq))), CONCAT(seq * 7 % 256, '.0.0.', seq),
  ST_GeomFromText(CONCAT('POINT(', seq, ' 2)'), IF(seq % 2 = 0, 4326, 0)), CONCAT('Привет ', seq),
  CONCAT('日本語テスト', seq), CONCAT('中文', seq), CONCAT('😀 utf16 ', seq), CONCAT('😀', seq), CONCAT('ucs2 ÿ', seq),
  CONCAT('ĄČĘ ', seq), CONCAT('Мир ', seq), CONCAT('한국어', seq), CONCAT('中文', seq)
FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_{lo}_to_{hi}) s"
    )
}

fn project(db: &MyDb) -> TestProject {
    let p = TestProject::with_config(&format!(
        "connections:
  my: {{type: mysql, host: 127.0.0.1, port: 3306, database: {db}, user: root, ssl_mode: disabled, unsupported_types: text}}
ingest:
  s1: {{connection: my, tables: [{db}.t, {db}.tt], schema: m1, mode: cdc}}
  s2: {{connection: my, tables: [{db}.t], schema: m2, mode: cdc, scd_type: 2}}
pipelines:
  feeds:
    libraries: [\"pipelines/*.sql\"]
    schema: f
",
        db = db.name
    ));
    let auto_cdc = |target: &str, from: &str, scd: u8, extra: &str| {
        format!(
            "CREATE OR REFRESH STREAMING TABLE {target};
CREATE FLOW {target}_cdc AS AUTO CDC INTO {target} FROM {from}
KEYS (id) APPLY AS DELETE WHEN _op = 'DELETE' {extra} SEQUENCE BY _lsn
COLUMNS * EXCEPT (_op, _lsn, _commit_ts) STORED AS SCD TYPE {scd};
"
        )
    };
    let feed = format!("STREAM read_changes('my', '{}.t')", db.name);
    p.write(
        "pipelines/feeds.sql",
        [
            format!("CREATE OR REFRESH STREAMING TABLE raw AS SELECT * FROM {feed};\n"),
            auto_cdc("a1", &feed, 1, ""),
            auto_cdc("a2", &feed, 2, ""),
            auto_cdc("a2r", "STREAM(raw)", 2, ""),
            auto_cdc(
                "tt1",
                &format!("STREAM read_changes('my', '{}.tt')", db.name),
                1,
                "APPLY AS TRUNCATE WHEN _op = 'TRUNCATE'",
            ),
        ]
        .concat(),
    );
    p
}

fn verify_equal(p: &TestProject, source: &str, target: &str) {
    let out = p.ok(&["verify", source, target]);
    assert!(out.starts_with("equal:"), "{target}: {out}");
}

/// Rows of `a` not in `b` and of `b` not in `a` (relations as SQL).
fn assert_same_rows(p: &TestProject, a: &str, b: &str) {
    for (x, y) in [(a, b), (b, a)] {
        let n = p.scalar(&format!(
            "SELECT count(*) FROM (SELECT * FROM {x} EXCEPT ALL SELECT * FROM {y})"
        ));
        assert_eq!(n, "0", "rows of {x} missing from {y}");
    }
}

/// The open versions of an SCD 2 table, without the history columns.
fn current(table: &str) -> String {
    format!("(SELECT * EXCEPT (`__START_AT`, `__END_AT`) FROM {table} WHERE `__END_AT` IS NULL)")
}

fn land_and_compare(db: &MyDb, p: &TestProject) {
    p.ok(&["sync", "s1"]);
    p.ok(&["sync", "s2"]);
    p.ok(&["run"]);
    let t = format!("my.{}.t", db.name);
    let tt = format!("my.{}.tt", db.name);
    verify_equal(p, &t, "m1.t");
    verify_equal(p, &t, "f.a1");
    verify_equal(p, &tt, "m1.tt");
    verify_equal(p, &tt, "f.tt1");
    assert_same_rows(p, "m1.t", "f.a1");
    assert_same_rows(p, "m1.tt", "f.tt1");
    for scd2 in ["m2.t", "f.a2", "f.a2r"] {
        assert_same_rows(p, "m1.t", &current(scd2));
    }
}

#[test]
fn every_type_through_every_change_path_equals_the_source() {
    let db = MyDb::new();
    db.exec(SCHEMA);
    db.exec(&rows("t", 1, 30, "a"));
    db.exec("INSERT INTO t (id) VALUES (99)");
    db.exec(&rows("tt", 1, 5, "a"));
    let p = project(&db);
    land_and_compare(&db, &p);
    // The durations and edges landed as the server prints them.
    assert_eq!(
        p.rows("SELECT tm, tlong, tm1, CAST(bu AS VARCHAR), dbig FROM m1.t WHERE id = 1")[0],
        [
            "-838:59:59.000000",
            "-100:00:00",
            "00:00:00.5",
            "18446744073709551615",
            "-123456789012345678901234567890123456789012345.12345"
        ]
    );

    // One batch: updates, key changes of rows written by the copy, of a row changed earlier
    // in the same transaction and in an earlier transaction of the batch, new rows, deletes,
    // a row deleted and inserted again.
    db.exec(&format!(
        "UPDATE t SET si = si + 1, j = JSON_ARRAY(1, 2) WHERE id % 3 = 0;
UPDATE t SET id = id + 1000 WHERE id = 4;
START TRANSACTION;
UPDATE t SET tx = 'changed' WHERE id = 5;
UPDATE t SET id = 2005 WHERE id = 5;
COMMIT;
UPDATE t SET tx = 'changed too' WHERE id = 6;
UPDATE t SET id = 2006 WHERE id = 6;
START TRANSACTION;
UPDATE t SET id = 3012 WHERE id = 12;
UPDATE t SET id = 4012 WHERE id = 3012;
COMMIT;
{};
DELETE FROM t WHERE id = 7;
DELETE FROM t WHERE id = 8;
{};
UPDATE t SET id = 2099 WHERE id = 99;
UPDATE tt SET db = -db WHERE id = 2;
UPDATE tt SET id = 1002 WHERE id = 3",
        rows("t", 31, 35, "b"),
        rows("t", 8, 8, "c")
    ));
    land_and_compare(&db, &p);

    // The next batch: key changes of rows an earlier batch wrote (one moved there already),
    // several keys in one statement, values set to NULL and to their edges.
    db.exec(
        "UPDATE t SET id = id + 10000 WHERE id = 1004;
UPDATE t SET id = -id WHERE id IN (9, 10, 11);
UPDATE t SET mt = 'short now', bi = NULL, tm = '-00:00:01.000001' WHERE id = 13;
UPDATE t SET id = 5013 WHERE id = 13;
UPDATE t SET st = 'x,y,z', e = NULL, b64 = 0, g = NULL WHERE id = 14",
    );
    land_and_compare(&db, &p);

    // A truncate empties the SCD 1 targets; what comes after it lands.
    db.exec(&format!(
        "TRUNCATE tt;
{};
UPDATE tt SET si = 1 WHERE id = 40",
        rows("tt", 40, 41, "d")
    ));
    land_and_compare(&db, &p);
    assert_eq!(p.scalar("SELECT count(*) FROM f.tt1"), "2");
}
