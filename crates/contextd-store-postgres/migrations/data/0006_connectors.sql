-- contextd data schema, version 6: connectors — the components (IVR, agent desktop, chat and
-- email servers, custom apps) that reach contextd with a connectionData — their credentials,
-- and the short-lived tokens issued to them, which are API keys linked to their connector.

-- The connector whose token a key is (NULL: an ordinary API key, listed with its partition's
-- keys); a revocation of the connector revokes its tokens, found by the first index. The
-- second lists a partition's own keys without walking the tokens, which outnumber them.
ALTER TABLE api_keys ADD COLUMN connector_id uuid;
CREATE INDEX api_keys_by_connector ON api_keys (org_id, connector_id) WHERE connector_id IS NOT NULL;
CREATE INDEX api_keys_listed ON api_keys (org_id, partition, id) WHERE connector_id IS NULL;

-- Connector ids are UUIDv7, so id order is creation order.
CREATE TABLE connectors (
    org_id     uuid        NOT NULL,
    id         uuid        NOT NULL,
    name       text        NOT NULL,
    app_type   text        NOT NULL,
    version    text,
    created    timestamptz NOT NULL,
    last_seen  timestamptz,
    rotated    timestamptz,
    revoked_at timestamptz,
    PRIMARY KEY (org_id, id)
);

-- One client id and secret per partition of a connector; only the SHA-256 of each secret is
-- stored, and of the secret a rotation replaced while its grace lasts. Keyed by client id
-- alone, as api_keys by id: the token endpoint knows no org before it reads the row.
CREATE TABLE connector_credentials (
    client_id      uuid        NOT NULL PRIMARY KEY,
    org_id         uuid        NOT NULL,
    partition      text        NOT NULL CHECK (partition IN ('lab', 'production')),
    connector_id   uuid        NOT NULL,
    secret_hash    bytea       NOT NULL CHECK (length(secret_hash) = 32),
    previous_hash  bytea       CHECK (length(previous_hash) = 32),
    previous_until timestamptz
);
CREATE INDEX connector_credentials_by_connector ON connector_credentials (org_id, connector_id);
