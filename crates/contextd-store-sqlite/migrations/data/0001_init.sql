-- contextd data database, schema 1.
-- Ids are 16-byte UUID blobs; times are INTEGER milliseconds since the Unix epoch;
-- partitions are 'lab' or 'production'. No foreign keys: every table is keyed by org so that
-- a scope is a self-contained slice of rows.

CREATE TABLE orgs (
    id      BLOB    NOT NULL PRIMARY KEY,
    name    TEXT    NOT NULL UNIQUE,
    created INTEGER NOT NULL
);

-- Only the SHA-256 of each key's secret is stored.
CREATE TABLE api_keys (
    id          BLOB    NOT NULL PRIMARY KEY,
    org_id      BLOB    NOT NULL,
    partition   TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL,
    secret_hash BLOB    NOT NULL,
    created     INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);

-- Custom dictionary entries, per org (shared by both partitions); `definition` is the JSON
-- of contextd_core::dictionary::{Field, FieldSet}.
CREATE TABLE fields (
    org_id     BLOB NOT NULL,
    id         TEXT NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE fieldsets (
    org_id     BLOB NOT NULL,
    id         TEXT NOT NULL,
    definition TEXT NOT NULL,
    PRIMARY KEY (org_id, id)
);

-- Context objects. `body` is JSON {fieldsets, clear, tags, contributors}; `sealed` holds the
-- ENCRYPTED and PII values as contextd_core::store::encode_sealed wrote them. A rowid table
-- (not WITHOUT ROWID) because rows run to kilobytes.
CREATE TABLE objects (
    org_id       BLOB    NOT NULL,
    partition    TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    id           BLOB    NOT NULL,
    kind         TEXT    NOT NULL,
    customer_id  BLOB,
    parent_id    BLOB,
    state        TEXT    NOT NULL,
    media_type   TEXT,
    detail_type  TEXT,
    created      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    touched      INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    sealed       BLOB    NOT NULL
);

CREATE UNIQUE INDEX objects_by_id ON objects (org_id, partition, id);
-- Search: newest last_updated first within a kind.
CREATE INDEX objects_by_kind ON objects (org_id, partition, kind, last_updated DESC, id DESC);
-- Timeline: newest created first within a customer.
CREATE INDEX objects_by_customer ON objects (org_id, partition, customer_id, created DESC, id DESC);
CREATE INDEX objects_by_parent ON objects (org_id, partition, parent_id);
-- Auto-close sweep: only active requests are indexed.
CREATE INDEX objects_active_requests ON objects (touched) WHERE kind = 'request' AND state = 'active';

-- Blind-index tokens. The primary key serves lookups by token; the second index serves
-- replacing or deleting an object's tokens.
CREATE TABLE tokens (
    org_id    BLOB NOT NULL,
    partition TEXT NOT NULL,
    token     BLOB NOT NULL,
    object_id BLOB NOT NULL,
    PRIMARY KEY (org_id, partition, token, object_id)
) WITHOUT ROWID;

CREATE INDEX tokens_by_object ON tokens (org_id, partition, object_id);

CREATE TABLE flush_jobs (
    org_id    BLOB    NOT NULL,
    partition TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    id        BLOB    NOT NULL,
    kind      TEXT    NOT NULL,
    completed INTEGER NOT NULL,
    flushed   INTEGER NOT NULL,
    message   TEXT    NOT NULL,
    created   INTEGER NOT NULL,
    PRIMARY KEY (org_id, partition, id)
);

-- Planner statistics for a large database, written by hand so that plans do not depend on
-- how much data happened to exist when ANALYZE last ran. Without them SQLite guesses that
-- `org_id = ? AND partition = ?` selects a handful of rows, and answers a lookup by token by
-- scanning a whole kind in page order. The figures say: an org holds ~100k objects, a
-- partition half of them, a kind a quarter of those; an id names one object, a customer ~20,
-- a parent ~10; a token names ~2 objects and an object carries ~5 tokens.
ANALYZE;
DELETE FROM sqlite_stat1;
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('objects', 'objects_by_id',           '10000000 100000 50000 1'),
    ('objects', 'objects_by_kind',         '10000000 100000 50000 12500 2 1'),
    ('objects', 'objects_by_customer',     '10000000 100000 50000 20 2 1'),
    ('objects', 'objects_by_parent',       '10000000 100000 50000 10'),
    ('objects', 'objects_active_requests', '100000 2'),
    ('tokens',  'tokens',                  '50000000 500000 250000 2 1'),
    ('tokens',  'tokens_by_object',        '50000000 500000 250000 5');
