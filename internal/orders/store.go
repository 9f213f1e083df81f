package orders

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockgate/stockgate/internal/stock"
)

// Status is an order's terminal state. Every accepted order ends in exactly
// one of them (invariant I2).
type Status string

const (
	StatusConfirmed Status = "confirmed" // its units are sold
	StatusRejected  Status = "rejected"  // a business refusal: see Reason
	StatusFailed    Status = "failed"    // retries ran out; its holds were released
	StatusExpired   Status = "expired"   // its hold outlived its deadline undecided
)

func (s Status) valid() bool {
	switch s {
	case StatusConfirmed, StatusRejected, StatusFailed, StatusExpired:
		return true
	}
	return false
}

// Record is an order's row in Postgres with its lines.
type Record struct {
	OrderID string
	// CustomerID is "" when the order is known only by its id, as for the
	// rows the sweeper writes.
	CustomerID string
	Status     Status
	// Reason is machine-readable: out_of_stock, unknown_sku, invalid: <what>,
	// rate_limited, ... and "" for confirmed orders.
	Reason string
	// Detail is the human part beside Reason, such as which SKU ran out.
	Detail      string
	PlacedAt    *time.Time
	DecidedAt   time.Time
	PayloadHash string // Order.Hash of the payload decided on; "" when unknown
	// Lines are sorted by SKU, one per SKU.
	Lines []Line
}

// ErrNotFound means no row exists for the order id.
var ErrNotFound = errors.New("order not found")

// Store is the order store over a pgx pool. It is safe for concurrent use.
type Store struct {
	pool    *pgxpool.Pool
	decides *batcher[Record, decided]
	gets    *batcher[string, got]
}

type decided struct {
	stands   Record
	inserted bool
	err      error
}

type got struct {
	rec Record
	err error
}

// Batching bounds: a batch is one statement and, for Decide, one commit.
const (
	maxBatch     = 128
	maxInflight  = 4
	batchTimeout = 10 * time.Second
)

// NewStore returns a Store over pool. The schema comes from the migrations
// package.
func NewStore(pool *pgxpool.Pool) *Store {
	s := &Store{pool: pool}
	s.decides = &batcher[Record, decided]{maxBatch: maxBatch, maxInflight: maxInflight, timeout: batchTimeout, exec: s.decideMany}
	s.gets = &batcher[string, got]{maxBatch: maxBatch, maxInflight: maxInflight, timeout: batchTimeout, exec: s.getMany}
	return s
}

const recordColumns = `order_id, coalesce(customer_id, ''), status, reason, detail, placed_at, decided_at, payload_hash`

// decideSQL inserts the row and its lines in one statement, so it is
// atomic without a transaction and costs one round trip on the hot path.
// The lines' foreign key is checked at the end of the statement, after the
// orders row exists. On conflict the CTE inserts nothing and returns no row.
const decideSQL = `
WITH o AS (
	INSERT INTO orders (order_id, customer_id, status, reason, detail, placed_at, decided_at, payload_hash)
	VALUES ($1, NULLIF($2, ''), $3, $4, $5, $6, coalesce($7, now()), $8)
	ON CONFLICT (order_id) DO NOTHING
	RETURNING ` + recordColumns + `
), l AS (
	INSERT INTO order_lines (order_id, sku, qty)
	SELECT o.order_id, u.sku, u.qty FROM o, unnest($9::text[], $10::bigint[]) AS u (sku, qty)
)
SELECT * FROM o`

// Decide records rec, with its lines, only if no row exists for rec.OrderID:
// the first terminal write wins. It returns the row that stands afterwards
// and whether this call inserted it. A zero DecidedAt becomes the database's
// now(). Lines naming the same SKU are merged first.
//
// Concurrent calls for one id are safe: Postgres makes the losers wait for
// the winner's insert to commit, and they then read and return its row.
func (s *Store) Decide(ctx context.Context, rec Record) (stands Record, inserted bool, err error) {
	if !rec.Status.valid() {
		return Record{}, false, fmt.Errorf("decide order %s: unknown status %q", rec.OrderID, rec.Status)
	}
	r, ok := s.decides.do(ctx, rec)
	if !ok {
		return Record{}, false, fmt.Errorf("decide order %s: %w", rec.OrderID, ctx.Err())
	}
	return r.stands, r.inserted, r.err
}

// decideOne is Decide for a single record, in its own statement.
func (s *Store) decideOne(ctx context.Context, rec Record) (stands Record, inserted bool, err error) {
	if !rec.Status.valid() {
		return Record{}, false, fmt.Errorf("decide order %s: unknown status %q", rec.OrderID, rec.Status)
	}
	lines := normalizeLines(rec.Lines)
	slices.SortFunc(lines, func(a, b Line) int { return strings.Compare(a.SKU, b.SKU) })
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
		rec.OrderID, rec.CustomerID, string(rec.Status), rec.Reason, rec.Detail, rec.PlacedAt, decidedAt, rec.PayloadHash,
		skus, qtys)
	stands, err = scanRecord(row, nil, nil)
	switch {
	case err == nil:
		if len(lines) > 0 {
			stands.Lines = lines
		}
		return stands, true, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return Record{}, false, fmt.Errorf("decide order %s: %w", rec.OrderID, err)
	}
	// Another writer got there first. In READ COMMITTED this new statement
	// sees its committed row.
	stands, err = s.Get(ctx, rec.OrderID)
	if err != nil {
		return Record{}, false, fmt.Errorf("decide order %s: read the standing row: %w", rec.OrderID, err)
	}
	return stands, false, nil
}

