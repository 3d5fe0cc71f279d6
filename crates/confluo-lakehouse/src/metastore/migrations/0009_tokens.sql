-- Personal access tokens: bearer secrets for the HTTP API. Only a SHA-256 digest of the
-- token's secret part is kept (tokens are long and random, so a fast digest is enough and
-- every request can check one); `token_id` is the public part a token starts with, so a
-- lookup is one row. A token dies at `expires_ms` or when revoked.
CREATE TABLE access_tokens (
    token_id     TEXT PRIMARY KEY,
    principal    TEXT NOT NULL,
    comment      TEXT,
    secret_sha256 TEXT NOT NULL,
    created_ms   BIGINT NOT NULL,
    expires_ms   BIGINT,
    last_used_ms BIGINT,
    revoked_ms   BIGINT
);
CREATE INDEX access_tokens_principal ON access_tokens (principal);
