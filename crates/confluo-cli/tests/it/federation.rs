//! Lakehouse Federation end to end: `CREATE CONNECTION` with a password from the encrypted
//! secret store, `CREATE FOREIGN CATALOG` over real PostgreSQL, MariaDB and SQLite
//! databases, answers checked against the source itself, the SQL pushed down read from
//! `EXPLAIN`, joins across systems and with lakehouse tables, stored views read by a new
//! process and by psql, and the errors a user can cause, each naming the source.

use std::io::Write;
use std::process::Stdio;

use sqlx::Connection;

use crate::common::TestProject;
use crate::jobs::stop;
use crate::mysql::MyDb;
use crate::pg::PgDb;
use crate::server::{PASSWORD, add_user, psql, serve, url};

const SHOP: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, region text);
CREATE TABLE orders (id int PRIMARY KEY, customer_id int, amount numeric(10,2), placed timestamptz,
                     paid bool, tags text[], ref uuid, note jsonb, due date);
INSERT INTO customers SELECT i, 'customer ' || i, (ARRAY['north','south','east'])[1 + i % 3]
  FROM generate_series(1, 30) i;
INSERT INTO orders SELECT i, 1 + i % 30, (i * 7 % 1000) + 0.25, '2024-01-01 00:00:00+00'::timestamptz + i * interval '1 hour',
  i % 2 = 0, ARRAY['t' || (i % 4)], md5(i::text)::uuid, jsonb_build_object('i', i), DATE '2024-03-01' + i % 20
  FROM generate_series(1, 2000) i;
INSERT INTO orders (id, customer_id, amount) VALUES (2001, NULL, NULL);
";

