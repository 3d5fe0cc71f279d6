"""MySQL/MariaDB benchmarks: snapshot of a 10 M-row table into Delta, Confluo side by side with
the floors (server-side SELECT ... INTO OUTFILE, and the mariadb client streaming into /dev/null)
and ConnectorX.

Usage: bench/run.sh mysql   (or, with bench/.venv in place:
       RUNS=3 CONFLUO_BIN=... bench/.venv/bin/python bench/mysql.py)

Environment:
  MYSQL_HOST, MYSQL_PORT, MYSQL_USER  the server (default 127.0.0.1, 3306, root; empty password)
  MYSQL_DATABASE  the benchmark database (default confluo_bench; created if missing)
  ROWS         rows of bench_t (default 10,000,000)
  CDC_ROWS     rows of cdc_t (default 1,000,000)
  CHANGES      changes applied while Confluo is stopped, for the throughput figure (default 200,000)
  RATE, SECONDS  the steady change rate and duration of the latency run (default 1000/s for 30 s)
  RUNS         repetitions of every snapshot and throughput measurement; the median is quoted
               (default 3). The latency run is done once.
  TOOLS        comma list out of outfile,client,cx-arrow,cx-parquet,confluo,cdc (default all);
               bench_t is only created and loaded when a snapshot tool is picked.
  CONFLUO_BIN  the Confluo binary (default ~/.cache/confluo-release/release/confluo, then
               ~/.cache/confluo-target/debug/confluo, labelled "debug build"); the Confluo parts
               are skipped with a message when neither exists.
  OUTFILE_DIR  a folder the server may write to and this script may delete from (default: the
               server's @@secure_file_priv when set, else /tmp)
  KEEP         1 to keep the Confluo project folders under bench/out/mysql
  TIMEOUT      seconds after which a measured process is killed and the run fails (default none)

Setup (idempotent, with the `mariadb` client; only the CDC driver uses a Python MySQL driver,
pymysql): database,
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

CDC (binlog capture, `mode: cdc` over the mysql connection) over cdc_t(id BIGINT PRIMARY KEY,
v BIGINT, t_commit DATETIME(6), pad VARCHAR(40)), fresh for every run (CDC_ROWS rows from seq_1_to_N).
The server needs log_bin ON, binlog_format ROW and binlog_row_image FULL. The driver is pymysql,
its sessions at time_zone '+00:00' so that NOW(6) and UNIX_TIMESTAMP agree with UTC.
  initial     `confluo sync cdc` on an empty lakehouse (the initial copy), timed
  throughput  with Confluo stopped, CHANGES changes in transactions of 1,000 rows (80 % updates of
              random live ids, 10 % inserts, 10 % deletes), then `confluo sync cdc --json` catches
              up and exits: changes/s = CHANGES / its wall time. Source and Delta are then compared
              (row count, sum of v, sum of id).
  latency     `confluo sync cdc --continuous --interval 100ms` in the background while a driver
              makes RATE changes/s for SECONDS s (transactions of 10 rows: 8 updates, 2 inserts),
              each row with a new unique v and t_commit = NOW(6) (read back inside the
              transaction: MariaDB has no UPDATE ... RETURNING); after a 5 s drain Confluo gets
              SIGINT. A row's latency is the commitInfo timestamp of the first Delta version whose
              data holds its (id, v) minus its t_commit (the files each version adds, found with
              the deltalake package, are read for (id, v)). A value that a later change of the
              same key superseded within one Delta commit (the table keeps the latest row per key)
              counts as visible with that commit. Afterwards source and Delta are compared.
              NOW(6) is the statement's start, a few ms before the commit, so the figure errs high
              by that much (as clock_timestamp() does in bench/postgres.py).
A CDC run that fails is recorded and done once more.
Debezium-style peers need Kafka and Kafka Connect, which this machine does not have, so CDC is
measured for Confluo alone.

Results go to bench/mysql-results.json, merged with the file's earlier results for the
measurements this run did not make (TOOLS picks a subset): the snapshot figures under "results",
the CDC figures under "cdc" (replaced as a whole when CDC was measured, kept when it was not run);
a markdown table for BENCHMARKS.md is printed.
"""
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time

