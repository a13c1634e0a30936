-- contextd data database, schema 6: a user's sessions, found without a scan, so that
-- disabling or deleting a user or resetting a password ends them all in one short write.
CREATE INDEX sessions_by_user ON sessions (user_id);
