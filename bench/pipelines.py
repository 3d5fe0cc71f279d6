"""Declarative pipelines benchmark: Confluo side by side with Apache Spark Declarative Pipelines.

Usage: bench/run.sh pipelines   (or, with bench/.venv and a Confluo binary in place:
       CONFLUO_BIN=... SCALE=1 RUNS=1 bench/.venv/bin/python bench/pipelines.py)

Environment:
  SCALE        size of the customer-360 data (`confluo demo --scale`; 1 is about 0.5 M raw rows)
  RUNS         repetitions of every measurement; the median is quoted (default 1)
  TOOLS        comma list of tools to run: confluo,sdp (default both)
  CONFLUO_BIN  the Confluo binary (default target/release/confluo)
  SDP_MASTER   Spark master for spark-pipelines --remote (default local[2])
  KEEP         1 to keep the working folders under bench/out/pipelines

Both tools get fresh copies (hard links) of the same generated files. Measured, per tool:
  cold         first run on an empty lakehouse, all 8 quarters (32 files)
  dry          `confluo validate` / `spark-pipelines dry-run` on that populated project
  incremental  a run after one new file (support/tickets_2025q4.csv, held back from a first run)
  noop         a run right after that, with nothing new
  p20 noop     a run with nothing new of a synthetic 20-dataset pipeline (4 streaming tables
               over small CSV files, 16 chained materialized views), after a first run
Each figure is one process (tree) from spawn to exit: wall seconds, and peak RSS of the whole
process tree (psutil, summed over the process and all its descendants, sampled every 50 ms; for
spark-pipelines that is the launcher JVM, the Python client and the Spark Connect driver JVM),
or the top process's own ru_maxrss from wait4 if that is larger.
After the cold runs the row counts of every table are compared between the two tools.
Results go to bench/pipelines-results.json.
"""
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "customer-360")
SDP_SRC = os.path.join(HERE, "sdp")
WORK = os.path.join(HERE, "out", "pipelines")
RESULTS = os.path.join(HERE, "pipelines-results.json")

SCALE = os.environ.get("SCALE", "1")
RUNS = int(os.environ.get("RUNS", "1"))
TOOLS = [t for t in os.environ.get("TOOLS", "confluo,sdp").split(",") if t]
CONFLUO = os.path.abspath(os.environ.get("CONFLUO_BIN", os.path.join(ROOT, "target", "release", "confluo")))
SDP_MASTER = os.environ.get("SDP_MASTER", "local[2]")
VENV_BIN = os.path.dirname(sys.executable)
HELD_BACK = os.path.join("support", "tickets_2025q4.csv")

sys.path.insert(0, SDP_SRC)
from to_sdp import to_sdp  # noqa: E402


# ---------------------------------------------------------------------------------------------
# Measuring

def measure(argv, log, cwd=None, env=None, ok=None):
    """Run argv to completion; return (seconds, peak tree RSS bytes). Output goes to `log`.
    Raises with the log's tail if the exit code is not 0 or `ok(output)` is false."""
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        top = psutil.Process(p.pid)
        peak, status, usage = 0, None, None
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                break
            total = 0
            try:
                procs = [top] + top.children(recursive=True)
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, total)
            time.sleep(0.05)
        elapsed = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    with open(log, encoding="utf-8", errors="replace") as f:
        text = f.read()
    if p.returncode != 0 or (ok is not None and not ok(text)):
        tail = "\n".join(l for l in text.splitlines() if not l.startswith("\tat "))[-3000:]
        raise RuntimeError(f"{' '.join(argv)} failed (exit {p.returncode}), log {log}:\n{tail}")
    return elapsed, max(peak, usage.ru_maxrss * 1024)


def link_tree(src, dst, skip=()):
    """Copy a folder of files as hard links (the tools only read them)."""
    for dirpath, _, files in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        os.makedirs(os.path.join(dst, rel), exist_ok=True)
        for f in files:
            r = os.path.normpath(os.path.join(rel, f))
            if r in skip:
                continue
            os.link(os.path.join(dirpath, f), os.path.join(dst, r))


