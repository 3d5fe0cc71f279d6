# Bronze for Spark Declarative Pipelines: the same four streaming tables as
# examples/customer-360/pipelines/01_bronze.sql. Open-source Spark has no `read_files`, and SDP's
# SQL cannot stream a file path (`STREAM csv.`path`` is refused as a batch relation), so the
# streaming file reads are written with spark.readStream and the same reader options. Columns are
# all strings for CSV (inferColumnTypes => false); JSON types are inferred, as read_files does.
# The data folder is the pipeline configuration value `data`, as `${data}` is in the SQL.
from pyspark import pipelines as dp

data = spark.conf.get("data")  # noqa: F821 - `spark` is injected by spark-pipelines


def files(pattern, fmt, **options):
    reader = spark.readStream.format(fmt)  # noqa: F821
    for key, value in options.items():
        reader = reader.option(key, value)
    return reader.load(f"{data}/{pattern}")


@dp.table(comment="CRM account exports, one row per exported version of an account")
def crm_accounts_raw():
    return files("crm/accounts_*.csv", "csv", header=True, inferSchema=False)


@dp.table(comment="CRM opportunity exports: a row when an opportunity opens and another when it closes")
def crm_opportunities_raw():
    return files("crm/opportunities_*.csv", "csv", header=True, inferSchema=False)


@dp.table(comment="Marketing platform events (JSON lines; the 2025 export switched to epoch seconds)")
def marketing_events_raw():
    return files("marketing/engagement_*.json", "json")


@dp.table(comment="Helpdesk ticket exports (semicolon-separated, European timestamps)")
def support_tickets_raw():
    return files("support/tickets_*.csv", "csv", header=True, sep=";", inferSchema=False)
