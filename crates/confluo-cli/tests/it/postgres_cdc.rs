//! Change data capture from the machine's PostgreSQL into the lakehouse: a `mode: cdc`
//! ingest entry copies the tables and then applies inserts, updates (with unchanged TOAST
//! values), deletes, key changes, a truncate and a new column; `confluo verify` and an
//! independent read of both sides agree. Also SIGKILL in the middle of streaming, a server
//! side disconnect, and the errors a user can cause.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

use crate::common::TestProject;
use crate::pg::PgDb;

fn project(db: &PgDb, entry_extra: &str) -> TestProject {
    TestProject::with_config(&format!(
        "connections:
  src:
    type: postgres
    host: 127.0.0.1
    port: 5432
    database: {db}
    user: postgres
    sslmode: disable
ingest:
  shop:
    connection: src
    tables: [\"public.*\"]
    schema: shop
    mode: cdc
{entry_extra}",
        db = db.name
    ))
}

const SCHEMA: &str = "
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer int NOT NULL, amount numeric(12,2), note text, big text,
  tags text[], created timestamptz, payload jsonb, flag bool, day date, ref uuid, price float8,
  small int2, raw bytea, span interval
);
ALTER TABLE orders ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE items (id int PRIMARY KEY, order_id bigint, qty int2, price float8);
CREATE TABLE events (k text PRIMARY KEY, v int);
INSERT INTO orders
  SELECT g, g % 97, (g * 1.25)::numeric(12,2), 'note ' || g,
         CASE WHEN g % 10 = 0 THEN repeat(md5(g::text), 200) END,
         ARRAY['a' || g, NULL, 'b \"q\" ' || g], timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute',
         jsonb_build_object('g', g), g % 2 = 0, date '2024-01-01' + g % 300,
         md5(g::text)::uuid, g / 3.0, (g % 1000)::int2, decode(lpad(to_hex(g), 8, '0'), 'hex'),
         make_interval(days => g % 5, secs => g % 60)
  FROM generate_series(1, 3000) g;
INSERT INTO items SELECT g, g % 3000 + 1, (g % 7)::int2, g * 0.5 FROM generate_series(1, 2000) g;
INSERT INTO events SELECT 'k' || g, g FROM generate_series(1, 100) g;
";

/// Changes of every kind, in transactions of mixed sizes.
const WORKLOAD: &str = "
BEGIN; INSERT INTO orders (id, customer, amount, note) SELECT g, 1, 9.99, 'new ' || g FROM generate_series(3001, 3500) g; COMMIT;
UPDATE orders SET amount = amount + 1 WHERE id % 10 = 0 AND id <= 1000;
UPDATE orders SET note = NULL, tags = '{}' WHERE id BETWEEN 100 AND 150;
DELETE FROM orders WHERE id BETWEEN 200 AND 260;
UPDATE orders SET id = 100000 WHERE id = 5;
BEGIN; UPDATE orders SET customer = customer + 1 WHERE id > 1000; INSERT INTO orders (id, customer) VALUES (200, 7); DELETE FROM orders WHERE id = 3001; COMMIT;
UPDATE orders SET big = 'short now' WHERE id = 20;
TRUNCATE items;
INSERT INTO items SELECT g, g, 1, 1.5 FROM generate_series(1, 300) g;
DELETE FROM events WHERE v > 90; UPDATE events SET v = -v WHERE v < 10;
";

/// The lakehouse rows of `sql` in the CSV form the CLI prints.
fn lake(p: &TestProject, sql: &str) -> Vec<String> {
    p.rows(sql).into_iter().map(|r| r.join("|")).collect()
}

fn verify_equal(p: &TestProject, source: &str, target: &str) {
    let out = p.ok(&["verify", source, target]);
    assert!(out.starts_with("equal:"), "{out}");
}

/// An independent comparison: the same columns read by PostgreSQL and by the lakehouse.
fn compare_orders(db: &PgDb, p: &TestProject) {
    let pg = db.text_rows(
        "SELECT concat_ws('|', id, customer, coalesce(amount::text, ''), coalesce(note, ''), coalesce(length(big)::text, ''), coalesce(flag::text, '')) FROM orders ORDER BY id",
    );
    let lh = lake(
        p,
        "SELECT id, customer, amount, note, length(big), CASE WHEN flag THEN 'true' WHEN NOT flag THEN 'false' END FROM shop.orders ORDER BY id",
    );
    assert_eq!(pg.len(), lh.len());
    for (a, b) in pg.iter().zip(&lh) {
        assert_eq!(a, b);
    }
}

