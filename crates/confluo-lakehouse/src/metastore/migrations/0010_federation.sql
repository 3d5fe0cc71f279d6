-- Federation and views. A connection names an external database and how to log in (its
-- options are JSON; a password is only ever a reference such as secret('scope','key'),
-- never the value). A foreign catalog mirrors one database of a connection as
-- catalog.schema.table. A view is a stored query, planned again each time it is read, with
-- the catalog and schema that were current when it was made (so its unqualified names keep
-- their meaning). A secret is a value encrypted with the project's key (AES-256-GCM; the
-- nonce is stored beside it, the key never is); `secret('scope','key')` names one.
CREATE TABLE connections (
    name        TEXT NOT NULL PRIMARY KEY,
    kind        TEXT NOT NULL,
    options     TEXT NOT NULL,
    owner       TEXT,
    comment     TEXT,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE foreign_catalogs (
    name        TEXT NOT NULL PRIMARY KEY,
    connection  TEXT NOT NULL,
    options     TEXT NOT NULL,
    owner       TEXT,
    comment     TEXT,
    created_ms  BIGINT NOT NULL
);

CREATE TABLE views (
    catalog_name    TEXT NOT NULL,
    schema_name     TEXT NOT NULL,
    name            TEXT NOT NULL,
    sql_text        TEXT NOT NULL,
    default_catalog TEXT NOT NULL,
    default_schema  TEXT NOT NULL,
    owner           TEXT,
    comment         TEXT,
    created_ms      BIGINT NOT NULL,
    updated_ms      BIGINT NOT NULL,
    PRIMARY KEY (catalog_name, schema_name, name)
);

CREATE TABLE secrets (
    scope       TEXT NOT NULL,
    name        TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    ciphertext  TEXT NOT NULL,
    created_ms  BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    PRIMARY KEY (scope, name)
);
