-- The alerts the namespace's holder evaluated last, with the sampled
-- history the trend rules need, so `dvmtop status` and watchers report
-- them too.
ALTER TABLE pipeline_state
  ADD COLUMN IF NOT EXISTS alerts    jsonb,
  ADD COLUMN IF NOT EXISTS alerts_at timestamptz;