/// `confluo secrets put SCOPE KEY` with `value` on standard input.
pub(crate) fn put_secret(p: &TestProject, scope: &str, key: &str, value: &str) {
    let mut child = p
        .command(&["secrets", "put", scope, key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    write!(child.stdin.take().unwrap(), "{value}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "secrets put: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A project with foreign catalog `shop` over `db` through connection `pg_shop`.
fn shop_project(db: &PgDb) -> TestProject {
    let p = TestProject::new();
    put_secret(&p, "shop", "pg", "not-checked-by-trust-auth");
    p.ok(&[
        "query",
        "CREATE CONNECTION pg_shop TYPE postgresql OPTIONS (host '127.0.0.1', port '5432', \
         user 'postgres', password secret('shop', 'pg'), sslmode 'disable')",
    ]);
    p.ok(&[
        "query",
        &format!(
            "CREATE FOREIGN CATALOG shop USING CONNECTION pg_shop OPTIONS (database '{}')",
            db.name
        ),
    ]);
    p
}

/// The PostgreSQL answer to `sql` as CSV-like rows (each column cast to text).
fn pg_rows(db: &PgDb, sql: &str) -> Vec<Vec<String>> {
    db.rt.block_on(async {
        let mut c = sqlx::PgConnection::connect(&db.url()).await.unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        use sqlx::Row;
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<Option<String>, _>(i)
                            .unwrap()
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .collect()
    })
}

#[test]
fn postgres_catalog_pushes_work_down_and_answers_like_the_source() {
    let db = PgDb::new();
    db.exec(SHOP);
    let p = shop_project(&db);

    // Names come from the source.
    let schemas = p.ok(&["query", "SHOW SCHEMAS IN shop", "--format", "csv"]);
    assert!(schemas.contains("shop,public"), "{schemas}");
    let tables = p.ok(&["query", "SHOW TABLES IN shop.public", "--format", "csv"]);
    assert!(
        tables.contains("customers") && tables.contains("orders"),
        "{tables}"
    );

    // An aggregate over a join, filtered: the same answer as PostgreSQL's.
    let sql = "SELECT c.region, count(*) AS n, sum(o.amount) AS total, min(o.placed) AS first \
               FROM shop.public.orders o JOIN shop.public.customers c ON o.customer_id = c.id \
               WHERE o.amount > 100 GROUP BY c.region ORDER BY c.region";
    let ours = p.rows(sql);
    let theirs = pg_rows(
        &db,
        "SELECT c.region, count(*)::text, sum(o.amount)::text, \
         to_char(min(o.placed) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS') \
         FROM orders o JOIN customers c ON o.customer_id = c.id WHERE o.amount > 100 \
         GROUP BY c.region ORDER BY c.region",
    );
    assert_eq!(ours.len(), 3, "{ours:?}");
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a[..3], b[..3], "ours {ours:?} theirs {theirs:?}");
        assert!(a[3].starts_with(&b[3]), "{} vs {}", a[3], b[3]);
    }

    // EXPLAIN shows the one statement sent: join, filter and aggregate all pushed down.
    let plan = p.ok(&["query", &format!("EXPLAIN {sql}")]);
    assert!(plan.contains("VirtualExecutionPlan"), "{plan}");
    let sent = plan
        .lines()
        .find(|l| l.contains("base_sql="))
        .unwrap_or_else(|| panic!("no SQL in the plan:\n{plan}"));
    for part in ["JOIN", "WHERE", "GROUP BY", "count(", "sum("] {
        assert!(sent.contains(part), "`{part}` not pushed down: {sent}");
    }
    // A limit with a sort goes too.
    let plan = p.ok(&[
        "query",
        "EXPLAIN SELECT id, amount FROM shop.public.orders ORDER BY amount DESC, id LIMIT 5",
    ]);
    let sent = plan.lines().find(|l| l.contains("base_sql=")).unwrap();
    assert!(
        sent.contains("ORDER BY") && sent.contains("LIMIT 5"),
        "{sent}"
    );
    let top = p.rows("SELECT id, amount FROM shop.public.orders ORDER BY amount DESC, id LIMIT 5");
    let want = pg_rows(
        &db,
        "SELECT id::text, amount::text FROM orders o ORDER BY o.amount DESC, o.id LIMIT 5",
    );
    assert_eq!(top, want);

    // Every type arrives as the source holds it (nulls included).
    let row = p.rows(
        "SELECT id, amount, placed, paid, tags, ref, note, due FROM shop.public.orders \
         WHERE id IN (2, 2001) ORDER BY id",
    );
    let src = pg_rows(
        &db,
        "SELECT id::text, amount::text, placed::text, paid::text, tags::text, ref::text, \
         note::text, due::text FROM orders WHERE id = 2",
    );
    assert_eq!(row[0][1], src[0][1]);
    assert_eq!(row[0][3], src[0][3]);
    assert_eq!(row[0][5], src[0][5]);
    assert_eq!(row[0][6], src[0][6]);
    assert_eq!(row[0][7], src[0][7]);
    assert!(row[0][4].contains("t2"), "{:?}", row[0]);
    assert_eq!(row[1][1..], vec![String::new(); 7], "NULLs stay NULL");

    // DESCRIBE reads the columns of a foreign table.
    let described = p.ok(&[
        "query",
        "DESCRIBE TABLE EXTENDED shop.public.orders",
        "--format",
        "csv",
    ]);
    for part in [
        "amount,\"decimal(10,2)\"",
        "placed,timestamp",
        "FOREIGN",
        "pg_shop",
    ] {
        assert!(described.contains(part), "`{part}` in {described}");
    }

    // A join with a lakehouse table, and a count of every row (nothing lost).
    p.ok(&[
        "query",
        "CREATE TABLE goals AS SELECT * FROM (VALUES ('north', 100), ('south', 200)) AS t(region, goal)",
    ]);
    let joined = p.rows(
        "SELECT g.region, g.goal, count(*) FROM goals g \
         JOIN shop.public.customers c ON c.region = g.region GROUP BY g.region, g.goal ORDER BY 1",
    );
    assert_eq!(
        joined,
        vec![vec!["north", "100", "10"], vec!["south", "200", "10"]]
    );
    assert_eq!(p.scalar("SELECT count(*) FROM shop.public.orders"), "2001");
}

#[test]
fn views_over_foreign_and_lakehouse_tables_serve_every_client() {
    let db = PgDb::new();
    db.exec(SHOP);
    let p = shop_project(&db);
    p.ok(&[
        "query",
        "CREATE VIEW big_orders COMMENT 'orders over 900' AS \
         SELECT o.id, o.amount, c.region FROM shop.public.orders o \
         JOIN shop.public.customers c ON c.id = o.customer_id WHERE o.amount > 900",
    ]);
    let expected =
        pg_rows(&db, "SELECT count(*)::text FROM orders WHERE amount > 900")[0][0].clone();
    // A new process reads the stored view.
    assert_eq!(p.scalar("SELECT count(*) FROM big_orders"), expected);
    let listed = p.ok(&["query", "SHOW VIEWS", "--format", "csv"]);
    assert!(listed.contains("big_orders"), "{listed}");
    let described = p.ok(&["query", "DESCRIBE EXTENDED big_orders", "--format", "csv"]);
    for part in ["region,string", "VIEW", "orders over 900"] {
        assert!(described.contains(part), "`{part}` in {described}");
    }
    // A view on a view; a view that would read itself is refused.
    p.ok(&[
        "query",
        "CREATE VIEW north_big AS SELECT * FROM big_orders WHERE region = 'north'",
    ]);
    let err = p.fail(&[
        "query",
        "CREATE OR REPLACE VIEW big_orders AS SELECT * FROM north_big",
    ]);
    assert!(err.contains("would read itself"), "{err}");
    // The same name as a table, and a view over a missing table, are errors.
    let err = p.fail(&["query", "CREATE VIEW v AS SELECT * FROM shop.public.nope"]);
    assert!(err.contains("nope"), "{err}");

    // psql through `confluo serve` sees the view and can query it.
    add_user(&p, "alice", PASSWORD, &[]);
    let (server, port) = serve(&p, &[]);
    let u = url(port, "alice", PASSWORD, "sslmode=disable");
    let (ok, out, err) = psql(&u, &["-c", "SELECT count(*) FROM big_orders"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), expected);
    let (ok, out, err) = psql(
        &u,
        &[
            "-c",
            "SELECT count(*) FROM north_big JOIN shop.public.customers c ON c.region = north_big.region",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.trim().parse::<u64>().unwrap() > 0, "{out}");
    stop(server, libc::SIGTERM);

    p.ok(&["query", "DROP VIEW north_big"]);
    let err = p.fail(&["query", "SELECT * FROM north_big"]);
    assert!(err.contains("north_big"), "{err}");
}

#[test]
fn mysql_and_sqlite_catalogs_join_with_postgres_and_the_lakehouse() {
    let pg = PgDb::new();
    pg.exec(SHOP);
    let p = shop_project(&pg);

    let my = MyDb::new();
    my.exec(
        "CREATE TABLE stock (sku INT PRIMARY KEY, customer_id INT, qty DECIMAL(10,2), \
         price DOUBLE, label VARCHAR(20), seen DATETIME(3), flag TINYINT);\n\
         INSERT INTO stock VALUES (1, 1, 1.50, 2.25, 'a', '2024-01-02 03:04:05.678', 1), \
         (2, 2, 2.00, 3.5, 'b', NULL, 0), (3, 2, NULL, NULL, NULL, NULL, NULL);\n",
    );
    p.ok(&[
        "query",
        "CREATE CONNECTION maria TYPE mysql OPTIONS (host '127.0.0.1', port '3306', user 'root', ssl_mode 'disabled')",
    ]);
    p.ok(&[
        "query",
        "CREATE FOREIGN CATALOG inventory USING CONNECTION maria",
    ]);
    let rows = p.rows(&format!(
        "SELECT customer_id, sum(qty), count(*), max(seen), min(label) FROM inventory.{}.stock \
         GROUP BY customer_id ORDER BY customer_id",
        my.name
    ));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][..3], ["1", "1.50", "1"]);
    assert!(
        rows[0][3].starts_with("2024-01-02T03:04:05.678"),
        "{rows:?}"
    );
    assert_eq!(rows[1][..3], ["2", "2.00", "2"]);
    let plan = p.ok(&[
        "query",
        &format!(
            "EXPLAIN SELECT customer_id, sum(qty) FROM inventory.{}.stock GROUP BY customer_id",
            my.name
        ),
    ]);
    assert!(plan.contains("GROUP BY"), "{plan}");

    // A SQLite file as a third system.
    let lite = p.path("lite.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&lite)
            .create_if_missing(true);
        let mut c = sqlx::SqliteConnection::connect_with(&opts).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE notes (customer_id INTEGER, body TEXT, score REAL, at DATETIME);
             INSERT INTO notes VALUES (1, 'vip', 4.5, '2024-05-01 10:00:00'), (2, 'late', 2.0, NULL);",
        )
        .execute(&mut c)
        .await
        .unwrap();
    });
    p.ok(&[
        "query",
        &format!(
            "CREATE CONNECTION lite TYPE sqlite OPTIONS (path '{}')",
            lite.display()
        ),
    ]);
    p.ok(&[
        "query",
        "CREATE FOREIGN CATALOG notes USING CONNECTION lite",
    ]);
    assert_eq!(
        p.rows("SELECT body, score, at FROM notes.main.notes ORDER BY customer_id"),
        vec![
            vec!["vip", "4.5", "2024-05-01T10:00:00"],
            vec!["late", "2.0", ""]
        ]
    );

    // Three systems and the lakehouse in one query.
    p.ok(&[
        "query",
        "CREATE TABLE tiers AS SELECT * FROM (VALUES (1, 'gold'), (2, 'silver')) AS t(customer_id, tier)",
    ]);
    let all = p.rows(&format!(
        "SELECT c.name, t.tier, n.body, sum(s.qty) FROM shop.public.customers c \
         JOIN tiers t ON t.customer_id = c.id \
         JOIN notes.main.notes n ON n.customer_id = c.id \
         JOIN inventory.{}.stock s ON s.customer_id = c.id \
         GROUP BY c.name, t.tier, n.body ORDER BY c.name",
        my.name
    ));
    assert_eq!(
        all,
        vec![
            vec!["customer 1", "gold", "vip", "1.50"],
            vec!["customer 2", "silver", "late", "2.00"]
        ]
    );
}

