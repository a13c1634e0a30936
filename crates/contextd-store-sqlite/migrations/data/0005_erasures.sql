-- contextd data schema 5: a record of every customer erasure, written in the transaction that
-- deletes the data, so that an erase interrupted before the customer's key was destroyed is
-- finished by a retry or by the server's sweep, and a repeated erase is answered, not a 404.
-- Ids and counts only.
CREATE TABLE erasures (
    org_id      BLOB    NOT NULL,
    partition   TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    customer_id BLOB    NOT NULL,
    erased_at   INTEGER NOT NULL,
    objects     INTEGER NOT NULL,
    completed   INTEGER NOT NULL DEFAULT 0 CHECK (completed IN (0, 1)),
    PRIMARY KEY (org_id, partition, customer_id)
) WITHOUT ROWID;
CREATE INDEX erasures_pending ON erasures (erased_at) WHERE completed = 0;
