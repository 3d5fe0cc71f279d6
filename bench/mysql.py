"""MySQL/MariaDB benchmarks: snapshot of a 10 M-row table into Delta, Confluo side by side with
the floors (server-side SELECT ... INTO OUTFILE, and the mariadb client streaming into /dev/null)
and ConnectorX.

Usage: bench/run.sh mysql   (or, with bench/.venv in place:
       RUNS=3 CONFLUO_BIN=... bench/.venv/bin/python bench/mysql.py)

Environment:
  MYSQL_HOST, MYSQL_PORT, MYSQL_USER  the server (default 127.0.0.1, 3306, root; empty password)
  MYSQL_DATABASE  the benchmark database (default confluo_bench; created if missing)
  ROWS         rows of bench_t (default 10,000,000)
  RUNS         repetitions of every measurement; the median is quoted (default 3)
  TOOLS        comma list out of outfile,client,cx-arrow,cx-parquet,confluo (default all)
  CONFLUO_BIN  the Confluo binary (default ~/.cache/confluo-release/release/confluo, then
               ~/.cache/confluo-target/debug/confluo, labelled "debug build"); the Confluo part is
               skipped with a message when neither exists.
  OUTFILE_DIR  a folder the server may write to and this script may delete from (default: the
               server's @@secure_file_priv when set, else /tmp)
  KEEP         1 to keep the Confluo project folders under bench/out/mysql
  TIMEOUT      seconds after which a measured process is killed and the run fails (default none)

Setup (idempotent, with the `mariadb` client, so no Python MySQL driver is needed): database,
bench_t(id BIGINT PRIMARY KEY, a INT, b BIGINT, c DECIMAL(12,2), d VARCHAR(40), e DATETIME(6),
f DOUBLE) loaded from MariaDB's sequence engine (seq_1_to_N), ANALYZEd. The table comment records
the row count once the load finished, so an interrupted load is redone.

Snapshot, each one process (tree) from spawn to exit: wall seconds, rows/s and peak RSS of the
process tree (psutil, sampled every 50 ms; not ru_maxrss, which also counts the pages a child
shared with this script before exec, ~47 MiB, and would swamp the ~10 MiB mariadb client).
The server side is the same for every tool and is not counted (for the OUTFILE floor the server
does all the work, so its client RSS says nothing).
  outfile     mariadb -e "SELECT * FROM bench_t INTO OUTFILE '<dir>/...'" (server-side floor; the
              file is deleted afterwards)
  client      mariadb --quick -e "SELECT * FROM bench_t" > /dev/null (client-side floor: the text
              protocol over TCP, no conversion)
  cx-arrow    connectorx.read_sql(..., return_type="arrow", partition_on="id", partition_num=2)
  cx-parquet  the same, then pyarrow.parquet.write_table (snappy)
  confluo     `confluo sync snap --json` (mode snapshot, parallelism 2) into Delta; the Delta
              table's row count is checked with the deltalake package.

CDC (binlog capture) is not built yet for MySQL/MariaDB (`mode: cdc` on a mysql connection is an
error), so there are no CDC figures; the results say so.

Results go to bench/mysql-results.json, merged with the file's earlier results for the
measurements this run did not make (TOOLS picks a subset); a markdown table for BENCHMARKS.md is
printed.
"""
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "out", "mysql")
RESULTS = os.path.join(HERE, "mysql-results.json")
PY = sys.executable

