-- Objects nothing refers to any more that are still to be removed from the object store: the
-- raw bytes of purged versions that never became chunks (quarantined, failed). They are written
-- in the transaction that orphans them, so a crash before the removal only delays it: whoever
-- removes orphaned objects next (the purge itself, then every janitor pass) finds them here.
CREATE TABLE orphaned_objects (
    key   TEXT PRIMARY KEY,
    since INTEGER NOT NULL
);
