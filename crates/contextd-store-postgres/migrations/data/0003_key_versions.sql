-- contextd data schema, version 3: which partition data-key version seals an object's values
-- (0: the customer's own key, or nothing sealed), so that re-encryption after a key rotation
-- finds what is left to do. u32 in contextd, hence bigint with a range check.
ALTER TABLE objects ADD COLUMN key_version bigint NOT NULL DEFAULT 0
    CHECK (key_version BETWEEN 0 AND 4294967295);
CREATE INDEX objects_to_reseal ON objects (org_id, partition, key_version) WHERE key_version > 0;
