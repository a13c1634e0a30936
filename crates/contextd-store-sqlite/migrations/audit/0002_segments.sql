-- contextd audit database, schema 2: the audit log in monthly segments, each entry chained by
-- hash to the previous one of its organization and partition (DESIGN §5, "Audit").
--
-- The entries live in one table per month, audit_YYYY_MM, created by the append that first
-- needs it, with triggers refusing UPDATE and DELETE (see src/audit.rs); retention drops whole
-- tables. The store moves schema 1's `audit` rows into them when it opens, then drops it.

-- Action names, coded as small integers in the segments' rows.
CREATE TABLE audit_actions (
    code INTEGER PRIMARY KEY,
    name TEXT    NOT NULL UNIQUE
);

-- One chain per organization and partition: its newest link (seq 0 and the zero hash before
-- its first entry) and the segment that entry is in. `chain` is what the segments' rows carry
-- instead of the 17-byte scope.
CREATE TABLE audit_heads (
    chain     INTEGER PRIMARY KEY,
    org_id    BLOB    NOT NULL,
    partition INTEGER NOT NULL CHECK (partition IN (0, 1)),
    seq       INTEGER NOT NULL,
    hash      BLOB    NOT NULL,
    month     TEXT,
    UNIQUE (org_id, partition)
);

-- The segments that exist, by month (YYYY-MM).
CREATE TABLE audit_segments (
    month      TEXT    NOT NULL PRIMARY KEY,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Where each chain enters each segment: its first seq there and the hash before it, so that a
-- segment stays verifiable once the segments before it are dropped.
CREATE TABLE audit_segment_heads (
    month     TEXT    NOT NULL,
    chain     INTEGER NOT NULL,
    first_seq INTEGER NOT NULL,
    prev_hash BLOB    NOT NULL,
    PRIMARY KEY (month, chain)
) WITHOUT ROWID;
