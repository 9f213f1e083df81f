-- Every order costs one insert into orders and one per line into
-- order_lines, so every index and constraint on them is paid on the hot
-- path, by every rejection of a sold-out sale as much as by a sale
-- (issue 9, docs/benchmarks.md). Only what a query uses stays:
--
--   - order_lines' foreign key to orders goes. The store writes a row and
--     its lines in one statement, so lines never stand without their row;
--     the check cost a trigger, a query and a row lock (WAL) per line.
--   - order_lines_sku_idx goes: no query looks lines up by SKU (reconcile
--     sums every confirmed line in one pass).
--   - orders_status_idx becomes a partial index of confirmed orders: the one
--     status a query filters on (reconcile, rebuild), and a small share of a
--     flash sale's rows.

-- +goose Up
ALTER TABLE order_lines DROP CONSTRAINT order_lines_order_id_fkey;
DROP INDEX order_lines_sku_idx;
DROP INDEX orders_status_idx;
CREATE INDEX orders_confirmed_idx ON orders (order_id) WHERE status = 'confirmed';

-- +goose Down
DROP INDEX orders_confirmed_idx;
CREATE INDEX orders_status_idx ON orders (status);
CREATE INDEX order_lines_sku_idx ON order_lines (sku);
ALTER TABLE order_lines ADD CONSTRAINT order_lines_order_id_fkey
    FOREIGN KEY (order_id) REFERENCES orders (order_id) ON DELETE CASCADE;
