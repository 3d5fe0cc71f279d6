"""Kafka benchmarks: Kafka -> Delta throughput of ~200-byte JSON records, Confluo side by side with
the floor (rskafka, the client library Confluo uses, consuming every record and dropping it) and a
hand-written Python loop (confluent-kafka + deltalake); then Confluo's produce-to-visible latency
at a steady rate, and its peak RSS.

Usage: bench/run.sh kafka   (it builds Confluo and the rskafka helper, release)

Environment:
  MESSAGES    records in the throughput topic (default 1,000,000)
  PARTITIONS  partitions of each topic (default 4)
  RATE, SECONDS  the steady produce rate and duration of the latency run (default 10,000/s, 60 s)
  RUNS        repetitions of each throughput measurement; the median is quoted (default 1)
  CONFLUO_BIN, KAFKA_BENCH  the binaries (set by bench/run.sh)
  CONFLUO_TANSU  the tansu broker (default ~/.cache/confluo-tools/bin/tansu, built by
              scripts/setup-services.sh)
  KEEP        1 to keep bench/out/kafka
  PARTS       throughput,latency (default both)

The broker is a tansu of the benchmark's own on a free port, SQLite storage under bench/out/kafka
(the same broker the tests use). All three readers read the same topic from its start:
  floor    kafka_bench consume: one task per partition, fetch_records of 1 MiB, dropped.
  confluo  `confluo sync ev` (one-shot; type: kafka, format: json) into a Delta table: JSON parsed
           into typed columns plus _topic/_partition/_offset/_timestamp/_key/_headers.
  python   confluent-kafka Consumer (librdkafka) assigned every partition from the beginning,
           consume() in batches, json.loads each value, pyarrow Table.from_pylist of 100,000 rows
           plus topic/partition/offset, deltalake.write_deltalake(mode="append") per table.
Each is one process from spawn to exit: wall seconds, records/s, peak RSS of the process tree
(psutil, every 50 ms). The Delta tables' row counts are checked with the deltalake package.

Latency: `confluo sync ev --continuous` on a fresh topic while kafka_bench produces RATE records/s
for SECONDS s, each record carrying its produce time (µs); 5 s after the last, Confluo gets
SIGTERM. A record's latency is the time its Delta commit became visible (the mtime of the
_delta_log entry that added its file) minus its produce time. Peak RSS is over that whole run.

Results go to bench/kafka-results.json; a markdown table for BENCHMARKS.md is printed.
"""
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

import psutil

from benchlib import TreeRss, mib, pct
from benchlib import machine as benchlib_machine

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "out", "kafka")
RESULTS = os.path.join(HERE, "kafka-results.json")
PY = sys.executable

MESSAGES = int(os.environ.get("MESSAGES", "1000000"))
PARTITIONS = int(os.environ.get("PARTITIONS", "4"))
RATE = int(os.environ.get("RATE", "10000"))
SECONDS = int(os.environ.get("SECONDS", "60"))
RUNS = int(os.environ.get("RUNS", "1"))
KEEP = os.environ.get("KEEP") == "1"
PARTS = os.environ.get("PARTS", "throughput,latency").split(",")
CONFLUO = os.environ.get("CONFLUO_BIN")
KAFKA_BENCH = os.environ.get("KAFKA_BENCH")
TANSU = os.environ.get("CONFLUO_TANSU") or os.path.expanduser("~/.cache/confluo-tools/bin/tansu")


def measure(argv, log, cwd=None):
    """Run argv to completion; (seconds, peak tree RSS bytes, stdout). Raises with the log's tail
    if it fails."""
    out_path = log + ".out"
    with open(log, "wb") as err, open(out_path, "wb") as out:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err)
        rss = TreeRss(p.pid)
        _, status, usage = os.wait4(p.pid, 0)
        elapsed = time.perf_counter() - t0
        peak = rss.stop()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(log, encoding="utf-8", errors="replace") as f:
            tail = f.read()[-3000:]
        raise RuntimeError(f"{' '.join(argv)} failed (exit {code}), log {log}:\n{tail}")
    with open(out_path, encoding="utf-8", errors="replace") as f:
        return elapsed, max(peak, usage.ru_maxrss * 1024), f.read()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    """tansu on a free port with SQLite storage in WORK/broker."""

    def __init__(self):
        folder = os.path.join(WORK, "broker")
        os.makedirs(folder, exist_ok=True)
        self.port = free_port()
        self.addr = f"127.0.0.1:{self.port}"
        url = f"tcp://{self.addr}"
        self.log = open(os.path.join(WORK, "tansu.log"), "wb")
        self.proc = subprocess.Popen(
            [TANSU, "broker", "--storage-engine", "sqlite://tansu.db", "--listener-url", url,
             "--advertised-listener-url", url],
            cwd=folder, stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"tansu did not start; see {WORK}/tansu.log")
                time.sleep(0.1)

    def tool(self, *args):
        out = subprocess.run([KAFKA_BENCH, self.addr, *map(str, args)], check=True,
                             capture_output=True, text=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        self.log.close()


def project(folder, broker, topic):
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "confluo.yaml"), "w") as f:
        f.write(f"""name: bench
connections:
  bus: {{type: kafka, bootstrap_servers: "{broker.addr}"}}
ingest:
  ev: {{connection: bus, topics: {topic}, schema: bench, table: events}}
""")
    return folder


