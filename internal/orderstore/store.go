// Package orderstore is the Postgres store of order rows: every order's one
// terminal row (orders) and its lines (order_lines), and what is read back
// from them (standing rows, confirmed quantities per SKU, flash-sale
// statistics). The row is the arbiter of an order's fate: Decide inserts
// only if absent, so the first terminal write wins.
//
// It must not touch Redis or the stock gate, and must not change the
// schema (the migrations package does). The catalogue and the stock ledger
// (products, stock_movements) belong to internal/catalog.
package orderstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockgate/stockgate/internal/batch"
	"github.com/stockgate/stockgate/internal/orders"
)

// Store is the order store over a pgx pool. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	decides *batch.Batcher[orders.Record, decided]
	gets    *batch.Batcher[string, got]
}

type decided struct {
	stands   orders.Record
	inserted bool
	err      error
}

type got struct {
	rec orders.Record
	err error
}

// batchConfig bounds the store's batches: one batch is one statement and,
// for Decide, one commit. One batch in flight at a time is what makes
// batches form: with more, a lone request nearly always finds a free slot
// and goes alone, and Postgres pays a statement and a commit per order
// (docs/benchmarks.md measured both). A batch never waits to fill: a
// request arriving while none runs goes at once.
var batchConfig = batch.Config{MaxBatch: 128, MaxInflight: 1, Timeout: 10 * time.Second}

// WriteFence is how long after an attempt's start its confirmed row can
// still land, for an attempt bounded by handlerTimeout: its deadline, plus
// the longest a Decide batch taken before that deadline may still run, plus
// a margin for the clocks of the worker and stockctl. The rebuild after a
// Redis data loss waits this long before it reads sold from Postgres
// (docs/design.md, "The fence").
func WriteFence(handlerTimeout time.Duration) time.Duration {
	return handlerTimeout + batchConfig.Timeout + fenceMargin
}

const fenceMargin = 5 * time.Second

// New returns a Store over pool. The schema comes from the migrations
// package.
func New(pool *pgxpool.Pool) *Store {
	s := &Store{pool: pool}
	s.decides = batch.New(batchConfig, s.decideMany)
	s.gets = batch.New(batchConfig, s.getMany)
	return s
}

const recordColumns = `order_id, coalesce(customer_id, ''), status, reason, detail, placed_at, decided_at, payload_hash, hold_token,
	hold_until, previous_status, changed_at, returned_at`

// decideSQL inserts the row and its lines in one statement, so it is
// atomic without a transaction and costs one round trip on the hot path:
// lines never stand without their row, which is why order_lines needs no
// foreign key (migration 00004). On conflict the CTE inserts nothing and
// returns no row.
const decideSQL = `
WITH o AS (
	INSERT INTO orders (order_id, customer_id, status, reason, detail, placed_at, decided_at, payload_hash, hold_token, hold_until)
	VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, coalesce($7, now()), $8, $9, $12)
	ON CONFLICT (order_id) DO NOTHING
	RETURNING ` + recordColumns + `
), l AS (
	INSERT INTO order_lines (order_id, sku, qty)
	SELECT o.order_id, u.sku, u.qty FROM o, unnest($10::text[], $11::bigint[]) AS u (sku, qty)
)
SELECT * FROM o`

// Decide records rec, with its lines, only if no row exists for rec.OrderID:
// the first terminal write wins. It returns the row that stands afterwards
// and whether this call inserted it. A zero DecidedAt becomes the database's
// now(). Lines naming the same SKU are merged first.
//
// Concurrent calls for one id are safe: Postgres makes the losers wait for
// the winner's insert to commit, and they then read and return its row.
func (s *Store) Decide(ctx context.Context, rec orders.Record) (stands orders.Record, inserted bool, err error) {
	if !rec.Status.Valid() {
		return orders.Record{}, false, fmt.Errorf("decide order %s: unknown status %q", rec.OrderID, rec.Status)
	}
	r, ok := s.decides.Do(ctx, rec)
	if !ok {
		return orders.Record{}, false, fmt.Errorf("decide order %s: %w", rec.OrderID, ctx.Err())
	}
	return r.stands, r.inserted, r.err
}

// decideOne is Decide for a single record, in its own statement.
func (s *Store) decideOne(ctx context.Context, rec orders.Record) (stands orders.Record, inserted bool, err error) {
	if !rec.Status.Valid() {
		return orders.Record{}, false, fmt.Errorf("decide order %s: unknown status %q", rec.OrderID, rec.Status)
	}
	lines := sortedLines(rec.Lines)
	skus := make([]string, len(lines))
	qtys := make([]int64, len(lines))
	for i, l := range lines {
		skus[i], qtys[i] = l.SKU, l.Qty
	}
	var decidedAt *time.Time
	if !rec.DecidedAt.IsZero() {
		decidedAt = &rec.DecidedAt
	}
	row := s.pool.QueryRow(ctx, decideSQL,
		rec.OrderID, rec.CustomerID, string(rec.Status), rec.Reason, rec.Detail, rec.PlacedAt, decidedAt, rec.PayloadHash, rec.HoldToken,
		skus, qtys, rec.HoldUntil)
	stands, err = scanRecord(row, nil, nil)
	switch {
	case err == nil:
		if len(lines) > 0 {
			stands.Lines = lines
		}
		return stands, true, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return orders.Record{}, false, fmt.Errorf("decide order %s: %w", rec.OrderID, err)
	}
	// Another writer got there first. In READ COMMITTED this new statement
	// sees its committed row.
	stands, err = s.Get(ctx, rec.OrderID)
	if err != nil {
		return orders.Record{}, false, fmt.Errorf("decide order %s: read the standing row: %w", rec.OrderID, err)
	}
	return stands, false, nil
}

