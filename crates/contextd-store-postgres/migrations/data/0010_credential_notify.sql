-- Every committed change to what a request is authenticated with (API keys, users, sessions)
-- notifies every instance, from inside the changing transaction, so that instances may keep
-- keys and sessions in memory between requests (contextd-core `credential_cache.rs`): the
-- notification is sent at commit and never for a rolled-back change, whoever made it — an
-- instance, an older binary, or an operator by hand. New rows need no notice: nothing is
-- cached about a credential that was not found.
CREATE OR REPLACE FUNCTION notify_credentials() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('contextd_credentials', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed AFTER UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials();
CREATE TRIGGER users_changed AFTER UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials();
CREATE TRIGGER sessions_changed AFTER UPDATE OR DELETE OR TRUNCATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION notify_credentials();