#[test]
fn copy_then_every_kind_of_change_matches_the_source() {
    let db = PgDb::new();
    db.exec(SCHEMA);
    let p = project(&db, "");
    let out = p.ok(&["sync", "shop", "--json"]);
    assert!(out.contains("orders"), "{out}");
    verify_equal(&p, "src.public.orders", "shop.orders");
    verify_equal(&p, "src.public.items", "shop.items");

    // One transaction per line, of mixed sizes.
    for line in WORKLOAD.lines().filter(|l| !l.trim().is_empty()) {
        db.exec(line);
    }
    p.ok(&["sync", "shop"]);
    verify_equal(&p, "src.public.orders", "shop.orders");
    verify_equal(&p, "src.public.items", "shop.items");
    compare_orders(&db, &p);
    // Unchanged TOASTed values survive updates of other columns.
    assert_eq!(
        p.scalar("SELECT length(big) FROM shop.orders WHERE id = 10"),
        "6400"
    );
    assert_eq!(p.scalar("SELECT count(*) FROM shop.events"), "90");
    assert_eq!(p.scalar("SELECT v FROM shop.events WHERE k = 'k3'"), "-3");
    assert_eq!(p.scalar("SELECT count(*) FROM shop.items"), "300");

    // A new column at the source reaches the lakehouse table.
    db.exec(
        "ALTER TABLE orders ADD COLUMN region text; UPDATE orders SET region = 'eu' WHERE id <= 3;",
    );
    p.ok(&["sync", "shop"]);
    assert_eq!(
        p.scalar("SELECT count(*) FROM shop.orders WHERE region = 'eu'"),
        "3"
    );
    verify_equal(&p, "src.public.orders", "shop.orders");

    // Nothing new: no new Delta version.
    let before = p.rows("DESCRIBE HISTORY shop.orders").len();
    p.ok(&["sync", "shop"]);
    assert_eq!(p.rows("DESCRIBE HISTORY shop.orders").len(), before);

    // verify names what differs when the tables do not match.
    db.exec("UPDATE orders SET note = 'changed behind confluo' WHERE id = 7; DELETE FROM orders WHERE id = 8;");
    let out = p.run(&["verify", "src.public.orders", "shop.orders"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("key 7: differs (note: source changed behind confluo"),
        "{text}"
    );
    assert!(
        text.contains("key 8: in main.shop.orders but not in the source"),
        "{text}"
    );
}

#[test]
fn sigkill_while_streaming_and_a_lost_connection_lose_and_duplicate_nothing() {
    let db = PgDb::new();
    db.exec(
        "CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL, note text);
             INSERT INTO acct SELECT g, 1000, 'n' FROM generate_series(1, 2000) g;",
    );
    let p = project(&db, "");
    p.ok(&["sync", "shop"]);
    let url = db.url();
    // A workload of transfers (the total balance is invariant) and inserts/deletes.
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut c = PgConnection::connect(&url).await.unwrap();
            for i in 0..400i64 {
                let a = (i * 37) % 2000 + 1;
                let b = (i * 53) % 2000 + 1;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "BEGIN; UPDATE acct SET balance = balance - 5 WHERE id = {a}; UPDATE acct SET balance = balance + 5 WHERE id = {b};
                     INSERT INTO acct VALUES ({}, 0, 'x') ON CONFLICT DO NOTHING; DELETE FROM acct WHERE id = {} AND balance = 0; COMMIT;",
                    10_000 + i,
                    10_000 + i - 3
                )))
                .execute(&mut c)
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    });
    let started = Instant::now();
    let mut kills = 0;
    while !writer.is_finished() || kills < 3 {
        let mut child = p
            .command(&["sync", "shop", "--continuous", "--interval", "100ms"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300 + (kills * 170) % 500));
        if kills == 1 {
            // The server drops the connection: the stream reconnects by itself.
            db.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'confluo' AND pid <> pg_backend_pid()");
            std::thread::sleep(Duration::from_millis(1500));
        }
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        kills += 1;
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "workload too slow"
        );
    }
    writer.join().unwrap();
    p.ok(&["sync", "shop"]);
    verify_equal(&p, "src.public.acct", "shop.acct");
    assert_eq!(
        p.scalar("SELECT sum(balance) FROM shop.acct"),
        db.text_rows("SELECT sum(balance)::text FROM acct")[0]
    );
    // The slot is confirmed exactly up to what the lakehouse committed last.
    let confirmed = db.text_rows(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE database = current_database()",
    );
    assert_eq!(confirmed.len(), 1);
    assert_eq!(lsn(&confirmed[0]), committed_end_lsn(&p));
}

