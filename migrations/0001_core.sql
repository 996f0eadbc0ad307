-- dvmtop schema. Every table lives in the namespace's own schema (the
-- connection's search_path), so namespaces never see each other.
--
-- The processor aggregates in memory and commits a group of batches at a
-- time; the tables below are what one commit writes. Write volume is kept
-- proportional to distinct entities and days, never to events (see
-- README, "Architecture").

-- The committed state of the clock and the queue position.
CREATE TABLE pipeline_state (
    id                smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    current_month     text,                 -- open month, YYYY-MM
    current_day       date,                 -- day the clock has advanced to
    clock             bigint,               -- largest created_at processed
    confirmed_month   text,                 -- manual rollover confirmed for this month
    cleanup_requested boolean NOT NULL DEFAULT false, -- `dvmtop cleanup` while a pipeline runs
    last_seq          bigint  NOT NULL DEFAULT 0, -- last committed queue group
    last_count        bigint  NOT NULL DEFAULT 0, -- queue elements that group consumed
    updated_at        timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pipeline_state DEFAULT VALUES;

-- Processing-side counters: processed, ignored_prior_month, duplicate, rejected:<reason>.
CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);

-- The overflow buffer (SPEC §4): read-ahead events of later days, in FIFO
-- order, with the UTC day of each. One row, rewritten by the commit that
-- changes it; at most one batch large.
CREATE TABLE overflow (
    id       smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    payloads text[] NOT NULL DEFAULT '{}',
    days     date[] NOT NULL DEFAULT '{}'
);
INSERT INTO overflow DEFAULT VALUES;

-- Queue elements the processor refused (DVMDash-list input), with reason.
CREATE TABLE dead_letters (
    pos         bigserial PRIMARY KEY,
    reason      text NOT NULL,
    payload     text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Ids applied in the open window: 16-byte id prefixes concatenated, one row
-- per day and commit. Loaded at start-up for deduplication; a closed
-- month's rows are dropped at its rollover.
CREATE TABLE seen_ids (
    day date  NOT NULL,
    ids bytea NOT NULL
);
-- Random bytes do not compress: store them without trying.
ALTER TABLE seen_ids ALTER COLUMN ids SET STORAGE EXTERNAL;
CREATE INDEX seen_ids_day ON seen_ids (day);

-- Detail data: what every entity did, by UTC hour and credited kind. One
-- row per (day, role) holding parallel arrays sorted by (hour, entity,
-- kind) — the same row whatever the batch size or commit points — so a day
-- costs two rows, not one per request. role 0 = user (requests), 1 = DVM
-- (responses, feedback). `entity_activity_hourly` shows it as plain rows.
CREATE TABLE entity_activity (
    day       date     NOT NULL,
    role      smallint NOT NULL,
    hour      int2[]   COMPRESSION lz4 NOT NULL,  -- 0..23, UTC hour of the day
    entity    bytea[]  NOT NULL,                  -- public key (32 bytes)
    kind      int4[]   COMPRESSION lz4 NOT NULL,  -- 0: feedback whose job kind is unknown
    requests  int4[]   COMPRESSION lz4 NOT NULL,
    responses int4[]   COMPRESSION lz4 NOT NULL,
    feedback  int4[]   COMPRESSION lz4 NOT NULL,
    PRIMARY KEY (day, role)
);
-- Public keys do not compress: store them without trying.
ALTER TABLE entity_activity ALTER COLUMN entity SET STORAGE EXTERNAL;

CREATE VIEW entity_activity_hourly AS
SELECT a.day, (a.day + make_interval(hours => u.hour)) AT TIME ZONE 'UTC' AS hour, a.role,
       encode(u.entity, 'hex') AS entity, u.kind, u.requests, u.responses, u.feedback
FROM entity_activity a,
     unnest(a.hour, a.entity, a.kind, a.requests, a.responses, a.feedback)
       AS u(hour, entity, kind, requests, responses, feedback);

-- Daily rollups per DVM and per credited kind.
CREATE TABLE dvm_stats_rollups (
    day       date   NOT NULL,
    dvm       text   NOT NULL,
    responses bigint NOT NULL DEFAULT 0,
    feedback  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, dvm)
);

CREATE TABLE kind_stats_rollups (
    day       date    NOT NULL,
    kind      integer NOT NULL,   -- 0: feedback whose job kind is unknown
    requests  bigint  NOT NULL DEFAULT 0,
    responses bigint  NOT NULL DEFAULT 0,
    feedback  bigint  NOT NULL DEFAULT 0,
    PRIMARY KEY (day, kind)
);

