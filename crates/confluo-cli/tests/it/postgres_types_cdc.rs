//! Every PostgreSQL type the connector maps, through every way changes land: managed
//! `confluo sync` with `scd_type: 1` and `2`, a plain streaming table of `read_changes`, and
//! AUTO CDC SCD 1 and SCD 2 flows (straight from the feed and from that streaming table),
//! over inserts, updates that leave a TOASTed value out (also one a generated column reads), deletes, key changes (of rows
//! written in the same batch and in an earlier one) and a TRUNCATE. Afterwards every target
//! equals the source: `confluo verify` for the current-row tables, and the SCD 2 tables'
//! open versions row for row against them.

use crate::common::TestProject;
use crate::pg::PgDb;

/// Every mapped type, scalars and 1-D arrays, two TOASTed columns stored out of line, and
/// stored generated columns (which `pgoutput` does not send), one reading a TOASTed column.
const SCHEMA: &str = r#"
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN price AS numeric(12, 2);
CREATE TABLE t (
  id int4 PRIMARY KEY, i2 int2, i8 int8, n numeric(10,2), nfree numeric, f4 float4, f8 float8,
  b bool, tx text, vc varchar(10), c char(3), nm name, by bytea, d date, tm time, ts timestamp,
  tstz timestamptz, iv interval, u uuid, j json, jb jsonb, e mood, ip inet, cid cidr,
  mac macaddr, m money, p price, ttz timetz, x xml, bt bit(4), vb varbit,
  a_i2 int2[], a_i4 int4[], a_i8 int8[], a_n numeric(6,1)[], a_nf numeric[], a_f4 float4[],
  a_f8 float8[], a_b bool[], a_tx text[], a_vc varchar(5)[], a_by bytea[], a_d date[],
  a_tm time[], a_ts timestamp[], a_tstz timestamptz[], a_iv interval[], a_u uuid[],
  a_jb jsonb[], a_e mood[], a_ip inet[],
  big text, bigb bytea,
  g1 int8 GENERATED ALWAYS AS (i8 / 7 + id) STORED,
  g2 text GENERATED ALWAYS AS (left(big, 10) || '/' || tx) STORED
);
ALTER TABLE t ALTER COLUMN big SET STORAGE EXTERNAL;
ALTER TABLE t ALTER COLUMN bigb SET STORAGE EXTERNAL;
CREATE TABLE tt (LIKE t INCLUDING ALL);
"#;

/// Rows `lo..=hi` of `table`, every column a function of the id.
fn rows(table: &str, lo: i32, hi: i32, salt: &str) -> String {
    format!(
        r#"INSERT INTO {table} SELECT g, (g * 7 % 30000 - 15000)::int2, g * 1000000007::int8,
  (g * 12.34)::numeric(10,2), g::numeric ^ 3 / 7, (g / 3.0)::float4, g / 7.0, g % 2 = 0,
  'text {salt}' || g || ' ✓ 日本', left('v' || g, 10), chr(65 + g % 26), 'nm' || g,
  decode(md5(g::text), 'hex'), date '2024-01-01' + g,
  CASE WHEN g = 1 THEN time '24:00:00' WHEN g = 2 THEN time '23:59:59.999999' ELSE time '00:00:00' + g * interval '61.5 seconds' END,
  timestamp '2024-01-01' + g * interval '1 hour 0.000001 seconds',
  timestamptz '2024-06-01 00:00+02' + g * interval '1 day',
  make_interval(months => g, days => -g, secs => g * 1.5), md5(g::text)::uuid,
  json_build_object('g', g, 'arr', json_build_array(g, null)), jsonb_build_object('g', g, 'b', true),
  (CASE WHEN g % 2 = 0 THEN 'sad' ELSE 'happy' END)::mood, ('10.0.' || (g % 255) || '.' || g)::inet,
  ('10.' || g || '.0.0/16')::cidr, ('08:00:2b:01:02:' || lpad(to_hex(g % 256), 2, '0'))::macaddr,
  (g * 1.25)::money, (g * 3.5)::price, ('12:00:00+0' || (g % 9))::timetz,
  ('<a>' || g || '</a>')::xml, (g % 16)::bit(4), (g % 256)::bit(8)::varbit,
  ARRAY[g::int2, NULL, (-g)::int2], ARRAY[g, NULL], ARRAY[g::int8 * 1000000000000],
  ARRAY[(g / 10.0)::numeric(6,1), NULL], ARRAY[g::numeric / 3], ARRAY[(g / 3.0)::float4],
  ARRAY[g / 7.0, NULL], ARRAY[true, NULL, g % 2 = 0], ARRAY['a' || g, NULL, 'b "q" ,{{}}'],
  ARRAY[left('vc' || g, 5)], ARRAY[decode('00ff', 'hex'), NULL], ARRAY[date '2024-01-01' + g],
  ARRAY[time '01:02:03.5'], ARRAY[timestamp '2024-01-01 00:00:00.5' + g * interval '1 second'],
  ARRAY[timestamptz '2024-01-01 00:00+05'], ARRAY[interval '1 mon -2 days 3.5 seconds'],
  ARRAY[md5(g::text)::uuid], ARRAY['{{"k": 1}}'::jsonb, NULL], ARRAY['sad'::mood, NULL],
  ARRAY[('10.9.8.' || (g % 255))::inet, '::1'::inet],
  repeat(md5(g::text || '{salt}'), 300), decode(repeat(md5(g::text), 300), 'hex')
FROM generate_series({lo}, {hi}) g"#
    )
}