HOST = os.environ.get("MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("MYSQL_PORT", "3306"))
USER = os.environ.get("MYSQL_USER", "root")
DB = os.environ.get("MYSQL_DATABASE", "confluo_bench")
ROWS = int(os.environ.get("ROWS", "10000000"))
RUNS = int(os.environ.get("RUNS", "3"))
TOOLS = [t for t in os.environ.get("TOOLS", "outfile,client,cx-arrow,cx-parquet,confluo").split(",") if t]
KEEP = os.environ.get("KEEP") == "1"
TIMEOUT = float(os.environ.get("TIMEOUT", "0"))  # seconds per measured process; 0: none
URL = f"mysql://{USER}@{HOST}:{PORT}/{DB}"
CLIENT = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
CDC_NOTE = ("CDC is not built yet for MySQL/MariaDB (binlog capture is missing; `mode: cdc` on a "
            "mysql connection is an error), so there are no CDC figures.")


def confluo_binary():
    """(path, label) of the Confluo binary to measure, or (None, reason)."""
    home = os.path.expanduser("~")
    given = os.environ.get("CONFLUO_BIN")
    if given:
        path = os.path.abspath(given)
        if os.access(path, os.X_OK):
            return path, "debug build" if os.sep + "debug" + os.sep in path else "release"
        return None, f"CONFLUO_BIN={given} is not an executable file"
    for path, label in ((os.path.join(home, ".cache/confluo-release/release/confluo"), "release"),
                        (os.path.join(home, ".cache/confluo-target/debug/confluo"), "debug build")):
        if os.access(path, os.X_OK):
            return path, label
    return None, ("no Confluo binary at ~/.cache/confluo-release/release/confluo or "
                  "~/.cache/confluo-target/debug/confluo (set CONFLUO_BIN)")


# ---------------------------------------------------------------------------------------------
# Measuring

class TreeRss:
    """Peak RSS of a process and all its descendants, sampled every 50 ms in a thread."""

    def __init__(self, pid):
        self.top = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.top] + self.top.children(recursive=True)
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def measure(argv, log, stdout_to=None):
    """Run argv to completion; return (seconds, peak tree RSS bytes). stderr (and stdout unless
    `stdout_to` is given) go to `log`. Raises with the log's tail if the exit code is not 0."""
    with open(log, "wb") as err, open(stdout_to or os.devnull, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdout=out if stdout_to else err, stderr=err)
        rss = TreeRss(p.pid)
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            if TIMEOUT and time.perf_counter() - t0 > TIMEOUT:
                p.kill()
                os.wait4(p.pid, 0)
                rss.stop()
                raise RuntimeError(f"{' '.join(argv)} did not finish within TIMEOUT={TIMEOUT} s, log {log}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        peak = rss.stop()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(log, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(argv)} failed (exit {code}), log {log}:\n{tail}")
    # psutil's samples only: the child's ru_maxrss also counts the pages it shared with this
    # Python process between fork and exec (~47 MiB), which swamps the ~10 MiB mariadb client. It
    # is the fallback for a process too short-lived to be sampled.
    return elapsed, peak or usage.ru_maxrss * 1024


def mib(b):
    return round(b / 2**20)


def sql(query, db=None):
    """Runs `query` with the mariadb client; returns its rows (tab-separated, no header)."""
    argv = [CLIENT, "-h", HOST, "-P", str(PORT), "-u", USER, "--batch", "--skip-column-names", "-e", query]
    if db:
        argv.insert(1, db)
    p = subprocess.run(argv, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{CLIENT} failed on {query[:80]!r}: {p.stderr.strip()}")
    return [line.split("\t") for line in p.stdout.splitlines()]


def machine():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "os": platform.platform(), "server": sql("SELECT VERSION()")[0][0],
            "python": platform.python_version(), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()]}


# ---------------------------------------------------------------------------------------------
# The data

def setup():
    """The database and bench_t, created and loaded once; skipped when complete."""
    sql(f"CREATE DATABASE IF NOT EXISTS `{DB}`")
    done = f"rows={ROWS}"
    note = sql("SELECT table_comment FROM information_schema.tables "
               f"WHERE table_schema = '{DB}' AND table_name = 'bench_t'")
    if note and note[0][0] == done:
        return
    print(f"loading {DB}.bench_t with {ROWS:,} rows ...", flush=True)
    t0 = time.perf_counter()
    sql("DROP TABLE IF EXISTS bench_t", DB)
    sql("""CREATE TABLE bench_t (id BIGINT PRIMARY KEY, a INT, b BIGINT, c DECIMAL(12,2),
           d VARCHAR(40), e DATETIME(6), f DOUBLE) ENGINE=InnoDB""", DB)
    # The sequence engine generates the keys in order, so InnoDB appends to the primary key.
    sql(f"""INSERT INTO bench_t SELECT seq, seq % 1000, seq * 7, seq / 100, MD5(seq),
            '2024-01-01' + INTERVAL seq SECOND, seq / 3 FROM seq_1_to_{ROWS}""", DB)
    sql("ANALYZE TABLE bench_t", DB)
    sql(f"ALTER TABLE bench_t COMMENT = '{done}'", DB)
    print(f"  loaded in {time.perf_counter() - t0:.0f} s", flush=True)


def outfile_dir():
    """A folder the server writes INTO OUTFILE files to: OUTFILE_DIR, else @@secure_file_priv
    (when the server restricts files to one folder), else /tmp."""
    given = os.environ.get("OUTFILE_DIR")
    if given:
        return given
    priv = sql("SELECT @@secure_file_priv")[0][0]
    return priv.rstrip("/") if priv not in ("NULL", "") else "/tmp"