# ---------------------------------------------------------------------------------------------
# The data

def generate(scale):
    """The customer-360 raw files for 8 quarters at `scale`, generated once and reused."""
    gen = os.path.join(WORK, f"data-scale{scale}")
    if not os.path.exists(os.path.join(gen, "data", "generator.json")):
        shutil.rmtree(gen, ignore_errors=True)
        print(f"generating customer-360 data at scale {scale} ...", flush=True)
        subprocess.run([CONFLUO, "demo", "--dir", gen, "--scale", str(scale), "--quarters", "8",
                        "--generate-only"], check=True)
    return os.path.join(gen, "data")  # its generator.json is left out of the copies


P20_SOURCES = 4
P20_VIEWS = 16


def p20_data():
    """Small CSV files for the 20-dataset pipeline: 4 sources x 2 files x 1000 rows."""
    d = os.path.join(WORK, "data-p20")
    if not os.path.exists(d):
        for s in range(1, P20_SOURCES + 1):
            os.makedirs(os.path.join(d, f"s{s}"))
            for f in range(2):
                with open(os.path.join(d, f"s{s}", f"part{f}.csv"), "w") as out:
                    out.write("k,v,name\n")
                    for i in range(1000):
                        out.write(f"{(i * 7 + s) % 100},{i + f * 1000},n{s}_{i}\n")
    return d


def p20_views_sql():
    lines = []
    for i in range(1, P20_SOURCES + 1):
        lines.append(f"CREATE OR REFRESH MATERIALIZED VIEW mv_{i} AS\n"
                     f"SELECT k, count(*) AS n, sum(TRY_CAST(v AS BIGINT)) AS s FROM src_{i} GROUP BY k;\n")
    for i in range(P20_SOURCES + 1, P20_VIEWS + 1):
        a, b = i - 4, i - 3
        lines.append(f"CREATE OR REFRESH MATERIALIZED VIEW mv_{i} AS\n"
                     f"SELECT a.k, a.n + b.n AS n, a.s + b.s AS s FROM mv_{a} a JOIN mv_{b} b ON a.k = b.k;\n")
    return "\n".join(lines)


def p20_sources_sql():
    return "\n".join(
        f"CREATE OR REFRESH STREAMING TABLE src_{i} AS SELECT * FROM STREAM read_files(\n"
        f"  '${{data}}/s{i}/*.csv', format => 'csv', header => true, inferColumnTypes => false);\n"
        for i in range(1, P20_SOURCES + 1))


def p20_sources_py():
    return (
        "from pyspark import pipelines as dp\n\n"
        "data = spark.conf.get('data')  # noqa: F821\n\n\n"
        "def source(i):\n"
        "    @dp.table(name=f'src_{i}')\n"
        "    def src():\n"
        "        return (spark.readStream.format('csv').option('header', True)  # noqa: F821\n"
        "                .option('inferSchema', False).load(f'{data}/s{i}/*.csv'))\n\n\n"
        f"for i in range(1, {P20_SOURCES + 1}):\n"
        "    source(i)\n")


# ---------------------------------------------------------------------------------------------
# The tools

