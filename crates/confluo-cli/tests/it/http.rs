//! `confluo serve`'s HTTP API with curl and pyarrow: personal access tokens (missing,
//! wrong, expired, revoked → refused and audited), catalogs and tables, queries streamed as
//! JSON, NDJSON, CSV and Arrow, pipelines and jobs, `/metrics`, `/openapi.json`, TLS.

use std::process::{Child, Command};
use std::time::Duration;

use crate::common::{TestProject, free_port, orders_csv, run_python, wait_for_port};
use crate::jobs::{json, stop};

const CONFIG: &str = r#"
pipelines:
  shop:
    libraries: ["pipelines/*.sql"]
    schema: shop
jobs:
  hello:
    tasks:
      - key: say
        shell: "echo hello"
"#;

/// A project with `sales.orders` (1,000 rows), a pipeline that ran, a job that ran, and
/// the user `alice`.
fn project() -> TestProject {
    let p = TestProject::with_config(CONFIG);
    let csv = p.write("orders.csv", orders_csv(1, 1000));
    p.ingest(&csv, "sales.orders", &[]);
    p.write(
        "pipelines/shop.sql",
        "CREATE OR REFRESH MATERIALIZED VIEW big_orders AS SELECT * FROM main.sales.orders WHERE amount > 500;\n",
    );
    p.ok(&["run"]);
    p.ok(&["jobs", "run", "hello"]);
    let mut child = p
        .command(&["users", "add", "alice", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "a-long-password").unwrap();
    assert!(child.wait().unwrap().success());
    p
}

/// Makes a token; returns it.
fn token(p: &TestProject, user: &str, extra: &[&str]) -> String {
    let mut args = vec!["users", "token", "create", user];
    args.extend_from_slice(extra);
    let out = p.ok(&args);
    out.lines()
        .find(|l| l.starts_with("cfp_"))
        .unwrap_or_else(|| panic!("no token in {out}"))
        .to_string()
}

/// `confluo serve` with its HTTP API on a free port (and no Postgres endpoint unless
/// `extra` names one).
fn serve(p: &TestProject, extra: &[&str]) -> (Child, u16) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["--http", &listen];
    if !extra.contains(&"--postgres") {
        args.extend_from_slice(&["--postgres", "off"]);
    }
    args.extend_from_slice(extra);
    (p.serve(&args, port), port)
}

/// curl: (HTTP status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn get(port: u16, token: &str, path: &str) -> (u16, serde_json::Value) {
    let auth = format!("Authorization: Bearer {token}");
    let (status, body) = curl(&["-H", &auth, &format!("http://127.0.0.1:{port}{path}")]);
    (status, json(&body))
}

fn query(port: u16, token: &str, sql: &str, format: &str) -> (u16, String) {
    let auth = format!("Authorization: Bearer {token}");
    curl(&[
        "-H",
        &auth,
        "--data-binary",
        sql,
        &format!("http://127.0.0.1:{port}/api/v1/query?format={format}"),
    ])
}

