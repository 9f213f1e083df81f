-- The token of the holds a confirmed row relied on (issue 9): the worker no
-- longer reads the row before it reserves, so when a row turns out to stand
-- already, the hold's token (in Redis) and the row's (here) say whether the
-- holds are the ones the row was confirmed with (commit them) or ones a later
-- delivery took (give them back). '' for rows that rely on no hold, and for
-- rows written before this column.

-- +goose Up
ALTER TABLE orders ADD COLUMN hold_token text NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE orders DROP COLUMN hold_token;