import psutil

from benchlib import TreeRss, mib, pct
from benchlib import machine as benchlib_machine

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "out", "mysql")
RESULTS = os.path.join(HERE, "mysql-results.json")
PY = sys.executable

HOST = os.environ.get("MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("MYSQL_PORT", "3306"))
USER = os.environ.get("MYSQL_USER", "root")
DB = os.environ.get("MYSQL_DATABASE", "confluo_bench")
ROWS = int(os.environ.get("ROWS", "10000000"))
CDC_ROWS = int(os.environ.get("CDC_ROWS", "1000000"))
CHANGES = int(os.environ.get("CHANGES", "200000"))
RATE = int(os.environ.get("RATE", "1000"))
SECONDS = int(os.environ.get("SECONDS", "30"))
RUNS = int(os.environ.get("RUNS", "3"))
TOOLS = [t for t in os.environ.get("TOOLS", "outfile,client,cx-arrow,cx-parquet,confluo,cdc").split(",") if t]
KEEP = os.environ.get("KEEP") == "1"
TIMEOUT = float(os.environ.get("TIMEOUT", "0"))  # seconds per measured process; 0: none
URL = f"mysql://{USER}@{HOST}:{PORT}/{DB}"
CLIENT = shutil.which("mariadb") or shutil.which("mysql") or "mariadb"
TX_ROWS = 1000  # rows per transaction of the throughput workload
CDC_NOTE = ("Debezium-style CDC peers need Kafka and Kafka Connect, which this machine does not have: "
            "CDC is measured for Confluo alone.")


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
    return benchlib_machine(server=sql("SELECT VERSION()")[0][0])


# ---------------------------------------------------------------------------------------------
# The data

def setup():
    """The database and bench_t, created and loaded once; skipped when complete."""
    sql(f"CREATE DATABASE IF NOT EXISTS `{DB}`")
    if not any(t in TOOLS for t in SNAPSHOT_LABELS):
        return  # CDC alone: cdc_t is made fresh by every CDC run
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


def project(folder, parallelism=2, cdc=False):
    """A Confluo project with the snapshot entry (`snap`) or, with `cdc`, the change capture entry
    (`cdc`) over the benchmark database: one entry only, so that a CDC-only run needs no bench_t."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    if cdc:
        src = (f"{{type: mysql, host: {HOST}, port: {PORT}, database: {DB}, user: {USER}, "
               f"password: \"\", ssl_mode: disabled}}")
        entry = f'cdc: {{connection: src, tables: ["{DB}.cdc_t"], schema: bench, mode: cdc}}'
    else:
        src = f"{{type: mysql, host: {HOST}, port: {PORT}, database: {DB}, user: {USER}}}"
        entry = (f'snap: {{connection: src, tables: ["{DB}.bench_t"], schema: bench, mode: snapshot, '
                 f'parallelism: {parallelism}}}')
    with open(os.path.join(folder, "confluo.yaml"), "w") as f:
        f.write(f"""name: bench
connections:
  src: {src}
ingest:
  {entry}
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
# CDC: the data

def connect(autocommit=True):
    """A pymysql connection to the benchmark database, its session in UTC (NOW(6) and
    UNIX_TIMESTAMP of a DATETIME then agree with the epoch)."""
    import pymysql
    return pymysql.connect(host=HOST, port=PORT, user=USER, password=os.environ.get("MYSQL_PASSWORD", ""),
                           database=DB, autocommit=autocommit, init_command="SET time_zone = '+00:00'")


def fresh_cdc_table():
    with connect() as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS cdc_t")
        cur.execute("""CREATE TABLE cdc_t (id BIGINT PRIMARY KEY, v BIGINT, t_commit DATETIME(6),
                       pad VARCHAR(40)) ENGINE=InnoDB""")
        cur.execute(f"INSERT INTO cdc_t SELECT seq, seq, NOW(6), MD5(seq) FROM seq_1_to_{CDC_ROWS}")
        cur.execute("ANALYZE TABLE cdc_t")
        cur.fetchall()


def live_ids(cur):
    cur.execute("SELECT id FROM cdc_t")
    return [r[0] for r in cur.fetchall()]


def id_list(ids):
    return ",".join(str(int(i)) for i in ids)


# ---------------------------------------------------------------------------------------------
# CDC: throughput

def apply_changes(total, seed=1):
    """CHANGES row changes to cdc_t in transactions of TX_ROWS rows: 80 % updates of random live
    ids, 10 % inserts of new ids, 10 % deletes of random live ids. Returns (changes, seconds)."""
    rng = random.Random(seed)
    with connect(autocommit=False) as conn, conn.cursor() as cur:
        live = live_ids(cur)
        cur.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM cdc_t")
        next_id = int(cur.fetchone()[0])
        conn.commit()
        n_upd, n_ins = TX_ROWS * 8 // 10, TX_ROWS // 10
        n_del = TX_ROWS - n_upd - n_ins
        done, t0 = 0, time.perf_counter()
        while done < total:
            picks = rng.sample(range(len(live)), n_upd + n_del)
            upd = [live[i] for i in picks[:n_upd]]
            dels = sorted(picks[n_upd:], reverse=True)
            del_ids = [live[i] for i in dels]
            for i in dels:  # swap-remove, highest index first
                live[i] = live[-1]
                live.pop()
            ins = list(range(next_id, next_id + n_ins))
            next_id += n_ins
            live.extend(ins)
            c = cur.execute(f"UPDATE cdc_t SET v = v + 1, t_commit = NOW(6) WHERE id IN ({id_list(upd)})")
            c += cur.execute("INSERT INTO cdc_t (id, v, t_commit, pad) VALUES "
                             + ",".join(f"({i},{i},NOW(6),MD5({i}))" for i in ins))
            c += cur.execute(f"DELETE FROM cdc_t WHERE id IN ({id_list(del_ids)})")
            conn.commit()
            assert c == TX_ROWS, c
            done += c
        return done, time.perf_counter() - t0


def source_stats():
    with connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*), SUM(v), SUM(id) FROM cdc_t")
        n, sv, si = cur.fetchone()
        return int(n), int(sv or 0), int(si or 0)


