"""PostgreSQL benchmarks: snapshot of a 10 M-row table and change data capture into Delta, Confluo
side by side with the floor (binary COPY into /dev/null) and ConnectorX.

Usage: bench/run.sh postgres   (or, with bench/.venv in place:
       RUNS=3 CONFLUO_BIN=... bench/.venv/bin/python bench/postgres.py)

Environment:
  PGHOST, PGPORT, PGUSER  the server (default 127.0.0.1, 5432, postgres; trust auth, wal_level=logical)
  PGDATABASE   the benchmark database (default confluo_bench; created if missing)
  ROWS         rows of public.bench_t (default 10,000,000)
  CDC_ROWS     rows of public.cdc_t (default 1,000,000)
  CHANGES      changes applied while Confluo is stopped, for the throughput figure (default 1,000,000)
  RATE, SECONDS  the steady change rate and duration of the latency run (default 1000/s for 60 s)
  RUNS         repetitions of every snapshot and throughput measurement; the median is quoted
               (default 1). The latency run is done once.
  TOOLS        comma list out of floor,cx-arrow,cx-parquet,confluo,cdc (default all)
  CONFLUO_BIN  the Confluo binary (default ~/.cache/confluo-release/release/confluo, then
               ~/.cache/confluo-target/debug/confluo, labelled "debug build"); the Confluo parts
               are skipped with a message when neither exists.
  KEEP         1 to keep the Confluo project folders under bench/out/postgres
  TIMEOUT      seconds after which a measured process is killed and the run fails (default none)

Setup (idempotent): database, public.bench_t(id bigint primary key, a int, b bigint,
c numeric(12,2), d text, e timestamptz, f float8) with ROWS rows from generate_series, ANALYZEd.
A table comment records the row count once the load finished, so an interrupted load is redone.

Snapshot, each one process (tree) from spawn to exit: wall seconds, rows/s and peak RSS of the
process tree (psutil, sampled every 50 ms, or the top process's ru_maxrss if larger). The server
side (the COPY backends) is the same for every tool and is not counted.
  floor       psql -c "COPY (SELECT * FROM bench_t) TO STDOUT (FORMAT binary)" > /dev/null
  cx-arrow    connectorx.read_sql(..., return_type="arrow", partition_on="id", partition_num=2)
  cx-parquet  the same, then pyarrow.parquet.write_table (snappy)
  confluo     `confluo sync snap --json` (mode snapshot, parallelism 2) into Delta; the Delta
              table's row count is checked with the deltalake package.

CDC over public.cdc_t(id bigint primary key, v bigint, t_commit timestamptz, pad text), fresh for
every run (CDC_ROWS rows; replication slots and publications left in the database are dropped):
  initial     `confluo sync cdc` on an empty lakehouse (the initial copy), timed
  throughput  with Confluo stopped, CHANGES changes in transactions of 1,000 rows (80 % updates of
              random live ids, 10 % inserts, 10 % deletes), then `confluo sync cdc --json` catches
              up and exits: changes/s = CHANGES / its wall time. Source and Delta are then compared
              (row count, sum of v, sum of id).
  latency     `confluo sync cdc --continuous --interval 100ms` in the background while a driver
              makes RATE changes/s for SECONDS s (transactions of 10 rows: 8 updates, 2 inserts),
              each row with a new unique v and t_commit = clock_timestamp(); after a 5 s drain
              Confluo gets SIGINT. A row's latency is the commitInfo timestamp of the first Delta
              version whose data holds its (id, v) minus its t_commit (the files each version adds,
              found with the deltalake package, are read for (id, v)). A value that a later change
              of the same key superseded within one Delta commit (the table keeps the latest row
              per key) counts as visible with that commit. Afterwards source and Delta are compared.
The initial copy includes creating the replication slot, which waits for transactions open on the
server at that moment (on a shared cluster that can add seconds). A CDC run broken by a lost
connection (another user restarting the shared server) is recorded and done once more.
Debezium-style peers need Kafka and Kafka Connect, which this machine does not have, so CDC is
measured for Confluo alone.

Results go to bench/postgres-results.json, merged with the file's earlier results for the
measurements this run did not make (TOOLS picks a subset; CDC is replaced as a whole); a markdown
table for BENCHMARKS.md is printed.
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
import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = os.path.join(HERE, "out", "postgres")
RESULTS = os.path.join(HERE, "postgres-results.json")
PY = sys.executable

HOST = os.environ.get("PGHOST", "127.0.0.1")
PORT = int(os.environ.get("PGPORT", "5432"))
USER = os.environ.get("PGUSER", "postgres")
DB = os.environ.get("PGDATABASE", "confluo_bench")
ROWS = int(os.environ.get("ROWS", "10000000"))
CDC_ROWS = int(os.environ.get("CDC_ROWS", "1000000"))
CHANGES = int(os.environ.get("CHANGES", "1000000"))
RATE = int(os.environ.get("RATE", "1000"))
SECONDS = int(os.environ.get("SECONDS", "60"))
RUNS = int(os.environ.get("RUNS", "1"))
TOOLS = [t for t in os.environ.get("TOOLS", "floor,cx-arrow,cx-parquet,confluo,cdc").split(",") if t]
KEEP = os.environ.get("KEEP") == "1"
TIMEOUT = float(os.environ.get("TIMEOUT", "0"))  # seconds per measured process; 0: none
URL = f"postgresql://{USER}@{HOST}:{PORT}/{DB}"
TX_ROWS = 1000  # rows per transaction of the throughput workload


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


def measure(argv, log, stdout_to=None, env=None, cwd=None):
    """Run argv to completion; return (seconds, peak tree RSS bytes). stderr (and stdout unless
    `stdout_to` is given) go to `log`. Raises with the log's tail if the exit code is not 0."""
    with open(log, "wb") as err, open(stdout_to or os.devnull, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out if stdout_to else err, stderr=err)
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
    return elapsed, max(peak, usage.ru_maxrss * 1024)


