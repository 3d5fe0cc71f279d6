"""Profiling a 10 M-row table: `confluo monitor profile` against DuckDB's SUMMARIZE and Soda
Core (on DuckDB) computing the same column metrics over the same data, in one run.

The data: bench/gen_orders.py's orders (9 columns: ids, a timestamp text, low-cardinality
texts, numbers), ingested once into a Confluo Delta table (not timed). DuckDB and Soda read
that table's own Parquet files, so every tool profiles the same bytes.

- Confluo: `confluo monitor profile bench.orders` — per column: nulls, approximate distinct,
  min/max/mean/stddev and quartiles of numbers, lengths of texts, then the top values of
  low-cardinality columns; the profile is appended to system.quality.metrics.
- DuckDB: `SUMMARIZE SELECT * FROM read_parquet(...)` — per column: min, max, approx_unique,
  avg, std, q25/q50/q75, count, null_percentage (no top values).
- Soda Core (soda-core-duckdb): a scan with missing_count and duplicate_count of every
  column, min, max, avg, stddev and quartiles of the numbers, lengths of the texts (the
  nearest its checks language has to a profile; its own profiling needs Soda Cloud), on
  DuckDB. It also fetches a sample of failing rows for duplicate_count.

Env: CONFLUO_BIN, ROWS (default 10,000,000), RUNS (default 3; the best run is reported),
CSV (another orders file, for a quick try of the script).
Writes bench/quality-results.json.
"""
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

import duckdb

from benchlib import TreeRss, machine, mib

CONFLUO = os.environ["CONFLUO_BIN"]
ROWS = int(os.environ.get("ROWS", "10000000"))
RUNS = int(os.environ.get("RUNS", "3"))
HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.dirname(sys.executable)
COLUMNS = ["order_id", "customer_id", "order_ts", "status", "sku", "quantity", "unit_price", "amount", "country"]
NUMERIC = ["order_id", "customer_id", "quantity", "unit_price", "amount"]


def timed(cmd, **kw):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    rss = TreeRss(p.pid)
    out, err = p.communicate()
    peak = rss.stop()
    if p.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed:\n{out}\n{err}")
    return time.perf_counter() - t, peak, out


def best(f):
    runs = [f() for _ in range(RUNS)]
    secs = [r[0] for r in runs]
    i = secs.index(min(secs))
    return {"best_s": round(secs[i], 2), "runs_s": [round(s, 2) for s in secs], "peak_rss_mib": mib(runs[i][1])}


def main():
    data = os.environ.get("CSV", f"{HERE}/data/one/orders.csv")
    if not os.path.exists(data):
        subprocess.run([sys.executable, f"{HERE}/gen_orders.py", f"{HERE}/data"], check=True,
                       env={**os.environ, "ROWS": str(ROWS)})
    project = tempfile.mkdtemp(prefix="confluo-quality-bench-")
    with open(f"{project}/confluo.yaml", "w") as f:
        f.write("name: bench\n")
    subprocess.run([CONFLUO, "--project", project, "--quiet", "ingest", data, "--into", "bench.orders"],
                   check=True, capture_output=True)
    files = glob.glob(f"{project}/**/bench/orders/*.parquet", recursive=True)
    assert files, f"no Parquet files under {project}"
    parquet = f"{os.path.dirname(files[0])}/*.parquet"

    confluo = best(lambda: timed([CONFLUO, "--project", project, "--quiet", "monitor", "profile",
                                  "bench.orders", "--format", "json"]))
    _, _, out = timed([CONFLUO, "--project", project, "--quiet", "monitor", "profile", "bench.orders",
                       "--format", "json"])
    metrics = json.loads(out)["metrics"]

    summarize = f"SUMMARIZE SELECT * FROM read_parquet('{parquet}')"
    script = f"import duckdb; duckdb.connect().execute(\"{summarize}\").fetchall()"
    duck = best(lambda: timed([sys.executable, "-c", script]))

    soda_dir = tempfile.mkdtemp(prefix="soda-")
    with open(f"{soda_dir}/configuration.yml", "w") as f:
        f.write("data_source orders:\n  type: duckdb\n  database: ':memory:'\n")
    # The nearest SodaCL has to Confluo's profile: per column missing and duplicate counts
    # (Soda has no distinct count; duplicates need the same grouping), min/max/avg/stddev and
    # the three quartiles of numbers, lengths of texts.
    checks = ["checks for orders:", "  - row_count > 0"]
    for c in COLUMNS:
        checks.append(f"  - missing_count({c}) >= 0")
        checks.append(f"  - duplicate_count({c}) >= 0")
    for c in NUMERIC:
        for m in ("min", "max", "avg", "stddev"):
            checks.append(f"  - {m}({c}) > -1000000000")
        for q in ("0.25", "0.5", "0.75"):
            checks.append(f"  - percentile({c}, {q}) > -1000000000")
    for c in ("status", "sku", "country"):
        for m in ("min_length", "avg_length", "max_length"):
            checks.append(f"  - {m}({c}) >= 0")
    with open(f"{soda_dir}/checks.yml", "w") as f:
        f.write("\n".join(checks) + "\n")
    soda_script = f"""
import duckdb
from soda.scan import Scan
con = duckdb.connect()
con.execute("CREATE VIEW orders AS SELECT * FROM read_parquet('{parquet}')")
scan = Scan()
scan.set_data_source_name("orders")
scan.add_duckdb_connection(con, data_source_name="orders")
scan.add_sodacl_yaml_file("{soda_dir}/checks.yml")
scan.execute()
assert not scan.has_error_logs(), scan.get_logs_text()
"""
    try:
        soda = best(lambda: timed([sys.executable, "-c", soda_script]))
    except SystemExit as e:
        soda = {"error": str(e)[-1500:]}

    results = {
        "rows": ROWS,
        "confluo_profile": {**confluo, "metrics": len(metrics)},
        "duckdb_summarize": duck,
        "soda_core_duckdb": soda,
        "machine": machine(duckdb=duckdb.__version__),
    }
    print(json.dumps(results, indent=2))
    with open(f"{HERE}/quality-results.json", "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