def delta_path(folder, table="events"):
    """The Delta table `table` under folder/lakehouse."""
    for dirpath, dirs, _ in os.walk(os.path.join(folder, "lakehouse")):
        if "_delta_log" in dirs:
            if os.path.basename(dirpath).startswith(table):
                return dirpath
            dirs[:] = []
    raise RuntimeError(f"no Delta table {table} under {folder}/lakehouse")


def delta_rows(path):
    from deltalake import DeltaTable
    return DeltaTable(path).to_pyarrow_dataset().count_rows()


PEER = r'''
import json, sys, time
import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition
from deltalake import write_deltalake

broker, topic, partitions, total, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
c = Consumer({"bootstrap.servers": broker, "group.id": "bench-peer", "enable.auto.commit": False,
              "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 1 << 20})
c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
rows, done = [], 0
def flush():
    global rows
    if rows:
        write_deltalake(out, pa.Table.from_pylist(rows), mode="append")
        rows = []
while done < total:
    for m in c.consume(num_messages=10000, timeout=1.0):
        if m.error():
            raise SystemExit(f"consume: {m.error()}")
        try:
            row = json.loads(m.value())
        except ValueError:
            row = {"_rescued_data": m.value().decode("utf-8", "replace")}
        row["_topic"], row["_partition"], row["_offset"] = m.topic(), m.partition(), m.offset()
        rows.append(row)
        done += 1
        if len(rows) >= 100000:
            flush()
flush()
c.close()
print(json.dumps({"messages": done}))
'''


def throughput(broker, results):
    topic = "tp"
    broker.tool("create", topic, PARTITIONS)
    produced = broker.tool("produce", topic, MESSAGES)
    results["produce"] = {"messages": MESSAGES, "seconds": produced["seconds"],
                          "per_s": round(MESSAGES / produced["seconds"])}
    print(f"produced {MESSAGES:,} records in {produced['seconds']:.1f} s", flush=True)
    peer_py = os.path.join(WORK, "peer.py")
    with open(peer_py, "w") as f:
        f.write(PEER)
    rows = []
    for tool in ("floor", "confluo", "python"):
        runs = []
        for i in range(RUNS):
            log = os.path.join(WORK, f"{tool}-{i}.log")
            if tool == "floor":
                secs, rss, out = measure([KAFKA_BENCH, broker.addr, "consume", topic], log)
                got = json.loads(out.strip().splitlines()[-1])["messages"]
            elif tool == "confluo":
                folder = project(os.path.join(WORK, f"confluo-{i}"), broker, topic)
                secs, rss, _ = measure([CONFLUO, "sync", "ev", "--quiet"], log, cwd=folder)
                got = delta_rows(delta_path(folder))
            else:
                target = os.path.join(WORK, f"python-{i}")
                shutil.rmtree(target, ignore_errors=True)
                secs, rss, _ = measure([PY, peer_py, broker.addr, topic, str(PARTITIONS),
                                        str(MESSAGES), target], log)
                got = delta_rows(target)
            if got != MESSAGES:
                raise RuntimeError(f"{tool} read {got:,} records, not {MESSAGES:,} (log {log})")
            runs.append((secs, rss))
            print(f"{tool} run {i + 1}: {secs:.2f} s, {MESSAGES / secs:,.0f} records/s, "
                  f"peak RSS {mib(rss)} MiB", flush=True)
        secs = statistics.median(r[0] for r in runs)
        rows.append({"tool": tool, "seconds": round(secs, 2), "records_per_s": round(MESSAGES / secs),
                     "peak_rss_mib": mib(max(r[1] for r in runs)), "runs": len(runs)})
    floor = rows[0]["records_per_s"]
    for r in rows:
        r["of_floor"] = round(r["records_per_s"] / floor, 2)
    results["throughput"] = rows