class Confluo:
    name = "confluo"

    def project(self, dst, data, skip=(), p20=False):
        """A Confluo project at dst with the given data (hard-linked) and an empty lakehouse."""
        os.makedirs(dst)
        link_tree(data, os.path.join(dst, "data"), skip=set(skip) | {"generator.json"})
        if p20:
            with open(os.path.join(dst, "confluo.yaml"), "w") as f:
                f.write("name: p20\nstorage:\n  root: ./lakehouse\ncatalog: main\nschema: p20\n"
                        "pipelines:\n  p20:\n    libraries:\n      - pipelines/**/*.sql\n"
                        "    configuration:\n      data: data\n")
            os.makedirs(os.path.join(dst, "pipelines"))
            with open(os.path.join(dst, "pipelines", "01_sources.sql"), "w") as f:
                f.write(p20_sources_sql())
            with open(os.path.join(dst, "pipelines", "02_views.sql"), "w") as f:
                f.write(p20_views_sql())
        else:
            shutil.copy(os.path.join(EXAMPLE, "confluo.yaml"), dst)
            shutil.copytree(os.path.join(EXAMPLE, "pipelines"), os.path.join(dst, "pipelines"))
        return dst

    def run(self, proj, log):
        return measure([CONFLUO, "--project", proj, "run"], log)

    def dry(self, proj, log):
        return measure([CONFLUO, "--project", proj, "validate"], log)

    def counts(self, proj):
        from deltalake import DeltaTable
        base = os.path.join(proj, "lakehouse", "main", "customer_360")
        out = {}
        for t in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            try:
                out[t] = DeltaTable(os.path.join(base, t)).to_pyarrow_dataset().count_rows()
            except Exception as e:  # noqa: BLE001 - report, do not stop
                out[t] = f"error: {e}"
        return out

    def table(self, proj, name):
        from deltalake import DeltaTable
        return DeltaTable(os.path.join(proj, "lakehouse", "main", "customer_360", name)).to_pyarrow_table()

    def version(self):
        r = subprocess.run([CONFLUO, "--version"], capture_output=True, text=True)
        return (r.stdout or r.stderr).strip()


class Sdp:
    name = "sdp"

    def project(self, dst, data, skip=(), p20=False):
        """An SDP project at dst/sdp with the data (hard-linked) at dst/data."""
        os.makedirs(dst)
        link_tree(data, os.path.join(dst, "data"), skip=set(skip) | {"generator.json"})
        root = os.path.join(dst, "sdp")
        trans = os.path.join(root, "transformations")
        os.makedirs(trans)
        if p20:
            spec = open(os.path.join(SDP_SRC, "customer-360", "spark-pipeline.yml")).read()
            spec = spec.replace("name: customer_360", "name: p20")
            with open(os.path.join(trans, "01_sources.py"), "w") as f:
                f.write(p20_sources_py())
            with open(os.path.join(trans, "02_views.sql"), "w") as f:
                f.write(to_sdp(p20_views_sql()))
        else:
            spec = open(os.path.join(SDP_SRC, "customer-360", "spark-pipeline.yml")).read()
            shutil.copy(os.path.join(SDP_SRC, "customer-360", "transformations", "01_bronze.py"), trans)
            for f in ("02_silver.sql", "03_gold.sql"):
                with open(os.path.join(EXAMPLE, "pipelines", f), encoding="utf-8") as src:
                    with open(os.path.join(trans, f), "w", encoding="utf-8") as out:
                        out.write(to_sdp(src.read()))
        with open(os.path.join(root, "spark-pipeline.yml"), "w") as f:
            f.write(spec.replace("{root}", root).replace("{data}", os.path.join(dst, "data")))
        os.makedirs(os.path.join(root, "conf"))
        conf = open(os.path.join(SDP_SRC, "spark-defaults.conf")).read()
        with open(os.path.join(root, "conf", "spark-defaults.conf"), "w") as f:
            f.write(conf.replace("{root}", root))
        return root

    def _env(self, root):
        env = dict(os.environ)
        env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
        env["PYSPARK_PYTHON"] = sys.executable
        env["SPARK_LOCAL_IP"] = "127.0.0.1"
        env["SPARK_CONF_DIR"] = os.path.join(root, "conf")
        env.pop("SPARK_HOME", None)
        return env

    def _cmd(self, root, command, log):
        argv = [os.path.join(VENV_BIN, "spark-pipelines"), command,
                "--spec", os.path.join(root, "spark-pipeline.yml"), "--remote", SDP_MASTER]
        return measure(argv, log, cwd=root, env=self._env(root),
                       ok=lambda out: "Run is COMPLETED." in out)

    def run(self, root, log):
        return self._cmd(root, "run", log)

    def dry(self, root, log):
        return self._cmd(root, "dry-run", log)

    def counts(self, root):
        import pyarrow.dataset as ds
        wh = os.path.join(root, "warehouse")
        out = {}
        for t in sorted(os.listdir(wh)) if os.path.isdir(wh) else []:
            try:
                out[t] = ds.dataset(os.path.join(wh, t), format="parquet").count_rows()
            except Exception as e:  # noqa: BLE001
                out[t] = f"error: {e}"
        return out

    def table(self, root, name):
        import pyarrow.dataset as ds
        return ds.dataset(os.path.join(root, "warehouse", name), format="parquet").to_table()

    def version(self):
        import pyspark
        return f"pyspark {pyspark.__version__}"