fn lsn(text: &str) -> u64 {
    let (hi, lo) = text.trim().split_once('/').expect("an LSN");
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

/// The highest end LSN any change commit of the lakehouse records.
fn committed_end_lsn(p: &TestProject) -> u64 {
    let mut best = 0;
    for entry in walkdir(&p.path("lakehouse")) {
        if entry.extension().is_some_and(|e| e == "json")
            && entry.parent().is_some_and(|d| d.ends_with("_delta_log"))
        {
            for line in std::fs::read_to_string(&entry).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(end) = v
                    .pointer("/commitInfo/confluo.cdc/end_lsn")
                    .and_then(|e| e.as_str())
                {
                    best = best.max(lsn(end));
                }
            }
        }
    }
    best
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walkdir(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn capture_errors_say_what_to_fix() {
    let db = PgDb::new();
    db.exec(
        "CREATE TABLE nokey (a int, b text); INSERT INTO nokey VALUES (1, 'x');
             DROP ROLE IF EXISTS confluo_norepl; CREATE ROLE confluo_norepl LOGIN;",
    );
    let p = project(&db, "");
    let err = p.fail(&["sync", "shop"]);
    assert!(
        err.contains("public.nokey") && err.contains("no primary key"),
        "{err}"
    );
    assert!(err.contains("mode: snapshot"), "{err}");

    db.exec("ALTER TABLE nokey ADD PRIMARY KEY (a)");
    let q = TestProject::with_config(&format!(
        "connections:
  src:
    type: postgres
    host: 127.0.0.1
    database: {}
    user: confluo_norepl
    sslmode: disable
ingest:
  shop: {{connection: src, tables: [\"public.*\"], schema: shop, mode: cdc}}
",
        db.name
    ));
    let err = q.fail(&["sync", "shop"]);
    assert!(
        err.contains("may not use logical replication") && err.contains("REPLICATION"),
        "{err}"
    );
    db.exec("DROP ROLE IF EXISTS confluo_norepl");
    // A misspelt key of a database entry is named, with the key meant.
    let r = TestProject::with_config(&format!(
        "connections:\n  src: {{type: postgres, host: 127.0.0.1, database: {}, user: postgres, sslmode: disable}}\ningest:\n  shop: {{connection: src, tables: [\"public.*\"], schema: shop, modee: cdc}}\n",
        db.name
    ));
    let err = r.fail(&["sync", "shop"]);
    assert!(
        err.contains("ingest entry `shop`: unknown key `modee`")
            && err.contains("did you mean `mode`"),
        "{err}"
    );
}

/// `STREAM read_changes(...)` feeding AUTO CDC flows: SCD 1 equals the source after each
/// update, SCD 2 keeps every version.
#[test]
fn read_changes_feeds_auto_cdc_flows() {
    let db = PgDb::new();
    db.exec(
        "CREATE TABLE customers (id int PRIMARY KEY, name text, city text);
         INSERT INTO customers VALUES (1, 'Ann', 'Paris'), (2, 'Bob', 'Rome'), (3, 'Cid', 'Oslo');",
    );
    let p = TestProject::with_config(&format!(
        "connections:
  src: {{type: postgres, host: 127.0.0.1, port: 5432, database: {}, user: postgres, sslmode: disable}}
pipelines:
  crm:
    libraries: [\"pipelines/*.sql\"]
    schema: crm
",
        db.name
    ));
    p.write(
        "pipelines/cdc.sql",
        "CREATE OR REFRESH STREAMING TABLE customer_changes
AS SELECT * FROM STREAM read_changes('src', 'public.customers');

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
    );
    p.ok(&["validate"]);
    p.ok(&["run"]);
    verify_equal(&p, "src.public.customers", "crm.customers");
    assert_eq!(
        p.scalar("SELECT count(*) FROM crm.customer_changes WHERE _op = 'INSERT'"),
        "3"
    );

    // One transaction each (a multi-statement string would be one implicit transaction).
    for sql in [
        "UPDATE customers SET city = 'Lyon' WHERE id = 1",
        "DELETE FROM customers WHERE id = 2",
        "INSERT INTO customers VALUES (4, 'Dee', 'Rome')",
        "BEGIN; UPDATE customers SET city = 'Nice' WHERE id = 1; UPDATE customers SET name = 'Cyd' WHERE id = 3; COMMIT;",
    ] {
        db.exec(sql);
    }
    p.ok(&["run"]);
    verify_equal(&p, "src.public.customers", "crm.customers");
    // Each transaction is one change per key in the feed.
    assert_eq!(
        lake(
            &p,
            "SELECT _op, count(*) FROM crm.customer_changes GROUP BY _op ORDER BY _op"
        ),
        vec!["DELETE|1", "INSERT|4", "UPDATE|3"]
    );
    // History: Ann in Paris, Lyon, then Nice (current); Bob closed by the delete.
    assert_eq!(
        lake(
            &p,
            "SELECT city, `__END_AT` IS NULL FROM crm.customers_history WHERE id = 1 ORDER BY `__START_AT`"
        ),
        vec!["Paris|false", "Lyon|false", "Nice|true"]
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM crm.customers_history WHERE id = 2 AND `__END_AT` IS NULL"),
        "0"
    );
    // The event log says how far behind the feed was.
    let lag = p.rows(
        "SELECT details FROM crm.crm_event_log WHERE event_type = 'flow_progress' AND flow = 'customer_changes' AND details LIKE '%lag_seconds%'",
    );
    assert!(
        !lag.is_empty() && lag[0][0].contains("lag_bytes"),
        "{lag:?}"
    );
    // Nothing new: the run reads nothing and writes nothing.
    let out = p.ok(&["run", "--json"]);
    assert!(!out.contains("\"completed\""), "{out}");
    // Not through STREAM: a clear error at the place.
    p.write(
        "pipelines/bad.sql",
        "CREATE MATERIALIZED VIEW snap AS SELECT * FROM read_changes('src', 'public.customers');",
    );
    let err = p.fail(&["validate"]);
    assert!(
        err.contains("bad.sql:1:") && err.contains("STREAM read_changes"),
        "{err}"
    );
}

/// `confluo run --continuous`: changes reach the SCD 1 target without anyone running
/// anything, across a server-side disconnect; Ctrl-C stops it cleanly.
#[test]
fn continuous_run_keeps_the_feed_current() {
    let db = PgDb::new();
    db.exec("CREATE TABLE kv (k int PRIMARY KEY, v text); INSERT INTO kv VALUES (1, 'a');");
    let p = TestProject::with_config(&format!(
        "connections:
  src: {{type: postgres, host: 127.0.0.1, port: 5432, database: {}, user: postgres, sslmode: disable}}
pipelines:
  p:
    libraries: [\"pipelines/*.sql\"]
    schema: lake
",
        db.name
    ));
    p.write(
        "pipelines/kv.sql",
        "CREATE OR REFRESH STREAMING TABLE kv;
CREATE FLOW kv_cdc AS AUTO CDC INTO kv FROM STREAM read_changes('src', 'public.kv')
KEYS (k) APPLY AS DELETE WHEN _op = 'DELETE' SEQUENCE BY _lsn
COLUMNS * EXCEPT (_op, _lsn, _commit_ts) STORED AS SCD TYPE 1;
",
    );
    let mut child = p
        .command(&["run", "--continuous", "--interval", "200ms"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let wait_for = |sql: &str, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = p.run(&["query", sql, "--format", "csv"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if out.status.success() && text.lines().nth(1) == Some(want) {
                return;
            }
            assert!(Instant::now() < deadline, "{sql} never gave {want}: {text}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for("SELECT count(*) FROM lake.kv", "1");
    db.exec("INSERT INTO kv SELECT g, 'x' FROM generate_series(2, 50) g");
    wait_for("SELECT count(*) FROM lake.kv", "50");
    db.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
    db.exec("DELETE FROM kv WHERE k > 10");
    wait_for("SELECT count(*) FROM lake.kv", "10");
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    verify_equal(&p, "src.public.kv", "lake.kv");
}

/// SIGKILL while the initial copy runs, at several moments; then a sync copies again (or
/// goes on from what was copied) and the tables equal the source, changes included.
#[test]
fn sigkill_during_the_initial_copy_then_sync_equals_the_source() {
    let db = PgDb::new();
    db.exec(
        "CREATE TABLE big (id bigint PRIMARY KEY, a int, b text);
         INSERT INTO big SELECT g, g % 1000, md5(g::text) FROM generate_series(1, 300000) g;
         CREATE TABLE small (id int PRIMARY KEY, v int);
         INSERT INTO small SELECT g, g FROM generate_series(1, 1000) g;",
    );
    let p = project(&db, "");
    for delay_ms in [150u64, 400, 900] {
        let mut child = p.command(&["sync", "shop"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
        db.exec(&format!("UPDATE big SET a = -1 WHERE id = {delay_ms}"));
        db.exec(&format!("DELETE FROM small WHERE id = {delay_ms}"));
    }
    p.ok(&["sync", "shop"]);
    verify_equal(&p, "src.public.big", "shop.big");
    verify_equal(&p, "src.public.small", "shop.small");
    db.exec("UPDATE big SET b = 'after' WHERE id % 1000 = 0");
    p.ok(&["sync", "shop"]);
    verify_equal(&p, "src.public.big", "shop.big");
}

/// A PostgreSQL restart while `sync --continuous` streams: it reconnects by itself and,
/// after catch-up, the table equals the source. Runs alone (see .config/nextest.toml):
/// other tests would lose their connections during the restart.
#[test]
fn postgres_restart_while_streaming() {
    let db = PgDb::new();
    db.exec(
        "CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL);
         INSERT INTO acct SELECT g, 100 FROM generate_series(1, 500) g;",
    );
    let p = project(&db, "");
    p.ok(&["sync", "shop"]);
    let url = db.url();
    let writer = std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut done = 0;
            let mut i = 0i64;
            while done < 300 {
                i += 1;
                let Ok(mut c) = PgConnection::connect(&url).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                while done < 300 {
                    let sql = format!(
                        "UPDATE acct SET balance = balance + 1 WHERE id = {}",
                        (i * 7 + done) % 500 + 1
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
        .command(&["sync", "shop", "--continuous", "--interval", "100ms"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let cluster = std::fs::read_dir("/etc/postgresql").ok().and_then(|d| {
        d.flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .max()
    });
    let restarted = std::process::Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            cluster.as_deref().unwrap_or("15"),
            "main",
            "restart",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(restarted, "could not restart PostgreSQL with pg_ctlcluster");
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
    p.ok(&["sync", "shop"]);
    verify_equal(&p, "src.public.acct", "shop.acct");
    assert_eq!(
        p.scalar("SELECT sum(balance) FROM shop.acct"),
        db.text_rows("SELECT sum(balance)::text FROM acct")[0]
    );
}

/// Every type through the change stream (text form) lands exactly as the copy (binary
/// form) does: rows inserted and updated after the copy verify equal to the source.
#[test]
fn every_type_through_the_stream_equals_the_copy() {
    let db = PgDb::new();
    db.exec(crate::postgres::TYPES_SQL);
    let p = TestProject::with_config(&format!(
        "connections:
  src: {{type: postgres, host: 127.0.0.1, port: 5432, database: {}, user: postgres, sslmode: disable}}
ingest:
  shop: {{connection: src, tables: [\"public.all_types\"], schema: shop, mode: cdc}}
",
        db.name
    ));
    p.ok(&["sync", "shop"]);
    verify_equal(&p, "src.public.all_types", "shop.all_types");
    db.exec("INSERT INTO all_types SELECT id + 100, i2, i8, n, nbig, nfree, f4, f8, b, t, vc, c, nm, by, d, tm, ts, tstz, iv, u, j, jb, ia, ta, na, e, ip, cid, m, p FROM all_types");
    db.exec("UPDATE all_types SET t = t || '!', f4 = f4 * 3, tstz = tstz + interval '1 day' WHERE id IN (1, 101)");
    p.ok(&["sync", "shop"]);
    verify_equal(&p, "src.public.all_types", "shop.all_types");
    assert_eq!(p.scalar("SELECT count(*) FROM shop.all_types"), "6");
}

/// `scd_type: 2`: the copy is the first version of every row; each later transaction that
/// changes a row closes its version and opens a new one; a delete closes it. The open
/// versions equal the source.
#[test]
fn scd_type_2_entries_keep_every_version() {
    let db = PgDb::new();
    db.exec(
        "CREATE TABLE price (sku int PRIMARY KEY, amount numeric(8,2), note text);
             INSERT INTO price VALUES (1, 10.00, 'a'), (2, 20.00, 'b'), (3, 30.00, 'c');",
    );
    let p = project(&db, "    scd_type: 2\n");
    p.ok(&["sync", "shop"]);
    for sql in [
        "UPDATE price SET amount = 11.00 WHERE sku = 1",
        "UPDATE price SET amount = 12.00 WHERE sku = 1",
        "DELETE FROM price WHERE sku = 2",
        "INSERT INTO price VALUES (4, 40.00, 'd')",
    ] {
        db.exec(sql);
    }
    p.ok(&["sync", "shop"]);
    assert_eq!(
        lake(
            &p,
            "SELECT amount, `__END_AT` IS NULL FROM shop.price WHERE sku = 1 ORDER BY `__START_AT`"
        ),
        vec!["10.00|false", "11.00|false", "12.00|true"]
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM shop.price WHERE sku = 2 AND `__END_AT` IS NULL"),
        "0"
    );
    assert_eq!(
        p.scalar("SELECT count(*) FROM shop.price WHERE sku = 2"),
        "1"
    );
    let current = lake(
        &p,
        "SELECT sku, amount, note FROM shop.price WHERE `__END_AT` IS NULL ORDER BY sku",
    );
    let source = db.text_rows("SELECT concat_ws('|', sku, amount, note) FROM price ORDER BY sku");
    assert_eq!(current, source);
    // A truncate cannot become history: a clear error, nothing applied.
    db.exec("TRUNCATE price");
    let err = p.fail(&["sync", "shop"]);
    assert!(
        err.contains("truncated") && err.contains("sync again"),
        "{err}"
    );
}

/// A project from before the entry state moved into the metastore: the next sync takes its
/// `.confluo/ingest/<entry>.json` over, copies nothing again and applies what changed
/// meanwhile; `--status` shows the typed position; `--reset` makes the next sync start
/// afresh with a new slot and a new copy.
#[test]
fn a_legacy_state_file_is_taken_over_and_reset_starts_afresh() {
    let db = PgDb::new();
    db.exec(
        "CREATE TABLE events (k int PRIMARY KEY, v int);
         INSERT INTO events SELECT g, g FROM generate_series(1, 100) g;",
    );
    let p = project(&db, "");
    p.ok(&["sync", "shop"]);
    // Back to what an older version left: the state in a file, none in the metastore.
    let metastore = p.path(".confluo/metastore.db");
    let state = crate::common::run_python(&format!(
        "import sqlite3\nc = sqlite3.connect({m:?})\nprint(c.execute(\"SELECT state_json FROM ingest_state WHERE entry = 'shop'\").fetchone()[0])\nc.execute('DELETE FROM ingest_state')\nc.commit()",
        m = metastore.display().to_string()
    ));
    assert!(state.contains("\"copied\":true"), "{state}");
    p.write(".confluo/ingest/shop.json", state.trim());
    db.exec("UPDATE events SET v = -v WHERE v <= 10; INSERT INTO events VALUES (1000, 1);");
    let out: serde_json::Value = serde_json::from_str(&p.ok(&["sync", "shop", "--json"])).unwrap();
    assert_eq!(out["report"]["copied"], serde_json::json!([]), "{out}");
    assert_eq!(out["report"]["changes"], 11, "{out}");
    verify_equal(&p, "src.public.events", "shop.events");
    assert!(!p.path(".confluo/ingest/shop.json").exists());
    assert!(p.path(".confluo/ingest/shop.json.migrated").exists());
    let status = p.ok(&["sync", "--status", "--json"]);
    assert!(
        status.contains("\"source\":\"postgres\"") && status.contains("\"entry\":\"shop\""),
        "{status}"
    );

    let out = p.ok(&["sync", "shop", "--reset"]);
    assert!(out.contains("starts afresh"), "{out}");
    assert!(!p.ok(&["sync", "--status"]).contains("shop:"));
    db.exec("DELETE FROM events WHERE v < 0;");
    let out: serde_json::Value = serde_json::from_str(&p.ok(&["sync", "shop", "--json"])).unwrap();
    assert_eq!(out["report"]["copied"][0][1], 91, "{out}");
    verify_equal(&p, "src.public.events", "shop.events");
    // A reset of an entry that does not exist names the near one.
    let e = p.fail(&["sync", "shopp", "--reset"]);
    assert!(e.contains("`shop`"), "{e}");
}
