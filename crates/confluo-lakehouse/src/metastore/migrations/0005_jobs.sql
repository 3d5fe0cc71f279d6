-- Job runs and their task attempts: what ran, when, how it ended, what it printed. Kept in
-- the metastore so every worker sharing it sees the same history.
CREATE TABLE job_runs (
    run_id          TEXT NOT NULL PRIMARY KEY,
    job             TEXT NOT NULL,
    run_trigger     TEXT NOT NULL,
    parameters_json TEXT NOT NULL,
    state           TEXT NOT NULL,
    message         TEXT,
    started_ms      BIGINT NOT NULL,
    ended_ms        BIGINT
);
CREATE INDEX job_runs_by_job ON job_runs (job, started_ms);

CREATE TABLE task_runs (
    run_id      TEXT NOT NULL,
    task        TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    state       TEXT NOT NULL,
    message     TEXT,
    exit_code   BIGINT,
    values_json TEXT,
    log         TEXT,
    started_ms  BIGINT NOT NULL,
    ended_ms    BIGINT,
    PRIMARY KEY (run_id, task, attempt)
);