def machine():
    with connect() as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    return benchlib_machine(postgres=pg)


# ---------------------------------------------------------------------------------------------
# The data

def connect(db=DB, autocommit=True):
    return psycopg.connect(host=HOST, port=PORT, user=USER, dbname=db, autocommit=autocommit)


def setup():
    """The database and public.bench_t, created and loaded once; skipped when complete."""
    with connect("postgres") as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone() is None:
            print(f"creating database {DB}", flush=True)
            conn.execute(f'CREATE DATABASE "{DB}"')
    with connect() as conn:
        wal = conn.execute("SHOW wal_level").fetchone()[0]
        if wal != "logical":
            print(f"warning: wal_level is {wal}, CDC needs logical", flush=True)
        done = f"rows={ROWS}"
        note = conn.execute("SELECT obj_description('public.bench_t'::regclass, 'pg_class')").fetchone() \
            if conn.execute("SELECT to_regclass('public.bench_t')").fetchone()[0] else None
        if note and note[0] == done:
            return
        print(f"loading public.bench_t with {ROWS:,} rows ...", flush=True)
        t0 = time.perf_counter()
        conn.execute("DROP TABLE IF EXISTS public.bench_t")
        conn.execute("""CREATE TABLE public.bench_t (id bigint, a int, b bigint, c numeric(12,2),
                        d text, e timestamptz, f float8)""")
        # Deterministic values of realistic widths: d is 32 characters, c has 2 decimals.
        conn.execute("""INSERT INTO public.bench_t
            SELECT g, (g * 7919 %% 1000003)::int, g * 31, ((g * 37 %% 100000000) / 100.0)::numeric(12,2),
                   md5(g::text), timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
                   g * 0.001 + 0.5
            FROM generate_series(1, %s::bigint) AS g""", (ROWS,))
        conn.execute("ALTER TABLE public.bench_t ADD PRIMARY KEY (id)")
        conn.execute("VACUUM ANALYZE public.bench_t")
        conn.execute(f"COMMENT ON TABLE public.bench_t IS '{done}'")
        print(f"  loaded in {time.perf_counter() - t0:.0f} s", flush=True)


