-- contextd data schema, version 1, for PostgreSQL (and the PostgreSQL-wire engines that
-- distribute by a key: every table that grows with use leads its primary key with org_id,
-- the distribution key). Runs with this schema first on the search path.
--
-- Times are timestamptz holding whole milliseconds; ids are uuid; blind-index tokens and
-- sealed values are bytea; bodies and definitions are jsonb. Enum-like columns (kind, state,
-- role, …) are plain text, not PostgreSQL enums, which distributed engines handle unevenly;
-- the core parses them on the way out. Identifiers compared or sorted as bytes (field ids,
-- names) use COLLATE "C".
-- No foreign keys: a scope (org, partition) is a self-contained slice of rows.

CREATE TABLE orgs (
    id      uuid        NOT NULL PRIMARY KEY,
    name    text        COLLATE "C" NOT NULL UNIQUE,
    created timestamptz NOT NULL
);

-- Only the SHA-256 of each key's secret is stored. Keyed by id alone: a token names its key
-- before its org is known.
CREATE TABLE api_keys (
    id          uuid        NOT NULL PRIMARY KEY,
    org_id      uuid        NOT NULL,
    partition   text        NOT NULL CHECK (partition IN ('lab', 'production')),
    name        text        NOT NULL,
    role        text        NOT NULL,
    secret_hash bytea       NOT NULL CHECK (length(secret_hash) = 32),
    created     timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz
);
CREATE INDEX api_keys_by_scope ON api_keys (org_id, partition, id);

-- Custom dictionary entries, per org (shared by both partitions); `definition` is the JSON
-- of contextd_core::dictionary::{Field, FieldSet}.
CREATE TABLE fields (
    org_id     uuid  NOT NULL,
    id         text  COLLATE "C" NOT NULL,
    definition jsonb NOT NULL,
    PRIMARY KEY (org_id, id)
);

CREATE TABLE fieldsets (
    org_id     uuid  NOT NULL,
    id         text  COLLATE "C" NOT NULL,
    definition jsonb NOT NULL,
    PRIMARY KEY (org_id, id)
);

-- Context objects. `body` is {fieldsets, clear, tags, contributors}: only UNENCRYPTED values
-- are in the clear. `sealed` holds the ENCRYPTED and PII values as
-- contextd_core::store::encode_sealed wrote them, already encrypted by the core.
CREATE TABLE objects (
    org_id       uuid        NOT NULL,
    partition    text        NOT NULL CHECK (partition IN ('lab', 'production')),
    id           uuid        NOT NULL,
    kind         text        NOT NULL,
    customer_id  uuid,
    parent_id    uuid,
    state        text        NOT NULL,
    media_type   text,
    detail_type  text,
    created      timestamptz NOT NULL,
    last_updated timestamptz NOT NULL,
    touched      timestamptz NOT NULL,
    version      bigint      NOT NULL,
    body         jsonb       NOT NULL,
    sealed       bytea       NOT NULL,
    PRIMARY KEY (org_id, partition, id)
);

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
    org_id    uuid  NOT NULL,
    partition text  NOT NULL CHECK (partition IN ('lab', 'production')),
    token     bytea NOT NULL CHECK (length(token) = 16),
    object_id uuid  NOT NULL,
    PRIMARY KEY (org_id, partition, token, object_id)
);
CREATE INDEX tokens_by_object ON tokens (org_id, partition, object_id);

CREATE TABLE flush_jobs (
    org_id    uuid        NOT NULL,
    partition text        NOT NULL CHECK (partition IN ('lab', 'production')),
    id        uuid        NOT NULL,
    kind      text        NOT NULL,
    completed boolean     NOT NULL,
    flushed   bigint      NOT NULL CHECK (flushed >= 0),
    message   text        NOT NULL,
    created   timestamptz NOT NULL,
    PRIMARY KEY (org_id, partition, id)
);