fn project(db: &PgDb) -> TestProject {
    let p = TestProject::with_config(&format!(
        "connections:
  pg: {{type: postgresql, host: 127.0.0.1, port: 5432, database: {}, user: postgres, sslmode: disable}}
ingest:
  s1: {{connection: pg, tables: [public.t, public.tt], schema: m1, mode: cdc}}
  s2: {{connection: pg, tables: [public.t], schema: m2, mode: cdc, scd_type: 2}}
pipelines:
  feeds:
    libraries: [\"pipelines/*.sql\"]
    schema: f
",
        db.name
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
    let feed = "STREAM read_changes('pg', 'public.t')";
    p.write(
        "pipelines/feeds.sql",
        [
            format!("CREATE OR REFRESH STREAMING TABLE raw AS SELECT * FROM {feed};\n"),
            auto_cdc("a1", feed, 1, ""),
            auto_cdc("a2", feed, 2, ""),
            auto_cdc("a2r", "STREAM(raw)", 2, ""),
            auto_cdc(
                "tt1",
                "STREAM read_changes('pg', 'public.tt')",
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

fn land_and_compare(db: &PgDb, p: &TestProject) {
    p.ok(&["sync", "s1"]);
    p.ok(&["sync", "s2"]);
    p.ok(&["run"]);
    verify_equal(p, "pg.public.t", "m1.t");
    verify_equal(p, "pg.public.t", "f.a1");
    verify_equal(p, "pg.public.tt", "m1.tt");
    verify_equal(p, "pg.public.tt", "f.tt1");
    assert_same_rows(p, "m1.t", "f.a1");
    for scd2 in ["m2.t", "f.a2", "f.a2r"] {
        assert_same_rows(p, "m1.t", &current(scd2));
    }
    // The TOASTed values, independently of verify: length and checksum per row.
    let source = db.text_rows(
        "SELECT concat_ws('|', id, coalesce(length(big)::text, ''), coalesce(md5(big), ''), coalesce(md5(bigb), '')) FROM t ORDER BY id",
    );
    for table in ["m1.t", "f.a1", &current("m2.t"), &current("f.a2r")] {
        let lake: Vec<String> = p
            .rows(&format!(
                "SELECT id, length(big), md5(big), md5(bigb) FROM {table} ORDER BY id"
            ))
            .into_iter()
            .map(|r| r.join("|"))
            .collect();
        assert_eq!(source, lake, "{table}");
    }
}

#[test]
fn every_type_through_every_change_path_equals_the_source() {
    let db = PgDb::new();
    db.exec(SCHEMA);
    db.exec(&rows("t", 1, 30, "a"));
    db.exec("INSERT INTO t (id) VALUES (99)");
    db.exec(&rows("tt", 1, 5, "a"));
    let p = project(&db);
    land_and_compare(&db, &p);

    // One batch: updates that leave the TOASTed values out, key changes of rows written by
    // the copy, of a row changed earlier in the same transaction and in an earlier
    // transaction of the batch, new rows, a delete, and a row whose every column changes.
    for sql in [
        "UPDATE t SET i2 = i2 + 1, a_i4 = ARRAY[1, 2, NULL] WHERE id % 3 = 0",
        "UPDATE t SET id = id + 1000 WHERE id = 4",
        "BEGIN; UPDATE t SET tx = 'changed' WHERE id = 5; UPDATE t SET id = 2005 WHERE id = 5; COMMIT;",
        "UPDATE t SET tx = 'changed too' WHERE id = 6",
        "UPDATE t SET id = 2006 WHERE id = 6",
        "BEGIN; UPDATE t SET id = 3012 WHERE id = 12; UPDATE t SET id = 4012 WHERE id = 3012; COMMIT;",
        &rows("t", 31, 35, "b"),
        "DELETE FROM t WHERE id = 7",
        "DELETE FROM t WHERE id = 8",
        &rows("t", 8, 8, "c"),
        "UPDATE t SET id = 2099 WHERE id = 99",
        "UPDATE tt SET f8 = -f8 WHERE id = 2",
        "UPDATE tt SET id = 1002 WHERE id = 3",
    ] {
        db.exec(sql);
    }
    land_and_compare(&db, &p);
    // The feed says which values it did not send, and where a key change came from.
    assert_ne!(
        p.scalar("SELECT count(*) FROM f.raw WHERE array_has(_unchanged, 'big')"),
        "0"
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM f.raw WHERE _old_key IS NOT NULL AND id = 1004"),
        "1"
    );

    // The next batch: key changes of rows an earlier batch wrote (one moved there already),
    // several keys in one statement, and a TOASTed value that does change.
    for sql in [
        "UPDATE t SET id = id + 10000 WHERE id = 1004",
        "UPDATE t SET id = -id WHERE id IN (9, 10, 11)",
        "UPDATE t SET big = 'short now', i8 = NULL WHERE id = 13",
        "UPDATE t SET id = 5013 WHERE id = 13",
        "UPDATE t SET a_tx = '{}', a_ip = ARRAY['192.168.1.1'::inet] WHERE id = 14",
    ] {
        db.exec(sql);
    }
    land_and_compare(&db, &p);

    // A truncate empties the SCD 1 targets; what comes after it lands.
    db.exec("TRUNCATE tt");
    db.exec(&rows("tt", 40, 41, "d"));
    db.exec("UPDATE tt SET i2 = 1 WHERE id = 40");
    land_and_compare(&db, &p);
    assert_eq!(p.scalar("SELECT count(*) FROM f.tt1"), "2");
}
