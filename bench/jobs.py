"""Scheduler overhead: `confluo serve` against Dagster's daemon on the same machine, in one run.

1. Trigger to task start: a schedule fires a no-op task; the time from the tick (the run's
   logical time) to the task's start, p50 and p99. Confluo ticks every second (with its
   default 1 s poll); Dagster's finest schedule is one minute, so it gets fewer samples.
2. Queue drain: N no-op runs are queued while no worker runs, then two run slots drain
   them (Confluo: two `confluo serve` workers on a PostgreSQL metastore with
   max_concurrent_runs 2; Dagster: its daemon with the QueuedRunCoordinator at
   max_concurrent_runs 2); runs per second from the workers' start to the last run's end.

Env: CONFLUO_BIN (the binary to measure), CONFLUO_RUNS (default 1000), DAGSTER_RUNS
(default 40), TICK_SECONDS (Confluo's sampling window, default 40), DAGSTER_MINUTES
(default 4). Writes bench/jobs-results.json.
"""
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid

from benchlib import machine, pct

CONFLUO = os.environ["CONFLUO_BIN"]
BIN = os.path.dirname(sys.executable)
PG = "postgres://postgres@127.0.0.1:5432"


def confluo(project, *args):
    out = subprocess.run([CONFLUO, "--project", project, "--quiet", *args],
                         check=True, capture_output=True, text=True)
    return out.stdout


