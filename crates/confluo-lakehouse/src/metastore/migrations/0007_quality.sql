-- The latest status of each quality check (per slice), and what its alerts last said.
-- History lives in the Delta tables system.quality.check_results and metrics; this row is
-- what `confluo monitor status` reads, and what keeps alerts to one per change of status
-- (`notified_status`), repeated only after the monitor's snooze (`notified_ms`).
CREATE TABLE quality_checks (
    monitor         TEXT NOT NULL,
    check_name      TEXT NOT NULL,
    slice           TEXT NOT NULL,
    status          TEXT NOT NULL,
    since_ms        BIGINT NOT NULL,
    checked_ms      BIGINT NOT NULL,
    run_id          TEXT NOT NULL,
    table_version   BIGINT,
    value           DOUBLE PRECISION,
    message         TEXT,
    notified_status TEXT,
    notified_ms     BIGINT,
    PRIMARY KEY (monitor, check_name, slice)
);
