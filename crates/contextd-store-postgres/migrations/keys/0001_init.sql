-- contextd key store, version 1, for PostgreSQL: wrapped keys only, never a key in the clear.
-- A schema of its own (contextd_keys unless configured), or a database of its own, so that a
-- dump of the data schema alone decrypts nothing. Runs with this schema first on the search
-- path. Versions are u32 in contextd, hence bigint with a range check.

CREATE TABLE data_keys (
    org_id     uuid   NOT NULL,
    partition  text   NOT NULL CHECK (partition IN ('lab', 'production')),
    version    bigint NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
    wrapped_by bigint NOT NULL CHECK (wrapped_by BETWEEN 0 AND 4294967295),
    bytes      bytea  NOT NULL,
    PRIMARY KEY (org_id, partition, version)
);

CREATE TABLE index_keys (
    org_id     uuid   NOT NULL,
    partition  text   NOT NULL CHECK (partition IN ('lab', 'production')),
    version    bigint NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
    wrapped_by bigint NOT NULL CHECK (wrapped_by BETWEEN 0 AND 4294967295),
    bytes      bytea  NOT NULL,
    PRIMARY KEY (org_id, partition)
);

CREATE TABLE customer_keys (
    org_id      uuid   NOT NULL,
    partition   text   NOT NULL CHECK (partition IN ('lab', 'production')),
    customer_id uuid   NOT NULL,
    version     bigint NOT NULL CHECK (version BETWEEN 0 AND 4294967295),
    wrapped_by  bigint NOT NULL CHECK (wrapped_by BETWEEN 0 AND 4294967295),
    bytes       bytea  NOT NULL,
    PRIMARY KEY (org_id, partition, customer_id)
);
