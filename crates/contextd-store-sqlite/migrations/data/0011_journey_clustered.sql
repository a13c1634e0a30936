-- The journey is clustered (issue 16): `objects` becomes a WITHOUT ROWID table keyed by
-- (org, partition, journey, created, id), where `journey` is the customer an object belongs to
-- (`customer_id`), or the object's own id for a customer or an object without one. A
-- customer's timeline is then one range of the table's own B-tree, read in key order with no
-- lookup per row. Reads by id go through `objects_by_id`, whose entries carry the key.
-- Rows larger than about 1 KB keep their tail in overflow pages; journey order still holds.
DROP INDEX objects_by_id;
DROP INDEX objects_by_kind;
DROP INDEX objects_by_parent;
DROP INDEX objects_active_requests;
DROP INDEX objects_to_reseal;
DROP INDEX objects_by_customer;
ALTER TABLE objects RENAME TO objects_by_rowid;
CREATE TABLE objects (
    org_id       BLOB    NOT NULL,
    partition    TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    journey      BLOB    NOT NULL,
    created      INTEGER NOT NULL,
    id           BLOB    NOT NULL,
    kind         TEXT    NOT NULL,
    customer_id  BLOB,
    parent_id    BLOB,
    state        TEXT    NOT NULL,
    media_type   TEXT,
    detail_type  TEXT,
    last_updated INTEGER NOT NULL,
    touched      INTEGER NOT NULL,
    version      INTEGER NOT NULL,
    key_version  INTEGER NOT NULL DEFAULT 0,
    body         TEXT    NOT NULL,
    sealed       BLOB    NOT NULL,
    CHECK (journey = coalesce(customer_id, id)),
    PRIMARY KEY (org_id, partition, journey, created, id)
) WITHOUT ROWID;
INSERT INTO objects (org_id, partition, journey, created, id, kind, customer_id, parent_id, state,
                     media_type, detail_type, last_updated, touched, version, key_version, body,
                     sealed)
SELECT org_id, partition, coalesce(customer_id, id), created, id, kind, customer_id, parent_id,
       state, media_type, detail_type, last_updated, touched, version, key_version, body, sealed
FROM objects_by_rowid
ORDER BY org_id, partition, coalesce(customer_id, id), created, id;
DROP TABLE objects_by_rowid;
CREATE UNIQUE INDEX objects_by_id ON objects (org_id, partition, id);
CREATE INDEX objects_by_kind ON objects (org_id, partition, kind, last_updated DESC, id DESC);
CREATE INDEX objects_by_parent ON objects (org_id, partition, parent_id);
CREATE INDEX objects_active_requests ON objects (touched) WHERE kind = 'request' AND state = 'active';
CREATE INDEX objects_to_reseal ON objects (org_id, partition, key_version) WHERE key_version > 0;
-- Searches by customer, erasure, a timeline of one channel, and the count of a journey (read
-- from this index alone: its entries carry the kind, and the key's created and id).
CREATE INDEX objects_by_journey ON objects (org_id, partition, journey, kind);
DELETE FROM sqlite_stat1 WHERE tbl = 'objects';
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('objects', 'objects',                 '10000000 100000 50000 20 2 1'),
    ('objects', 'objects_by_id',           '10000000 100000 50000 1'),
    ('objects', 'objects_by_kind',         '10000000 100000 50000 12500 2 1'),
    ('objects', 'objects_by_journey',      '10000000 100000 50000 20 7'),
    ('objects', 'objects_by_parent',       '10000000 100000 50000 10'),
    ('objects', 'objects_active_requests', '100000 2');
