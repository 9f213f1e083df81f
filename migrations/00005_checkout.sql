-- Checkout holds (issue 13, docs/design.md "Checkout"): an order:place with
-- a "hold" is recorded held, the one status that is not terminal, and later
-- moves, by one guarded UPDATE each (the first of racing moves wins), to
-- confirmed, cancelled or expired; a confirmed order may still be cancelled
-- after the sale, and its units go back to available, once.
--
--   - status gains held and cancelled.
--   - hold_until is a held row's deadline: past it, the row can only expire.
--   - previous_status and changed_at say where the row's last move came
--     from and when; decided_at stays the time of the first decision.
--   - returned_at is when a cancellation after the sale had its units back
--     in Redis and in stock_movements; the sweeper finishes those without it.
--   - stock_movements records each such return per SKU (op cancel) with its
--     order_id, at most once per order and SKU.
--
-- Every new column is nullable or has a constant default, so existing rows
-- and the writers of the old version keep working while workers roll.

-- +goose Up
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('held', 'confirmed', 'rejected', 'failed', 'expired', 'cancelled'));
ALTER TABLE orders
    ADD COLUMN hold_until      timestamptz,
    ADD COLUMN previous_status text NOT NULL DEFAULT '',
    ADD COLUMN changed_at      timestamptz,
    ADD COLUMN returned_at     timestamptz;

-- The sweeper's two queries: held rows past their deadline, and
-- cancellations after the sale whose units are not back yet. Both sets are
-- small next to a sale's rows.
CREATE INDEX orders_held_idx ON orders (hold_until) WHERE status = 'held';
CREATE INDEX orders_unreturned_idx ON orders (order_id)
    WHERE status = 'cancelled' AND previous_status = 'confirmed' AND returned_at IS NULL;

ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_op_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_op_check
    CHECK (op IN ('set', 'add', 'rebuild', 'record', 'cancel'));
-- cancel: the units of order_id that went back to available (qty), with the
-- stocked total, which a return does not change.
ALTER TABLE stock_movements ADD COLUMN order_id text;
CREATE UNIQUE INDEX stock_movements_cancel_idx ON stock_movements (order_id, sku) WHERE op = 'cancel';

-- +goose Down
DROP INDEX stock_movements_cancel_idx;
DELETE FROM stock_movements WHERE op = 'cancel';
ALTER TABLE stock_movements DROP COLUMN order_id;
ALTER TABLE stock_movements DROP CONSTRAINT stock_movements_op_check;
ALTER TABLE stock_movements ADD CONSTRAINT stock_movements_op_check
    CHECK (op IN ('set', 'add', 'rebuild', 'record'));
DROP INDEX orders_unreturned_idx;
DROP INDEX orders_held_idx;
ALTER TABLE orders
    DROP COLUMN returned_at,
    DROP COLUMN changed_at,
    DROP COLUMN previous_status,
    DROP COLUMN hold_until;
-- A held or cancelled row has no status the old schema knows: a held one
-- never sold, a cancelled one is not sold any more.
UPDATE orders SET status = 'expired' WHERE status = 'held';
UPDATE orders SET status = 'failed', reason = 'cancelled' WHERE status = 'cancelled';
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('confirmed', 'rejected', 'failed', 'expired'));
