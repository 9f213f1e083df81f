-- One order in the Postgres-only design: decrement the hot row only if
-- stock remains, then record the order, in one transaction. The row lock
-- taken by the UPDATE is held until COMMIT, so every buyer of the SKU queues
-- behind it: this is the serialisation stockgate's Lua gate avoids.
\set customer random(1, 1000000000)
BEGIN;
UPDATE pg_only_stock SET stock = stock - 1 WHERE sku = 'BENCH-SKU' AND stock >= 1;
INSERT INTO pg_only_orders (customer_id, sku, qty, status) VALUES ('c-' || :customer, 'BENCH-SKU', 1, 'confirmed');
COMMIT;
