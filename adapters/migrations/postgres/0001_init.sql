-- Filestore metadata, production (PostgreSQL) flavour. Timestamps are unix milliseconds, as in
-- the embedded schema, so both stores share one row mapping.
CREATE TABLE tenants (
    owner          TEXT PRIMARY KEY,
    key_id         TEXT NOT NULL,
    wrapped_secret BYTEA NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE files (
    id              TEXT PRIMARY KEY,
    owner           TEXT NOT NULL,
    path            TEXT NOT NULL,
    size            BIGINT NOT NULL CHECK (size >= 0),
    declared_sha256 TEXT,
    content_type    TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('uploading','processing','ready','quarantined','failed','deleted')),
    status_reason   TEXT,
    raw_key         TEXT NOT NULL,
    uploaded_size   BIGINT,
    uploaded_sha256 TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX files_owner_path ON files (owner, path);
-- The janitor only ever looks for stale uploads.
CREATE INDEX files_uploading ON files (updated_at) WHERE status = 'uploading';

-- One row per distinct stored chunk of a tenant: the dedupe index.
CREATE TABLE chunks (
    owner       TEXT NOT NULL,
    id          TEXT NOT NULL,
    plain_size  BIGINT NOT NULL,
    stored_size BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (owner, id)
);

CREATE TABLE file_chunks (
    file_id     TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    idx         BIGINT NOT NULL,
    "offset"    BIGINT NOT NULL,
    length      BIGINT NOT NULL,
    chunk_id    TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    stored_size BIGINT NOT NULL,
    PRIMARY KEY (file_id, idx)
);
CREATE INDEX file_chunks_chunk ON file_chunks (chunk_id);

-- Transactional outbox: written in the same transaction as the state change it announces.
-- Relays claim rows for a while (claimed_until) so several API replicas never publish the same
-- row at once; a relay that dies lets its claim run out and another one takes over.
CREATE TABLE outbox (
    id            BIGSERIAL PRIMARY KEY,
    routing_key   TEXT NOT NULL,
    payload       BYTEA NOT NULL,
    created_at    BIGINT NOT NULL,
    claimed_until BIGINT
);