def drop_replication_state(conn):
    """Drops the replication slots and publications of the benchmark database (all of them are
    the benchmark's): an abandoned slot would keep WAL forever."""
    for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (DB,)).fetchall():
        for _ in range(50):
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                break
            except psycopg.errors.ObjectInUse:
                time.sleep(0.2)
    for (pub,) in conn.execute("SELECT pubname FROM pg_publication").fetchall():
        conn.execute(f'DROP PUBLICATION "{pub}"')


def fresh_cdc_table():
    with connect() as conn:
        drop_replication_state(conn)
        conn.execute("DROP TABLE IF EXISTS public.cdc_t")
        conn.execute("CREATE TABLE public.cdc_t (id bigint, v bigint, t_commit timestamptz, pad text)")
        conn.execute("""INSERT INTO public.cdc_t
            SELECT g, g, timestamptz '2024-01-01 00:00:00+00', md5(g::text) FROM generate_series(1, %s::bigint) g""",
                     (CDC_ROWS,))
        conn.execute("ALTER TABLE public.cdc_t ADD PRIMARY KEY (id)")
        conn.execute("VACUUM ANALYZE public.cdc_t")


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
    """A Confluo project with the snapshot and the CDC entries over the benchmark database."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "confluo.yaml"), "w") as f:
        f.write(f"""name: bench
connections:
  src: {{type: postgres, host: {HOST}, port: {PORT}, database: {DB}, user: {USER}, sslmode: disable}}
ingest:
  snap: {{connection: src, tables: ["public.bench_t"], schema: bench, mode: snapshot, parallelism: {parallelism}}}
  cdc: {{connection: src, tables: ["public.cdc_t"], schema: bench, mode: cdc}}
""")
    return folder


def delta_path(folder, table):
    """The folder under folder/lakehouse holding the Delta table `table` (has a _delta_log)."""
    found = []
    for dirpath, dirs, _ in os.walk(os.path.join(folder, "lakehouse")):
        if "_delta_log" in dirs:
            if os.path.basename(dirpath).startswith(table) or table in dirpath:
                found.append(dirpath)
            dirs[:] = []
    if len(found) != 1:
        raise RuntimeError(f"expected one Delta table for {table} under {folder}/lakehouse, found {found}")
    return found[0]


def read_stdout(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def snapshot_once(tool, run_dir, confluo):
    """One snapshot measurement: (seconds, peak RSS bytes, rows read)."""
    os.makedirs(run_dir, exist_ok=True)
    log, out = os.path.join(run_dir, f"{tool}.log"), os.path.join(run_dir, f"{tool}.out")
    if tool == "floor":
        t, m = measure(["psql", "-h", HOST, "-p", str(PORT), "-U", USER, "-d", DB, "-X", "-q", "-v",
                        "ON_ERROR_STOP=1", "-c", "COPY (SELECT * FROM bench_t) TO STDOUT (FORMAT binary)"],
                       log, stdout_to=os.devnull)
        return t, m, ROWS
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
    "floor": "COPY TO STDOUT (binary) > /dev/null (floor)",
    "cx-arrow": "ConnectorX -> Arrow (2 partitions)",
    "cx-parquet": "ConnectorX -> Parquet (2 partitions, snappy)",
    "confluo": "Confluo -> Delta (parallelism 2)",
}


def snapshot_bench(confluo, confluo_label, results):
    for tool in ("floor", "cx-arrow", "cx-parquet", "confluo"):
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
# CDC: throughput

def apply_changes(total, seed=1):
    """CHANGES row changes to cdc_t in transactions of TX_ROWS rows: 80 % updates of random live
    ids, 10 % inserts of new ids, 10 % deletes of random live ids. Returns (changes, seconds)."""
    rng = random.Random(seed)
    with connect(autocommit=True) as conn:
        live = [r[0] for r in conn.execute("SELECT id FROM public.cdc_t").fetchall()]
        next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM public.cdc_t").fetchone()[0]
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
            with conn.transaction():
                c = conn.execute("UPDATE public.cdc_t SET v = v + 1, t_commit = clock_timestamp() "
                                 "WHERE id = ANY(%s)", (upd,)).rowcount
                c += conn.execute("INSERT INTO public.cdc_t SELECT i, i, clock_timestamp(), md5(i::text) "
                                  "FROM unnest(%s::bigint[]) i", (ins,)).rowcount
                c += conn.execute("DELETE FROM public.cdc_t WHERE id = ANY(%s)", (del_ids,)).rowcount
            assert c == TX_ROWS, c
            done += c
        return done, time.perf_counter() - t0


def source_stats():
    with connect() as conn:
        n, sv, si = conn.execute("SELECT count(*), sum(v), sum(id) FROM public.cdc_t").fetchone()
        return int(n), int(sv), int(si)


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
    of random ids, 2 inserts), each row with a new unique v and t_commit = clock_timestamp().
    Appends (id, v, t_commit epoch seconds) to log_rows; returns (changes, seconds)."""
    rng = random.Random(7)
    per_tx = 10
    tx_rate = rate / per_tx
    with connect(autocommit=True) as conn:
        live = [r[0] for r in conn.execute("SELECT id FROM public.cdc_t").fetchall()]
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
            with conn.transaction():
                rows = conn.execute(
                    "UPDATE public.cdc_t c SET v = d.v, t_commit = clock_timestamp() "
                    "FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, v) WHERE c.id = d.id "
                    "RETURNING c.id, c.v, extract(epoch FROM c.t_commit)::float8", (upd_ids, upd_v)).fetchall()
                rows += conn.execute(
                    "INSERT INTO public.cdc_t SELECT d.id, d.v, clock_timestamp(), md5(d.id::text) "
                    "FROM unnest(%s::bigint[], %s::bigint[]) AS d(id, v) "
                    "RETURNING id, v, extract(epoch FROM t_commit)::float8", (ins_ids, ins_v)).fetchall()
            log_rows.extend(rows)
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


