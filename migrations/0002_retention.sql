-- Retention (SPEC §6): what each entity did while it existed (for the
-- cleanup log), the cleanup log itself, and the audit of every job run.

ALTER TABLE users ADD COLUMN requests bigint NOT NULL DEFAULT 0;
ALTER TABLE dvms ADD COLUMN responses bigint NOT NULL DEFAULT 0;
ALTER TABLE dvms ADD COLUMN feedback bigint NOT NULL DEFAULT 0;

-- One row per deleted DVM or user (phase 2 of the lifecycle).
CREATE TABLE cleanup_log (
    id             bigserial PRIMARY KEY,
    entity         text        NOT NULL,
    entity_type    text        NOT NULL CHECK (entity_type IN ('dvm', 'user')),
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    deactivated_at timestamptz,
    deleted_at     timestamptz NOT NULL,
    details        jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX cleanup_log_deleted_at ON cleanup_log (deleted_at);

-- Audit of every daily cleanup, rollover and backup: the TUI's cleanup
-- history and the monitoring figures in `dvmtop status`.
CREATE TABLE job_runs (
    id             bigserial PRIMARY KEY,
    job            text        NOT NULL,   -- daily_cleanup | monthly_rollover | backup
    reference_time timestamptz,
    started_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    rows_affected  jsonb       NOT NULL DEFAULT '{}',
    outcome        text        NOT NULL,   -- running | ok | failed | interrupted
    attempts       integer     NOT NULL DEFAULT 1,
    detail         text
);
CREATE INDEX job_runs_job ON job_runs (job, id);
