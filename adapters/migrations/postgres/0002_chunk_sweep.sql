-- The chunk sweep removes chunks nothing references. `last_used` (unix ms) is when a chunk was
-- last stored or found by dedupe, so a file still being processed that may reference it can be
-- recognised (see PostgresStore::claim_chunk_removal).
ALTER TABLE chunks ADD COLUMN last_used BIGINT NOT NULL DEFAULT 0;
UPDATE chunks SET last_used = created_at;
CREATE INDEX chunks_id ON chunks (id);
CREATE INDEX files_processing ON files (owner, updated_at) WHERE status = 'processing';