def delta_stats(path):
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder
    dt = DeltaTable(path)  # QueryBuilder honours deletion vectors, if the table has any
    t = pa.table(QueryBuilder().register("t", dt).execute(
        "SELECT count(*) AS n, sum(v) AS sv, sum(id) AS si FROM t").read_all()).to_pylist()[0]
    return int(t["n"]), int(t["sv"] or 0), int(t["si"] or 0)


# ---------------------------------------------------------------------------------------------
# CDC: latency

def drive(seconds, rate, log_rows):
    """Changes at a steady `rate` per second for `seconds`, in transactions of 10 rows (8 updates
    of random ids, 2 inserts), each row with a new unique v and t_commit = NOW(6). MariaDB has no
    UPDATE ... RETURNING, so the updated rows' t_commit is read back inside the transaction.
    Appends (id, v, t_commit epoch seconds) to log_rows; returns (changes, seconds)."""
    rng = random.Random(7)
    per_tx = 10
    tx_rate = rate / per_tx
    with connect(autocommit=False) as conn, conn.cursor() as cur:
        live = live_ids(cur)
        conn.commit()
        next_id = max(live) + 1
        v = 10**12
        t0 = time.perf_counter()
        i = 0
        while True:
            due = t0 + i / tx_rate
            if due - t0 >= seconds:
                break
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            upd_ids = rng.sample(live, 8)
            upd_v = list(range(v, v + 8))
            ins_ids = [next_id, next_id + 1]
            ins_v = [v + 8, v + 9]
            v += 10
            next_id += 2
            case = " ".join(f"WHEN {k} THEN {w}" for k, w in zip(upd_ids, upd_v))
            cur.execute(f"UPDATE cdc_t SET v = CASE id {case} END, t_commit = NOW(6) "
                        f"WHERE id IN ({id_list(upd_ids)})")
            cur.execute("INSERT INTO cdc_t (id, v, t_commit, pad) VALUES "
                        + ",".join(f"({k},{w},NOW(6),MD5({k}))" for k, w in zip(ins_ids, ins_v))
                        + " RETURNING id, v, UNIX_TIMESTAMP(t_commit)")
            rows = list(cur.fetchall())
            cur.execute(f"SELECT id, v, UNIX_TIMESTAMP(t_commit) FROM cdc_t WHERE id IN ({id_list(upd_ids)})")
            rows += cur.fetchall()
            conn.commit()
            assert len(rows) == per_tx, rows
            log_rows.extend((int(a), int(b), float(c)) for a, b, c in rows)
            i += 1
        return len(log_rows), time.perf_counter() - t0


