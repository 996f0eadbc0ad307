-- Committed source positions (issue 13). For each input file (its id: a
-- hash of its path and size, as the queued elements carry it) the number
-- of its elements handled through the last element a committed group
-- consumed, written in that group's transaction. Redis keeps ingest's own
-- position with the queue; after Redis lost the queue, `--resume` starts
-- queueing right after this one, so nothing is lost and nothing counted
-- twice.
CREATE TABLE source_positions (
    source   text PRIMARY KEY,
    elements bigint NOT NULL
);
