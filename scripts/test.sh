#!/usr/bin/env bash
# Runs every test: prepares services and the Python cross-check environment first.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-services.sh
CONFLUO_PYTHON="$(scripts/setup-python.sh)"
export CONFLUO_PYTHON
if command -v cargo-nextest >/dev/null 2>&1; then
  # No separate doc-test pass: it re-resolved features and rebuilt DataFusion, doubling CI time.
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