def visibility(path, first_version):
    """{(id, v): commit timestamp seconds} for every (id, v) that first appears in a version after
    `first_version`, from the files each version adds (deltalake) and its commitInfo timestamp."""
    import pyarrow.parquet as pq
    from deltalake import DeltaTable
    dt = DeltaTable(path, version=first_version)
    files = set(dt.file_uris())
    last = DeltaTable(path).version()
    seen = {}
    for ver in range(first_version + 1, last + 1):
        dt.load_as_version(ver)
        now = set(dt.file_uris())
        added = now - files
        files = now
        with open(os.path.join(path, "_delta_log", f"{ver:020d}.json")) as f:
            ts = None
            for line in f:
                a = json.loads(line)
                if "commitInfo" in a:
                    ts = a["commitInfo"].get("timestamp")
        if ts is None:
            ts = next(h["timestamp"] for h in dt.history() if h["version"] == ver)
        for uri in added:
            local = uri[len("file://"):] if uri.startswith("file://") else uri
            t = pq.read_table(local, columns=["id", "v"])
            for k in zip(t.column("id").to_pylist(), t.column("v").to_pylist()):
                if k not in seen:
                    seen[k] = ts / 1000.0
    return seen, last - first_version


def latencies(rows, seen):
    """Latency of every driver row: its visibility time minus its t_commit. A row whose (id, v)
    never appears because a later change of the same key landed in the same Delta commit (a
    latest-row-per-key table only stores the last one) counts as visible when that later value
    is. Returns (latencies, superseded count, never visible count)."""
    later = {}  # id -> the driver's values of that id, in commit order
    for rid, v, _ in rows:
        later.setdefault(rid, []).append(v)
    lat, superseded, missing = [], 0, 0
    for rid, v, tc in rows:
        ts = seen.get((rid, v))
        if ts is None:
            vs = later[rid]
            nxt = [seen[(rid, w)] for w in vs[vs.index(v) + 1:] if (rid, w) in seen]
            if nxt:
                ts = nxt[0]
                superseded += 1
        if ts is None:
            missing += 1
        else:
            lat.append(ts - tc)
    return lat, superseded, missing