#[test]
fn tokens_are_required_checked_expired_revoked_and_audited() {
    let p = project();
    let t = token(&p, "alice", &["--comment", "ci"]);
    let short = token(&p, "alice", &["--expires", "1s"]);
    let (server, port) = serve(&p, &[]);
    let base = format!("http://127.0.0.1:{port}");

    // Open paths.
    let (status, body) = curl(&[&format!("{base}/healthz")]);
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = curl(&[&format!("{base}/openapi.json")]);
    assert_eq!(status, 200);
    assert!(json(&body)["paths"]["/api/v1/query"]["post"].is_object());

    // No token, a wrong one, another scheme: 401 with what to do.
    let (status, body) = curl(&[&format!("{base}/api/v1/catalogs")]);
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("needs a personal access token")
            && body.contains("confluo users token create"),
        "{body}"
    );
    let (status, body) = get(port, "cfp_000000000000_nottherealsecret", "/api/v1/me");
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], "the access token is not valid");
    let (status, body) = curl(&["-u", "alice:a-long-password", &format!("{base}/api/v1/me")]);
    assert_eq!(status, 401);
    assert!(body.contains("only bearer tokens"), "{body}");

    // The right token.
    let (status, body) = get(port, &t, "/api/v1/me");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "alice");

    // An expired token says when it expired.
    std::thread::sleep(Duration::from_millis(1500));
    let (status, body) = get(port, &short, "/api/v1/me");
    assert_eq!(status, 401);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("the access token expired at"), "{msg}");

    // Revoked: refused from the next request on.
    let id = t.split('_').nth(1).unwrap();
    p.ok(&["users", "token", "revoke", id]);
    let (status, body) = get(port, &t, "/api/v1/me");
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], "the access token was revoked");
    let listed = p.ok(&["users", "token", "list", "alice"]);
    assert!(
        listed.contains("revoked") && listed.contains("expired") && listed.contains("ci"),
        "{listed}"
    );

    // Failures are audited; repeated failures from one address are refused for a while.
    let audit = p.ok(&["users", "audit"]);
    assert!(
        audit.contains("http") && audit.contains("the access token was revoked"),
        "{audit}"
    );
    let forged = "cfp_abcdefabcdef_forged";
    let mut last = 0;
    for _ in 0..6 {
        last = get(port, forged, "/api/v1/me").0;
    }
    assert_eq!(last, 429, "the sixth failure in a row is rate-limited");

    // Unknown paths answer JSON.
    let (status, body) = get(port, &token(&p, "alice", &[]), "/api/v1/nope");
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/openapi.json")
    );

    // Logins are counted in /metrics.
    let fresh = token(&p, "alice", &[]);
    let (status, metrics) = curl(&[
        "-H",
        &format!("Authorization: Bearer {fresh}"),
        &format!("{base}/metrics"),
    ]);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("confluo_logins_total{endpoint=\"http\",outcome=\"failure\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("confluo_logins_total{endpoint=\"http\",outcome=\"refused\"}"));
    assert!(stop(server, libc::SIGTERM).success());
}

