-- The orders row is the arbiter of an order's fate: the first terminal write
-- wins (INSERT ... ON CONFLICT DO NOTHING on the primary key) and every
-- later step, in any worker, follows the row that stands.

-- +goose Up
CREATE TABLE orders (
    order_id     text        PRIMARY KEY CHECK (char_length(order_id) BETWEEN 1 AND 64),
    -- NULL when the order is known only by its id: the sweeper writes
    -- expired rows for holds whose payload it never saw.
    customer_id  text        CHECK (char_length(customer_id) BETWEEN 1 AND 64),
    status       text        NOT NULL CHECK (status IN ('confirmed', 'rejected', 'failed', 'expired')),
    -- Machine-readable: out_of_stock, unknown_sku, invalid: <what>, ...
    reason       text        NOT NULL DEFAULT '',
    -- The human part beside the reason, e.g. which SKU ran out.
    detail       text        NOT NULL DEFAULT '',
    placed_at    timestamptz,
    decided_at   timestamptz NOT NULL DEFAULT now(),
    -- Hash of the payload the row was decided on, so a later payload with
    -- the same order_id can be told apart; '' when the payload is unknown.
    payload_hash text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX orders_status_idx ON orders (status);

CREATE TABLE order_lines (
    order_id text   NOT NULL REFERENCES orders (order_id) ON DELETE CASCADE,
    sku      text   NOT NULL CHECK (char_length(sku) BETWEEN 1 AND 64),
    qty      bigint NOT NULL CHECK (qty BETWEEN 1 AND 10000),
    PRIMARY KEY (order_id, sku)
);

-- Reconcile sums confirmed quantities per SKU.
CREATE INDEX order_lines_sku_idx ON order_lines (sku);

-- The catalogue: each SKU's stocked total (units ever made available and not
-- taken back), so reconcile can check available + held + sold against it.
CREATE TABLE products (
    sku        text        PRIMARY KEY CHECK (char_length(sku) BETWEEN 1 AND 64),
    stocked    bigint      NOT NULL CHECK (stocked >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE products;
DROP TABLE order_lines;
DROP TABLE orders;
