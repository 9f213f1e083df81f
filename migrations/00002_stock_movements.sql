-- Every stock movement stockctl makes (set, add, rebuild), with the stocked
-- total it left. products keeps only the latest total; this is the history
-- an operator reads to see how a SKU got there, e.g. before and after a
-- rebuild from Postgres when Redis lost its data.

-- +goose Up
CREATE TABLE stock_movements (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sku        text        NOT NULL CHECK (char_length(sku) BETWEEN 1 AND 64),
    op         text        NOT NULL CHECK (op IN ('set', 'add', 'rebuild', 'record')),
    -- set: the units made available; add: the units added; rebuild: the
    -- units made available again; record: the stocked total itself.
    qty        bigint      NOT NULL CHECK (qty >= 0),
    stocked    bigint      NOT NULL CHECK (stocked >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX stock_movements_sku_idx ON stock_movements (sku, id);

-- +goose Down
DROP TABLE stock_movements;
