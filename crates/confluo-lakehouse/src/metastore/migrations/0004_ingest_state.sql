-- What a change-capture entry remembers between runs besides its position: the slot or
-- binlog marker it reads, and per table whether its initial copy finished and which
-- snapshot it was. Kept here (not in a file under the project) so every worker sharing
-- the metastore sees the same entry.
CREATE TABLE ingest_state (
    entry      TEXT NOT NULL PRIMARY KEY,
    state_json TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
