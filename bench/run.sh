#!/usr/bin/env bash
# Benchmarks, side by side with peer tools. Usage: bench/run.sh ingest
# Creates bench/.venv with the peers from PyPI, generates the data once, builds Confluo (release).
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-ingest}"
if [ ! -x bench/.venv/bin/python ]; then
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install -q duckdb polars pyarrow deltalake
fi
cargo build --release -p confluo-cli
export CONFLUO_BIN="${CARGO_TARGET_DIR:-target}/release/confluo"
case "$which" in
  ingest)
    bench/.venv/bin/python bench/gen_orders.py bench/data
    bench/.venv/bin/python bench/ingest.py
    ;;
  *) echo "unknown benchmark: $which (try: ingest)" >&2; exit 2 ;;
esac
