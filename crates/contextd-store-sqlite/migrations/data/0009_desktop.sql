-- contextd data database, schema 9: what the agent desktop needs. An activity tagged
-- `agent:<user name>` is addressed to that agent, and its events say so (the desktop pops
-- them up for that agent); an organization's settings (the origins allowed to frame the
-- desktop) are kept as named JSON values.

ALTER TABLE events ADD COLUMN addressed_to TEXT;

CREATE TABLE org_settings (
    org_id  BLOB    NOT NULL,
    name    TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (org_id, name)
) WITHOUT ROWID;