def cdc_run(confluo, i):
    """One fresh cdc_t: the initial copy, CHANGES changes with Confluo stopped, the catch-up.
    Returns (project, Delta path, (copy seconds, RSS), (catch-up seconds, RSS, changes))."""
    from deltalake import DeltaTable
    run_dir = os.path.join(WORK, f"cdc-{i}")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    fresh_cdc_table()
    proj = project(os.path.join(run_dir, "proj"))
    sync = [confluo, "--project", proj, "--quiet", "sync", "cdc", "--json"]
    t, m = measure(sync, os.path.join(run_dir, "initial.log"), stdout_to=os.path.join(run_dir, "initial.json"))
    path = delta_path(proj, "cdc_t")
    n = DeltaTable(path).count()
    if n != CDC_ROWS:
        raise RuntimeError(f"initial copy has {n} rows, expected {CDC_ROWS}")
    first = (t, m)
    print(f"  cdc initial copy run {i + 1}: {CDC_ROWS:,} rows in {t:.2f} s, peak {mib(m)} MiB", flush=True)
    changes, apply_s = apply_changes(CHANGES, seed=i + 1)
    print(f"  applied {changes:,} changes to the source in {apply_s:.1f} s ({changes / apply_s:,.0f}/s)", flush=True)
    t, m = measure(sync, os.path.join(run_dir, "catchup.log"), stdout_to=os.path.join(run_dir, "catchup.json"))
    src, dst = source_stats(), delta_stats(path)
    if src != dst:
        raise RuntimeError(f"after catch-up the source has (count, sum v, sum id) {src}, Delta {dst}")
    print(f"  cdc catch-up run {i + 1}: {changes:,} changes in {t:.2f} s = {changes / t:,.0f} changes/s, "
          f"peak {mib(m)} MiB; source and Delta agree {src}", flush=True)
    return proj, path, first, (t, m, changes)


