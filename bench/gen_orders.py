"""Deterministic orders CSV for the ingest benchmark: N rows (~75 bytes each) as one file
and as 20 files. Generated with DuckDB's range() and hash functions, so every run and every
machine produces the same bytes."""
import os
import sys

import duckdb

ROWS = int(os.environ.get("ROWS", "10000000"))
OUT = sys.argv[1] if len(sys.argv) > 1 else "bench/data"

SELECT = """
SELECT
  i + 1                                              AS order_id,
  (hash(i) % 500000) + 1                             AS customer_id,
  strftime(TIMESTAMP '2024-01-01' + to_seconds((hash(i * 7) % 31536000)::BIGINT), '%Y-%m-%d %H:%M:%S') AS order_ts,
  ['placed','paid','shipped','delivered','returned'][((hash(i * 3) % 5) + 1)::BIGINT] AS status,
  'SKU-' || lpad(((hash(i * 5) % 20000))::VARCHAR, 5, '0') AS sku,
  (hash(i * 11) % 9) + 1                             AS quantity,
  round(((hash(i * 13) % 99900) + 100) / 100.0, 2)   AS unit_price,
  round(((hash(i * 11) % 9) + 1) * (((hash(i * 13) % 99900) + 100) / 100.0), 2) AS amount,
  ['US','DE','FR','GB','JP','BR','IN','CA','ES','IT'][((hash(i * 17) % 10) + 1)::BIGINT] AS country
FROM range({lo}, {hi}) t(i)
"""


def main() -> None:
    os.makedirs(f"{OUT}/one", exist_ok=True)
    os.makedirs(f"{OUT}/twenty", exist_ok=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = true")
    one = f"{OUT}/one/orders.csv"
    if not os.path.exists(one):
        con.execute(f"COPY ({SELECT.format(lo=0, hi=ROWS)} ORDER BY order_id) TO '{one}' (HEADER, DELIMITER ',')")
    step = ROWS // 20
    for k in range(20):
        f = f"{OUT}/twenty/orders_{k:02}.csv"
        if not os.path.exists(f):
            lo, hi = k * step, ROWS if k == 19 else (k + 1) * step
            con.execute(f"COPY ({SELECT.format(lo=lo, hi=hi)} ORDER BY order_id) TO '{f}' (HEADER, DELIMITER ',')")
    print(f"{one}: {os.path.getsize(one) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