#[test]
fn catalogs_queries_pipelines_jobs_and_metrics() {
    let p = project();
    let t = token(&p, "alice", &[]);
    let pg_port = free_port();
    let pg_listen = format!("127.0.0.1:{pg_port}");
    let (server, port) = serve(&p, &["--postgres", &pg_listen]);
    // One query over the Postgres wire too: both endpoints count into the same metrics.
    wait_for_port(pg_port, Duration::from_secs(30), "the Postgres endpoint");
    let out = Command::new("psql")
        .arg(format!(
            "postgresql://alice:a-long-password@127.0.0.1:{pg_port}/main?sslmode=disable"
        ))
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-c",
            "SELECT count(*) FROM sales.orders",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1000");

    // Catalogs, schemas, tables, one table with its columns and history.
    let (_, body) = get(port, &t, "/api/v1/catalogs");
    assert!(
        body["catalogs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "main")
    );
    let (_, body) = get(port, &t, "/api/v1/catalogs/main/schemas");
    assert!(
        body["schemas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "sales")
    );
    let (_, body) = get(port, &t, "/api/v1/catalogs/main/schemas/sales/tables");
    assert!(
        body["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == "orders")
    );
    let (status, body) = get(port, &t, "/api/v1/tables/main.sales.orders");
    assert_eq!(status, 200, "{body}");
    let columns: Vec<&str> = body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        columns.starts_with(&["order_id", "customer_id", "amount", "status"]),
        "{columns:?}"
    );
    let (status, body) = get(port, &t, "/api/v1/tables/main.sales.orders/history?limit=5");
    assert_eq!(status, 200, "{body}");
    assert!(!body["history"].as_array().unwrap().is_empty());
    let (status, body) = get(port, &t, "/api/v1/tables/main.sales.nope");
    assert_eq!(status, 404);
    assert_eq!(body["error"]["message"], "no table named main.sales.nope");
    let (status, _) = get(port, &t, "/api/v1/catalogs/nope/schemas");
    assert_eq!(status, 404);

    // A query in every format gives the same answer as `confluo query`.
    let expected = p.rows("SELECT count(*), sum(amount) FROM sales.orders");
    let sql = "SELECT count(*) AS n, sum(amount) AS total FROM sales.orders";
    let (status, body) = query(port, &t, sql, "json");
    assert_eq!(status, 200, "{body}");
    let body = json(&body);
    assert_eq!(body["columns"][0]["name"], "n");
    assert_eq!(body["row_count"], 1);
    assert_eq!(body["rows"][0]["n"].to_string(), expected[0][0]);
    let (_, csv) = query(port, &t, sql, "csv");
    assert_eq!(csv.trim(), format!("n,total\n{}", expected[0].join(",")));
    let (_, nd) = query(
        port,
        &t,
        "SELECT order_id FROM sales.orders ORDER BY order_id LIMIT 3",
        "ndjson",
    );
    assert_eq!(
        nd.trim(),
        "{\"order_id\":1}\n{\"order_id\":2}\n{\"order_id\":3}"
    );
    // JSON with the catalog and schema given, through a JSON body.
    let (status, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {t}"),
        "-H",
        "content-type: application/json",
        "--data-binary",
        r#"{"sql": "SELECT count(*) AS n FROM orders", "catalog": "main", "schema": "sales"}"#,
        &format!("http://127.0.0.1:{port}/api/v1/query"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["rows"][0]["n"], 1000);

    // A million rows stream as CSV (1,000 × 1,000) and as Arrow, read by pyarrow.
    let big =
        "SELECT a.order_id AS a, b.order_id AS b FROM sales.orders a CROSS JOIN sales.orders b";
    let (status, csv) = query(port, &t, big, "csv");
    assert_eq!(status, 200);
    assert_eq!(csv.lines().count(), 1_000_001);
    let script = format!(
        r#"
import urllib.request, pyarrow.ipc as ipc
req = urllib.request.Request("http://127.0.0.1:{port}/api/v1/query", data=b"{big}",
    headers={{"Authorization": "Bearer {t}", "Accept": "application/vnd.apache.arrow.stream"}})
with urllib.request.urlopen(req) as r:
    table = ipc.open_stream(r).read_all()
print(table.num_rows, table.schema.names, sum(table.column("a").to_pylist()))
"#
    );
    assert_eq!(
        run_python(&script).trim(),
        format!("1000000 ['a', 'b'] {}", 1000 * (1000 * 1001 / 2))
    );

    // A timeout stops a statement that runs past it; a bad one is refused.
    let slow = "SELECT a.order_id, b.order_id FROM sales.orders a CROSS JOIN sales.orders b ORDER BY 1 DESC, 2 DESC";
    let (status, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {t}"),
        "--data-binary",
        slow,
        &format!("http://127.0.0.1:{port}/api/v1/query?format=csv&timeout=5ms"),
    ]);
    assert_eq!(status, 408, "{body}");
    assert!(
        body.contains("STATEMENT_TIMEOUT") && body.contains("ran past its timeout of 5ms"),
        "{body}"
    );
    let (status, body) = curl(&[
        "-H",
        &format!("Authorization: Bearer {t}"),
        "--data-binary",
        "SELECT 1",
        &format!("http://127.0.0.1:{port}/api/v1/query?timeout=soon"),
    ]);
    assert_eq!(status, 400);
    assert!(body.contains("timeout `soon`"), "{body}");

    // Statements without rows answer a message; the table is there afterwards.
    let (status, body) = query(port, &t, "CREATE TABLE sales.t AS SELECT 1 AS a", "json");
    assert_eq!(status, 200, "{body}");
    assert!(json(&body)["message"].is_string());
    assert_eq!(p.scalar("SELECT sum(a) FROM sales.t"), "1");

    // Bad SQL: 400 with where; a missing table names itself; a bad format is refused.
    let (status, body) = query(port, &t, "SELECT\n  FROM WHERE", "json");
    assert_eq!(status, 400);
    let body = json(&body);
    assert_eq!(body["error"]["code"], "SQL_ERROR");
    assert!(body["error"]["line"].is_number(), "{body}");
    let (status, body) = query(port, &t, "SELECT * FROM sales.missing", "json");
    assert_eq!(status, 400);
    assert!(body.contains("missing"), "{body}");
    let (status, body) = query(port, &t, "SELECT 1", "xml");
    assert_eq!(status, 400);
    assert!(body.contains("unknown format `xml`"), "{body}");
    // A failure while streaming ends the JSON document with the error.
    let (status, body) = query(
        port,
        &t,
        "SELECT CASE WHEN order_id < 1000 THEN 1 ELSE CAST('x' AS INT) END AS v FROM sales.orders ORDER BY order_id",
        "json",
    );
    if status == 200 {
        assert!(json(&body)["error"]["message"].is_string(), "{body}");
    } else {
        assert_eq!(status, 400, "{body}");
    }

    // Pipelines: the one that ran, its updates and the latest update's events.
    let (_, body) = get(port, &t, "/api/v1/pipelines");
    assert_eq!(body["pipelines"][0]["name"], "shop");
    assert_eq!(body["pipelines"][0]["has_run"], true);
    let (status, body) = get(port, &t, "/api/v1/pipelines/shop/updates");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["updates"][0]["status"], "COMPLETED");
    let (_, body) = get(port, &t, "/api/v1/pipelines/shop/events");
    let events = body["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["event_type"] == "update_completed"),
        "{body}"
    );
    let (status, _) = get(port, &t, "/api/v1/pipelines/nope/updates");
    assert_eq!(status, 404);

    // Jobs: the job, its run, the run with its task.
    let (_, body) = get(port, &t, "/api/v1/jobs");
    assert_eq!(body["jobs"][0]["name"], "hello");
    assert_eq!(body["jobs"][0]["last_run"]["state"], "succeeded");
    let (_, body) = get(port, &t, "/api/v1/jobs/hello/runs");
    let run_id = body["runs"][0]["run_id"].as_str().unwrap().to_string();
    let (status, body) = get(port, &t, &format!("/api/v1/runs/{run_id}"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tasks"][0]["task"], "say");

    // Metrics: what ran here, with counters ending in _total, job runs and pipeline lag.
    let (status, metrics) = curl(&[
        "-H",
        &format!("Authorization: Bearer {t}"),
        &format!("http://127.0.0.1:{port}/metrics"),
    ]);
    assert_eq!(status, 200);
    for needle in [
        "confluo_queries_total{endpoint=\"http\",outcome=\"ok\"}",
        "confluo_queries_total{endpoint=\"http\",outcome=\"error\"}",
        "confluo_query_duration_seconds_bucket{",
        "confluo_rows_returned_total{endpoint=\"http\"}",
        "confluo_result_bytes_total{endpoint=\"http\"}",
        "confluo_job_runs_total{job=\"hello\",state=\"succeeded\"} 1",
        "confluo_pipeline_seconds_since_update{pipeline=\"shop\"}",
        "confluo_queries_total{endpoint=\"postgres\",outcome=\"ok\"} 1",
        "confluo_rows_returned_total{endpoint=\"postgres\"} 1",
        "confluo_logins_total{endpoint=\"postgres\",outcome=\"success\"} 1",
        "confluo_open_connections{endpoint=\"http\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing:\n{metrics}");
    }
    assert!(stop(server, libc::SIGTERM).success());
}

#[test]
fn a_client_that_leaves_mid_result_stops_its_query_and_others_go_on() {
    let p = project();
    let t = token(&p, "alice", &[]);
    let (server, port) = serve(&p, &[]);
    // Read a little of a large result and hang up.
    let script = format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {port}))
body = b"SELECT a.*, b.* FROM sales.orders a CROSS JOIN sales.orders b"
s.sendall(b"POST /api/v1/query?format=csv HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {t}\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
got = s.recv(65536)
s.close()
print(got.split(b"\r\n")[0].decode())
"#
    );
    assert_eq!(run_python(&script).trim(), "HTTP/1.1 200 OK");
    // The server goes on answering.
    let (status, body) = query(port, &t, "SELECT count(*) AS n FROM sales.orders", "csv");
    assert_eq!((status, body.trim()), (200, "n\n1000"));
    // The abandoned query is counted as cancelled once the server notices.
    let mut cancelled = false;
    for _ in 0..50 {
        let (_, metrics) = curl(&[
            "-H",
            &format!("Authorization: Bearer {t}"),
            &format!("http://127.0.0.1:{port}/metrics"),
        ]);
        if metrics.contains("confluo_queries_total{endpoint=\"http\",outcome=\"cancelled\"} 1") {
            cancelled = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(cancelled, "the abandoned query was not stopped");
    assert!(stop(server, libc::SIGTERM).success());
}

#[test]
fn tls_is_served_and_can_be_required() {
    let p = project();
    let t = token(&p, "alice", &[]);
    let (server, port) = serve(&p, &["--tls-self-signed", "--require-tls"]);
    let cert = p.path(".confluo/tls/server.crt");
    let auth = format!("Authorization: Bearer {t}");
    // Plain HTTP to a TLS-only port: refused with a message saying so.
    let (status, body) = curl(&["-H", &auth, &format!("http://127.0.0.1:{port}/api/v1/me")]);
    assert_eq!(status, 400);
    assert!(
        body.contains("this endpoint requires TLS: use https://"),
        "{body}"
    );
    // HTTPS, with the certificate verified.
    let (status, body) = curl(&[
        "--cacert",
        cert.to_str().unwrap(),
        "-H",
        &auth,
        &format!("https://localhost:{port}/api/v1/me"),
    ]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["name"], "alice");
    assert!(stop(server, libc::SIGTERM).success());
}

#[test]
fn adbc_reads_and_writes_through_flight_sql() {
    let p = project();
    let t = token(&p, "alice", &[]);
    let (server, port) = serve(&p, &[]);
    let expected = p.rows("SELECT count(*), sum(amount) FROM sales.orders");
    let script = format!(
        r#"
import adbc_driver_flightsql as fs
import adbc_driver_flightsql.dbapi as flight_sql
uri = "grpc://127.0.0.1:{port}"

# A user and password: the Flight handshake, then its session token.
with flight_sql.connect(uri, db_kwargs={{"username": "alice", "password": "a-long-password"}}) as conn:
    cur = conn.cursor()
    cur.execute("SELECT count(*) AS n, sum(amount) AS total FROM sales.orders")
    n, total = cur.fetchone()
    print("totals", n, total)
    cur.execute("SELECT a.order_id AS a FROM sales.orders a CROSS JOIN sales.orders b")
    table = cur.fetch_arrow_table()
    print("big", table.num_rows, sum(table.column("a").to_pylist()))
    cur.execute("CREATE TABLE sales.from_flight AS SELECT 7 AS a")
    cur.fetchall()
    objects = conn.adbc_get_objects(depth="tables", catalog_filter="main").read_all().to_pylist()
    names = [t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in (s["db_schema_tables"] or [])]
    print("tables", "orders" in names, "from_flight" in names)
    schema = conn.adbc_get_table_schema("orders", catalog_filter="main", db_schema_filter="sales")
    print("schema", schema.names[:3])
    try:
        cur.execute("SELECT * FROM sales.missing")
        cur.fetchall()
        print("missing", "no error")
    except Exception as e:
        print("missing", "missing" in str(e))
    cur.close()

# A personal access token as the bearer header.
with flight_sql.connect(uri, db_kwargs={{fs.DatabaseOptions.AUTHORIZATION_HEADER.value: "Bearer {t}"}}) as conn:
    cur = conn.cursor()
    cur.execute("SELECT sum(a) FROM sales.from_flight")
    print("token", cur.fetchone()[0])
    cur.close()

# A wrong password is refused and says so.
try:
    with flight_sql.connect(uri, db_kwargs={{"username": "alice", "password": "wrong-password"}}) as conn:
        cur = conn.cursor()
        cur.execute("SELECT 1")
        cur.fetchall()
    print("wrong", "got in")
except Exception as e:
    print("wrong", "password authentication failed" in str(e), str(e).replace("\n", " "))
"#
    );
    let out = run_python(&script);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines.contains(&format!("totals {} {}", expected[0][0], expected[0][1]).as_str()),
        "{out}"
    );
    assert!(
        lines.contains(&format!("big 1000000 {}", 1000 * (1000 * 1001 / 2)).as_str()),
        "{out}"
    );
    assert!(lines.contains(&"tables True True"), "{out}");
    assert!(
        lines.contains(&"schema ['order_id', 'customer_id', 'amount']"),
        "{out}"
    );
    assert!(lines.contains(&"missing True"), "{out}");
    assert!(lines.contains(&"token 7"), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("wrong True")), "{out}");
    assert_eq!(p.scalar("SELECT sum(a) FROM sales.from_flight"), "7");
    let audit = p.ok(&["users", "audit"]);
    assert!(audit.contains("flight"), "{audit}");
    assert!(stop(server, libc::SIGTERM).success());
}
