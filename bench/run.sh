#!/usr/bin/env bash
# Benchmarks, side by side with peer tools. Usage: bench/run.sh ingest|pipelines|postgres|mysql|kafka|jobs|quality|serve|federation
# Creates bench/.venv with the peers from PyPI, generates the data once, builds Confluo (release).
# pipelines: Confluo's declarative pipelines against Apache Spark Declarative Pipelines
# (pyspark 4.3, needs Java 17 as `java`); SCALE (default 1) and RUNS (default 1) are passed on.
# postgres: snapshot and CDC from the local PostgreSQL (127.0.0.1:5432, wal_level=logical) against
# binary COPY (the floor) and ConnectorX; RUNS (default 1) is passed on. With CONFLUO_BIN set, that
# binary is measured and nothing is built.
# mysql: snapshot from the local MySQL/MariaDB (127.0.0.1:3306, root) against SELECT ... INTO OUTFILE
# and `mariadb --quick` (the floors) and ConnectorX, and binlog CDC (binlog_format=ROW; pymysql drives
# the changes); RUNS (default 3) and CONFLUO_BIN as for postgres.
# kafka: Kafka -> Delta throughput against the rskafka raw-consume floor and a Python
# confluent-kafka + deltalake loop, then produce-to-visible latency at 10,000 records/s, on a tansu
# broker of its own (scripts/setup-services.sh builds tansu).
# jobs: scheduler overhead of `confluo serve` against Dagster's daemon (PyPI dagster): trigger to
# task start, and a queue of no-op runs drained by two run slots (PostgreSQL metastore).
# serve: the Postgres endpoint (and Flight SQL / HTTP Arrow) of `confluo serve` against PostgreSQL itself (127.0.0.1:5432) serving
# the same 1 M rows: a full fetch with psycopg, and 32 sessions of point and aggregate queries for
# 60 s with one slow reader; CONFLUO_BIN as for postgres.
# federation: federated aggregates, a join and a top-10 through `confluo serve` over a foreign catalog
# of the local PostgreSQL, against the same SQL on PostgreSQL directly (and DuckDB's postgres
# extension when it installs); CONFLUO_BIN as for postgres.
# quality: `confluo monitor profile` of a 10 M-row table against DuckDB's SUMMARIZE and Soda Core
# (soda-core-duckdb) over the same Parquet files; CONFLUO_BIN as for postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-ingest}"
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q duckdb polars pyarrow deltalake
fi
if [ "$which" = pipelines ] && ! bench/.venv/bin/python -c "import pyspark, psutil" 2>/dev/null; then
  # Spark Declarative Pipelines ships in the pyspark wheel (spark-pipelines); the rest is what its
  # Spark Connect client imports. pandas < 3: pyspark 4.3 warns that it does not support 3.x yet.
  bench/.venv/bin/pip install -q 'pyspark[pipelines]==4.3.0' pyyaml grpcio grpcio-status \
    googleapis-common-protos 'pandas<3' pyarrow zstandard psutil deltalake
fi
if [ "$which" = postgres ] && ! bench/.venv/bin/python -c "import connectorx, psycopg, psutil, deltalake, pyarrow" 2>/dev/null; then
  bench/.venv/bin/pip install -q connectorx 'psycopg[binary]' pyarrow deltalake psutil polars
fi
if [ "$which" = mysql ] && ! bench/.venv/bin/python -c "import connectorx, psutil, deltalake, pyarrow, pymysql" 2>/dev/null; then
  bench/.venv/bin/pip install -q connectorx pyarrow deltalake psutil pymysql
fi
if [ "$which" = kafka ] && ! bench/.venv/bin/python -c "import confluent_kafka, psutil, deltalake, pyarrow" 2>/dev/null; then
  bench/.venv/bin/pip install -q confluent-kafka pyarrow deltalake psutil
fi
if [ "$which" = jobs ] && ! bench/.venv/bin/python -c "import dagster, psutil" 2>/dev/null; then
  bench/.venv/bin/pip install -q dagster psutil
fi
if [ "$which" = quality ] && ! bench/.venv/bin/python -c "import soda.scan, psutil, duckdb, pytz" 2>/dev/null; then
  bench/.venv/bin/pip install -q soda-core-duckdb psutil duckdb pytz
fi
if [ "$which" = serve ] && ! bench/.venv/bin/python -c "import psycopg, psutil, pyarrow, adbc_driver_postgresql, adbc_driver_flightsql" 2>/dev/null; then
  bench/.venv/bin/pip install -q 'psycopg[binary]' psutil pyarrow adbc-driver-postgresql adbc-driver-flightsql
fi
if [ "$which" = federation ] && ! bench/.venv/bin/python -c "import psycopg, duckdb, psutil" 2>/dev/null; then
  bench/.venv/bin/pip install -q 'psycopg[binary]' duckdb psutil
fi
if [ "$which" = kafka ]; then
  # Confluo and the rskafka helper (the floor and the producer) in one build: the same features.
  cargo build --release -p confluo-cli -p confluo-connectors --bin confluo --example kafka_bench
  export CONFLUO_BIN="${CARGO_TARGET_DIR:-target}/release/confluo"
  export KAFKA_BENCH="${CARGO_TARGET_DIR:-target}/release/examples/kafka_bench"
elif { [ "$which" != postgres ] && [ "$which" != mysql ] && [ "$which" != jobs ] && [ "$which" != quality ] && [ "$which" != serve ] && [ "$which" != federation ]; } || [ -z "${CONFLUO_BIN:-}" ]; then
  cargo build --release -p confluo-cli
  export CONFLUO_BIN="${CARGO_TARGET_DIR:-target}/release/confluo"
fi
case "$which" in
  ingest)
    bench/.venv/bin/python bench/gen_orders.py bench/data
    bench/.venv/bin/python bench/ingest.py
    ;;
  pipelines)
    bench/.venv/bin/python bench/pipelines.py
    ;;
  postgres)
    bench/.venv/bin/python bench/postgres.py
    ;;
  mysql)
    bench/.venv/bin/python bench/mysql.py
    ;;
  kafka)
    bench/.venv/bin/python bench/kafka.py
    ;;
  jobs)
    bench/.venv/bin/python bench/jobs.py
    ;;
  quality)
    bench/.venv/bin/python bench/quality.py
    ;;
  serve)
    bench/.venv/bin/python bench/serve.py
    ;;
  federation)
    bench/.venv/bin/python bench/federation.py
    ;;
  *) echo "unknown benchmark: $which (try: ingest, pipelines, postgres, mysql, kafka, jobs, quality, serve, federation)" >&2; exit 2 ;;
esac
