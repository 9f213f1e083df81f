package orderstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stockgate/stockgate/internal/orders"
)

// transitionSQL is one move of a row (docs/design.md, "Checkout"), guarded
// by the status it moves from and, for a held row, by its deadline. Two
// racing moves are serialised by the row lock: the second re-reads the row
// after the first commits (READ COMMITTED re-checks the WHERE on the new
// version) and moves nothing, so the first wins. decided_at stays the first
// decision's; previous_status and changed_at record the move.
const transitionSQL = `
UPDATE orders o SET status = $3, previous_status = o.status, reason = $4, detail = $5, changed_at = $6
WHERE o.order_id = $1 AND o.status = $2
	AND ($7 = 0 OR ($7 = 1 AND o.hold_until > $6) OR ($7 = 2 AND o.hold_until <= $6))
RETURNING ` + getColumns

// Transition applies t as one guarded update and returns the row that
// stands afterwards, with its lines, and whether this call moved it. An
// order with no row is orders.ErrNotFound.
func (s *Store) Transition(ctx context.Context, t orders.Transition) (orders.Record, bool, error) {
	if err := t.Validate(); err != nil {
		return orders.Record{}, false, err
	}
	rows, err := s.pool.Query(ctx, transitionSQL, t.OrderID, string(t.From), string(t.To), t.Reason, t.Detail, t.At, int(t.Deadline))
	if err != nil {
		return orders.Record{}, false, fmt.Errorf("move order %s to %s: %w", t.OrderID, t.To, err)
	}
	found, err := collectRecords(rows)
	if err != nil {
		return orders.Record{}, false, fmt.Errorf("move order %s to %s: %w", t.OrderID, t.To, err)
	}
	if rec, ok := found[t.OrderID]; ok {
		return rec, true, nil
	}
	// Not in t.From (or its deadline disagreed): the row that stands.
	rec, err := s.getOne(ctx, t.OrderID)
	if err != nil {
		if errors.Is(err, orders.ErrNotFound) {
			return orders.Record{}, false, err
		}
		return orders.Record{}, false, fmt.Errorf("move order %s to %s: read the standing row: %w", t.OrderID, t.To, err)
	}
	return rec, false, nil
}

// MarkReturned sets returned_at on a cancellation after the sale whose
// units are back: from then on nothing gives them back again. A second
// call keeps the first time.
func (s *Store) MarkReturned(ctx context.Context, orderID string) error {
	_, err := s.pool.Exec(ctx, `
		UPDATE orders SET returned_at = now()
		WHERE order_id = $1 AND status = 'cancelled' AND previous_status = 'confirmed' AND returned_at IS NULL`, orderID)
	if err != nil {
		return fmt.Errorf("mark order %s returned: %w", orderID, err)
	}
	return nil
}

// ExpiredHeld returns up to limit held rows whose deadline is at or before
// now, with their lines, earliest deadline first: checkouts the sweeper
// expires (orders.Flow.Expire).
func (s *Store) ExpiredHeld(ctx context.Context, now time.Time, limit int) ([]orders.Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+getColumns+` FROM orders o
		WHERE o.status = 'held' AND o.hold_until <= $1 ORDER BY o.hold_until LIMIT $2`, now, limit)
	if err != nil {
		return nil, fmt.Errorf("expired held orders: %w", err)
	}
	return collectList(rows, "expired held orders")
}

// Unreturned returns up to limit cancellations after the sale whose units
// are not back yet (no returned_at): a worker died between the row's move
// and the give-back, and no retry finished it. The sweeper does.
func (s *Store) Unreturned(ctx context.Context, limit int) ([]orders.Record, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+getColumns+` FROM orders o
		WHERE o.status = 'cancelled' AND o.previous_status = 'confirmed' AND o.returned_at IS NULL
		ORDER BY o.order_id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("unreturned cancellations: %w", err)
	}
	return collectList(rows, "unreturned cancellations")
}

func collectList(rows pgx.Rows, what string) ([]orders.Record, error) {
	defer rows.Close()
	var out []orders.Record
	for rows.Next() {
		var skus []string
		var qtys []int64
		rec, err := scanRecord(rows, &skus, &qtys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		for i := range skus {
			rec.Lines = append(rec.Lines, orders.Line{SKU: skus[i], Qty: qtys[i]})
		}
		out = append(out, rec)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
