-- The Postgres-only design a user would otherwise pick: the stock lives in a
-- row, and each order is one transaction on it. See postgres-only.sql.
DROP TABLE IF EXISTS pg_only_stock, pg_only_orders;
CREATE TABLE pg_only_stock (sku text PRIMARY KEY, stock bigint NOT NULL CHECK (stock >= 0));
CREATE TABLE pg_only_orders (
    order_id    bigserial PRIMARY KEY,
    customer_id text NOT NULL,
    sku         text NOT NULL,
    qty         int NOT NULL,
    status      text NOT NULL,
    placed_at   timestamptz NOT NULL DEFAULT now()
);
INSERT INTO pg_only_stock VALUES ('BENCH-SKU', 2000000000);
