-- Job runs and their task attempts: what ran, when, how it ended, what it printed; and
-- where each schedule stands. Kept in the metastore so every worker sharing it sees the
-- same history, and a trigger fires once: its run's key is unique, and the run is
-- recorded in the same transaction that moves the schedule's cursor.
CREATE TABLE job_runs (
    run_id          TEXT NOT NULL PRIMARY KEY,
    job             TEXT NOT NULL,
    run_trigger     TEXT NOT NULL,
    run_key         TEXT,
    logical_ms      BIGINT,
    parameters_json TEXT NOT NULL,
    state           TEXT NOT NULL,
    message         TEXT,
    worker          TEXT,
    heartbeat_ms    BIGINT,
    cancel_asked    BIGINT NOT NULL DEFAULT 0,
    started_ms      BIGINT NOT NULL,
    ended_ms        BIGINT
);
CREATE INDEX job_runs_by_job ON job_runs (job, started_ms);
CREATE UNIQUE INDEX job_runs_by_key ON job_runs (run_key);

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

CREATE TABLE job_triggers (
    job        TEXT NOT NULL PRIMARY KEY,
    cursor_ms  BIGINT NOT NULL,
    paused     BIGINT NOT NULL DEFAULT 0,
    updated_ms BIGINT NOT NULL
);
