"""The Postgres endpoint of `confluo serve` against PostgreSQL itself serving the same rows, in one run.

Usage: bench/run.sh serve   (or CONFLUO_BIN=... bench/.venv/bin/python bench/serve.py)

Environment:
  PGHOST, PGPORT, PGUSER  the PostgreSQL server (default 127.0.0.1, 5432, postgres; trust auth)
  ROWS      rows of the table (default 1,000,000)
  SECONDS   length of each load run (default 60)
  SESSIONS  concurrent sessions of the load run (default 32)
  RUNS      repetitions of the fetch; the best is quoted (default 3)
  CONFLUO_BIN  the Confluo binary (default ~/.cache/confluo-target/release/confluo)

The same table on both sides: orders(id bigint, customer_id bigint, amount float8, status text,
created_at timestamp) from generate_series, in a PostgreSQL database `confluo_bench_serve` and in a
Confluo project's Delta table `main.bench.orders`, written by Confluo's own SQL.

fetch   psycopg 3 (text results, the default) runs `SELECT * FROM orders` and fetches all ROWS
        rows into Python tuples: wall seconds from execute to the last row, best of RUNS.
arrow   the same rows into a pyarrow Table, for Arrow-native clients: PostgreSQL through ADBC's
        PostgreSQL driver (binary COPY), Confluo through ADBC's Flight SQL driver and through
        the HTTP API's Arrow IPC stream (urllib + pyarrow.ipc); best of RUNS.
load    SESSIONS processes, each with its own psycopg connection, for SECONDS s run a mix of
        point lookups (`WHERE id = %s`, 80 %) and aggregates (`GROUP BY status` over one
        customer's orders, 20 %), with random keys; meanwhile one more client fetches the whole
        table slowly (a 1,000-row batch every 50 ms through a psycopg named cursor): the slow
        client must not hold the others up. Per query kind: count, errors, p50 and p99 latency.
PostgreSQL has a primary key on id (what a user of it would have); the Delta table has no index,
so a point lookup on Confluo is a scan with pruning by file statistics. Results go to
bench/serve-results.json; a markdown table for BENCHMARKS.md is printed.
"""
import json
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import urllib.request

import psycopg

from benchlib import TreeRss, mib, pct
from benchlib import machine as benchlib_machine

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "serve-results.json")
ROWS = int(os.environ.get("ROWS", 1_000_000))
SECONDS = int(os.environ.get("SECONDS", 60))
SESSIONS = int(os.environ.get("SESSIONS", 32))
RUNS = int(os.environ.get("RUNS", 3))
PG = dict(host=os.environ.get("PGHOST", "127.0.0.1"), port=int(os.environ.get("PGPORT", 5432)),
          user=os.environ.get("PGUSER", "postgres"))
DB = "confluo_bench_serve"
CONFLUO = os.environ.get("CONFLUO_BIN", os.path.expanduser("~/.cache/confluo-target/release/confluo"))
PASSWORD = "bench-password"

# The same rows on both sides (only the id source differs: generate_series's column name).
GEN = ("SELECT id, id % 20000 AS customer_id, CAST(id % 100000 AS DOUBLE PRECISION) / 100 AS amount, "
       "CASE id % 3 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' ELSE 'shipped' END AS status, "
       "CAST(to_timestamp(1735689600 + id) AS TIMESTAMP) AS created_at ")
PG_IDS = f"FROM (SELECT g AS id FROM generate_series(1, {ROWS}) AS g) AS s"
CONFLUO_IDS = f"FROM (SELECT value AS id FROM generate_series(1, {ROWS})) AS s"


