-- The overflow row is rewritten by most batches during a backfill with late
-- events; vacuum it (and its TOAST table) eagerly so dead versions are
-- reused instead of piling up. The same for seen_ids, which loses a month
-- of rows at every rollover.
ALTER TABLE overflow SET (
    autovacuum_vacuum_threshold = 1, autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_cost_delay = 0,
    toast.autovacuum_vacuum_threshold = 1, toast.autovacuum_vacuum_scale_factor = 0,
    toast.autovacuum_vacuum_cost_delay = 0
);
ALTER TABLE seen_ids SET (autovacuum_vacuum_scale_factor = 0.05);
ALTER TABLE entity_activity SET (autovacuum_vacuum_scale_factor = 0.05);
