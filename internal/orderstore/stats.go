package orderstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// Undecided returns the ids among orderIDs that have no row yet. Pollers
// pass only what is still undecided, so a whole wait reads each row once.
func (s *Store) Undecided(ctx context.Context, orderIDs []string) ([]string, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id FROM unnest($1::text[]) AS id
		WHERE NOT EXISTS (SELECT 1 FROM orders WHERE order_id = id)`, orderIDs)
	if err != nil {
		return nil, fmt.Errorf("undecided orders: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("undecided orders: %w", err)
	}
	return ids, nil
}

// Stats summarises the rows of the given orders.
type Stats struct {
	Decided, Confirmed, Rejected, Failed, Expired int
	// Latency percentiles of decided_at - placed_at over the decided rows
	// that have a placed_at, whatever their status; zero when none has.
	P50, P95, P99 time.Duration
	// Reasons counts the rows per non-empty reason.
	Reasons map[string]int
}

// Stats summarises the rows of orderIDs, for `enqueue flash-sale --wait`:
// Decided reaching len(orderIDs) means every order has its row. Ids
// without a row are not counted.
func (s *Store) Stats(ctx context.Context, orderIDs []string) (Stats, error) {
	st := Stats{Reasons: map[string]int{}}
	// percentile_disc returns a latency some order really had, rather than
	// an interpolation between two.
	var p50, p95, p99 *int64
	err := s.pool.QueryRow(ctx, `
		WITH d AS (
			SELECT status, (extract(epoch FROM decided_at - placed_at) * 1000000)::bigint AS us
			FROM orders WHERE order_id = ANY($1::text[])
		)
		SELECT count(*),
			count(*) FILTER (WHERE status = 'confirmed'),
			count(*) FILTER (WHERE status = 'rejected'),
			count(*) FILTER (WHERE status = 'failed'),
			count(*) FILTER (WHERE status = 'expired'),
			percentile_disc(0.50) WITHIN GROUP (ORDER BY us),
			percentile_disc(0.95) WITHIN GROUP (ORDER BY us),
			percentile_disc(0.99) WITHIN GROUP (ORDER BY us)
		FROM d`, orderIDs).Scan(&st.Decided, &st.Confirmed, &st.Rejected, &st.Failed, &st.Expired, &p50, &p95, &p99)
	if err != nil {
		return Stats{}, fmt.Errorf("order stats: %w", err)
	}
	st.P50, st.P95, st.P99 = micros(p50), micros(p95), micros(p99)
	rows, err := s.pool.Query(ctx, `
		SELECT reason, count(*) FROM orders
		WHERE order_id = ANY($1::text[]) AND reason <> ''
		GROUP BY reason`, orderIDs)
	if err != nil {
		return Stats{}, fmt.Errorf("order stats: reasons: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var reason string
		var n int
		if err := rows.Scan(&reason, &n); err != nil {
			return Stats{}, fmt.Errorf("order stats: reasons: %w", err)
		}
		st.Reasons[reason] = n
	}
	if err := rows.Err(); err != nil {
		return Stats{}, fmt.Errorf("order stats: reasons: %w", err)
	}
	return st, nil
}

// micros turns microseconds into a Duration, saturating: a placed_at
// centuries off must not wrap around into a plausible latency.
func micros(us *int64) time.Duration {
	switch {
	case us == nil:
		return 0
	case *us > math.MaxInt64/int64(time.Microsecond):
		return math.MaxInt64
	case *us < math.MinInt64/int64(time.Microsecond):
		return math.MinInt64
	}
	return time.Duration(*us) * time.Microsecond
}