// Get returns the order's row with its lines, or orders.ErrNotFound.
func (s *Store) Get(ctx context.Context, orderID string) (orders.Record, error) {
	r, ok := s.gets.Do(ctx, orderID)
	if !ok {
		return orders.Record{}, fmt.Errorf("get order %s: %w", orderID, ctx.Err())
	}
	return r.rec, r.err
}

// GetMany returns the rows, with their lines, of those among orderIDs that
// have one, in one statement: the ids missing from the map are undecided.
// A poller waiting for many orders reads each row once this way, the tick
// it lands.
func (s *Store) GetMany(ctx context.Context, orderIDs []string) (map[string]orders.Record, error) {
	rows, err := s.pool.Query(ctx, getManySQL, orderIDs)
	if err != nil {
		return nil, fmt.Errorf("get %d orders: %w", len(orderIDs), err)
	}
	found, err := collectRecords(rows)
	if err != nil {
		return nil, fmt.Errorf("get %d orders: %w", len(orderIDs), err)
	}
	return found, nil
}

// getOne is Get in its own statement.
func (s *Store) getOne(ctx context.Context, orderID string) (orders.Record, error) {
	rows, err := s.pool.Query(ctx, getOneSQL, orderID)
	if err != nil {
		return orders.Record{}, fmt.Errorf("get order %s: %w", orderID, err)
	}
	found, err := collectRecords(rows)
	if err != nil {
		return orders.Record{}, fmt.Errorf("get order %s: %w", orderID, err)
	}
	rec, ok := found[orderID]
	if !ok {
		return orders.Record{}, orders.ErrNotFound
	}
	return rec, nil
}

func scanRecord(row pgx.Row, skus *[]string, qtys *[]int64) (orders.Record, error) {
	var r orders.Record
	var status, previous string
	dest := []any{&r.OrderID, &r.CustomerID, &status, &r.Reason, &r.Detail, &r.PlacedAt, &r.DecidedAt, &r.PayloadHash, &r.HoldToken,
		&r.HoldUntil, &previous, &r.ChangedAt, &r.ReturnedAt}
	if skus != nil {
		dest = append(dest, skus, qtys)
	}
	if err := row.Scan(dest...); err != nil {
		return orders.Record{}, err
	}
	r.Status, r.PreviousStatus = orders.Status(status), orders.Status(previous)
	return r, nil
}

// ConfirmedBySKU sums the quantities of confirmed orders per SKU: what
// Redis must show as sold once the system is quiet (invariant I1). An order
// cancelled after its sale is not confirmed any more, so this is the
// confirmed quantities minus those cancelled after confirm.
func (s *Store) ConfirmedBySKU(ctx context.Context) (map[string]int64, error) {
	return Sums(ctx, s.EachConfirmed)
}

// Sums collects one of the per-SKU streams (EachConfirmed, EachHeld,
// EachReturned) into a map, for a catalogue small enough to hold.
func Sums(ctx context.Context, each func(ctx context.Context, fn func(sku string, qty int64) error) error) (map[string]int64, error) {
	out := map[string]int64{}
	err := each(ctx, func(sku string, qty int64) error {
		out[sku] = qty
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EachConfirmed calls fn with every SKU that confirmed orders bought and
// their quantities summed, in byte order of SKU (COLLATE "C", Go's order),
// as the rows arrive. An error from fn stops it and is returned.
func (s *Store) EachConfirmed(ctx context.Context, fn func(sku string, qty int64) error) error {
	return s.eachBySKU(ctx, "confirmed by sku", `o.status = 'confirmed'`, fn)
}

// EachHeld is EachConfirmed for held orders: the checkouts in progress.
func (s *Store) EachHeld(ctx context.Context, fn func(sku string, qty int64) error) error {
	return s.eachBySKU(ctx, "held by sku", `o.status = 'held'`, fn)
}

// EachReturned is EachConfirmed for orders cancelled after their sale.
func (s *Store) EachReturned(ctx context.Context, fn func(sku string, qty int64) error) error {
	return s.eachBySKU(ctx, "cancelled after sale by sku", `o.status = 'cancelled' AND o.previous_status = 'confirmed'`, fn)
}

func (s *Store) eachBySKU(ctx context.Context, what, where string, fn func(sku string, qty int64) error) error {
	rows, err := s.pool.Query(ctx, `
		SELECT l.sku, sum(l.qty)::bigint
		FROM order_lines l JOIN orders o ON o.order_id = l.order_id
		WHERE `+where+`
		GROUP BY l.sku
		ORDER BY l.sku COLLATE "C"`)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var sku string
	var qty int64
	for rows.Next() {
		if err := rows.Scan(&sku, &qty); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if err := fn(sku, qty); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// sortedLines merges lines naming the same SKU and sorts them by SKU: the
// form rows are stored and returned in.
func sortedLines(lines []orders.Line) []orders.Line {
	out := orders.Order{Lines: lines}.Normalize().Lines
	slices.SortFunc(out, func(a, b orders.Line) int { return strings.Compare(a.SKU, b.SKU) })
	return out
}