// Get returns the order's row with its lines, or ErrNotFound.
func (s *Store) Get(ctx context.Context, orderID string) (Record, error) {
	r, ok := s.gets.do(ctx, orderID)
	if !ok {
		return Record{}, fmt.Errorf("get order %s: %w", orderID, ctx.Err())
	}
	return r.rec, r.err
}

// getOne is Get in its own statement.
func (s *Store) getOne(ctx context.Context, orderID string) (Record, error) {
	rows, err := s.pool.Query(ctx, getManySQL, []string{orderID})
	if err != nil {
		return Record{}, fmt.Errorf("get order %s: %w", orderID, err)
	}
	found, err := collectRecords(rows)
	if err != nil {
		return Record{}, fmt.Errorf("get order %s: %w", orderID, err)
	}
	rec, ok := found[orderID]
	if !ok {
		return Record{}, ErrNotFound
	}
	return rec, nil
}

func scanRecord(row pgx.Row, skus *[]string, qtys *[]int64) (Record, error) {
	var r Record
	var status string
	dest := []any{&r.OrderID, &r.CustomerID, &status, &r.Reason, &r.Detail, &r.PlacedAt, &r.DecidedAt, &r.PayloadHash}
	if skus != nil {
		dest = append(dest, skus, qtys)
	}
	if err := row.Scan(dest...); err != nil {
		return Record{}, err
	}
	r.Status = Status(status)
	return r, nil
}

// ConfirmedBySKU sums the quantities of confirmed orders per SKU: what
// Redis must show as sold once the system is quiet (invariant I1).
func (s *Store) ConfirmedBySKU(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT l.sku, sum(l.qty)::bigint
		FROM order_lines l JOIN orders o ON o.order_id = l.order_id
		WHERE o.status = 'confirmed'
		GROUP BY l.sku`)
	if err != nil {
		return nil, fmt.Errorf("confirmed by sku: %w", err)
	}
	return collectMap(rows, "confirmed by sku")
}

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

// Movement is one stock change made through stockctl.
type Movement struct {
	SKU     string
	Op      string // set, add, rebuild, or record
	Qty     int64  // the quantity the operator gave (see stock_movements)
	Stocked int64  // the SKU's stocked total afterwards
}

// RecordStock sets sku's stocked total in the catalogue: the units ever
// made available and not taken back. It is RecordMovement with op record.
func (s *Store) RecordStock(ctx context.Context, sku string, stocked int64) error {
	return s.RecordMovement(ctx, Movement{SKU: sku, Op: "record", Qty: stocked, Stocked: stocked})
}

// RecordMovement appends m to stock_movements and sets the SKU's stocked
// total in products, in one statement. stockctl calls it beside every set,
// add and rebuild, so reconcile can check Redis against the catalogue and
// rebuild can restore Redis from it.
func (s *Store) RecordMovement(ctx context.Context, m Movement) error {
	if err := stock.CheckSKU(m.SKU); err != nil {
		return fmt.Errorf("record stock: %w", err)
	}
	if m.Stocked < 0 || m.Qty < 0 {
		return fmt.Errorf("record stock %s: stocked %d and qty %d must be >= 0", m.SKU, m.Stocked, m.Qty)
	}
	_, err := s.pool.Exec(ctx, `
		WITH m AS (
			INSERT INTO stock_movements (sku, op, qty, stocked) VALUES ($1, $2, $3, $4)
		)
		INSERT INTO products (sku, stocked, updated_at) VALUES ($1, $4, now())
		ON CONFLICT (sku) DO UPDATE SET stocked = excluded.stocked, updated_at = excluded.updated_at`,
		m.SKU, m.Op, m.Qty, m.Stocked)
	if err != nil {
		return fmt.Errorf("record stock %s: %w", m.SKU, err)
	}
	return nil
}

// Catalogued reports whether sku has ever been stocked through stockctl.
// The handler asks when Redis has no counters for a SKU: a catalogued SKU
// means Redis lost its data, not that the storefront sent a bad SKU.
func (s *Store) Catalogued(ctx context.Context, sku string) (bool, error) {
	var ok bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM products WHERE sku = $1)`, sku).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up product %s: %w", sku, err)
	}
	return ok, nil
}

// Products returns every catalogued SKU's stocked total.
func (s *Store) Products(ctx context.Context) (map[string]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT sku, stocked FROM products`)
	if err != nil {
		return nil, fmt.Errorf("products: %w", err)
	}
	return collectMap(rows, "products")
}

func collectMap(rows pgx.Rows, what string) (map[string]int64, error) {
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var k string
		var v int64
		if err := rows.Scan(&k, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out[k] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}
