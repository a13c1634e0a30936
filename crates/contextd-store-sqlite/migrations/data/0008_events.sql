-- contextd data database, schema 8: the events outbox, the cursors of the channels that
-- forward it, and webhooks with their delivery attempts. An event names an object and its
-- links, never a field value.

-- One row per object change, written in the transaction of the change. AUTOINCREMENT: an id
-- is never reused, even after pruning removed the newest rows; the single writer thread
-- commits in id order, so a reader that saw id n has seen every id below it.
CREATE TABLE events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id           BLOB    NOT NULL,
    partition        TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    event_type       TEXT    NOT NULL,
    object_id        BLOB    NOT NULL,
    kind             TEXT    NOT NULL,
    customer_id      BLOB,
    parent_id        BLOB,
    media_type       TEXT,
    state            TEXT    NOT NULL,
    last_updated     INTEGER NOT NULL,
    contributor_id   TEXT    NOT NULL,
    contributor_type TEXT    NOT NULL,
    recorded         INTEGER NOT NULL
);
CREATE INDEX events_by_scope ON events (org_id, partition, id);
CREATE INDEX events_by_recorded ON events (recorded);

-- Where each forwarding channel (a webhook, the NATS stream) is in the outbox, and which
-- instance holds it until when.
CREATE TABLE event_cursors (
    name        TEXT    NOT NULL PRIMARY KEY,
    position    INTEGER NOT NULL,
    owner       TEXT,
    lease_until INTEGER
) WITHOUT ROWID;

-- `filter` is the JSON of contextd_proto::events::EventFilter; `secret` is sealed under the
-- partition's data key. The cursor of a webhook is named `webhook:<id>`.
CREATE TABLE webhooks (
    id          BLOB    NOT NULL PRIMARY KEY,
    org_id      BLOB    NOT NULL,
    partition   TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    url         TEXT    NOT NULL,
    filter      TEXT    NOT NULL,
    description TEXT    NOT NULL,
    secret      BLOB    NOT NULL,
    created     INTEGER NOT NULL
);
CREATE INDEX webhooks_by_scope ON webhooks (org_id, partition, created);

-- Delivery attempts, pruned with the events. The partial index counts dead letters without
-- walking the delivered ones; the index on `at` serves pruning.
CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id  BLOB    NOT NULL,
    event_id    INTEGER NOT NULL,
    event_type  TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    outcome     TEXT    NOT NULL,
    status      INTEGER,
    error       TEXT,
    at          INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (webhook_id) WHERE outcome = 'dead';
CREATE INDEX webhook_deliveries_by_at ON webhook_deliveries (at);
