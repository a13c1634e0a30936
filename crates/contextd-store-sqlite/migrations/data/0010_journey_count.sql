-- The journey index carries each object's kind, so that counting a customer's journey (the
-- `total` of a timeline page; requests, activities and details, not the customer itself)
-- reads only this index, never the rows (issue 16: 9 % of a timeline's server CPU).
DROP INDEX objects_by_customer;
CREATE INDEX objects_by_customer ON objects (org_id, partition, customer_id, created DESC, id DESC, kind);
INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
    ('objects', 'objects_by_customer', '10000000 100000 50000 20 2 1 1');
