package orderstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stockgate/stockgate/internal/orders"
)

// decideManySQL is decideSQL for many records: one statement, one commit.
// Rows go in sorted by order id, so two batches holding the same ids take
// their unique-index locks in the same order and cannot deadlock.
const decideManySQL = `
WITH input AS (
	SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[],
		$13::timestamptz[])
		AS t (order_id, customer_id, status, reason, detail, placed_at, decided_at, payload_hash, hold_token, hold_until)
), o AS (
	INSERT INTO orders (order_id, customer_id, status, reason, detail, placed_at, decided_at, payload_hash, hold_token, hold_until)
	SELECT order_id, NULLIF(customer_id, ''), status, reason, detail, placed_at, coalesce(decided_at, now()), payload_hash, hold_token, hold_until
	FROM input ORDER BY order_id
	ON CONFLICT (order_id) DO NOTHING
	RETURNING ` + recordColumns + `
), l AS (
	INSERT INTO order_lines (order_id, sku, qty)
	SELECT li.order_id, li.sku, li.qty
	FROM unnest($10::text[], $11::text[], $12::bigint[]) AS li (order_id, sku, qty)
	JOIN o ON o.order_id = li.order_id
)
SELECT * FROM o`

// decideMany runs a batch of Decide calls. The first record for an id is
// the one offered; a later one for the same id in the batch finds the row
// that stands, as it would have one statement later.
func (s *Store) decideMany(ctx context.Context, recs []orders.Record) []decided {
	out := make([]decided, len(recs))
	if len(recs) == 1 {
		out[0].stands, out[0].inserted, out[0].err = s.decideOne(ctx, recs[0])
		return out
	}
	first := map[string]int{}
	var order []int
	lines := make([][]orders.Line, len(recs))
	for i, r := range recs {
		if _, dup := first[r.OrderID]; dup {
			continue
		}
		first[r.OrderID] = i
		order = append(order, i)
		lines[i] = sortedLines(r.Lines)
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(recs[a].OrderID, recs[b].OrderID) })

	n := len(order)
	ids, customers, statuses, reasons, details, hashes, tokens := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	placed, decidedAt, holdUntil := make([]*time.Time, n), make([]*time.Time, n), make([]*time.Time, n)
	var lineIDs, lineSKUs []string
	var lineQtys []int64
	for j, i := range order {
		r := recs[i]
		ids[j], customers[j], statuses[j], reasons[j], details[j], hashes[j], tokens[j] = r.OrderID, r.CustomerID, string(r.Status), r.Reason, r.Detail, r.PayloadHash, r.HoldToken
		placed[j], holdUntil[j] = r.PlacedAt, r.HoldUntil
		if !r.DecidedAt.IsZero() {
			decidedAt[j] = &r.DecidedAt
		}
		for _, l := range lines[i] {
			lineIDs, lineSKUs, lineQtys = append(lineIDs, r.OrderID), append(lineSKUs, l.SKU), append(lineQtys, l.Qty)
		}
	}

	inserted := map[string]orders.Record{}
	rows, err := s.pool.Query(ctx, decideManySQL, ids, customers, statuses, reasons, details, placed, decidedAt, hashes, tokens,
		lineIDs, lineSKUs, lineQtys, holdUntil)
	if err == nil {
		for rows.Next() {
			rec, serr := scanRecord(rows, nil, nil)
			if serr != nil {
				err = serr
				break
			}
			inserted[rec.OrderID] = rec
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil {
		// One bad record must not fail its batch-mates: decide each alone.
		for i, r := range recs {
			out[i].stands, out[i].inserted, out[i].err = s.decideOne(ctx, r)
		}
		return out
	}

	for i, r := range recs {
		fi := first[r.OrderID]
		if rec, ok := inserted[r.OrderID]; ok {
			rec.Lines = lines[fi]
			out[i] = decided{stands: rec, inserted: fi == i}
			continue
		}
		// Another writer got there first. In READ COMMITTED a new statement
		// sees its committed row.
		stands, gerr := s.getOne(ctx, r.OrderID)
		if gerr != nil {
			gerr = fmt.Errorf("decide order %s: read the standing row: %w", r.OrderID, gerr)
		}
		out[i] = decided{stands: stands, err: gerr}
	}
	return out
}

// getColumns are a row's columns and its lines, sorted by SKU. The lines
// are read per row through order_lines' primary key: a join with a GROUP BY
// let the plan Postgres caches for the prepared statement hash-join the
// whole order_lines table, which cost milliseconds per call once it held a
// sale's worth of rows.
const getColumns = recordColumns + `,
	coalesce((SELECT array_agg(l.sku ORDER BY l.sku) FROM order_lines l WHERE l.order_id = o.order_id), '{}'),
	coalesce((SELECT array_agg(l.qty ORDER BY l.sku) FROM order_lines l WHERE l.order_id = o.order_id), '{}')`

const (
	getOneSQL  = `SELECT ` + getColumns + ` FROM orders o WHERE o.order_id = $1`
	getManySQL = `SELECT ` + getColumns + ` FROM orders o WHERE o.order_id = ANY($1)`
)

// getMany runs a batch of Get calls in one statement.
func (s *Store) getMany(ctx context.Context, ids []string) []got {
	out := make([]got, len(ids))
	if len(ids) == 1 {
		out[0].rec, out[0].err = s.getOne(ctx, ids[0])
		return out
	}
	found, err := s.GetMany(ctx, ids)
	for i, id := range ids {
		switch rec, ok := found[id]; {
		case err != nil:
			out[i].err = err
		case !ok:
			out[i].err = orders.ErrNotFound
		default:
			out[i].rec = rec
		}
	}
	return out
}

func collectRecords(rows pgx.Rows) (map[string]orders.Record, error) {
	defer rows.Close()
	found := map[string]orders.Record{}
	for rows.Next() {
		var skus []string
		var qtys []int64
		rec, err := scanRecord(rows, &skus, &qtys)
		if err != nil {
			return nil, err
		}
		for i := range skus {
			rec.Lines = append(rec.Lines, orders.Line{SKU: skus[i], Qty: qtys[i]})
		}
		found[rec.OrderID] = rec
	}
	return found, rows.Err()
}