def latency(broker, results):
    topic = "lat"
    broker.tool("create", topic, PARTITIONS)
    folder = project(os.path.join(WORK, "latency"), broker, topic)
    log = open(os.path.join(WORK, "latency.log"), "wb")
    sync = subprocess.Popen([CONFLUO, "sync", "ev", "--continuous", "--quiet"], cwd=folder,
                            stdout=log, stderr=log)
    rss = TreeRss(sync.pid)
    time.sleep(3)
    produced = broker.tool("produce", topic, RATE * SECONDS, RATE)
    time.sleep(5)
    sync.send_signal(signal.SIGTERM)
    sync.wait(timeout=60)
    peak = rss.stop()
    log.close()
    import pyarrow.parquet as pq
    from deltalake import DeltaTable
    path = delta_path(folder)
    dt = DeltaTable(path)
    last = dt.version()
    files, lat = set(), []
    for ver in range(0, last + 1):
        dt.load_as_version(ver)
        now = set(dt.file_uris())
        added = now - files
        files = now
        entry = os.path.join(path, "_delta_log", f"{ver:020d}.json")
        visible = os.stat(entry).st_mtime
        with open(entry) as f:
            ops = [json.loads(l).get("commitInfo", {}).get("operation") for l in f]
        if "OPTIMIZE" in ops:
            continue  # auto-compaction rewrote rows that were already visible
        for uri in added:
            local = uri[len("file://"):] if uri.startswith("file://") else uri
            for ts in pq.read_table(local, columns=["ts"]).column("ts").to_pylist():
                lat.append(visible - ts / 1e6)
    n = RATE * SECONDS
    if len(lat) != n:
        raise RuntimeError(f"latency run: {len(lat):,} records in Delta, {n:,} produced")
    results["latency"] = {
        "rate_per_s": RATE, "seconds": SECONDS, "records": n,
        "achieved_rate_per_s": round(n / produced["seconds"]), "commits": last + 1,
        "p50_s": round(pct(lat, 50), 3), "p99_s": round(pct(lat, 99), 3), "max_s": round(max(lat), 3),
        "peak_rss_mib": mib(peak),
    }
    print(f"latency at {RATE:,}/s: p50 {pct(lat, 50):.3f} s, p99 {pct(lat, 99):.3f} s, "
          f"max {max(lat):.3f} s over {n:,} records, {last + 1} commits; peak RSS {mib(peak)} MiB",
          flush=True)


def machine():
    import confluent_kafka
    tansu = subprocess.run([TANSU, "--version"], capture_output=True, text=True).stdout.strip()
    return benchlib_machine(librdkafka=confluent_kafka.libversion()[0], tansu=tansu)


def markdown(results):
    lines = [f"Kafka -> Delta, {MESSAGES:,} JSON records of ~200 bytes over {PARTITIONS} partitions "
             f"(tansu broker, SQLite storage):", "",
             "| reader | seconds | records/s | × floor | peak RSS |", "|---|---:|---:|---:|---:|"]
    if "throughput" not in results:
        lines = []
    names = {"floor": "rskafka raw consume to /dev/null (floor)", "confluo": "Confluo `sync` → Delta",
             "python": "Python confluent-kafka + deltalake loop"}
    for r in results.get("throughput", []):
        lines.append(f"| {names[r['tool']]} | {r['seconds']} | {r['records_per_s']:,} | {r['of_floor']} | "
                     f"{r['peak_rss_mib']} MiB |")
    l = results.get("latency")
    if l:
        lines += ["", f"Produce → visible in Delta at {l['rate_per_s']:,} records/s for {l['seconds']} s "
                  f"(`sync --continuous`): p50 {l['p50_s']} s, p99 {l['p99_s']} s, max {l['max_s']} s, "
                  f"{l['commits']} commits, peak RSS {l['peak_rss_mib']} MiB."]
    return "\n".join(lines)


def main():
    for what, path in (("CONFLUO_BIN", CONFLUO), ("KAFKA_BENCH", KAFKA_BENCH), ("tansu", TANSU)):
        if not path or not os.access(path, os.X_OK):
            sys.exit(f"{what} is not an executable ({path}); run through bench/run.sh kafka")
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    results = {"machine": machine(), "messages": MESSAGES, "partitions": PARTITIONS}
    broker = Broker()
    try:
        if "throughput" in PARTS:
            throughput(broker, results)
        if "latency" in PARTS:
            latency(broker, results)
    finally:
        broker.stop()
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2)
    print()
    print(markdown(results))
    if not KEEP:
        shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
