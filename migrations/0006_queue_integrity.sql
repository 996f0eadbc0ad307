-- Queue integrity (issue 13). `redis_epoch` is the token of the Redis
-- queue generation the committed position (last_seq, last_count) refers
-- to: dvmtop stores a random token under `<ns>:epoch` in Redis; a Redis
-- that restarted without its data (or was flushed) no longer has it, so a
-- lost queue is told apart from an empty one. NULL: no generation yet
-- (a new namespace, or one from before this migration: adopted as is).
ALTER TABLE pipeline_state ADD COLUMN redis_epoch text;

-- Alerts the operator must see (`status --json` `alerts`, the TUI's
-- banner), one current alert per kind, kept until the condition is over
-- (redis_not_persistent) or, for a lost queue, until the operator deletes
-- the row or starts the namespace over (--fresh).
CREATE TABLE alerts (
    kind     text PRIMARY KEY,
    severity text NOT NULL,
    message  text NOT NULL,
    since    timestamptz NOT NULL
);
