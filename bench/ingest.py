"""CSV -> Delta ingest benchmark: Confluo side by side with DuckDB, Polars and pyarrow+deltalake.

Usage: bench/run.sh ingest  (creates bench/.venv, generates bench/data, builds Confluo in release)

Every tool reads the same generated files in the same run. Each measurement is a separate process,
timed from spawn to exit, with its own peak RSS from wait4(); the figure quoted is the median of
RUNS runs (default 3). Outputs go to bench/out and are deleted between runs.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
OUT = os.path.join(HERE, "out")
RUNS = int(os.environ.get("RUNS", "3"))
CONFLUO = os.environ.get("CONFLUO_BIN", os.path.join(HERE, "..", "target", "release", "confluo"))
PY = sys.executable

INPUTS = {"one file": os.path.join(DATA, "one"), "20 files": os.path.join(DATA, "twenty")}

PEERS = {
    "DuckDB -> Parquet": """
import duckdb, sys
con = duckdb.connect()
con.execute("SET preserve_insertion_order = false")
con.execute(f"COPY (SELECT * FROM read_csv('{sys.argv[1]}/*.csv')) TO '{sys.argv[2]}/o.parquet' (FORMAT parquet)")
""",
    "Polars -> Parquet": """
import polars as pl, sys
pl.scan_csv(sys.argv[1] + '/*.csv').sink_parquet(sys.argv[2] + '/o.parquet')
""",
    "Polars -> Delta": """
import polars as pl, sys
pl.scan_csv(sys.argv[1] + '/*.csv').collect().write_delta(sys.argv[2] + '/delta')
""",
    "pyarrow -> Parquet": """
import glob, sys, pyarrow.csv as pc, pyarrow.parquet as pq
w = None
for f in sorted(glob.glob(sys.argv[1] + '/*.csv')):
    r = pc.open_csv(f)
    if w is None:
        w = pq.ParquetWriter(sys.argv[2] + '/o.parquet', r.schema)
    for b in r:
        w.write_batch(b)
w.close()
""",
    "pyarrow stream -> deltalake": """
import glob, sys, pyarrow as pa, pyarrow.csv as pc
from deltalake import write_deltalake
files = sorted(glob.glob(sys.argv[1] + '/*.csv'))
schema = pc.open_csv(files[0]).schema
def batches():
    for f in files:
        yield from pc.open_csv(f)
write_deltalake(sys.argv[2] + '/delta', pa.RecordBatchReader.from_batches(schema, batches()), mode='append')
""",
}


def run(argv, env=None):
    """Spawn, wait, return (seconds, peak RSS bytes); raises with stderr on failure."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    elapsed = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({p.returncode}): {err[-2000:]}")
    return elapsed, usage.ru_maxrss * 1024


def fresh_out():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)


def confluo_once(folder):
    fresh_out()
    proj = os.path.join(OUT, "proj")
    subprocess.run([CONFLUO, "init", proj], check=True, stdout=subprocess.DEVNULL)
    return run([CONFLUO, "--project", proj, "-q", "ingest", folder, "--into", "bench.orders", "--format", "csv"])


def confluo_check(folder, rows):
    proj = os.path.join(OUT, "proj")
    out = subprocess.run(
        [CONFLUO, "--project", proj, "query", "SELECT count(*) AS n FROM bench.orders", "--format", "json"],
        check=True, capture_output=True, text=True).stdout
    n = json.loads(out)[0]["n"]
    assert n == rows, f"confluo loaded {n} rows from {folder}, expected {rows}"


def peer_once(code, folder):
    fresh_out()
    return run([PY, "-c", code, folder, OUT])


def main():
    rows = int(os.environ.get("ROWS", "10000000"))
    sizes = {k: sum(os.path.getsize(os.path.join(v, f)) for f in os.listdir(v)) for k, v in INPUTS.items()}
    tools = {"Confluo -> Delta": None, **PEERS}
    only = os.environ.get("ONLY")
    results = []
    for label, folder in INPUTS.items():
        for tool, code in tools.items():
            if only and only.lower() not in tool.lower():
                continue
            times, rss = [], []
            for _ in range(RUNS):
                if code is None:
                    t, m = confluo_once(folder)
                    confluo_check(folder, rows)
                else:
                    t, m = peer_once(code, folder)
                times.append(t)
                rss.append(m)
            med = statistics.median(times)
            r = {
                "input": label, "tool": tool, "median_s": round(med, 2), "min_s": round(min(times), 2),
                "rows_per_s": round(rows / med), "mb_per_s": round(sizes[label] / 1e6 / med, 1),
                "peak_rss_mib": round(max(rss) / 2**20),
            }
            results.append(r)
            print(f"{label:9} {tool:28} {med:6.2f}s  {rows / med / 1e6:5.2f} M rows/s  "
                  f"{sizes[label] / 1e6 / med:6.1f} MB/s  peak {max(rss) / 2**20:6.0f} MiB", flush=True)
    shutil.rmtree(OUT, ignore_errors=True)
    with open(os.path.join(HERE, "ingest-results.json"), "w") as f:
        json.dump({"rows": rows, "bytes": sizes, "runs": RUNS, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
