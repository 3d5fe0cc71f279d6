-- Who may connect to `confluo serve`: users, groups and service principals, with their
-- secrets (never the password itself), and the audit trail of logins.
-- `password_hash` is an argon2id PHC string (HTTP logins, `confluo users` checks);
-- `scram_salt` / `scram_salted_password` (base64) answer SCRAM-SHA-256 on the Postgres
-- wire with `scram_iterations` rounds, derived from the same password when it was set.
CREATE TABLE principals (
    name                  TEXT PRIMARY KEY,
    kind                  TEXT NOT NULL,
    password_hash         TEXT,
    scram_salt            TEXT,
    scram_iterations      BIGINT,
    scram_salted_password TEXT,
    created_ms            BIGINT NOT NULL,
    created_by            TEXT
);

CREATE TABLE principal_groups (
    principal  TEXT NOT NULL,
    group_name TEXT NOT NULL,
    PRIMARY KEY (principal, group_name)
);

-- Every login attempt on every endpoint, kept for audit and read by the rate limit.
CREATE TABLE auth_events (
    at_ms     BIGINT NOT NULL,
    principal TEXT NOT NULL,
    client    TEXT NOT NULL,
    endpoint  TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    message   TEXT
);
CREATE INDEX auth_events_principal ON auth_events (principal, at_ms);