def setup_postgres():
    with psycopg.connect(**PG, dbname="postgres", autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            c.execute(f"CREATE DATABASE {DB}")
    with psycopg.connect(**PG, dbname=DB, autocommit=True) as c:
        have = c.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'").fetchone()[0]
        if have and c.execute("SELECT count(*) FROM orders").fetchone()[0] == ROWS:
            return
        c.execute("DROP TABLE IF EXISTS orders")
        c.execute("SET TIME ZONE 'UTC'")
        c.execute(f"CREATE TABLE orders AS {GEN} {PG_IDS}")
        c.execute("ALTER TABLE orders ADD PRIMARY KEY (id)")
        c.execute("CREATE INDEX ON orders (customer_id)")
        c.execute("ANALYZE orders")


def setup_confluo(d):
    with open(f"{d}/confluo.yaml", "w") as f:
        f.write("name: bench\n")
    run = lambda *a, **k: subprocess.run([CONFLUO, "--project", d, "--quiet", *a], check=True,
                                         capture_output=True, text=True, **k)
    run("query", "CREATE SCHEMA bench")
    run("query", f"CREATE TABLE bench.orders AS {GEN} {CONFLUO_IDS}")
    run("users", "add", "bench", "--password-stdin", input=PASSWORD + "\n")
    out = run("users", "token", "create", "bench", "--expires", "1d").stdout
    return next(line for line in out.splitlines() if line.startswith("cfp_"))


def fetch_all(conninfo):
    best = None
    for _ in range(RUNS):
        with psycopg.connect(**conninfo) as c:
            start = time.perf_counter()
            rows = c.execute("SELECT * FROM orders").fetchall()
            took = time.perf_counter() - start
        assert len(rows) == ROWS, len(rows)
        best = took if best is None else min(best, took)
    return round(best, 3)


def best_of(fetch):
    best = None
    for _ in range(RUNS):
        start = time.perf_counter()
        table = fetch()
        took = time.perf_counter() - start
        assert table.num_rows == ROWS, table.num_rows
        best = took if best is None else min(best, took)
    return round(best, 3)


def arrow_fetch(pg, http_port, token):
    import adbc_driver_flightsql.dbapi as flight_sql
    import adbc_driver_postgresql.dbapi as pg_adbc
    import pyarrow.ipc as ipc

    def from_postgres():
        uri = f"postgresql://{pg['user']}@{pg['host']}:{pg['port']}/{pg['dbname']}"
        with pg_adbc.connect(uri) as c, c.cursor() as cur:
            cur.execute("SELECT * FROM orders")
            return cur.fetch_arrow_table()

    def from_flight():
        with flight_sql.connect(f"grpc://127.0.0.1:{http_port}",
                                db_kwargs={"adbc.flight.sql.authorization_header": f"Bearer {token}"}) as c, \
                c.cursor() as cur:
            cur.execute("SELECT * FROM bench.orders")
            return cur.fetch_arrow_table()

    def from_http():
        req = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/v1/query?format=arrow",
                                     data=b"SELECT * FROM bench.orders",
                                     headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(req) as r:
            return ipc.open_stream(r).read_all()

    return {"postgres_adbc": best_of(from_postgres), "confluo_flight_sql": best_of(from_flight),
            "confluo_http_arrow": best_of(from_http)}


def worker(conninfo, seconds, seed, out):
    rnd = random.Random(seed)
    lat = {"point": [], "aggregate": []}
    errors = []
    with psycopg.connect(**conninfo) as c:
        deadline = time.time() + seconds
        while time.time() < deadline:
            kind = "point" if rnd.random() < 0.8 else "aggregate"
            start = time.perf_counter()
            try:
                if kind == "point":
                    r = c.execute("SELECT * FROM orders WHERE id = %s", (rnd.randint(1, ROWS),)).fetchall()
                    assert len(r) == 1
                else:
                    c.execute("SELECT status, count(*), avg(amount) FROM orders WHERE customer_id = %s "
                              "GROUP BY status", (rnd.randint(0, 19999),)).fetchall()
                lat[kind].append(time.perf_counter() - start)
            except Exception as e:  # noqa: BLE001 - every error is a finding
                errors.append(f"{kind}: {e}")
                c.rollback()
    out.put((lat, errors))


def slow_reader(conninfo, seconds, out):
    rows = 0
    with psycopg.connect(**conninfo) as c:
        with c.transaction():
            cur = c.cursor(name="slow")
            cur.execute("SELECT * FROM orders")
            deadline = time.time() + seconds
            while time.time() < deadline:
                batch = cur.fetchmany(1000)
                if not batch:
                    break
                rows += len(batch)
                time.sleep(0.05)
            cur.close()
    out.put(rows)


def load(conninfo):
    q = mp.Queue()
    slow_q = mp.Queue()
    procs = [mp.Process(target=worker, args=(conninfo, SECONDS, i, q)) for i in range(SESSIONS)]
    slow = mp.Process(target=slow_reader, args=(conninfo, SECONDS, slow_q))
    slow.start()
    for p in procs:
        p.start()
    results = [q.get() for _ in procs]
    for p in procs:
        p.join()
    slow_rows = slow_q.get()
    slow.join()
    out = {"sessions": SESSIONS, "seconds": SECONDS, "slow_client_rows": slow_rows}
    errors = [e for _, errs in results for e in errs]
    out["errors"] = len(errors)
    out["first_errors"] = errors[:3]
    for kind in ("point", "aggregate"):
        xs = [x for lat, _ in results for x in lat[kind]]
        out[kind] = {"queries": len(xs), "per_s": round(len(xs) / SECONDS, 1),
                     "p50_ms": round(pct(xs, 50) * 1000, 1) if xs else None,
                     "p99_ms": round(pct(xs, 99) * 1000, 1) if xs else None}
    return out


def main():
    if not os.path.exists(CONFLUO):
        sys.exit(f"no Confluo binary at {CONFLUO}: build it (cargo build --release -p confluo-cli)")
    setup_postgres()
    d = tempfile.mkdtemp(prefix="confluo-bench-serve-")
    try:
        token = setup_confluo(d)
        port, http_port = 25433, 28433
        server = subprocess.Popen([CONFLUO, "--project", d, "--quiet", "serve", "--postgres",
                                   f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http_port}"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rss = TreeRss(server.pid)
        # The table is main.bench.orders; `-c search_path=bench` lets the same SQL name `orders`.
        confluo = dict(host="127.0.0.1", port=port, user="bench", password=PASSWORD, dbname="main",
                       sslmode="disable", options="-c search_path=bench")
        for _ in range(100):
            try:
                psycopg.connect(**confluo).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        pg = dict(**PG, dbname=DB)
        with psycopg.connect(**pg) as c:
            pg_version = c.info.server_version
        results = {"machine": benchlib_machine(postgres=pg_version, psycopg=psycopg.__version__),
                   "rows": ROWS}
        results["fetch_s"] = {"postgres": fetch_all(pg), "confluo": fetch_all(confluo)}
        results["arrow_fetch_s"] = arrow_fetch(pg, http_port, token)
        results["load"] = {"postgres": load(pg), "confluo": load(confluo)}
        server.terminate()
        server.wait(timeout=30)
        results["confluo_peak_rss_mib"] = mib(rss.stop())
    finally:
        shutil.rmtree(d, ignore_errors=True)
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2)
    f = results["fetch_s"]
    print(f"\n1 M-row fetch (psycopg, text): PostgreSQL {f['postgres']} s, Confluo {f['confluo']} s "
          f"({f['confluo'] / f['postgres']:.2f}x)")
    a = results["arrow_fetch_s"]
    print(f"1 M rows into a pyarrow Table: PostgreSQL (ADBC) {a['postgres_adbc']} s, Confluo Flight SQL (ADBC) "
          f"{a['confluo_flight_sql']} s, Confluo HTTP Arrow stream {a['confluo_http_arrow']} s")
    print("\n| | point p50 | point p99 | agg p50 | agg p99 | queries/s | errors | slow client rows |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in ("postgres", "confluo"):
        l = results["load"][name]
        print(f"| {name} | {l['point']['p50_ms']} ms | {l['point']['p99_ms']} ms | {l['aggregate']['p50_ms']} ms "
              f"| {l['aggregate']['p99_ms']} ms | {l['point']['per_s'] + l['aggregate']['per_s']:.1f} "
              f"| {l['errors']} | {l['slow_client_rows']} |")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
