-- The chaos harness's table (embedded store): every acknowledged write is one row, named by
-- (writer, seq); the id is the store's own, so a write applied twice would show as two rows.
CREATE TABLE IF NOT EXISTS chaos_items (
  id INTEGER PRIMARY KEY,
  writer integer NOT NULL,
  seq integer NOT NULL,
  body text
);
