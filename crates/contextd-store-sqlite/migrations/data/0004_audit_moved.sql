-- contextd data database, schema 4: the audit log lives in its own file now
-- (`<name>-audit.db`, migrations/audit). `SqliteStore::open` copies the rows of this table
-- there before this migration runs; dropping the table drops its triggers and index.
DROP TABLE IF EXISTS audit;
