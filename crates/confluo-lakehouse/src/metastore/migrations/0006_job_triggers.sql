-- Triggers beyond cron, queued runs, and the processes of running attempts. A run waits `queued` until its job has a free slot
-- (max_concurrent_runs); `trigger_json` keeps what fired it (the new files, the table
-- versions, the upstream run) for `{{job.trigger.*}}`. A trigger's `state_json` is what it
-- must remember between polls besides its cursor (the files it has seen, the versions).
-- `job_slots` holds one row per job, locked while a queued run takes a slot, so two
-- workers never start more runs than the job allows.
ALTER TABLE job_runs ADD COLUMN trigger_json TEXT;
-- The process group of a running attempt (`pgid:start-time`), so the worker that resumes a
-- run whose worker was killed can stop what that worker had started.
ALTER TABLE task_runs ADD COLUMN process TEXT;
ALTER TABLE job_triggers ADD COLUMN state_json TEXT;
CREATE INDEX job_runs_by_state ON job_runs (state, job);
CREATE TABLE job_slots (
    job        TEXT NOT NULL PRIMARY KEY,
    updated_ms BIGINT NOT NULL
);
-- Jobs created with `confluo jobs create` rather than written in confluo.yaml: their YAML,
-- checked like the file's before it is stored.
CREATE TABLE job_definitions (
    job        TEXT NOT NULL PRIMARY KEY,
    yaml       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_ms BIGINT NOT NULL
);
