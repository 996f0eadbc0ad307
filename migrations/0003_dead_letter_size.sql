-- Dead letters keep at most 64 KiB of a refused element; `size` records
-- the element's whole size in bytes (payload shorter than size: truncated).
-- Rows written before this migration were never truncated.
ALTER TABLE dead_letters ADD COLUMN size bigint;
UPDATE dead_letters SET size = octet_length(payload);
ALTER TABLE dead_letters ALTER COLUMN size SET NOT NULL;
