-- contextd data database, schema 7: connectors — the components (IVR, agent desktop, chat and
-- email servers, custom apps) that reach contextd with a connectionData — their credentials,
-- and the short-lived tokens issued to them, which are API keys linked to their connector.

-- The connector whose token a key is (NULL: an ordinary API key, listed with its partition's
-- keys); a revocation of the connector revokes its tokens, found by the first index. The
-- second lists a partition's own keys without walking the tokens, which outnumber them.
ALTER TABLE api_keys ADD COLUMN connector_id BLOB;
CREATE INDEX api_keys_by_connector ON api_keys (org_id, connector_id) WHERE connector_id IS NOT NULL;
CREATE INDEX api_keys_listed ON api_keys (org_id, partition, id) WHERE connector_id IS NULL;

-- Connector ids are UUIDv7, so id order is creation order.
CREATE TABLE connectors (
    org_id     BLOB    NOT NULL,
    id         BLOB    NOT NULL,
    name       TEXT    NOT NULL,
    app_type   TEXT    NOT NULL,
    version    TEXT,
    created    INTEGER NOT NULL,
    last_seen  INTEGER,
    rotated    INTEGER,
    revoked_at INTEGER,
    PRIMARY KEY (org_id, id)
) WITHOUT ROWID;

-- One client id and secret per partition of a connector; only the SHA-256 of each secret is
-- stored, and of the secret a rotation replaced while its grace lasts. Keyed by client id
-- alone: the token endpoint knows no org before it reads the row.
CREATE TABLE connector_credentials (
    client_id      BLOB    NOT NULL PRIMARY KEY,
    org_id         BLOB    NOT NULL,
    partition      TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    connector_id   BLOB    NOT NULL,
    secret_hash    BLOB    NOT NULL,
    previous_hash  BLOB,
    previous_until INTEGER
) WITHOUT ROWID;
CREATE INDEX connector_credentials_by_connector ON connector_credentials (org_id, connector_id);
