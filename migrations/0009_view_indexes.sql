-- The TUI's DVM and kind views read one DVM's (or kind's) per-day rollups
-- over a window; the primary keys lead with the day, so without these a
-- detail page scans every DVM's rows of the window. Neither column is
-- updated after insert, so commits keep their HOT updates.
CREATE INDEX IF NOT EXISTS dvm_stats_rollups_dvm_day ON dvm_stats_rollups (dvm, day);
CREATE INDEX IF NOT EXISTS kind_stats_rollups_kind_day ON kind_stats_rollups (kind, day);
