package orderstore

import (
	"context"
	"fmt"
	"time"
)

// Sale is one line of a confirmed order.
type Sale struct {
	OrderID, SKU string
	Qty          int64
	Token        string // the row's hold token
}

// ConfirmedSince lists the lines on skus of the orders confirmed at or after
// since: the sales a failover could have lost the holds of, which the
// failover repair checks against Redis (docs/design.md, "Failover").
func (s *Store) ConfirmedSince(ctx context.Context, skus []string, since time.Time) ([]Sale, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT o.order_id, l.sku, l.qty, o.hold_token
		FROM orders o JOIN order_lines l ON l.order_id = o.order_id
		WHERE o.status = 'confirmed' AND o.decided_at >= $1 AND l.sku = ANY($2)
		ORDER BY l.sku, o.order_id`, since, skus)
	if err != nil {
		return nil, fmt.Errorf("confirmed since %v: %w", since, err)
	}
	defer rows.Close()
	var out []Sale
	for rows.Next() {
		var v Sale
		if err := rows.Scan(&v.OrderID, &v.SKU, &v.Qty, &v.Token); err != nil {
			return nil, fmt.Errorf("confirmed since %v: %w", since, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("confirmed since %v: %w", since, err)
	}
	return out, nil
}
