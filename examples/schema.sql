-- rtsync example: property-management analytics.
-- Applied at every start: existing tables are kept, seed rows are inserted once
-- (INSERT OR IGNORE on fixed ids). Declared types map to Postgres type names
-- (docs/store.md): bigint → int8, text → text, double precision → float8,
-- boolean → bool, jsonb → jsonb, timestamptz → timestamptz, date → date.

CREATE TABLE IF NOT EXISTS profiles (
  id         bigint PRIMARY KEY,
  full_name  text NOT NULL,
  email      text UNIQUE,
  role       text NOT NULL DEFAULT 'manager',
  created_at timestamptz NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS properties (
  id         bigint PRIMARY KEY,
  name       text NOT NULL,
  city       text NOT NULL,
  owner_id   bigint REFERENCES profiles(id),
  units      integer NOT NULL DEFAULT 1,
  nightly_rate double precision NOT NULL,
  active     boolean NOT NULL DEFAULT true,
  amenities  jsonb NOT NULL DEFAULT '[]'
);

CREATE TABLE IF NOT EXISTS bookings (
  id          bigint PRIMARY KEY,
  property_id bigint NOT NULL REFERENCES properties(id),
  guest_name  text NOT NULL,
  check_in    date NOT NULL,
  check_out   date NOT NULL,
  nights      integer NOT NULL,
  total       double precision NOT NULL,
  status      text NOT NULL DEFAULT 'confirmed',
  created_at  timestamptz NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS expenses (
  id          bigint PRIMARY KEY,
  property_id bigint NOT NULL REFERENCES properties(id),
  category    text NOT NULL,
  amount      double precision NOT NULL,
  spent_on    date NOT NULL,
  note        text
);

CREATE TABLE IF NOT EXISTS notifications (
  id         bigint PRIMARY KEY,
  profile_id bigint NOT NULL REFERENCES profiles(id),
  kind       text NOT NULL,
  body       jsonb NOT NULL DEFAULT '{}',
  read       boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

INSERT OR IGNORE INTO profiles (id, full_name, email, role) VALUES
  (1, 'Ada Moreau', 'ada@example.com', 'owner'),
  (2, 'Ben Okafor', 'ben@example.com', 'manager');

INSERT OR IGNORE INTO properties (id, name, city, owner_id, units, nightly_rate, amenities) VALUES
  (1, 'Harbour Loft', 'Lisbon', 1, 1, 140.0, '["wifi","balcony"]'),
  (2, 'Old Town Studios', 'Porto', 1, 4, 85.5, '["wifi"]'),
  (3, 'Dune House', 'Faro', 2, 2, 210.0, '["pool","parking"]');

INSERT OR IGNORE INTO bookings (id, property_id, guest_name, check_in, check_out, nights, total, status) VALUES
  (1, 1, 'Chen Li', '2026-12-01', '2026-12-05', 4, 560.0, 'confirmed'),
  (2, 2, 'Maria Silva', '2026-12-10', '2026-12-12', 2, 171.0, 'confirmed'),
  (3, 3, 'Tom Berg', '2026-12-20', '2026-12-27', 7, 1470.0, 'pending');

INSERT OR IGNORE INTO expenses (id, property_id, category, amount, spent_on, note) VALUES
  (1, 1, 'cleaning', 45.0, '2026-11-02', 'turnover'),
  (2, 3, 'maintenance', 320.0, '2026-11-10', 'pool pump');

INSERT OR IGNORE INTO notifications (id, profile_id, kind, body) VALUES
  (1, 1, 'booking', '{"booking_id":1,"text":"New booking at Harbour Loft"}');
