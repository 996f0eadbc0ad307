-- Job analytics (issue 14; README "Job analytics"): request → result
-- matching, response times, answer rates and feedback statuses.

-- Monthly figures: requests whose earliest result (any DVM) falls in the
-- month, and the exact lower median / nearest-rank p90 of their response
-- times in seconds (NULL without samples). Rows written before this
-- migration keep 0 / NULL.
ALTER TABLE monthly_activity
  ADD COLUMN jobs_answered     bigint NOT NULL DEFAULT 0,
  ADD COLUMN median_response_s bigint,
  ADD COLUMN p90_response_s    bigint;

-- Feedback (7000) by `status` tag, per DVM and day.
ALTER TABLE dvm_stats_rollups
  ADD COLUMN fb_payment_required bigint NOT NULL DEFAULT 0,
  ADD COLUMN fb_processing       bigint NOT NULL DEFAULT 0,
  ADD COLUMN fb_error            bigint NOT NULL DEFAULT 0,
  ADD COLUMN fb_success          bigint NOT NULL DEFAULT 0,
  ADD COLUMN fb_partial          bigint NOT NULL DEFAULT 0;

-- The matching state, as facts: every processed request (id key 16 bytes,
-- created_at 8, kind 4) and every processed result naming a request
-- (request id key 16, DVM 32, created_at 8), big-endian, concatenated; one
-- row per day and commit, like seen_ids. The processor replays them at
-- start-up (matching does not depend on order); a rollover deletes the
-- days nothing can match any more (before the new open month's start
-- minus the horizon).
CREATE TABLE job_facts (
    day      date  NOT NULL,
    requests bytea NOT NULL,
    results  bytea NOT NULL
);
ALTER TABLE job_facts ALTER COLUMN requests SET STORAGE EXTERNAL;
ALTER TABLE job_facts ALTER COLUMN results SET STORAGE EXTERNAL;
CREATE INDEX job_facts_day ON job_facts (day);

-- Response-time histograms for the windows (1 h … 30 d), by the day of the
-- result: scope 0 = all requests (key ''), 1 = per DVM (key: hex), 2 = per
-- request kind (key: the kind). `cells`: 7 bytes per cell, sorted by
-- (hour, bucket): UTC hour of the result (1 byte), log bucket of the
-- latency (int2; exact below 128 s, then 1 % wide; see
-- dvmtop_core::jobs::bucket_of), count (int4), big-endian. The processor
-- holds the rows of the days a result can still be dated on and writes
-- each changed row whole. Deleted with the other detail rows (35 days).
CREATE TABLE job_day_stats (
    day    date     NOT NULL,
    scope  smallint NOT NULL,
    key    text     NOT NULL,
    cells  bytea    NOT NULL,
    PRIMARY KEY (day, scope, key)
);

ALTER TABLE time_window_stats
  ADD COLUMN answered          bigint,
  ADD COLUMN median_response_s bigint,
  ADD COLUMN p90_response_s    bigint;
