"""Federated queries through Confluo against the same SQL run on the source itself, in one run.

Usage: bench/run.sh federation   (or CONFLUO_BIN=... bench/.venv/bin/python bench/federation.py)

Environment:
  PGHOST, PGPORT, PGUSER  the PostgreSQL server (default 127.0.0.1, 5432, postgres; trust auth)
  ROWS      rows of orders (default 1,000,000); customers has 20,000
  RUNS      repetitions of each query; the best is quoted (default 5)
  CONFLUO_BIN  the Confluo binary (default ~/.cache/confluo-target/release/confluo)

A PostgreSQL database `confluo_bench_fed` holds orders(id, customer_id, amount, status, created_at)
and customers(id, segment). A Confluo project reads it as the foreign catalog `shop` (CREATE
CONNECTION with the password in the secret store, CREATE FOREIGN CATALOG). Each query is timed
from execute to the last row with psycopg, on an open connection:

  postgres   the SQL run on PostgreSQL directly;
  confluo    the same SQL over `shop.public.*` sent to `confluo serve`'s Postgres endpoint, which
             plans it, pushes it down (EXPLAIN shows the SQL sent) and streams the answer back;
  duckdb     DuckDB's postgres extension attached to the same database, if the extension installs
             (it is downloaded from extensions.duckdb.org, which this machine cannot reach).

Queries: an aggregate with a filter (GROUP BY status), an aggregate over a join of the two tables
(GROUP BY segment), and a top-10 by amount. Results go to bench/federation-results.json; a
markdown table for BENCHMARKS.md is printed.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psycopg

from benchlib import machine as benchlib_machine

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "federation-results.json")
ROWS = int(os.environ.get("ROWS", 1_000_000))
RUNS = int(os.environ.get("RUNS", 5))
PG = dict(host=os.environ.get("PGHOST", "127.0.0.1"), port=int(os.environ.get("PGPORT", 5432)),
          user=os.environ.get("PGUSER", "postgres"))
DB = "confluo_bench_fed"
CONFLUO = os.environ.get("CONFLUO_BIN", os.path.expanduser("~/.cache/confluo-target/release/confluo"))
PASSWORD = "bench-password"

QUERIES = {
    "aggregate": ("SELECT status, count(*) AS n, sum(amount) AS total, avg(amount) AS mean "
                  "FROM {p}orders WHERE created_at >= TIMESTAMP '2025-01-03 00:00:00' "
                  "GROUP BY status ORDER BY status"),
    "join aggregate": ("SELECT c.segment, count(*) AS n, sum(o.amount) AS total "
                       "FROM {p}orders o JOIN {p}customers c ON c.id = o.customer_id "
                       "GROUP BY c.segment ORDER BY c.segment"),
    "top 10": "SELECT id, amount FROM {p}orders ORDER BY amount DESC, id LIMIT 10",
}


def setup_postgres():
    with psycopg.connect(**PG, dbname="postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            c.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(**PG, dbname=DB, autocommit=True) as c:
        have = c.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'").fetchone()[0]
        if have and c.execute("SELECT count(*) FROM orders").fetchone()[0] == ROWS:
            return
        c.execute("DROP TABLE IF EXISTS orders; DROP TABLE IF EXISTS customers")
        c.execute("SET TIME ZONE 'UTC'")
        c.execute(f"""CREATE TABLE orders AS SELECT g AS id, g % 20000 AS customer_id,
            (g % 100000)::numeric(12,2) / 100 AS amount,
            CASE g % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' ELSE 'shipped' END AS status,
            to_timestamp(1735689600 + g)::timestamp AS created_at
            FROM generate_series(1, {ROWS}) g""")
        c.execute("ALTER TABLE orders ADD PRIMARY KEY (id)")
        c.execute("""CREATE TABLE customers AS SELECT g AS id,
            (ARRAY['retail','wholesale','online','partner'])[1 + g % 4] AS segment
            FROM generate_series(0, 19999) g""")
        c.execute("ALTER TABLE customers ADD PRIMARY KEY (id)")
        c.execute("ANALYZE orders; ANALYZE customers")


def confluo(project, *args, stdin=None):
    out = subprocess.run([CONFLUO, "--project", project, *args], input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"confluo {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def best(conn, sql):
    times, rows = [], None
    for _ in range(RUNS):
        t = time.perf_counter()
        rows = conn.execute(sql).fetchall()
        times.append(time.perf_counter() - t)
    return min(times), rows


def same(a, b):
    def norm(rows):
        return [tuple(round(float(v), 6) if isinstance(v, (int, float)) or
                      (hasattr(v, "as_tuple")) else str(v) for v in r) for r in rows]
    return norm(a) == norm(b)


def duckdb_attempt():
    try:
        import duckdb
    except ImportError:
        return None, "duckdb is not installed"
    con = duckdb.connect()
    try:
        con.execute("INSTALL postgres")
        con.execute("LOAD postgres")
    except Exception as e:  # noqa: BLE001 - the reason is the result
        return None, f"the postgres extension does not install here: {str(e).splitlines()[0]}"
    con.execute(f"ATTACH 'host={PG['host']} port={PG['port']} user={PG['user']} dbname={DB}' "
                "AS shop (TYPE postgres, READ_ONLY)")
    return con, None


def main():
    if not shutil.which(CONFLUO) and not os.path.exists(CONFLUO):
        sys.exit(f"no Confluo binary at {CONFLUO}; run bench/run.sh federation")
    setup_postgres()
    project = tempfile.mkdtemp(prefix="confluo-bench-fed-")
    with open(os.path.join(project, "confluo.yaml"), "w") as f:
        f.write("name: bench_fed\n")
    confluo(project, "secrets", "put", "shop", "pg", stdin="unused-with-trust-auth")
    confluo(project, "query", "CREATE CONNECTION pg_shop TYPE postgresql OPTIONS (host "
            f"'{PG['host']}', port '{PG['port']}', user '{PG['user']}', "
            "password secret('shop', 'pg'), sslmode 'disable')")
    confluo(project, "query", f"CREATE FOREIGN CATALOG shop USING CONNECTION pg_shop "
            f"OPTIONS (database '{DB}')")
    confluo(project, "users", "add", "bench", "--password-stdin", stdin=PASSWORD + "\n")
    plans = {name: confluo(project, "query", "EXPLAIN " + q.format(p="shop.public."))
             for name, q in QUERIES.items()}
    port = free_port()
    log = open(os.path.join(project, "serve.log"), "w")
    server = subprocess.Popen([CONFLUO, "--project", project, "serve", "--postgres", f"127.0.0.1:{port}",
                               "--http", "off"], stdout=log, stderr=log)
    try:
        for _ in range(100):
            try:
                ours = psycopg.connect(host="127.0.0.1", port=port, user="bench", password=PASSWORD,
                                       dbname="main", sslmode="disable", autocommit=True)
                break
            except psycopg.OperationalError:
                time.sleep(0.2)
        else:
            sys.exit("confluo serve did not start")
        theirs = psycopg.connect(**PG, dbname=DB, autocommit=True)
        duck, duck_note = duckdb_attempt()
        results = {}
        for name, q in QUERIES.items():
            pg_s, pg_rows = best(theirs, q.format(p=""))
            cf_s, cf_rows = best(ours, q.format(p="shop.public."))
            if not same(pg_rows, cf_rows):
                sys.exit(f"{name}: different answers\npostgres {pg_rows}\nconfluo  {cf_rows}")
            entry = {"postgres_s": pg_s, "confluo_s": cf_s, "ratio": cf_s / pg_s,
                     "rows": len(pg_rows)}
            sent = [l.strip() for l in plans[name].splitlines() if "base_sql=" in l]
            # The plan came as CSV: its quotes are doubled.
            entry["pushed_down_sql"] = (sent[0].split("base_sql=", 1)[1].replace('""', '"')
                                        if sent else None)
            if duck is not None:
                ts = []
                for _ in range(RUNS):
                    t0 = time.perf_counter()
                    duck.execute(q.format(p="shop.public.")).fetchall()
                    ts.append(time.perf_counter() - t0)
                entry["duckdb_s"] = min(ts)
            results[name] = entry
        ours.close()
        theirs.close()
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(project, ignore_errors=True)
    out = {"machine": benchlib_machine(rows=ROWS, runs=RUNS), "queries": results,
           "duckdb": duck_note or "measured"}
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=2)
    print(f"\n{ROWS:,} orders, 20,000 customers; best of {RUNS}; psycopg on an open connection\n")
    print("| query | PostgreSQL direct | Confluo (federated, served) | ratio | DuckDB postgres ext. |")
    print("|---|---|---|---|---|")
    for name, e in results.items():
        d = f"{e['duckdb_s']:.3f} s" if "duckdb_s" in e else "—"
        print(f"| {name} | {e['postgres_s']:.3f} s | {e['confluo_s']:.3f} s | {e['ratio']:.2f}× | {d} |")
    if duck_note:
        print(f"\nDuckDB: {duck_note}")
    for name, e in results.items():
        print(f"\n{name} — SQL sent to PostgreSQL: {e['pushed_down_sql']}")


if __name__ == "__main__":
    main()
