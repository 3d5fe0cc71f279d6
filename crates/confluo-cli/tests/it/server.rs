//! `confluo serve`'s Postgres endpoint with real clients: psql, psycopg and the PostgreSQL
//! JDBC driver; users and SCRAM, the rate limit and audit of failed logins, TLS.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};

use crate::common::{TestProject, free_port, orders_csv, run_python};
use crate::jobs::stop;

pub(crate) const PASSWORD: &str = "s3cret-pass";

/// A project with `sales.orders` (1,000 rows) and the user `alice`.
fn project() -> TestProject {
    let p = TestProject::new();
    let csv = p.write("orders.csv", orders_csv(1, 1000));
    p.ingest(&csv, "sales.orders", &[]);
    add_user(&p, "alice", PASSWORD, &[]);
    p
}

pub(crate) fn add_user(p: &TestProject, name: &str, password: &str, extra: &[&str]) -> Output {
    let mut args = vec!["users", "add", name, "--password-stdin"];
    args.extend_from_slice(extra);
    let mut child = p
        .command(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "users add {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `confluo serve` with its SQL endpoint on a free port; its output goes to serve.log.
pub(crate) fn serve(p: &TestProject, extra: &[&str]) -> (Child, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--postgres", &listen];
    if !extra.contains(&"--http") {
        args.extend_from_slice(&["--http", "off"]);
    }
    args.extend_from_slice(extra);
    (p.serve(&args, port), port)
}

/// psql with a connection string; returns (success, stdout, stderr).
pub(crate) fn psql(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("psql")
        .arg(url)
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env_remove("PGPASSWORD")
        .output()
        .expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

pub(crate) fn url(port: u16, user: &str, password: &str, extra: &str) -> String {
    format!("postgresql://{user}:{password}@127.0.0.1:{port}/main?{extra}")
}

#[test]
fn psql_reads_writes_and_lists_the_lakehouse() {
    let p = project();
    let (server, port) = serve(&p, &[]);
    let u = url(port, "alice", PASSWORD, "sslmode=disable");

    // The same answer as `confluo query`.
    let expected = p.rows("SELECT count(*), sum(amount) FROM sales.orders");
    let (ok, out, err) = psql(
        &u,
        &[
            "-F",
            ",",
            "-c",
            "SELECT count(*), sum(amount) FROM sales.orders",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), expected[0].join(","));

    // A script: lakehouse DDL and DML, then a query of what they made.
    let (ok, out, err) = psql(
        &u,
        &[
            "-c",
            "CREATE TABLE sales.t AS SELECT 1 AS a; INSERT INTO sales.t VALUES (2); SELECT sum(a) FROM sales.t",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "3");
    assert!(err.contains("inserted 1 rows into"), "the notice: {err}");
    assert_eq!(p.scalar("SELECT sum(a) FROM sales.t"), "3");

    // psql's own catalog queries: \dt lists tables, \d describes one.
    let (ok, out, err) = psql(&u, &["-c", "\\dt sales.*"]);
    assert!(ok, "{err}");
    assert!(out.contains("orders") && out.contains("|t|"), "{out}");
    let (ok, out, err) = psql(&u, &["-c", "\\d sales.orders"]);
    assert!(ok, "{err}");
    assert!(out.contains("order_id") && out.contains("status"), "{out}");

    // Session functions, SET/SHOW, BEGIN/COMMIT, search_path.
    let (ok, out, err) = psql(
        &u,
        &[
            "-c",
            "SELECT current_user, current_database(), version()",
            "-c",
            "BEGIN",
            "-c",
            "SET search_path = sales",
            "-c",
            "SELECT count(*) FROM orders",
            "-c",
            "COMMIT",
            "-c",
            "SHOW search_path",
        ],
    );
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        lines[0].starts_with("alice|main|PostgreSQL 16.0 (Confluo"),
        "{out}"
    );
    assert!(lines.contains(&"1000"), "{out}");
    assert!(lines.last().unwrap().contains("sales"), "{out}");

    // COPY ... TO STDOUT, as CSV with a header and in the text format.
    let (ok, out, err) = psql(
        &u,
        &[
            "-c",
            "COPY (SELECT order_id, status FROM sales.orders ORDER BY order_id LIMIT 3) TO STDOUT WITH (FORMAT csv, HEADER)",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "order_id,status\n1,paid\n2,shipped\n3,new\n");
    let (ok, out, err) = psql(&u, &["-c", "COPY sales.t TO STDOUT"]);
    assert!(ok, "{err}");
    let mut vals: Vec<&str> = out.lines().collect();
    vals.sort();
    assert_eq!(vals, ["1", "2"]);

    // Errors name what is wrong, with the SQLSTATE a client can act on; the session goes on.
    let (ok, _, err) = psql(&u, &["-c", "SELECT nope FROM sales.orders"]);
    assert!(!ok);
    assert!(err.contains("nope"), "{err}");
    let (ok, _, err) = psql(&u, &["-c", "SELECT * FROM sales.missing"]);
    assert!(!ok);
    assert!(err.contains("missing"), "{err}");
    let (ok, _, err) = psql(&u, &["-c", "SELEC 1"]);
    assert!(!ok);
    assert!(err.to_lowercase().contains("syntax"), "{err}");
    let (ok, _, err) = psql(
        &url(port, "alice", PASSWORD, "sslmode=disable").replace("/main?", "/nosuchdb?"),
        &["-c", "SELECT 1"],
    );
    assert!(!ok);
    assert!(
        err.contains("database \"nosuchdb\" does not exist"),
        "{err}"
    );

    let status = stop(server, libc::SIGTERM);
    assert!(status.success(), "SIGTERM: {status:?}");
}

#[test]
fn logins_are_checked_limited_and_audited() {
    let p = project();
    let (server, port) = serve(&p, &[]);

    let (ok, _, err) = psql(
        &url(port, "alice", "wrong-password", "sslmode=disable"),
        &["-c", "SELECT 1"],
    );
    assert!(!ok);
    assert!(
        err.contains("password authentication failed for user \"alice\""),
        "{err}"
    );
    // An unknown user fails the same way (a client is not told which part was wrong).
    let (ok, _, err) = psql(
        &url(port, "mallory", "whatever1", "sslmode=disable"),
        &["-c", "SELECT 1"],
    );
    assert!(!ok);
    assert!(
        err.contains("password authentication failed for user \"mallory\""),
        "{err}"
    );

    // Five failures within the window: the next attempt is refused, right password or not.
    for _ in 0..4 {
        let (ok, _, _) = psql(
            &url(port, "alice", "wrong-password", "sslmode=disable"),
            &["-c", "SELECT 1"],
        );
        assert!(!ok);
    }
    let (ok, _, err) = psql(
        &url(port, "alice", PASSWORD, "sslmode=disable"),
        &["-c", "SELECT 1"],
    );
    assert!(!ok, "a rate-limited login got in");
    assert!(err.contains("too many failed logins for `alice`"), "{err}");

    // Another user is not affected; the audit has every attempt.
    add_user(&p, "bob", "bobs-password", &["--group", "analysts"]);
    let (ok, out, err) = psql(
        &url(port, "bob", "bobs-password", "sslmode=disable"),
        &["-c", "SELECT current_user"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "bob");
    let audit = p.ok(&["users", "audit"]);
    assert_eq!(audit.matches("failure").count(), 6, "{audit}");
    assert_eq!(audit.matches("refused").count(), 1, "{audit}");
    assert!(audit.contains("success"), "{audit}");
    let users = p.ok(&["users", "list"]);
    assert!(
        users.contains("alice") && users.contains("analysts"),
        "{users}"
    );

    // Members of `admins` manage users over SQL; others may not.
    let (ok, _, err) = psql(
        &url(port, "bob", "bobs-password", "sslmode=disable"),
        &["-c", "CREATE USER carol WITH PASSWORD 'carols-password'"],
    );
    assert!(!ok);
    assert!(err.contains("only members of group `admins`"), "{err}");
    p.ok(&["users", "join", "bob", "admins"]);
    let (ok, _, err) = psql(
        &url(port, "bob", "bobs-password", "sslmode=disable"),
        &[
            "-c",
            "CREATE USER carol WITH PASSWORD 'carols-password' IN GROUP analysts",
        ],
    );
    assert!(ok, "{err}");
    let (ok, out, err) = psql(
        &url(port, "carol", "carols-password", "sslmode=disable"),
        &["-c", "SELECT current_user"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "carol");
    let (ok, _, err) = psql(
        &url(port, "bob", "bobs-password", "sslmode=disable"),
        &["-c", "DROP USER carol"],
    );
    assert!(ok, "{err}");
    assert!(!p.ok(&["users", "list"]).contains("carol"));

    // A removed user cannot log in any more.
    p.ok(&["users", "remove", "bob"]);
    let (ok, _, _) = psql(
        &url(port, "bob", "bobs-password", "sslmode=disable"),
        &["-c", "SELECT 1"],
    );
    assert!(!ok);
    let e = p.fail(&["users", "remove", "bob"]);
    assert!(
        e.contains("no user or service principal named `bob`"),
        "{e}"
    );
    let e = p.fail(&["users", "add", "2bad", "--password-stdin"]);
    assert!(
        e.contains("not a valid user name") || e.contains("password"),
        "{e}"
    );

    assert!(stop(server, libc::SIGTERM).success());
}

#[test]
fn psycopg_binds_parameters_maps_types_and_fetches_a_million_rows() {
    let p = project();
    let (server, port) = serve(&p, &[]);
    let script = format!(
        r#"
import psycopg, json, decimal, datetime
conn = psycopg.connect(host="127.0.0.1", port={port}, user="alice", password="{PASSWORD}", dbname="main", sslmode="disable")
out = {{}}
with conn.cursor() as cur:
    cur.execute("SELECT order_id, status, amount FROM sales.orders WHERE order_id = %s", (7,))
    out["row"] = [str(v) for v in cur.fetchone()]
    cur.execute("SELECT count(*) FROM sales.orders WHERE status = %s AND amount > %s", ("paid", 500))
    out["count"] = cur.fetchone()[0]
    cur.execute("""SELECT CAST(12.34 AS DECIMAL(10,2)) AS d,
        CAST('2024-01-02T03:04:05Z' AS TIMESTAMP) AS ts,
        DATE '2024-02-29' AS day,
        make_array(1, 2, 3) AS arr,
        true AS b, CAST(NULL AS INT) AS n, 'héllo' AS s, CAST(2.5 AS DOUBLE) AS f""")
    row = cur.fetchone()
    out["types"] = [type(v).__name__ for v in row]
    out["values"] = [str(v) for v in row]
    cur.execute("SELECT value FROM generate_series(1, 1000000)")
    n = 0; total = 0
    for (v,) in cur:
        n += 1; total += v
    out["million"] = [n, total]
    # A named (server-side) cursor: the rows come in pages.
    with conn.transaction():
        named = conn.cursor(name="pages")
        named.itersize = 300
        named.execute("SELECT order_id FROM sales.orders ORDER BY order_id")
        ids = [r[0] for r in named]
        named.close()
    out["cursor"] = [len(ids), ids[0], ids[-1]]
    try:
        cur.execute("SELECT * FROM sales.nope")
    except psycopg.Error as e:
        out["error"] = [e.sqlstate, str(e)]
    conn.rollback()
# A statement past the session's statement_timeout, and one cancelled by the client.
huge = "SELECT count(*) FROM generate_series(1, 50000000000)"
conn.execute("SET statement_timeout = '300ms'")
try:
    conn.execute(huge)
except psycopg.errors.QueryCanceled as e:
    out["timeout"] = [e.sqlstate, str(e)]
conn.rollback()
conn.execute("SET statement_timeout = 0")
import threading
threading.Timer(0.5, conn.cancel).start()
try:
    conn.execute(huge)
except psycopg.errors.QueryCanceled as e:
    out["cancel"] = e.sqlstate
conn.rollback()
out["after"] = conn.execute("SELECT count(*) FROM sales.orders").fetchone()[0]
print(json.dumps(out))
"#
    );
    let out: serde_json::Value = serde_json::from_str(run_python(&script).trim()).unwrap();
    let expected = p.rows("SELECT order_id, status, amount FROM sales.orders WHERE order_id = 7");
    assert_eq!(out["row"], serde_json::json!(expected[0]));
    let expected =
        p.scalar("SELECT count(*) FROM sales.orders WHERE status = 'paid' AND amount > 500");
    assert_eq!(out["count"].to_string(), expected);
    assert_eq!(
        out["types"],
        serde_json::json!([
            "Decimal", "datetime", "date", "list", "bool", "NoneType", "str", "float"
        ])
    );
    assert_eq!(out["values"][0], "12.34");
    assert_eq!(out["values"][1], "2024-01-02 03:04:05");
    assert_eq!(out["values"][3], "[1, 2, 3]");
    assert_eq!(out["values"][6], "héllo");
    assert_eq!(
        out["million"],
        serde_json::json!([1_000_000, 500_000_500_000u64])
    );
    assert_eq!(out["error"][0], "42P01", "{}", out["error"]);
    assert_eq!(out["cursor"], serde_json::json!([1000, 1, 1000]));
    assert_eq!(out["timeout"][0], "57014", "{}", out);
    assert!(
        out["timeout"][1]
            .as_str()
            .unwrap()
            .contains("statement timeout"),
        "{out}"
    );
    assert_eq!(out["cancel"], "57014", "{out}");
    assert_eq!(out["after"], 1000);
    assert!(stop(server, libc::SIGTERM).success());
}

#[test]
fn jdbc_runs_prepared_statements() {
    let p = project();
    let (server, port) = serve(&p, &[]);
    let src = p.write(
        "Probe.java",
        r#"
import java.sql.*;
public class Probe {
    public static void main(String[] a) throws Exception {
        try (Connection c = DriverManager.getConnection(a[0], a[1], a[2])) {
            DatabaseMetaData md = c.getMetaData();
            System.out.println("product=" + md.getDatabaseProductName());
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT order_id, status FROM sales.orders WHERE order_id BETWEEN ? AND ? ORDER BY order_id")) {
                for (int round = 0; round < 6; round++) {   // past the driver's prepare threshold
                    ps.setLong(1, 10); ps.setLong(2, 12);
                    try (ResultSet rs = ps.executeQuery()) {
                        StringBuilder sb = new StringBuilder();
                        while (rs.next()) sb.append(rs.getLong(1)).append(':').append(rs.getString(2)).append(' ');
                        if (round == 5) System.out.println("rows=" + sb.toString().trim());
                    }
                }
            }
            try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("SELECT count(*) FROM sales.orders")) {
                rs.next();
                System.out.println("count=" + rs.getLong(1));
            }
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT * FROM sales.nope");
            } catch (SQLException e) {
                System.out.println("error=" + e.getSQLState());
            }
        }
    }
}
"#,
    );
    let out = Command::new("java")
        .args(["-cp", "/usr/share/java/postgresql.jar"])
        .arg(&src)
        .arg(format!(
            "jdbc:postgresql://127.0.0.1:{port}/main?sslmode=disable"
        ))
        .args(["alice", PASSWORD])
        .output()
        .expect("run java");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("product=PostgreSQL"), "{stdout}");
    assert!(
        stdout.contains("rows=10:paid 11:shipped 12:new"),
        "{stdout}"
    );
    assert!(stdout.contains("count=1000"), "{stdout}");
    assert!(stdout.contains("error=42P01"), "{stdout}");
    assert!(stop(server, libc::SIGTERM).success());
}

#[test]
fn tls_can_be_required_and_verified() {
    let p = project();
    let (server, port) = serve(&p, &["--tls-self-signed", "--require-tls"]);
    let cert = p.path(".confluo/tls/server.crt");
    assert!(
        cert.exists(),
        "the self-signed certificate is kept beside the state"
    );

    let (ok, _, err) = psql(
        &url(port, "alice", PASSWORD, "sslmode=disable"),
        &["-c", "SELECT 1"],
    );
    assert!(!ok, "a plain-text client got in");
    assert!(err.contains("requires TLS"), "{err}");

    let verify = format!("sslmode=verify-full&sslrootcert={}", cert.display());
    let (ok, out, err) = psql(
        &url(port, "alice", PASSWORD, &verify),
        &["-c", "SELECT count(*) FROM sales.orders"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "1000");

    let script = format!(
        r#"
import psycopg
with psycopg.connect(host="localhost", port={port}, user="alice", password="{PASSWORD}", dbname="main", sslmode="verify-full", sslrootcert="{}") as c:
    print(c.execute("SELECT ssl FROM (SELECT true AS ssl)").fetchone()[0], c.pgconn.ssl_in_use)
"#,
        cert.display()
    );
    assert_eq!(run_python(&script).trim(), "True True");
    assert!(stop(server, libc::SIGTERM).success());
}

#[test]
fn a_project_without_users_refuses_everyone_and_says_why() {
    let p = TestProject::new();
    let (server, port) = serve(&p, &[]);
    let (ok, _, err) = psql(
        &url(port, "alice", PASSWORD, "sslmode=disable"),
        &["-c", "SELECT 1"],
    );
    assert!(!ok);
    assert!(
        err.contains("no users yet: add one with `confluo users add NAME`"),
        "{err}"
    );
    assert!(stop(server, libc::SIGTERM).success());

    // A project that allows anonymous logins lets anyone in, as the name they give.
    let p = TestProject::with_config("server:\n  allow_anonymous: true\n");
    let (server, port) = serve(&p, &[]);
    let (ok, out, err) = psql(
        &format!("postgresql://guest@127.0.0.1:{port}/main?sslmode=disable"),
        &["-c", "SELECT current_user"],
    );
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "guest");
    assert!(stop(server, libc::SIGTERM).success());
}