def cdc_bench(confluo, confluo_label, results):
    suffix = f" ({confluo_label})" if confluo_label != "release" else ""
    if confluo is None:
        print(f"skipping Confluo CDC: {confluo_label}", flush=True)
        results.append({"measurement": "cdc", "tool": "Confluo", "skipped": confluo_label})
        return
    from deltalake import DeltaTable
    init_t, tput, errors = [], [], []
    for i in range(RUNS):
        # The PostgreSQL cluster is shared: a run that another user's restart or
        # pg_terminate_backend breaks is recorded and done once more.
        for attempt in range(2):
            try:
                proj, path, first, second = cdc_run(confluo, i)
                break
            except RuntimeError as e:
                if attempt == 1:
                    raise
                errors.append(str(e).strip().splitlines()[-1][:300])
                print(f"  cdc run {i + 1} failed, retrying once: {errors[-1]}", flush=True)
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
                    "rows_per_s": round(CHANGES / med), "peak_rss_mib": mib(statistics.median(x[1] for x in tput))})
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
            raise RuntimeError(f"confluo sync cdc --continuous exited early ({p.returncode}), log {log}")
        rows = []
        changes, drive_s = drive(SECONDS, RATE, rows)
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


# ---------------------------------------------------------------------------------------------
# Output

def markdown(results):
    lines = ["| snapshot of bench_t (10 M rows, 7 columns) | seconds | rows/s | peak RSS |",
             "|---|---:|---:|---:|"]
    floor = next((r["seconds"] for r in results if r["measurement"] == "snapshot"
                  and "floor" in r["tool"] and "seconds" in r), None)
    for r in results:
        if r["measurement"] != "snapshot":
            continue
        if "skipped" in r:
            lines.append(f"| {r['tool']} | not run: {r['skipped']} | | |")
            continue
        vs = f" ({r['seconds'] / floor:.2f}x floor)" if floor and "floor" not in r["tool"] else ""
        lines.append(f"| {r['tool']} | {r['seconds']:.2f}{vs} | {r['rows_per_s'] / 1e6:.2f} M | "
                     f"{r['peak_rss_mib']:,} MiB |")
    cdc = [r for r in results if r["measurement"].startswith("cdc")]
    if cdc:
        lines += ["", "| CDC of cdc_t (1 M rows) into Delta | figure | peak RSS |", "|---|---|---:|"]
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
        lines.append("")
        lines.append("Debezium-style CDC peers need Kafka and Kafka Connect, which this machine does not have: "
                     "CDC is measured for Confluo alone.")
    return "\n".join(lines)


def key(r):
    return r["measurement"] + "/" + r["tool"].split(" (")[0]


def merged(results):
    """The new results plus those of an earlier postgres-results.json for measurements not run
    this time (TOOLS picks a subset), so peers and Confluo can be measured at different times.
    A skipped measurement does not replace a measured one."""
    try:
        with open(RESULTS) as f:
            old = json.load(f).get("results", [])
        if any(r.get("rows", ROWS) != ROWS for r in old if r["measurement"] == "snapshot"):
            old = []  # another table size: not comparable
    except (OSError, ValueError):
        old = []
    if any(r["measurement"].startswith("cdc") for r in results):
        old = [r for r in old if not r["measurement"].startswith("cdc")]  # CDC is measured as one unit
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
    if any(t in TOOLS for t in SNAPSHOT_LABELS):
        snapshot_bench(confluo, label, results)
    if "cdc" in TOOLS:
        try:
            cdc_bench(confluo, label, results)
        except RuntimeError as e:
            # Recorded, not raised: the snapshot figures of this run are still worth keeping.
            first = str(e).strip().splitlines()
            why = next((l for l in reversed(first) if l.startswith("error")), first[0] if first else "?")
            print(f"CDC benchmark failed: {e}", flush=True)
            results.append({"measurement": "cdc", "tool": "Confluo" + (f" ({label})" if label != "release" else ""),
                            "failed": why[:300]})
        finally:
            if confluo is not None and not KEEP:
                with connect() as conn:
                    drop_replication_state(conn)  # a slot left behind keeps WAL forever
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for r in results:
        r["date"] = date
        if r["tool"].startswith("Confluo") and confluo:
            r["confluo_bin"] = confluo
    results = merged(results)
    out = {"machine": info, "rows": ROWS, "cdc_rows": CDC_ROWS, "date": date,
           "notes": "Debezium-style CDC peers are not measured: they need Kafka, which this machine lacks.",
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
