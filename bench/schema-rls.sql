-- Schema for `rtbench changes --rls` (bench/README.md): bench/schema.sql's table under a
-- row-level security policy that gives each user (a token whose sub is "K") the rows of topic
-- K: the change feed indexes the subscribers by the policy's `topic = <uid>`, as it would an
-- eq filter. Without --rls the same subscribers filter by topic=eq.K instead.
CREATE TABLE IF NOT EXISTS bench_changes (
  id    integer PRIMARY KEY,
  topic bigint NOT NULL,
  t     bigint NOT NULL,
  seq   bigint NOT NULL,
  p     text NOT NULL DEFAULT ''
);
ALTER TABLE bench_changes ENABLE ROW LEVEL SECURITY;
CREATE POLICY "own topic" ON bench_changes FOR SELECT TO authenticated USING (topic = auth.uid());
