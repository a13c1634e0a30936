-- contextd audit database, schema 1: the append-only audit log, in a file of its own (moved
-- out of the data database, whose readers lose their page caches on every commit to it).
-- Who, when, which object and fields; never values. Same columns as the table it replaces.
CREATE TABLE audit (
    id          BLOB    NOT NULL,
    org_id      BLOB    NOT NULL,
    partition   TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    at          INTEGER NOT NULL,
    actor       BLOB,
    actor_role  TEXT,
    action      TEXT    NOT NULL,
    object_kind TEXT,
    object_id   TEXT,
    fields      TEXT    NOT NULL,
    detail      TEXT    NOT NULL,
    PRIMARY KEY (org_id, partition, id)
) WITHOUT ROWID;
CREATE INDEX audit_by_object ON audit (org_id, partition, object_id, id);

CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
