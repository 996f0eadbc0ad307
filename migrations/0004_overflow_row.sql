-- The overflow buffer becomes one row holding the parked payloads in FIFO
-- order. A late event makes a whole batch park; rewriting one row per batch
-- is far cheaper than inserting and deleting a row per parked event (and
-- leaves no dead tuples behind).
CREATE TABLE overflow_buffer (
    id       smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    payloads text[] NOT NULL DEFAULT '{}'
);
INSERT INTO overflow_buffer (payloads)
SELECT coalesce(array_agg(payload ORDER BY pos), '{}') FROM overflow;
DROP TABLE overflow;
ALTER TABLE overflow_buffer RENAME TO overflow;