# ---------------------------------------------------------------------------------------------
# Snapshot

CX_ARROW = """
import sys, connectorx as cx
t = cx.read_sql(sys.argv[1], "SELECT * FROM bench_t", return_type="arrow", partition_on="id", partition_num=2)
print(t.num_rows)
"""

CX_PARQUET = """
import sys, connectorx as cx, pyarrow.parquet as pq
t = cx.read_sql(sys.argv[1], "SELECT * FROM bench_t", return_type="arrow", partition_on="id", partition_num=2)
pq.write_table(t, sys.argv[2], compression="snappy")
print(t.num_rows)
"""


def project(folder, parallelism=2):
    """A Confluo project with the snapshot entry over the benchmark database."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "confluo.yaml"), "w") as f:
        f.write(f"""name: bench
connections:
  src: {{type: mysql, host: {HOST}, port: {PORT}, database: {DB}, user: {USER}}}
ingest:
  snap: {{connection: src, tables: ["{DB}.bench_t"], schema: bench, mode: snapshot, parallelism: {parallelism}}}
""")
    return folder


def delta_path(folder, table):
    """The folder under folder/lakehouse holding the Delta table `table` (has a _delta_log)."""
    found = []
    for dirpath, dirs, _ in os.walk(os.path.join(folder, "lakehouse")):
        if "_delta_log" in dirs:
            if table in dirpath:
                found.append(dirpath)
            dirs[:] = []
    if len(found) != 1:
        raise RuntimeError(f"expected one Delta table for {table} under {folder}/lakehouse, found {found}")
    return found[0]


def read_stdout(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def client(*args):
    return [CLIENT, "-h", HOST, "-P", str(PORT), "-u", USER, DB, *args]


def snapshot_once(tool, run_dir, confluo):
    """One snapshot measurement: (seconds, peak RSS bytes, rows read)."""
    os.makedirs(run_dir, exist_ok=True)
    log, out = os.path.join(run_dir, f"{tool}.log"), os.path.join(run_dir, f"{tool}.out")
    if tool == "outfile":
        target = os.path.join(outfile_dir(), f"confluo-bench-{os.getpid()}-{time.time_ns()}.tsv")
        try:
            t, m = measure(client("-e", f"SELECT * FROM bench_t INTO OUTFILE '{target}'"), log)
            with open(target, "rb") as f:
                n = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
        finally:
            if os.path.exists(target):
                os.remove(target)
        return t, m, n
    if tool == "client":
        t, m = measure(client("--quick", "--batch", "--skip-column-names", "-e", "SELECT * FROM bench_t"),
                       log, stdout_to=os.devnull)
        return t, m, ROWS  # /dev/null keeps no count; the other tools check theirs
    if tool in ("cx-arrow", "cx-parquet"):
        code = CX_ARROW if tool == "cx-arrow" else CX_PARQUET
        pq = os.path.join(run_dir, "bench_t.parquet")
        t, m = measure([PY, "-c", code, URL, pq], log, stdout_to=out)
        n = int(read_stdout(out).split()[-1])
        if os.path.exists(pq):
            os.remove(pq)
        return t, m, n
    if tool == "confluo":
        proj = project(os.path.join(run_dir, "proj"))
        t, m = measure([confluo, "--project", proj, "--quiet", "sync", "snap", "--json"], log, stdout_to=out)
        from deltalake import DeltaTable
        n = DeltaTable(delta_path(proj, "bench_t")).count()
        if not KEEP:
            shutil.rmtree(proj, ignore_errors=True)
        return t, m, n
    raise ValueError(tool)


SNAPSHOT_LABELS = {
    "outfile": "SELECT * INTO OUTFILE (server-side floor)",
    "client": "mariadb --quick > /dev/null (client-side floor)",
    "cx-arrow": "ConnectorX -> Arrow (2 partitions)",
    "cx-parquet": "ConnectorX -> Parquet (2 partitions, snappy)",
    "confluo": "Confluo -> Delta (parallelism 2)",
}


def snapshot_bench(confluo, confluo_label, results):
    for tool in SNAPSHOT_LABELS:
        if tool not in TOOLS:
            continue
        if tool == "confluo" and confluo is None:
            print(f"skipping Confluo snapshot: {confluo_label}", flush=True)
            results.append({"measurement": "snapshot", "tool": SNAPSHOT_LABELS[tool], "skipped": confluo_label})
            continue
        times, rss, load = [], [], os.getloadavg()[0]
        for i in range(RUNS):
            t, m, n = snapshot_once(tool, os.path.join(WORK, f"snapshot-{i}"), confluo)
            if n != ROWS:
                raise RuntimeError(f"{tool} read {n} rows, expected {ROWS}")
            times.append(t)
            rss.append(m)
            print(f"  {tool:11} run {i + 1}: {t:6.2f} s  peak {mib(m):5} MiB", flush=True)
        med = statistics.median(times)
        label = SNAPSHOT_LABELS[tool] + (f" ({confluo_label})" if tool == "confluo" and confluo_label != "release" else "")
        results.append({"measurement": "snapshot", "tool": label, "rows": ROWS, "runs": RUNS,
                        "seconds": round(med, 2), "min_seconds": round(min(times), 2),
                        "all_seconds": [round(x, 2) for x in times], "rows_per_s": round(ROWS / med),
                        "peak_rss_mib": mib(statistics.median(rss)), "max_peak_rss_mib": mib(max(rss)),
                        "load_avg_1m_before": round(load, 2)})
        print(f"snapshot {label:48} {med:6.2f} s  {ROWS / med / 1e6:5.2f} M rows/s  "
              f"peak {mib(statistics.median(rss)):5} MiB", flush=True)


# ---------------------------------------------------------------------------------------------
# Output

def markdown(results):
    lines = [f"| MariaDB snapshot of bench_t ({ROWS / 1e6:g} M rows, 7 columns) | seconds | rows/s | peak RSS |",
             "|---|---:|---:|---:|"]
    floor = next((r["seconds"] for r in results if r["tool"].startswith("mariadb --quick") and "seconds" in r), None)
    for r in results:
        if r["measurement"] != "snapshot":
            continue
        if "skipped" in r:
            lines.append(f"| {r['tool']} | not run: {r['skipped']} | | |")
            continue
        vs = f" ({r['seconds'] / floor:.2f}x client floor)" if floor and "floor" not in r["tool"] else ""
        rss = f"{r['peak_rss_mib']:,} MiB" + (" (client only)" if r["tool"].startswith("SELECT") else "")
        lines.append(f"| {r['tool']} | {r['seconds']:.2f}{vs} | {r['rows_per_s'] / 1e6:.2f} M | {rss} |")
    lines += ["", CDC_NOTE]
    return "\n".join(lines)


def key(r):
    return r["measurement"] + "/" + r["tool"].split(" (")[0]


def merged(results):
    """The new results plus those of an earlier mysql-results.json for measurements not run this
    time (TOOLS picks a subset). A skipped measurement does not replace a measured one."""
    try:
        with open(RESULTS) as f:
            old = json.load(f).get("results", [])
        if any(r.get("rows", ROWS) != ROWS for r in old if r["measurement"] == "snapshot"):
            old = []  # another table size: not comparable
    except (OSError, ValueError):
        old = []
    new = {key(r): r for r in results}
    out = []
    for r in old:
        n = new.get(key(r))
        if n is None or ("skipped" in n and "skipped" not in r):
            out.append(r)
            new.pop(key(r), None)
        else:
            out.append(n)
            new.pop(key(r))
    out += new.values()
    order = ["snapshot/" + v.split(" (")[0] for v in SNAPSHOT_LABELS.values()]
    return sorted(out, key=lambda r: (order.index(key(r)) if key(r) in order else len(order)))


def main():
    os.makedirs(WORK, exist_ok=True)
    setup()
    confluo, label = confluo_binary()
    print(f"Confluo: {confluo or 'missing'} ({label})", flush=True)
    info = machine()
    results = []
    snapshot_bench(confluo, label, results)
    print(CDC_NOTE, flush=True)
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for r in results:
        r["date"] = date
        if r["tool"].startswith("Confluo") and confluo:
            r["confluo_bin"] = confluo
    results = merged(results)
    out = {"machine": info, "rows": ROWS, "date": date,
           "notes": "Server-side cost (mariadbd) is not in the RSS figures; for INTO OUTFILE only the "
                    "client's RSS is measured. " + CDC_NOTE,
           "cdc": {"measured": False, "reason": CDC_NOTE},
           "results": results}
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=1)
    print()
    print(markdown(results))
    if not KEEP:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # The deltalake binding can abort during interpreter teardown (delta-rs#2184).
    os._exit(0)


if __name__ == "__main__":
    main()
