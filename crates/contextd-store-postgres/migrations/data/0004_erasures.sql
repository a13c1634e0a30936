-- contextd data schema 4: a record of every customer erasure, written in the transaction that
-- deletes the data, so that an erase interrupted before the customer's key was destroyed is
-- finished by a retry or by the server's sweep, and a repeated erase is answered, not a 404.
-- Ids and counts only.
CREATE TABLE erasures (
    org_id      uuid        NOT NULL,
    partition   text        NOT NULL CHECK (partition IN ('lab', 'production')),
    customer_id uuid        NOT NULL,
    erased_at   timestamptz NOT NULL,
    objects     bigint      NOT NULL,
    completed   boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (org_id, partition, customer_id)
);
CREATE INDEX erasures_pending ON erasures (erased_at) WHERE NOT completed;

-- Each organization's dictionary version, bumped by every dictionary change in its own
-- transaction; an object write names the version it was validated against and is refused if
-- the dictionary moved on, so that no value is stored in the clear after its field was sealed.
CREATE TABLE dictionary_versions (
    org_id  uuid   NOT NULL PRIMARY KEY,
    version bigint NOT NULL
);