#[test]
fn federation_errors_name_the_source_and_what_to_do() {
    let p = TestProject::new();
    // A password written into the statement is refused.
    let err = p.fail(&[
        "query",
        "CREATE CONNECTION c1 TYPE postgresql OPTIONS (host 'h', user 'u', password 'hunter2')",
    ]);
    assert!(
        err.contains("must be a secret") && err.contains("confluo secrets put"),
        "{err}"
    );
    // A secret that does not exist, an unknown key, an unknown type.
    let err = p.fail(&[
        "query",
        "CREATE CONNECTION c2 TYPE postgresql OPTIONS (host 'h', user 'u', password secret('none', 'x'))",
    ]);
    assert!(err.contains("secret('none', 'x') does not exist"), "{err}");
    let err = p.fail(&[
        "query",
        "CREATE CONNECTION c3 TYPE postgresql OPTIONS (host 'h', user 'u', prot '5432')",
    ]);
    assert!(err.contains("unknown key `prot`"), "{err}");
    let err = p.fail(&[
        "query",
        "CREATE CONNECTION c4 TYPE oracle OPTIONS (host 'h')",
    ]);
    assert!(err.contains("postgresql, mysql, sqlite"), "{err}");
    let err = p.fail(&["query", "CREATE FOREIGN CATALOG x USING CONNECTION nope"]);
    assert!(err.contains("connection `nope` does not exist"), "{err}");

    // Unreachable server: the connection and address are named.
    p.ok(&[
        "query",
        "CREATE CONNECTION down TYPE postgresql OPTIONS (host '127.0.0.1', port '1', user 'u', sslmode 'disable', connect_timeout '2s')",
    ]);
    p.ok(&[
        "query",
        "CREATE FOREIGN CATALOG gone USING CONNECTION down OPTIONS (database 'd')",
    ]);
    let err = p.fail(&["query", "SELECT * FROM gone.public.t"]);
    assert!(
        err.contains("connection `down`") && err.contains("127.0.0.1:1"),
        "{err}"
    );
    // Lakehouse queries do not suffer from it.
    assert_eq!(p.scalar("SELECT 1"), "1");

    // Wrong password (MariaDB checks it).
    let my = MyDb::new();
    let user = format!("confluo_t_fed_{}", &my.name["confluo_t_".len()..][..12]);
    for host in ["%", "localhost"] {
        my.admin(&format!(
            "CREATE USER '{user}'@'{host}' IDENTIFIED BY 'right-one'"
        ));
        my.admin(&format!(
            "GRANT SELECT ON {}.* TO '{user}'@'{host}'",
            my.name
        ));
    }
    my.exec("CREATE TABLE t (id INT PRIMARY KEY, g GEOMETRY, u INET6)");
    put_secret(&p, "maria", "pw", "wrong-one");
    p.ok(&[
        "query",
        &format!(
            "CREATE CONNECTION m TYPE mysql OPTIONS (host '127.0.0.1', user '{user}', password secret('maria', 'pw'), ssl_mode 'disabled')"
        ),
    ]);
    p.ok(&["query", "CREATE FOREIGN CATALOG mc USING CONNECTION m"]);
    let err = p.fail(&["query", &format!("SELECT * FROM mc.{}.t", my.name)]);
    assert!(
        err.contains("connection `m`") && err.contains("password"),
        "{err}"
    );
    // The right password, saved again, works without redefining anything.
    put_secret(&p, "maria", "pw", "right-one");
    // Unsupported type: named with its column.
    let err = p.fail(&["query", &format!("SELECT * FROM mc.{}.t", my.name)]);
    assert!(err.contains("column") && err.contains("inet6"), "{err}");
    // Missing table: named, with the tables that do exist.
    let err = p.fail(&["query", &format!("SELECT * FROM mc.{}.tt", my.name)]);
    assert!(err.contains("tt"), "{err}");
    for host in ["%", "localhost"] {
        my.admin(&format!("DROP USER '{user}'@'{host}'"));
    }

    // DROP CONNECTION while a catalog uses it says which.
    let err = p.fail(&["query", "DROP CONNECTION down"]);
    assert!(err.contains("gone"), "{err}");
    p.ok(&["query", "DROP CATALOG gone"]);
    p.ok(&["query", "DROP CONNECTION down"]);
}

#[test]
fn a_connection_of_confluo_yaml_serves_a_foreign_catalog() {
    let db = PgDb::new();
    db.exec("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, 'v' || i FROM generate_series(1, 500) i;");
    let p = TestProject::with_config(&db.connection(""));
    let run = |args: &[&str]| {
        crate::common::succeeded(
            args,
            p.command(args)
                .env("CONFLUO_T_PGPASS", "unused")
                .output()
                .unwrap(),
        )
    };
    // The same connection an `ingest:` entry would use; its database comes from the file.
    run(&["query", "CREATE FOREIGN CATALOG erp USING CONNECTION pg"]);
    let out = run(&[
        "query",
        "SELECT count(*), max(v) FROM erp.public.t WHERE id > 100",
        "--format",
        "csv",
    ]);
    assert!(out.contains("400,v500"), "{out}");
    let listed = run(&["query", "SHOW CONNECTIONS", "--format", "csv"]);
    assert!(listed.contains("pg,postgres,(confluo.yaml)"), "{listed}");
}
