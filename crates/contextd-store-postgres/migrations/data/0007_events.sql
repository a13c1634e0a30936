-- contextd data schema, version 7: the events outbox — one row per change to an object,
-- written in the transaction of the change — the durable cursors of the channels that
-- forward them, and the webhooks an organization registered with their delivery attempts.
-- Ids and names only: an event never holds a field value.

-- A writer inserts its events with `id` NULL: not yet readable. `seq` is the insert order;
-- the sequencer (`publish_events`, in src/events.rs), one at a time across instances, gives
-- the committed rows their ids in `seq` order, above every id given before, so that a reader
-- that has seen id n never finds a smaller one later. Readers read `id IS NOT NULL` only.
CREATE TABLE events (
    seq              bigserial   NOT NULL PRIMARY KEY,
    id               bigint,
    org_id           uuid        NOT NULL,
    partition        text        NOT NULL CHECK (partition IN ('lab', 'production')),
    event_type       text        NOT NULL,
    object_id        uuid        NOT NULL,
    object_type      text        NOT NULL,
    customer_id      uuid,
    parent_id        uuid,
    media_type       text,
    state            text        NOT NULL,
    last_updated     timestamptz NOT NULL,
    contributor_id   text        NOT NULL,
    contributor_type text        NOT NULL,
    time             timestamptz NOT NULL
);
-- What the sequencer has left to number.
CREATE INDEX events_unpublished ON events (seq) WHERE id IS NULL;
-- Readers of every scope, and the guard that no id is given twice.
CREATE UNIQUE INDEX events_by_id ON events (id);
-- Readers of one scope.
CREATE INDEX events_by_scope ON events (org_id, partition, id);
-- Pruning by recorded time.
CREATE INDEX events_by_time ON events (time);

-- The last id the sequencer gave: one row.
CREATE TABLE event_sequence (
    only_row boolean NOT NULL PRIMARY KEY DEFAULT true CHECK (only_row),
    last_id  bigint  NOT NULL
);
INSERT INTO event_sequence (only_row, last_id) VALUES (true, 0);

-- Where each forwarding channel is (`position`: the last event it handled), and who holds
-- its lease, if anyone.
CREATE TABLE event_cursors (
    name        text        COLLATE "C" NOT NULL PRIMARY KEY,
    position    bigint      NOT NULL,
    owner       text,
    lease_until timestamptz
);

-- `filter` is the JSON of contextd_proto::events::EventFilter; `secret` the signing secret
-- sealed under the partition's data key by the core. Its cursor is `webhook:<id>`
-- (contextd_core::store::webhook_cursor) in event_cursors.
CREATE TABLE webhooks (
    org_id      uuid        NOT NULL,
    partition   text        NOT NULL CHECK (partition IN ('lab', 'production')),
    id          uuid        NOT NULL,
    url         text        NOT NULL,
    filter      jsonb       NOT NULL,
    description text        NOT NULL,
    secret      bytea       NOT NULL,
    created     timestamptz NOT NULL,
    PRIMARY KEY (org_id, partition, id)
);
CREATE UNIQUE INDEX webhooks_by_id ON webhooks (id);

-- One row per delivery attempt; `error` is contextd's own description of the failure.
CREATE TABLE webhook_deliveries (
    id          bigserial   NOT NULL PRIMARY KEY,
    webhook_id  uuid        NOT NULL,
    event_id    bigint      NOT NULL,
    event_type  text        NOT NULL,
    attempt     bigint      NOT NULL,
    outcome     text        NOT NULL,
    status      integer,
    error       text,
    at          timestamptz NOT NULL,
    duration_ms bigint      NOT NULL
);
-- A webhook's attempts newest first, of every outcome or of one (and the dead-letter count).
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
CREATE INDEX webhook_deliveries_by_outcome ON webhook_deliveries (webhook_id, outcome, id);
-- Pruning by attempt time.
CREATE INDEX webhook_deliveries_by_time ON webhook_deliveries (at);