-- Window snapshots (1h, 24h, 7d, 30d) on the processing clock.
CREATE TABLE time_window_stats (
    as_of         timestamptz NOT NULL,
    window_name   text        NOT NULL,
    requests      bigint      NOT NULL,
    responses     bigint      NOT NULL,
    feedback      bigint      NOT NULL,
    unique_users  bigint      NOT NULL,
    unique_dvms   bigint      NOT NULL,
    unique_kinds  bigint      NOT NULL,
    popular_dvm   text,
    popular_kind  integer,
    competitive_kind integer,
    PRIMARY KEY (as_of, window_name)
);

-- All-time running totals (one row).
CREATE TABLE global_stats_rollups (
    id              smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    total_requests  bigint NOT NULL DEFAULT 0,
    total_responses bigint NOT NULL DEFAULT 0,
    total_feedback  bigint NOT NULL DEFAULT 0,
    unique_dvms     bigint NOT NULL DEFAULT 0,
    unique_users    bigint NOT NULL DEFAULT 0,
    unique_kinds    bigint NOT NULL DEFAULT 0,
    last_event_at   timestamptz
);
INSERT INTO global_stats_rollups DEFAULT VALUES;

-- Every entity and kind ever seen, for the all-time unique counts
-- (dvms/users rows are deleted by retention; these are not).
CREATE TABLE ever_seen (
    role smallint NOT NULL,   -- 0 user, 1 DVM, 2 kind
    id   text     NOT NULL,
    PRIMARY KEY (role, id)
);

-- Entities and their lifecycle (SPEC §6). No index on last_seen: the
-- processor keeps these tables in memory and decides the lifecycle there,
-- so commits are HOT updates.
CREATE TABLE dvms (
    id             text PRIMARY KEY,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    is_active      boolean     NOT NULL DEFAULT true,
    deactivated_at timestamptz,
    responses      bigint      NOT NULL DEFAULT 0,
    feedback       bigint      NOT NULL DEFAULT 0
) WITH (fillfactor = 80);

CREATE TABLE users (
    id             text PRIMARY KEY,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    is_active      boolean     NOT NULL DEFAULT true,
    deactivated_at timestamptz,
    requests       bigint      NOT NULL DEFAULT 0
) WITH (fillfactor = 80);

-- NIP-89 profile of a DVM (announcements are not activity).
CREATE TABLE dvm_profiles (
    id           text PRIMARY KEY,
    name         text,
    about        text,
    picture      text,
    kinds        integer[] NOT NULL DEFAULT '{}',
    announced_at timestamptz NOT NULL
);

CREATE TABLE kind_dvm_support (
    kind       integer NOT NULL,
    dvm        text    NOT NULL REFERENCES dvms (id) ON DELETE CASCADE,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    PRIMARY KEY (kind, dvm)
);
CREATE INDEX kind_dvm_support_dvm ON kind_dvm_support (dvm);

CREATE TABLE monthly_activity (
    year_month        text PRIMARY KEY,
    total_requests    bigint NOT NULL,
    total_responses   bigint NOT NULL,
    total_feedback    bigint NOT NULL,
    unique_dvms       bigint NOT NULL,
    unique_users      bigint NOT NULL,
    unique_kinds      bigint NOT NULL,
    most_popular_dvm  text,
    most_popular_kind integer,
    dvm_activity      jsonb NOT NULL DEFAULT '{}',  -- dvm → {responses, feedback}
    kind_activity     jsonb NOT NULL DEFAULT '{}',  -- kind → {requests, responses}
    created_at        timestamptz NOT NULL DEFAULT now()
);

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

-- Rewritten by most commits during a backfill with late events: vacuum
-- eagerly so dead versions are reused instead of piling up (the processor
-- also vacuums these tables itself every few commits, for servers that run
-- without autovacuum).
ALTER TABLE overflow SET (
    autovacuum_vacuum_threshold = 1, autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_cost_delay = 0,
    toast.autovacuum_vacuum_threshold = 1, toast.autovacuum_vacuum_scale_factor = 0,
    toast.autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE entity_activity SET (
    autovacuum_vacuum_scale_factor = 0.05,
    toast.autovacuum_vacuum_scale_factor = 0.05
);
ALTER TABLE seen_ids SET (
    autovacuum_vacuum_scale_factor = 0.05,
    toast.autovacuum_vacuum_scale_factor = 0.05
);
