-- dvmtop core schema. Every table lives in the namespace's own schema (the
-- connection's search_path), so namespaces never see each other.

-- The committed state of the clock and the queue position.
CREATE TABLE pipeline_state (
    id              smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    current_month   text,                 -- open month, YYYY-MM
    current_day     date,                 -- day the clock has advanced to
    clock           bigint,               -- largest created_at processed
    confirmed_month text,                 -- manual rollover confirmed for this month
    last_seq        bigint  NOT NULL DEFAULT 0, -- last applied queue batch
    last_count      integer NOT NULL DEFAULT 0, -- elements that batch consumed
    updated_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pipeline_state DEFAULT VALUES;

-- Processing-side counters: processed, ignored_prior_month, duplicate, rejected:<reason>.
CREATE TABLE counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL
);

-- Read-ahead events of later days (SPEC §4). pos orders them FIFO.
CREATE TABLE overflow (
    pos     bigint PRIMARY KEY,
    day     date NOT NULL,
    payload text NOT NULL
);

-- Queue elements the processor refused (DVMDash-list input), with reason.
CREATE TABLE dead_letters (
    pos         bigserial PRIMARY KEY,
    reason      text NOT NULL,
    payload     text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Ids applied in the open window, one row per applied slice: 16-byte id
-- prefixes concatenated. Loaded at start-up for deduplication; a closed
-- month's rows are dropped at its rollover.
CREATE TABLE seen_ids (
    day date  NOT NULL,
    ids bytea NOT NULL
);
CREATE INDEX seen_ids_day ON seen_ids (day);

-- Hourly activity per entity and credited kind (role 0 = user, 1 = DVM).
CREATE TABLE entity_activity (
    hour      timestamptz NOT NULL,
    role      smallint    NOT NULL,
    entity    text        NOT NULL,
    kind      integer     NOT NULL,
    requests  integer     NOT NULL DEFAULT 0,
    responses integer     NOT NULL DEFAULT 0,
    feedback  integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, role, entity, kind)
);

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

CREATE TABLE dvms (
    id             text PRIMARY KEY,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    is_active      boolean     NOT NULL DEFAULT true,
    deactivated_at timestamptz
);

CREATE TABLE users (
    id             text PRIMARY KEY,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    is_active      boolean     NOT NULL DEFAULT true,
    deactivated_at timestamptz
);
CREATE INDEX users_last_seen ON users (last_seen);
CREATE INDEX dvms_last_seen ON dvms (last_seen);

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
