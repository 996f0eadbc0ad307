-- What the process holding the namespace publishes for watchers (`dvmtop
-- watch`, `--readonly`, other SSH sessions): its live status snapshot, at
-- most about once a second while it changes, and who it is.
ALTER TABLE pipeline_state
  ADD COLUMN status    jsonb,
  ADD COLUMN status_at timestamptz,
  ADD COLUMN holder    jsonb;
