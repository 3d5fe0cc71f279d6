-- Where each ingest entry stands in its source: the typed offset (JSON) of the last batch
-- committed and acknowledged. The Delta log of the target table is the truth (its
-- application transactions); this is its index, readable by every worker sharing the
-- metastore.
CREATE TABLE source_offsets (
    app_id     TEXT NOT NULL PRIMARY KEY,
    entry      TEXT NOT NULL,
    table_name TEXT NOT NULL,
    offset_json TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
