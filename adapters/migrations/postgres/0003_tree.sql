-- The user's tree (sync): each path's head, every version a path had, and a change feed.
-- A revision is the owner's change number: gap-free and in commit order per owner, because
-- every change first takes the owner's row in change_seq (see the tree module).

-- The parentRev a registered upload was made against (NULL: overwrite; 0: create only).
ALTER TABLE files ADD COLUMN parent_rev BIGINT;

-- Paths compare bytewise ("C"), as on SQLite, so listing order and pagination agree everywhere.
CREATE TABLE entries (
    owner       TEXT NOT NULL,
    path        TEXT COLLATE "C" NOT NULL,
    file_id     TEXT NOT NULL REFERENCES files (id),
    rev         BIGINT NOT NULL,
    trashed_at  BIGINT,
    modified_at BIGINT NOT NULL,
    PRIMARY KEY (owner, path)
);

CREATE TABLE versions (
    owner      TEXT NOT NULL,
    path       TEXT COLLATE "C" NOT NULL,
    rev        BIGINT NOT NULL,
    file_id    TEXT NOT NULL REFERENCES files (id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (owner, rev)
);
CREATE INDEX versions_path ON versions (owner, path);

CREATE TABLE change_seq (
    owner TEXT PRIMARY KEY,
    seq   BIGINT NOT NULL
);

CREATE TABLE changes (
    owner     TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    kind      TEXT NOT NULL CHECK (kind IN ('create','update','move','delete')),
    path      TEXT COLLATE "C" NOT NULL,
    from_path TEXT,
    file_id   TEXT NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (owner, seq)
);

-- Files finalized before the tree existed: each becomes a version of its path, the newest the head.
INSERT INTO versions (owner, path, rev, file_id, created_at)
SELECT owner, path, ROW_NUMBER() OVER (PARTITION BY owner ORDER BY created_at, id), id, created_at
FROM files WHERE status IN ('processing', 'ready', 'quarantined', 'failed');
INSERT INTO entries (owner, path, file_id, rev, trashed_at, modified_at)
SELECT v.owner, v.path, v.file_id, v.rev, NULL, v.created_at FROM versions v
WHERE v.rev = (SELECT MAX(w.rev) FROM versions w WHERE w.owner = v.owner AND w.path = v.path);
INSERT INTO changes (owner, seq, kind, path, from_path, file_id, at)
SELECT owner, rev, 'create', path, NULL, file_id, modified_at FROM entries;
INSERT INTO change_seq (owner, seq) SELECT owner, MAX(rev) FROM versions GROUP BY owner;
