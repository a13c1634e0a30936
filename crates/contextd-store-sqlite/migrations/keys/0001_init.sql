-- contextd key store, schema 1: wrapped keys only, never a key in the clear.
-- Kept in its own file so that a copy of the data database alone decrypts nothing.

CREATE TABLE data_keys (
    org_id     BLOB    NOT NULL,
    partition  TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    version    INTEGER NOT NULL,
    wrapped_by INTEGER NOT NULL,
    bytes      BLOB    NOT NULL,
    PRIMARY KEY (org_id, partition, version)
) WITHOUT ROWID;

CREATE TABLE index_keys (
    org_id     BLOB    NOT NULL,
    partition  TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    version    INTEGER NOT NULL,
    wrapped_by INTEGER NOT NULL,
    bytes      BLOB    NOT NULL,
    PRIMARY KEY (org_id, partition)
) WITHOUT ROWID;

CREATE TABLE customer_keys (
    org_id      BLOB    NOT NULL,
    partition   TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    customer_id BLOB    NOT NULL,
    version     INTEGER NOT NULL,
    wrapped_by  INTEGER NOT NULL,
    bytes       BLOB    NOT NULL,
    PRIMARY KEY (org_id, partition, customer_id)
) WITHOUT ROWID;
