// Package catalog is the stock ledger: the Postgres catalogue of SKUs with
// each one's stocked total (products), the history of every stock movement
// (stock_movements), and the operations that move stock in Redis and record
// the movement here together: set, add, and the rebuild of counters Redis
// lost.
//
// It must not touch order rows (internal/orderstore) and changes Redis only
// through the stock gate (internal/stock).
package catalog

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockgate/stockgate/internal/stock"
)

// Catalog is the Postgres side of the ledger. It is safe for concurrent use.
type Catalog struct {
	pool *pgxpool.Pool
}

// New returns a Catalog over pool. The schema comes from the migrations
// package.
func New(pool *pgxpool.Pool) *Catalog { return &Catalog{pool: pool} }

// Movement is one stock change.
type Movement struct {
	SKU     string
	Op      string // set, add, rebuild, or record
	Qty     int64  // the quantity the operator gave (see stock_movements)
	Stocked int64  // the SKU's stocked total afterwards
}

// RecordStock sets sku's stocked total in the catalogue: the units ever
// made available and not taken back. It is Record with op record.
func (c *Catalog) RecordStock(ctx context.Context, sku string, stocked int64) error {
	return c.Record(ctx, Movement{SKU: sku, Op: "record", Qty: stocked, Stocked: stocked})
}

// Record appends m to stock_movements and sets the SKU's stocked total in
// products, in one statement, so that reconcile can check Redis against the
// catalogue and rebuild can restore Redis from it.
func (c *Catalog) Record(ctx context.Context, m Movement) error {
	return c.RecordAll(ctx, []Movement{m})
}

// RecordAll is Record for many movements, in one statement: a batch of an
// import costs one round trip. No SKU may come twice (one statement cannot
// update a product twice); nothing is written when any movement is bad.
func (c *Catalog) RecordAll(ctx context.Context, ms []Movement) error {
	if len(ms) == 0 {
		return nil
	}
	skus, ops := make([]string, len(ms)), make([]string, len(ms))
	qtys, stocked := make([]int64, len(ms)), make([]int64, len(ms))
	seen := make(map[string]bool, len(ms))
	for i, m := range ms {
		if err := stock.CheckSKU(m.SKU); err != nil {
			return fmt.Errorf("record stock: %w", err)
		}
		if m.Stocked < 0 || m.Qty < 0 {
			return fmt.Errorf("record stock %s: stocked %d and qty %d must be >= 0", m.SKU, m.Stocked, m.Qty)
		}
		if seen[m.SKU] {
			return fmt.Errorf("record stock %s: twice in one batch", m.SKU)
		}
		seen[m.SKU] = true
		skus[i], ops[i], qtys[i], stocked[i] = m.SKU, m.Op, m.Qty, m.Stocked
	}
	_, err := c.pool.Exec(ctx, `
		WITH m AS (
			INSERT INTO stock_movements (sku, op, qty, stocked)
			SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
		)
		INSERT INTO products (sku, stocked, updated_at)
		SELECT sku, stocked, now() FROM unnest($1::text[], $4::bigint[]) AS t (sku, stocked)
		ON CONFLICT (sku) DO UPDATE SET stocked = excluded.stocked, updated_at = excluded.updated_at`,
		skus, ops, qtys, stocked)
	if err != nil {
		if len(ms) == 1 {
			return fmt.Errorf("record stock %s: %w", ms[0].SKU, err)
		}
		return fmt.Errorf("record stock of %d SKUs: %w", len(ms), err)
	}
	return nil
}

// Catalogued reports whether sku has ever been stocked. The worker asks when
// Redis has no counters for a SKU: a catalogued SKU means Redis lost its
// data, not that the storefront sent a bad SKU.
func (c *Catalog) Catalogued(ctx context.Context, sku string) (bool, error) {
	var ok bool
	if err := c.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM products WHERE sku = $1)`, sku).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up product %s: %w", sku, err)
	}
	return ok, nil
}

// CataloguedAmong returns which of skus have ever been stocked, in one
// query.
func (c *Catalog) CataloguedAmong(ctx context.Context, skus []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(skus) == 0 {
		return out, nil
	}
	rows, err := c.pool.Query(ctx, `SELECT sku FROM products WHERE sku = ANY($1)`, skus)
	if err != nil {
		return nil, fmt.Errorf("look up %d products: %w", len(skus), err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("look up %d products: %w", len(skus), err)
		}
		out[s] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up %d products: %w", len(skus), err)
	}
	return out, nil
}

// EachProduct calls fn with every catalogued SKU and its stocked total, in
// byte order of SKU (COLLATE "C", the order Go sorts strings in), as the
// rows arrive: a catalogue of millions is never held in memory. An error
// from fn stops it and is returned.
func (c *Catalog) EachProduct(ctx context.Context, fn func(sku string, stocked int64) error) error {
	rows, err := c.pool.Query(ctx, `SELECT sku, stocked FROM products ORDER BY sku COLLATE "C"`)
	if err != nil {
		return fmt.Errorf("products: %w", err)
	}
	defer rows.Close()
	var sku string
	var stocked int64
	for rows.Next() {
		if err := rows.Scan(&sku, &stocked); err != nil {
			return fmt.Errorf("products: %w", err)
		}
		if err := fn(sku, stocked); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("products: %w", err)
	}
	return nil
}

// Products returns every catalogued SKU's stocked total.
func (c *Catalog) Products(ctx context.Context) (map[string]int64, error) {
	rows, err := c.pool.Query(ctx, `SELECT sku, stocked FROM products`)
	if err != nil {
		return nil, fmt.Errorf("products: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var sku string
		var stocked int64
		if err := rows.Scan(&sku, &stocked); err != nil {
			return nil, fmt.Errorf("products: %w", err)
		}
		out[sku] = stocked
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("products: %w", err)
	}
	return out, nil
}

// RecordReturn records, as op cancel in stock_movements, the units of each
// of orderID's lines that a cancellation after the sale gave back to
// available, with the SKU's stocked total (which a return leaves as it is).
// At most once per order and SKU: a second call records nothing, so the
// flow may run it again after a crash (docs/design.md, "Checkout").
func (c *Catalog) RecordReturn(ctx context.Context, orderID string, lines []stock.Line) error {
	skus := make([]string, len(lines))
	qtys := make([]int64, len(lines))
	for i, l := range lines {
		if err := stock.CheckSKU(l.SKU); err != nil {
			return fmt.Errorf("record return of %s: %w", orderID, err)
		}
		if l.Qty < 1 {
			return fmt.Errorf("record return of %s: qty %d of %s must be >= 1", orderID, l.Qty, l.SKU)
		}
		skus[i], qtys[i] = l.SKU, l.Qty
	}
	_, err := c.pool.Exec(ctx, `
		INSERT INTO stock_movements (sku, op, qty, stocked, order_id)
		SELECT u.sku, 'cancel', u.qty, coalesce(p.stocked, 0), $1
		FROM unnest($2::text[], $3::bigint[]) AS u (sku, qty) LEFT JOIN products p ON p.sku = u.sku
		ON CONFLICT (order_id, sku) WHERE op = 'cancel' DO NOTHING`, orderID, skus, qtys)
	if err != nil {
		return fmt.Errorf("record return of %s: %w", orderID, err)
	}
	return nil
}
