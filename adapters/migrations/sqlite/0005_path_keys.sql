-- One name, one file (DESIGN invariant 8): paths that differ only in case or Unicode
-- normalization are one path. `path_key` is the folded form (filestore_domain::paths::fold_key),
-- computed by the application, which also fills it in for rows written before this column
-- (normalization and case folding are not SQL). Every tree change holds the owner's
-- change_seq row, so uniqueness per key is kept by the tree code under that lock; rows from
-- before the policy that share a key stay reachable by their exact spelling.
ALTER TABLE entries ADD COLUMN path_key TEXT;
ALTER TABLE versions ADD COLUMN path_key TEXT;
CREATE INDEX entries_path_key ON entries (owner, path_key);
CREATE INDEX versions_path_key ON versions (owner, path_key);
-- A file's versions by id: the by-id routes check that a file is not in trash.
CREATE INDEX versions_file ON versions (file_id);
-- Rows still without a key (written before this migration): the start-up backfill finds them
-- without reading every row.
CREATE INDEX entries_unkeyed ON entries (owner, path) WHERE path_key IS NULL;
CREATE INDEX versions_unkeyed ON versions (owner, path) WHERE path_key IS NULL;
