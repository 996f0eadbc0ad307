-- The month a rollover closed (or a backup followed) as its own column,
-- instead of text inside `detail`.
ALTER TABLE job_runs ADD COLUMN year_month text;
UPDATE job_runs SET year_month = substring(detail FROM 'rolled up ([0-9]{4}-[0-9]{2})')
 WHERE job = 'monthly_rollover' AND year_month IS NULL;

-- A rollover waiting for the operator's confirmation (manual policy), as
-- the running pipeline sees it: other processes (`dvmtop status`, watchers,
-- alerts) read it from here.
ALTER TABLE pipeline_state
  ADD COLUMN awaiting_month   text,
  ADD COLUMN awaiting_since   timestamptz,
  ADD COLUMN awaiting_blocked boolean NOT NULL DEFAULT false;
