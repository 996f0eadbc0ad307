-- users and dvms are updated on every batch that sees them; an index on
-- last_seen made every such update a non-HOT update with index writes. The
-- daily lifecycle scan over these small tables does not need it.
DROP INDEX IF EXISTS users_last_seen;
DROP INDEX IF EXISTS dvms_last_seen;
ALTER TABLE users SET (fillfactor = 80);
ALTER TABLE dvms SET (fillfactor = 80);
