-- contextd data database, schema 2: people, sessions, partner grants and the audit log.

-- Users sign in with name and password; only the Argon2id PHC string is stored.
CREATE TABLE users (
    id            BLOB    NOT NULL PRIMARY KEY,
    org_id        BLOB    NOT NULL,
    partition     TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    created       INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX users_by_name ON users (org_id, partition, name);

-- Web sessions: only the SHA-256 of the cookie secret and of the CSRF token are stored.
CREATE TABLE sessions (
    secret_hash BLOB    NOT NULL PRIMARY KEY,
    user_id     BLOB    NOT NULL,
    org_id      BLOB    NOT NULL,
    partition   TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    role        TEXT    NOT NULL,
    csrf_hash   BLOB    NOT NULL,
    created     INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) WITHOUT ROWID;

-- Partner grants: a partner principal sees ENCRYPTED and PII values until expiry.
CREATE TABLE grants (
    id         BLOB    NOT NULL PRIMARY KEY,
    org_id     BLOB    NOT NULL,
    partition  TEXT    NOT NULL CHECK (partition IN ('lab', 'production')),
    principal  BLOB    NOT NULL,
    granted_by BLOB    NOT NULL,
    created    INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX grants_by_principal ON grants (org_id, partition, principal);

-- Append-only audit log: who, when, which object and fields; never values.
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
