"""Rewrite Confluo's pipeline SQL (the Lakeflow dialect) into what open-source Spark Declarative
Pipelines (pyspark 4.3) accepts, mechanically, so the SQL compared is the same file.

Every rewrite is one difference between the two dialects:

1. `CREATE OR REFRESH STREAMING TABLE | MATERIALIZED VIEW` -> `CREATE ...`: SDP's parser has no
   `OR REFRESH` ("[PARSE_SYNTAX_ERROR] Syntax error at or near 'REFRESH'").
2. Expectations (`CONSTRAINT c EXPECT (cond) [ON VIOLATION DROP ROW]`) are not in SDP's grammar
   ("Syntax error at or near 'EXPECT'"). Those that drop rows become a filter
   (`SELECT * FROM (<query>) WHERE (cond) AND ...`); those that only count are removed, so SDP
   does less work than Confluo, which counts them. `FAIL UPDATE` / `QUARANTINE` are refused here.
3. A streaming table reading a temporary view whose query is streaming must say
   `STREAM(view)`: SDP refuses a plain `FROM view` with INCOMPATIBLE_STREAMING_VIEW_READ
   ("View `v` is a streaming view and must be referenced using SparkSession#readStream").
4. Comment lines (`-- ...`) are dropped (only so that statements split on `;` cleanly).

`STREAM read_files(...)` has no SQL equivalent in open-source Spark (UNRESOLVABLE_TABLE_VALUED_FUNCTION
for `read_files`; `STREAM csv.`path`` is refused as BATCH_RELATION_FOR_STREAMING_TABLE), so the
bronze file is not converted: bench/sdp/customer-360/transformations/01_bronze.py replaces it.

Usage: python to_sdp.py IN.sql > OUT.sql
"""
import re
import sys


def split_top(text, sep):
    """Split on `sep` outside quotes and parentheses."""
    out, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur))
    return out


def closing_paren(text, i):
    """Index of the parenthesis closing the one at text[i]."""
    depth, quote = 0, None
    for j in range(i, len(text)):
        ch = text[j]
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"`":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return j
    raise ValueError("unbalanced parentheses")


def _expectations_to_filter(stmt):
    m = re.match(r"(\s*CREATE\s+STREAMING\s+TABLE\s+[\w.`]+\s*)\(\s*CONSTRAINT\b", stmt, re.I)
    if not m:
        return stmt
    open_ = len(m.group(1))
    close = closing_paren(stmt, open_)
    drops = []
    for c in split_top(stmt[open_ + 1:close], ","):
        cm = re.match(r"\s*CONSTRAINT\s+\w+\s+EXPECT\s*\(", c, re.I)
        if not cm:
            raise ValueError(f"not an expectation: {c.strip()}")
        start = cm.end() - 1
        end = closing_paren(c, start)
        action = c[end + 1:]
        if re.search(r"ON\s+VIOLATION\s+DROP\s+ROW", action, re.I):
            drops.append(c[start:end + 1])
        elif re.search(r"ON\s+VIOLATION", action, re.I):
            raise ValueError(f"no SDP equivalent for: {c.strip()}")
    rest = stmt[close + 1:]
    am = re.search(r"\bAS\s+(SELECT|WITH)\b", rest, re.I)
    query = rest[am.start(1):].strip()
    if drops:
        query = f"SELECT * FROM (\n{query}\n) WHERE " + " AND ".join(drops)
    return stmt[:open_].rstrip() + "\n" + rest[:am.start()].strip() + "\nAS " + query


def to_sdp(sql):
    sql = "\n".join(l for l in sql.splitlines() if not l.lstrip().startswith("--"))
    sql = re.sub(r"\bCREATE\s+OR\s+REFRESH\s+", "CREATE ", sql, flags=re.I)
    streaming_views, out = set(), []
    for stmt in split_top(sql, ";"):
        v = re.match(r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?TEMPORARY\s+VIEW\s+(\w+)\b(.*)", stmt, re.I | re.S)
        if v and re.search(r"\bSTREAM\b", v.group(2), re.I):
            streaming_views.add(v.group(1).lower())
        if re.match(r"\s*CREATE\s+STREAMING\s+TABLE\b", stmt, re.I):
            stmt = re.sub(
                r"\bFROM\s+(\w+)\b",
                lambda m: f"FROM STREAM({m.group(1)})"
                if m.group(1).lower() in streaming_views else m.group(0),
                stmt, flags=re.I)
            stmt = _expectations_to_filter(stmt)
        out.append(stmt.strip())
    return ";\n\n".join(s for s in out if s) + ";\n"


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as f:
        sys.stdout.write(to_sdp(f.read()))
