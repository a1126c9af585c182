-- The chunk sweep removes chunks nothing references. `last_used` (unix ms) is when a chunk was
-- last stored or found by dedupe, so a file still being processed that may reference it can be
-- recognised (see SqliteStore::claim_chunk_removal).
ALTER TABLE chunks ADD COLUMN last_used INTEGER NOT NULL DEFAULT 0;
UPDATE chunks SET last_used = created_at;
CREATE INDEX chunks_id ON chunks (id);
CREATE INDEX file_chunks_chunk ON file_chunks (chunk_id);
