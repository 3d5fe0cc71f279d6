#!/usr/bin/env bash
# A Python virtual environment with the independent Delta reader/writer (deltalake) and
# pyarrow, used by tests that cross-check Confluo's tables, and an SMTP server for
# notification tests. Prints the interpreter's path.
set -euo pipefail
venv="${CONFLUO_VENV:-$HOME/.cache/confluo-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c "import deltalake, pyarrow" >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "deltalake>=1.1,<2" "pyarrow>=18" >&2
fi
# A real SMTP server (aiosmtpd) that job notification tests send e-mail to.
if ! "$venv/bin/python" -c "import aiosmtpd" >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "aiosmtpd>=1.4,<2" >&2
fi
# psycopg (3, with its bundled libpq): the Python client the Postgres endpoint is tested with.
if ! "$venv/bin/python" -c "import psycopg" >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "psycopg[binary]>=3.2,<4" >&2
fi
# ADBC's Flight SQL driver (the Go driver, as a wheel): the Arrow-native client the Flight
# SQL endpoint is tested with.
if ! "$venv/bin/python" -c "import adbc_driver_flightsql.dbapi" >/dev/null 2>&1; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "adbc-driver-flightsql>=1.0,<2" "adbc-driver-manager>=1.0,<2" >&2
fi
echo "$venv/bin/python"
