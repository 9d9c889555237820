-- Schema for `rtbench changes` and `rtbench storm` (bench/README.md): one table whose rows
-- carry the writer's send time (CLOCK_MONOTONIC ns, same machine) so subscribers can measure
-- write-to-receive latency. `topic` is what subscribers filter on (topic=eq.K).
CREATE TABLE IF NOT EXISTS bench_changes (
  id    integer PRIMARY KEY,
  topic bigint NOT NULL,
  t     bigint NOT NULL,
  seq   bigint NOT NULL,
  p     text NOT NULL DEFAULT ''
);