def psql(db, sql):
    out = subprocess.run(["psql", f"{PG}/{db}", "-Atqc", sql], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def confluo_latency(seconds):
    d = tempfile.mkdtemp(prefix="confluo-bench-")
    with open(f"{d}/confluo.yaml", "w") as f:
        f.write("name: bench\njobs:\n  tick:\n    schedule: {cron: '* * * * * *', missed: none}\n"
                "    max_concurrent_runs: 4\n    tasks: [{key: noop, shell: 'true'}]\n")
    p = subprocess.Popen([CONFLUO, "--project", d, "--quiet", "serve", "--postgres", "off", "--http", "off"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(seconds)
    p.terminate()
    p.wait()
    rows = json.loads(confluo(d, "query", "--format", "json",
                              "SELECT CAST(t.start_time AS BIGINT) - CAST(r.logical_time AS BIGINT) AS ms "
                              "FROM system.jobs.runs r JOIN system.jobs.task_runs t USING (run_id)"))
    lat = [r["ms"] / 1000 for r in rows]
    return {"samples": len(lat), "p50_s": round(pct(lat, 50), 3), "p99_s": round(pct(lat, 99), 3)}


def confluo_drain(n):
    db = "confluo_bench_" + uuid.uuid4().hex[:12]
    psql("postgres", f"CREATE DATABASE {db}")
    d = tempfile.mkdtemp(prefix="confluo-bench-")
    try:
        with open(f"{d}/confluo.yaml", "w") as f:
            f.write(f"name: bench\nmetastore: {{url: '{PG}/{db}'}}\njobs:\n  noop:\n"
                    "    max_concurrent_runs: 2\n    tasks: [{key: noop, shell: 'true'}]\n")
        confluo(d, "jobs", "list")  # creates the metastore's tables
        psql(db, "INSERT INTO job_runs (run_id, job, run_trigger, parameters_json, state, "
                 "started_ms, heartbeat_ms) SELECT md5(i::text), 'noop', 'bench', '{}', 'queued', "
                 f"(extract(epoch from now()) * 1000)::bigint + i, 0 FROM generate_series(1, {n}) i")
        start = time.time()
        workers = [subprocess.Popen([CONFLUO, "--project", d, "--quiet", "serve", "--postgres", "off", "--http", "off"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for _ in range(2)]
        while int(psql(db, "SELECT count(*) FROM job_runs WHERE state = 'succeeded'")) < n:
            time.sleep(0.2)
        took = time.time() - start
        for w in workers:
            w.terminate()
            w.wait()
        return {"runs": n, "seconds": round(took, 2), "runs_per_s": round(n / took, 1)}
    finally:
        psql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


DEFS = """
from dagster import DefaultScheduleStatus, Definitions, ScheduleDefinition, job, op

@op
def noop():
    pass

@job
def noop_job():
    noop()

defs = Definitions(jobs=[noop_job], schedules=[ScheduleDefinition(
    job=noop_job, cron_schedule="* * * * *", default_status=DefaultScheduleStatus.{status})])
"""


def dagster_home(schedule_on):
    home = tempfile.mkdtemp(prefix="dagster-bench-")
    with open(f"{home}/dagster.yaml", "w") as f:
        f.write("run_coordinator:\n  module: dagster.core.run_coordinator\n  class: QueuedRunCoordinator\n"
                "  config: {max_concurrent_runs: 2}\ntelemetry: {enabled: false}\n")
    with open(f"{home}/defs.py", "w") as f:
        f.write(DEFS.replace("{status}", "RUNNING" if schedule_on else "STOPPED"))
    with open(f"{home}/workspace.yaml", "w") as f:
        f.write(f"load_from:\n  - python_file: {home}/defs.py\n")
    env = dict(os.environ, DAGSTER_HOME=home)
    return home, env


def dagster_records(env):
    """(scheduled time or None, run start, first step start, end) per run, epoch seconds."""
    script = """
import json
from dagster import DagsterEventType, DagsterInstance
inst = DagsterInstance.get()
out = []
for rec in inst.get_run_records():
    steps = inst.all_logs(rec.dagster_run.run_id, of_type=DagsterEventType.STEP_START)
    tags = rec.dagster_run.tags
    out.append({"tick": tags.get(".dagster/scheduled_execution_time") or tags.get("dagster/scheduled_execution_time"),
                "status": rec.dagster_run.status.value, "start": rec.start_time, "end": rec.end_time,
                "step": min((e.timestamp for e in steps), default=None)})
print(json.dumps(out))
"""
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def dagster_daemon(home, env):
    return subprocess.Popen([f"{BIN}/dagster-daemon", "run", "-w", f"{home}/workspace.yaml"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dagster_latency(minutes):
    home, env = dagster_home(True)
    p = dagster_daemon(home, env)
    time.sleep(minutes * 60 + 30)
    p.terminate()
    p.wait()
    lat = []
    for r in dagster_records(env):
        if r["tick"] and r["step"]:
            tick = dt.datetime.fromisoformat(r["tick"]).timestamp()
            lat.append(r["step"] - tick)
    return {"samples": len(lat), "p50_s": round(pct(lat, 50), 3) if lat else None,
            "p99_s": round(pct(lat, 99), 3) if lat else None}


def dagster_drain(n):
    home, env = dagster_home(False)
    for _ in range(n):
        subprocess.run([f"{BIN}/dagster", "job", "launch", "-w", f"{home}/workspace.yaml", "-j", "noop_job"],
                       env=env, check=True, capture_output=True)
    start = time.time()
    p = dagster_daemon(home, env)
    while True:
        done = [r for r in dagster_records(env) if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
        if len(done) >= n:
            break
        time.sleep(2)
    took = max(r["end"] for r in done) - start
    p.terminate()
    p.wait()
    failed = sum(r["status"] != "SUCCESS" for r in done)
    return {"runs": n, "failed": failed, "seconds": round(took, 2), "runs_per_s": round(n / took, 2)}


def main():
    import dagster
    results = {"machine": machine(dagster=dagster.__version__,
                                  confluo=subprocess.run([CONFLUO, "--version"], capture_output=True,
                                                         text=True).stdout.strip(),
                                  confluo_bin=CONFLUO)}
    def step(key, label, measure, arg):
        print(f"{label} ...", flush=True)
        results[key] = measure(arg)
        print(results[key], flush=True)

    tick_s = int(os.environ.get("TICK_SECONDS", "40"))
    step("confluo_latency", "confluo: trigger -> task start", confluo_latency, tick_s)
    n = int(os.environ.get("CONFLUO_RUNS", "1000"))
    step("confluo_drain", f"confluo: {n} queued runs through 2 workers", confluo_drain, n)
    minutes = int(os.environ.get("DAGSTER_MINUTES", "4"))
    step("dagster_latency", f"dagster: trigger -> step start over {minutes} minutes",
         dagster_latency, minutes)
    dn = int(os.environ.get("DAGSTER_RUNS", "40"))
    step("dagster_drain", f"dagster: {dn} queued runs through 2 run slots", dagster_drain, dn)
    with open("bench/jobs-results.json", "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
