-- Schema for `rtbench live` (bench/README.md): bookings of 50 properties in 10 regions. `t` is
-- the writer's send time of the row's last write (CLOCK_MONOTONIC ns, same machine), so a
-- subscriber can measure write-to-diff latency; `created_at` orders the windows.
CREATE TABLE IF NOT EXISTS bookings (
  id          integer PRIMARY KEY,
  property_id integer NOT NULL,
  region      integer NOT NULL,
  status      text NOT NULL,
  price       integer NOT NULL,
  created_at  bigint NOT NULL,
  t           bigint NOT NULL
);
-- What a deployment would index for these queries: the windows (property, newest first) and
-- the aggregates (region and status); the naive way's re-reads use them too.
CREATE INDEX IF NOT EXISTS bookings_property ON bookings (property_id, created_at);
CREATE INDEX IF NOT EXISTS bookings_region_status ON bookings (region, status);
