-- contextd data schema, version 2: people, sessions, partner grants and the audit log.

-- Users sign in with name and password; only the Argon2id PHC string is stored. Keyed by
-- id alone: a session names its user before its org is known.
CREATE TABLE users (
    id            uuid        NOT NULL PRIMARY KEY,
    org_id        uuid        NOT NULL,
    partition     text        NOT NULL CHECK (partition IN ('lab', 'production')),
    name          text        COLLATE "C" NOT NULL,
    role          text        NOT NULL,
    password_hash text        NOT NULL,
    created       timestamptz NOT NULL,
    disabled      boolean     NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX users_by_name ON users (org_id, partition, name);

-- Web sessions: only the SHA-256 of the cookie secret and of the CSRF token are stored.
CREATE TABLE sessions (
    secret_hash bytea       NOT NULL PRIMARY KEY CHECK (length(secret_hash) = 32),
    user_id     uuid        NOT NULL,
    org_id      uuid        NOT NULL,
    partition   text        NOT NULL CHECK (partition IN ('lab', 'production')),
    role        text        NOT NULL,
    csrf_hash   bytea       NOT NULL CHECK (length(csrf_hash) = 32),
    created     timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);

-- Partner grants: a partner principal sees ENCRYPTED and PII values until expiry.
CREATE TABLE grants (
    id         uuid        NOT NULL PRIMARY KEY,
    org_id     uuid        NOT NULL,
    partition  text        NOT NULL CHECK (partition IN ('lab', 'production')),
    principal  uuid        NOT NULL,
    granted_by uuid        NOT NULL,
    created    timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX grants_by_principal ON grants (org_id, partition, principal);

-- Append-only audit log: who, when, which object and fields; never values. Ids are UUIDv7,
-- so id order is time order.
CREATE TABLE audit (
    org_id      uuid        NOT NULL,
    partition   text        NOT NULL CHECK (partition IN ('lab', 'production')),
    id          uuid        NOT NULL,
    at          timestamptz NOT NULL,
    actor       uuid,
    actor_role  text,
    action      text        NOT NULL,
    object_kind text,
    object_id   text,
    fields      jsonb       NOT NULL,
    detail      text        NOT NULL,
    PRIMARY KEY (org_id, partition, id)
);
CREATE INDEX audit_by_object ON audit (org_id, partition, object_id, id);

CREATE FUNCTION audit_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only';
END
$$;
CREATE TRIGGER audit_is_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
CREATE TRIGGER audit_is_append_only_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_is_append_only();
