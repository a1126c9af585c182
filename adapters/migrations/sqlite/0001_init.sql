-- Filestore metadata, embedded (SQLite) flavour. Timestamps are unix milliseconds.
CREATE TABLE tenants (
    owner          TEXT PRIMARY KEY,
    key_id         TEXT NOT NULL,
    wrapped_secret BLOB NOT NULL,
    created_at     INTEGER NOT NULL
);

CREATE TABLE files (
    id              TEXT PRIMARY KEY,
    owner           TEXT NOT NULL,
    path            TEXT NOT NULL,
    size            INTEGER NOT NULL CHECK (size >= 0),
    declared_sha256 TEXT,
    content_type    TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('uploading','processing','ready','quarantined','failed','deleted')),
    status_reason   TEXT,
    raw_key         TEXT NOT NULL,
    uploaded_size   INTEGER,
    uploaded_sha256 TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX files_owner_path ON files (owner, path);
CREATE INDEX files_status ON files (status);

-- One row per distinct stored chunk of a tenant: the dedupe index.
CREATE TABLE chunks (
    owner       TEXT NOT NULL,
    id          TEXT NOT NULL,
    plain_size  INTEGER NOT NULL,
    stored_size INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner, id)
);

CREATE TABLE file_chunks (
    file_id     TEXT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    offset      INTEGER NOT NULL,
    length      INTEGER NOT NULL,
    chunk_id    TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    stored_size INTEGER NOT NULL,
    PRIMARY KEY (file_id, idx)
);

-- Transactional outbox: written in the same transaction as the state change it announces.
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    routing_key TEXT NOT NULL,
    payload     BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

-- The embedded queue: one row per message per bound queue.
CREATE TABLE queue_messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue        TEXT NOT NULL,
    routing_key  TEXT NOT NULL,
    payload      BLOB NOT NULL,
    deliveries   INTEGER NOT NULL DEFAULT 0,
    visible_at   INTEGER NOT NULL,
    leased_until INTEGER,
    parked       INTEGER NOT NULL DEFAULT 0,
    park_reason  TEXT
);
CREATE INDEX queue_messages_ready ON queue_messages (queue, parked, visible_at, id);