def json_summary(path):
    """The last JSON object `confluo sync cdc --json` printed, or None."""
    for line in reversed(read_stdout(path).strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    try:
        return json.loads(read_stdout(path))
    except ValueError:
        return None


COPIES = []  # (seconds, RSS) of every initial copy that succeeded, kept if a later step fails


def cdc_run(confluo, i):
    """One fresh cdc_t: the initial copy, CHANGES changes with Confluo stopped, the catch-up.
    Returns (project, Delta path, (copy seconds, RSS), (catch-up seconds, RSS, changes, summary))."""
    from deltalake import DeltaTable
    run_dir = os.path.join(WORK, f"cdc-{i}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    fresh_cdc_table()
    proj = project(os.path.join(run_dir, "proj"), cdc=True)
    sync = [confluo, "--project", proj, "--quiet", "sync", "cdc", "--json"]
    t, m = measure(sync, os.path.join(run_dir, "initial.log"), stdout_to=os.path.join(run_dir, "initial.json"))
    path = delta_path(proj, "cdc_t")
    n = DeltaTable(path).count()
    if n != CDC_ROWS:
        raise RuntimeError(f"initial copy has {n} rows, expected {CDC_ROWS}")
    first = (t, m)
    COPIES.append(first)
    print(f"  cdc initial copy run {i + 1}: {CDC_ROWS:,} rows in {t:.2f} s, peak {mib(m)} MiB", flush=True)
    changes, apply_s = apply_changes(CHANGES, seed=i + 1)
    print(f"  applied {changes:,} changes to the source in {apply_s:.1f} s ({changes / apply_s:,.0f}/s)", flush=True)
    out = os.path.join(run_dir, "catchup.json")
    t, m = measure(sync, os.path.join(run_dir, "catchup.log"), stdout_to=out)
    src, dst = source_stats(), delta_stats(path)
    if src != dst:
        raise RuntimeError(f"after catch-up the source has (count, sum v, sum id) {src}, Delta {dst}")
    print(f"  cdc catch-up run {i + 1}: {changes:,} changes in {t:.2f} s = {changes / t:,.0f} changes/s, "
          f"peak {mib(m)} MiB; source and Delta agree {src}", flush=True)
    return proj, path, first, (t, m, changes, json_summary(out))


def cdc_bench(confluo, confluo_label, results):
    suffix = f" ({confluo_label})" if confluo_label != "release" else ""
    if confluo is None:
        print(f"skipping Confluo CDC: {confluo_label}", flush=True)
        results.append({"measurement": "cdc", "tool": "Confluo", "skipped": confluo_label})
        return
    import pymysql
    from deltalake import DeltaTable
    init_t, tput, errors = [], [], []
    for i in range(RUNS):
        # A failed run (or one whose connection was lost: the server may be shared and
        # restarted) is recorded and done once more.
        for attempt in range(2):
            try:
                proj, path, first, second = cdc_run(confluo, i)
                break
            except (RuntimeError, pymysql.err.OperationalError) as e:
                if attempt == 0 and isinstance(e, pymysql.err.OperationalError):
                    time.sleep(10)  # let a restarting server come back
                if attempt == 1:
                    raise
                errors.append((str(e).strip().splitlines() or [repr(e)])[-1][:300])
                print(f"  cdc run {i + 1} failed, retrying once: {e}", flush=True)
        init_t.append(first)
        tput.append(second)
        last_proj, last_path = proj, path
    med = statistics.median(x[0] for x in init_t)
    results.append({"measurement": "cdc initial copy", "tool": "Confluo" + suffix, "rows": CDC_ROWS, "runs": RUNS,
                    "seconds": round(med, 2), "rows_per_s": round(CDC_ROWS / med),
                    "peak_rss_mib": mib(statistics.median(x[1] for x in init_t))})
    med = statistics.median(x[0] for x in tput)
    results.append({"measurement": "cdc throughput", "tool": "Confluo" + suffix, "changes": CHANGES,
                    "transaction_rows": TX_ROWS, "runs": RUNS, "seconds": round(med, 2),
                    "all_seconds": [round(x[0], 2) for x in tput], "changes_per_s": round(CHANGES / med),
                    "failed_attempts_retried": errors,
                    "rows_per_s": round(CHANGES / med), "peak_rss_mib": mib(statistics.median(x[1] for x in tput)),
                    "confluo_summary_last_run": tput[-1][3]})
    print(f"cdc throughput: {CHANGES / med:,.0f} changes/s (median of {RUNS})", flush=True)

    # Latency, on the project left by the last throughput run (already caught up).
    first_version = DeltaTable(last_path).version()
    log = os.path.join(WORK, "cdc-latency.log")
    with open(log, "wb") as err, open(os.path.join(WORK, "cdc-latency.jsonl"), "wb") as out:
        p = subprocess.Popen([confluo, "--project", last_proj, "--quiet", "sync", "cdc", "--continuous",
                              "--interval", "100ms", "--json"], stdout=out, stderr=err)
        rss = TreeRss(p.pid)
        time.sleep(3)  # let it connect and reach the idle state
        if p.poll() is not None:
            rss.stop()
            raise RuntimeError(f"confluo sync cdc --continuous exited early ({p.returncode}), log {log}:\n"
                               + read_stdout(log)[-3000:])
        rows = []
        try:
            changes, drive_s = drive(SECONDS, RATE, rows)
        except BaseException:
            p.kill()  # the driver failed: no figure to take, and Confluo must not be left running
            p.wait()
            rss.stop()
            raise
        print(f"  driver: {changes:,} changes in {drive_s:.1f} s ({changes / drive_s:,.0f}/s)", flush=True)
        time.sleep(5)
        p.send_signal(signal.SIGINT)
        try:
            code = p.wait(60)
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait()
            print("  warning: Confluo did not stop within 60 s of SIGINT; killed", flush=True)
        peak = rss.stop()
    seen, versions = visibility(last_path, first_version)
    lat, superseded, missing = latencies(rows, seen)
    final_src, final_dst = source_stats(), delta_stats(last_path)
    r = {"measurement": "cdc latency", "tool": "Confluo" + suffix, "continuous_interval": "100ms",
         "target_rate": RATE, "seconds": round(drive_s, 2), "changes": changes,
         "sustained_changes_per_s": round(changes / drive_s), "delta_versions": versions,
         "rows_measured": len(lat), "rows_superseded_in_same_commit": superseded,
         "rows_not_visible": missing, "final_state_equal": final_src == final_dst,
         "exit_code_after_sigint": code, "peak_rss_mib": mib(peak)}
    if lat:
        r.update({"p50_s": round(pct(lat, 50), 3), "p99_s": round(pct(lat, 99), 3),
                  "max_s": round(max(lat), 3), "min_s": round(min(lat), 3)})
    results.append(r)
    print(f"cdc latency at {changes / drive_s:,.0f} changes/s: p50 {r.get('p50_s')} s, p99 {r.get('p99_s')} s, "
          f"max {r.get('max_s')} s over {len(lat):,} rows in {versions} Delta versions "
          f"({superseded} of them superseded by a later change of their key in the same commit); "
          f"{missing} rows never visible; source and Delta equal after stop: {final_src == final_dst}; "
          f"peak {mib(peak)} MiB", flush=True)


# ---------------------------------------------------------------------------------------------
# Output

def markdown(results, cdc_section):
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
    cdc = (cdc_section or {}).get("results") or []
    if cdc:
        n = cdc_section.get("cdc_rows", CDC_ROWS)
        lines += ["", f"| MariaDB CDC of cdc_t ({n / 1e6:g} M rows) into Delta | figure | peak RSS |", "|---|---|---:|"]
        for r in cdc:
            if "skipped" in r:
                lines.append(f"| {r['tool']} | not run: {r['skipped']} | |")
            elif "failed" in r:
                lines.append(f"| {r['tool']} | failed: {r['failed']} | |")
            elif r["measurement"] == "cdc initial copy":
                lines.append(f"| {r['tool']}: initial copy | {r['seconds']:.2f} s, {r['rows_per_s']:,} rows/s "
                             f"| {r['peak_rss_mib']:,} MiB |")
            elif r["measurement"] == "cdc throughput":
                lines.append(f"| {r['tool']}: catch-up of {r['changes']:,} changes (tx of {r['transaction_rows']:,}) "
                             f"| {r['seconds']:.2f} s, **{r['changes_per_s']:,} changes/s** | {r['peak_rss_mib']:,} MiB |")
            elif r["measurement"] == "cdc latency":
                lines.append(f"| {r['tool']}: latency, continuous 100 ms, {r['sustained_changes_per_s']:,} changes/s "
                             f"for {r['seconds']:.0f} s | p50 {r.get('p50_s')} s, **p99 {r.get('p99_s')} s**, "
                             f"max {r.get('max_s')} s ({r['rows_not_visible']} rows never visible; "
                             f"source and Delta equal after stop: {r.get('final_state_equal')}) "
                             f"| {r['peak_rss_mib']:,} MiB |")
    lines += ["", CDC_NOTE]
    return "\n".join(lines)


def key(r):
    return r["measurement"] + "/" + r["tool"].split(" (")[0]


def previous():
    """The earlier mysql-results.json, or {}."""
    try:
        with open(RESULTS) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def merged_cdc(section):
    """The "cdc" part of mysql-results.json: this run's when CDC was measured (or failed), as a
    whole; else the earlier one. A skipped run (no binary) does not replace a measured one."""
    old = previous().get("cdc")
    old_measured = bool(old and old.get("measured") and old.get("results"))
    if section is None or (old_measured and all("skipped" in r for r in section["results"])):
        if old and old.get("results") is not None:
            return old
        return {"measured": False, "reason": "not run yet (TOOLS without cdc)"}
    return section


def merged(results):
    """The new results plus those of an earlier mysql-results.json for measurements not run this
    time (TOOLS picks a subset). A skipped measurement does not replace a measured one."""
    try:
        old = previous().get("results", [])
        if any(r.get("rows", ROWS) != ROWS for r in old if r["measurement"] == "snapshot"):
            old = []  # another table size: not comparable
    except (AttributeError, KeyError):
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
    results, cdc = [], None
    snapshots = any(t in TOOLS for t in SNAPSHOT_LABELS)
    if snapshots:
        snapshot_bench(confluo, label, results)
    if "cdc" in TOOLS:
        cdc = []
        try:
            cdc_bench(confluo, label, cdc)
        except (RuntimeError, AssertionError, OSError) as e:
            # Recorded, not raised: the snapshot figures of this run are still worth keeping.
            first = str(e).strip().splitlines()
            why = next((l for l in reversed(first) if l.startswith("error")), first[0] if first else repr(e))
            print(f"CDC benchmark failed: {e}", flush=True)
            cdc.append({"measurement": "cdc", "tool": "Confluo" + (f" ({label})" if label != "release" else ""),
                        "failed": why[:300]})
            if COPIES and not any(r["measurement"] == "cdc initial copy" for r in cdc):
                # The copy worked before the failure: its figure still stands.
                med = statistics.median(x[0] for x in COPIES)
                cdc.insert(0, {"measurement": "cdc initial copy",
                               "tool": "Confluo" + (f" ({label})" if label != "release" else ""),
                               "rows": CDC_ROWS, "runs": len(COPIES), "seconds": round(med, 2),
                               "rows_per_s": round(CDC_ROWS / med),
                               "peak_rss_mib": mib(statistics.median(x[1] for x in COPIES))})
        except Exception as e:  # e.g. a pymysql error: recorded too
            print(f"CDC benchmark failed: {e!r}", flush=True)
            cdc.append({"measurement": "cdc", "tool": "Confluo" + (f" ({label})" if label != "release" else ""),
                        "failed": repr(e)[:300]})
    print(CDC_NOTE, flush=True)
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for r in results + (cdc or []):
        r["date"] = date
        if r["tool"].startswith("Confluo") and confluo:
            r["confluo_bin"] = confluo
    earlier = previous()
    results = merged(results)
    section = None
    if cdc is not None:
        section = {"measured": bool(cdc) and not any("failed" in r or "skipped" in r for r in cdc),
                   "machine": info, "date": date, "cdc_rows": CDC_ROWS, "changes": CHANGES,
                   "transaction_rows": TX_ROWS, "latency_rate": RATE, "latency_seconds": SECONDS,
                   "runs": RUNS, "notes": CDC_NOTE, "results": cdc}
    section = merged_cdc(section)
    out = {"machine": info if snapshots or "machine" not in earlier else earlier["machine"],
           "rows": ROWS, "date": date,
           "notes": "Server-side cost (mariadbd) is not in the RSS figures; for INTO OUTFILE only the "
                    "client's RSS is measured. " + CDC_NOTE,
           "cdc": section,
           "results": results}
    with open(RESULTS, "w") as f:
        json.dump(out, f, indent=1)
    print()
    print(markdown(results, section))
    if not KEEP:
        shutil.rmtree(WORK, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    # The deltalake binding can abort during interpreter teardown (delta-rs#2184).
    os._exit(0)


if __name__ == "__main__":
    main()
