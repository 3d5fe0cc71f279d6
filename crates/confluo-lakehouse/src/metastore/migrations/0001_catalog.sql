-- Catalogs, schemas and tables. Portable SQL: the same file runs on SQLite and PostgreSQL.
-- Timestamps are milliseconds since the Unix epoch; properties are JSON objects as text.
CREATE TABLE catalogs (
    name        TEXT NOT NULL PRIMARY KEY,
    owner       TEXT,
    comment     TEXT,
    properties  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE schemas (
    catalog_name TEXT NOT NULL REFERENCES catalogs (name),
    name         TEXT NOT NULL,
    owner        TEXT,
    comment      TEXT,
    properties   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (catalog_name, name)
);

CREATE TABLE tables (
    id           TEXT NOT NULL UNIQUE,
    catalog_name TEXT NOT NULL,
    schema_name  TEXT NOT NULL,
    name         TEXT NOT NULL,
    location     TEXT NOT NULL,
    format       TEXT NOT NULL,
    managed      BIGINT NOT NULL,
    owner        TEXT,
    comment      TEXT,
    properties   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (catalog_name, schema_name, name),
    FOREIGN KEY (catalog_name, schema_name) REFERENCES schemas (catalog_name, name)
);

-- Which source files each table has ingested. The Delta log is the record of truth (each
-- ingest commit lists its files); this is an index of it, caught up from the log before use.
CREATE TABLE ingested_files (
    table_id      TEXT NOT NULL,
    path          TEXT NOT NULL,
    size          BIGINT NOT NULL,
    modified_ms   BIGINT NOT NULL,
    delta_version BIGINT NOT NULL,
    PRIMARY KEY (table_id, path)
);

CREATE TABLE ingest_index (
    table_id        TEXT NOT NULL PRIMARY KEY,
    indexed_version BIGINT NOT NULL
);