# ---------------------------------------------------------------------------------------------

def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    return path


def rec(results, tool, scenario, secs, rss, load):
    r = results.setdefault(tool, {}).setdefault(scenario, {"seconds": [], "peak_rss_mib": [], "load1": []})
    r["seconds"].append(round(secs, 3))
    r["peak_rss_mib"].append(round(rss / 2**20, 1))
    r["load1"].append(round(load, 2))
    print(f"  {tool:8} {scenario:12} {secs:8.2f} s {rss / 2**20:9.1f} MiB   (load {load:.2f})", flush=True)


def gold_summary(tool, proj):
    """A few comparable figures from the gold tables, beyond row counts."""
    out = {}
    try:
        t = tool.table(proj, "renewals_by_support_load").to_pylist()
        out["renewals_by_support_load"] = sorted(
            (r["tickets_in_prior_year"], int(r["renewals"]), int(r["renewed"])) for r in t)
        c = tool.table(proj, "customer_360").to_pydict()
        out["customer_360_sums"] = {
            k: float(sum(v for v in c[k] if v is not None))
            for k in ("opportunities", "won_revenue", "campaign_responses", "tickets")}
        ci = tool.table(proj, "campaign_influence").to_pydict()
        out["campaign_influence_sums"] = {
            k: float(sum(v for v in ci[k] if v is not None))
            for k in ("engaged_customers", "influenced_opportunities", "influenced_revenue_won")}
    except Exception as e:  # noqa: BLE001
        out["error"] = str(e)
    return out


