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
