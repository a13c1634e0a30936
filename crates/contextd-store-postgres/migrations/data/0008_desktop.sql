-- contextd data schema 8: what the agent desktop needs. An activity tagged
-- `agent:<user name>` is addressed to that agent, and its events say so (the desktop pops
-- them up for that agent); an organization's settings (the origins allowed to frame the
-- desktop) are kept as named JSON values.

ALTER TABLE events ADD COLUMN addressed_to text;

CREATE TABLE org_settings (
    org_id  uuid        NOT NULL,
    name    text        NOT NULL,
    value   text        NOT NULL,
    updated timestamptz NOT NULL,
    PRIMARY KEY (org_id, name)
);