def main():
    os.makedirs(WORK, exist_ok=True)
    tools = [t for t in (Confluo(), Sdp()) if t.name in TOOLS]
    if any(t.name == "confluo" for t in tools) or not os.path.exists(
            os.path.join(WORK, f"data-scale{SCALE}", "data", "generator.json")):
        if not os.access(CONFLUO, os.X_OK):
            sys.exit(f"no Confluo binary at {CONFLUO} (set CONFLUO_BIN); it also generates the data")
    data = generate(SCALE)
    p20 = p20_data()
    logs = os.path.join(WORK, "logs")
    os.makedirs(logs, exist_ok=True)
    results, check = {}, {}
    for run in range(RUNS):
        for tool in tools:
            n = tool.name
            base = fresh(os.path.join(WORK, f"{n}-scale{SCALE}"))
            # (a) cold run, then (b) the dry run on the populated project.
            proj = tool.project(os.path.join(base, "full"), data)
            s, m = tool.run(proj, os.path.join(logs, f"{n}-cold-{run}.log"))
            rec(results, n, "cold", s, m, os.getloadavg()[0])
            if run == 0:
                check[n] = {"counts": tool.counts(proj), "gold": gold_summary(tool, proj)}
            s, m = tool.dry(proj, os.path.join(logs, f"{n}-dry-{run}.log"))
            rec(results, n, "dry", s, m, os.getloadavg()[0])
            # (c) one new file after a run without it, then (d) a run with nothing new.
            proj = tool.project(os.path.join(base, "incr"), data, skip=[HELD_BACK])
            s, m = tool.run(proj, os.path.join(logs, f"{n}-incr-setup-{run}.log"))
            rec(results, n, "cold-31files", s, m, os.getloadavg()[0])
            held = os.path.join(base, "incr", "data", HELD_BACK)
            os.link(os.path.join(data, HELD_BACK), held)
            s, m = tool.run(proj, os.path.join(logs, f"{n}-incremental-{run}.log"))
            rec(results, n, "incremental", s, m, os.getloadavg()[0])
            s, m = tool.run(proj, os.path.join(logs, f"{n}-noop-{run}.log"))
            rec(results, n, "noop", s, m, os.getloadavg()[0])
            if run == 0:
                # After the held-back file came in, every table must be as after one cold run.
                counts = tool.counts(proj)
                check[n]["incremental_vs_cold"] = {
                    t: {"cold": check[n]["counts"].get(t), "incremental": counts.get(t)}
                    for t in sorted(set(counts) | set(check[n]["counts"]))
                    if counts.get(t) != check[n]["counts"].get(t)}
            # (e) the 20-dataset pipeline: first run, then a run with nothing new.
            proj = tool.project(os.path.join(base, "p20"), p20, p20=True)
            s, m = tool.run(proj, os.path.join(logs, f"{n}-p20-cold-{run}.log"))
            rec(results, n, "p20-cold", s, m, os.getloadavg()[0])
            s, m = tool.run(proj, os.path.join(logs, f"{n}-p20-noop-{run}.log"))
            rec(results, n, "p20-noop", s, m, os.getloadavg()[0])
            if os.environ.get("KEEP") != "1":
                shutil.rmtree(base, ignore_errors=True)

    for tool in results.values():
        for r in tool.values():
            r["median_seconds"] = round(statistics.median(r["seconds"]), 3)
            r["median_peak_rss_mib"] = round(statistics.median(r["peak_rss_mib"]), 1)
    diffs = {}
    if len(check) == 2:
        a, b = check["confluo"]["counts"], check["sdp"]["counts"]
        for t in sorted(set(a) | set(b)):
            if a.get(t) != b.get(t):
                diffs[t] = {"confluo": a.get(t), "sdp": b.get(t)}
    with open(os.path.join(data, "generator.json")) as f:
        truth = json.load(f)
    out = {
        "scale": SCALE,
        "runs": RUNS,
        "raw_rows": truth.get("raw_rows"),
        "raw_bytes": truth.get("raw_bytes"),
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "loadavg_at_end": os.getloadavg(), "python": platform.python_version()},
        "versions": {t.name: t.version() for t in tools},
        "sdp_master": SDP_MASTER,
        "results": results,
        "crosscheck": {"tables": check, "count_differences": diffs},
    }
    previous = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            previous = json.load(f)
    previous[f"scale{SCALE}"] = out
    with open(RESULTS, "w") as f:
        json.dump(previous, f, indent=2, sort_keys=True)
        f.write("\n")

    print(f"\nscale {SCALE} ({truth.get('raw_rows')} raw rows), median of {RUNS} run(s)")
    print(f"{'scenario':14}" + "".join(f"{t.name + ' s':>12}{t.name + ' MiB':>14}" for t in tools))
    scenarios = ["cold", "dry", "cold-31files", "incremental", "noop", "p20-cold", "p20-noop"]
    for sc in scenarios:
        row = f"{sc:14}"
        for t in tools:
            r = results.get(t.name, {}).get(sc)
            row += f"{r['median_seconds']:12.2f}{r['median_peak_rss_mib']:14.1f}" if r else " " * 26
        print(row)
    if diffs:
        print("\nrow counts that differ after the cold run:")
        for t, d in diffs.items():
            print(f"  {t:28} confluo {d['confluo']!s:>10}   sdp {d['sdp']!s:>10}")
    elif len(check) == 2:
        print("\nrow counts of every table agree after the cold run")
    for n, c in check.items():
        if c.get("incremental_vs_cold"):
            print(f"\n{n}: tables that differ between cold and (31 files + 1 new file + no-op):")
            for t, d in c["incremental_vs_cold"].items():
                print(f"  {t:28} cold {d['cold']!s:>10}   incremental {d['incremental']!s:>10}")


if __name__ == "__main__":
    main()
