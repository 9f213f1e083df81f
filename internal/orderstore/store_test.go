package orderstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/testsvc/testdb"
)

// storeBundle is what a store test works with.
type storeBundle struct {
	store *Store
	pool  *pgxpool.Pool
}

func setupStore(t *testing.T) (*storeBundle, context.Context) {
	t.Helper()
	pool := testdb.New(t)
	return &storeBundle{store: New(pool), pool: pool}, context.Background()
}

// decide calls Decide and fails the test on error.
func (b *storeBundle) decide(t *testing.T, rec orders.Record) (orders.Record, bool) {
	t.Helper()
	got, inserted, err := b.store.Decide(context.Background(), rec)
	if err != nil {
		t.Fatalf("Decide(%s, %s) = %v, want nil", rec.OrderID, rec.Status, err)
	}
	return got, inserted
}

// pgTime is a time Postgres stores exactly (microsecond precision).
func pgTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestStoreDecideFirstWriteWins(t *testing.T) {
	t.Parallel()
	b, ctx := setupStore(t)

	placed := pgTime("2026-11-26T10:00:00.123456Z")
	first := orders.Record{
		OrderID: "o-1", CustomerID: "c-1", Status: orders.StatusConfirmed, PlacedAt: &placed,
		PayloadHash: "hash-1", Lines: []orders.Line{{SKU: "B", Qty: 2}, {SKU: "A", Qty: 1}},
	}
	before := time.Now()
	got, inserted := b.decide(t, first)
	if !inserted {
		t.Fatalf("Decide(o-1 confirmed) inserted = false on an empty table, want true")
	}
	// The database set decided_at; the clocks of this test and of Postgres
	// are the same machine's, so a minute of slack is plenty.
	if got.DecidedAt.Before(before.Add(-time.Minute)) || got.DecidedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("Decide(o-1).DecidedAt = %v, want about now (%v)", got.DecidedAt, before)
	}
	want := first
	want.DecidedAt = got.DecidedAt
	want.Lines = []orders.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 2}} // sorted by SKU
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decide(o-1) standing row mismatch (-want +got):\n%s", diff)
	}

	// A later, different terminal write for the same order changes nothing
	// and gets the first row back.
	second := orders.Record{
		OrderID: "o-1", Status: orders.StatusExpired, Reason: "hold_expired", Detail: "late",
		DecidedAt: pgTime("2030-01-01T00:00:00Z"), Lines: []orders.Line{{SKU: "C", Qty: 9}},
	}
	again, inserted := b.decide(t, second)
	if inserted {
		t.Errorf("Decide(o-1 expired) inserted = true over an existing row, want false")
	}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("Decide(o-1 expired) standing row mismatch (-want +got):\n%s", diff)
	}
	stored, err := b.store.Get(ctx, "o-1")
	if err != nil {
		t.Fatalf("Get(o-1) = %v, want nil", err)
	}
	if diff := cmp.Diff(want, stored); diff != "" {
		t.Errorf("Get(o-1) mismatch (-want +got):\n%s", diff)
	}
	var lines int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM order_lines WHERE order_id = 'o-1'`).Scan(&lines); err != nil {
		t.Fatal(err)
	}
	if lines != 2 {
		t.Errorf("order_lines of o-1 = %d rows, want 2 (the loser's line must not be inserted)", lines)
	}
}

func TestStoreDecideConcurrent(t *testing.T) {
	t.Parallel()
	b, ctx := setupStore(t)

	const writers = 20
	statuses := []orders.Status{orders.StatusConfirmed, orders.StatusRejected, orders.StatusFailed, orders.StatusExpired}
	type result struct {
		rec      orders.Record
		inserted bool
		err      error
	}
	results := make([]result, writers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			rec := orders.Record{
				OrderID: "o-race", CustomerID: fmt.Sprintf("c-%d", i), Status: statuses[i%len(statuses)],
				Reason: fmt.Sprintf("writer-%d", i), PayloadHash: fmt.Sprintf("h-%d", i),
				Lines: []orders.Line{{SKU: fmt.Sprintf("SKU-%d", i), Qty: int64(i + 1)}},
			}
			<-start
			got, inserted, err := b.store.Decide(ctx, rec)
			results[i] = result{got, inserted, err}
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("writer %d: Decide = %v, want nil", i, r.err)
		}
		if r.inserted {
			if winner >= 0 {
				t.Fatalf("writers %d and %d both inserted o-race, want exactly one", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no writer inserted o-race, want exactly one")
	}
	want := results[winner].rec
	if want.Reason != fmt.Sprintf("writer-%d", winner) || len(want.Lines) != 1 || want.Lines[0].Qty != int64(winner+1) {
		t.Fatalf("winner %d's standing row = %+v, want its own record", winner, want)
	}
	for i, r := range results {
		if diff := cmp.Diff(want, r.rec); diff != "" {
			t.Errorf("writer %d saw another standing row than the winner's (-winner +got):\n%s", i, diff)
		}
	}
	var rows, lines int
	if err := b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_lines)`).Scan(&rows, &lines); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || lines != 1 {
		t.Errorf("after %d concurrent Decides: %d orders rows and %d order_lines rows, want 1 and 1", writers, rows, lines)
	}
}

func TestStoreRoundTrip(t *testing.T) {
	t.Parallel()
	b, ctx := setupStore(t)

	tests := []struct {
		name string
		rec  orders.Record
		want orders.Record
	}{
		{
			name: "sweeper row known only by id",
			rec:  orders.Record{OrderID: "o-expired", Status: orders.StatusExpired, Reason: "hold_expired", DecidedAt: pgTime("2026-11-26T10:05:00Z")},
			want: orders.Record{OrderID: "o-expired", Status: orders.StatusExpired, Reason: "hold_expired", DecidedAt: pgTime("2026-11-26T10:05:00Z")},
		},
		{
			name: "duplicate SKUs merged and sorted",
			rec: orders.Record{
				OrderID: "o-merged", CustomerID: "c-1", Status: orders.StatusRejected, Reason: "out_of_stock", Detail: "A has 0 available",
				DecidedAt: pgTime("2026-11-26T10:00:01.000001Z"), PayloadHash: "h",
				Lines: []orders.Line{{SKU: "Z", Qty: 1}, {SKU: "A", Qty: 2}, {SKU: "Z", Qty: 3}},
			},
			want: orders.Record{
				OrderID: "o-merged", CustomerID: "c-1", Status: orders.StatusRejected, Reason: "out_of_stock", Detail: "A has 0 available",
				DecidedAt: pgTime("2026-11-26T10:00:01.000001Z"), PayloadHash: "h",
				Lines: []orders.Line{{SKU: "A", Qty: 2}, {SKU: "Z", Qty: 4}},
			},
		},
		{
			name: "invalid reason of a hostile payload",
			rec:  orders.Record{OrderID: "o-invalid", Status: orders.StatusRejected, Reason: `invalid: lines[0].sku must be characters of A-Z a-z 0-9 _ . -, got "{x}"`, DecidedAt: pgTime("2026-11-26T10:00:00Z")},
			want: orders.Record{OrderID: "o-invalid", Status: orders.StatusRejected, Reason: `invalid: lines[0].sku must be characters of A-Z a-z 0-9 _ . -, got "{x}"`, DecidedAt: pgTime("2026-11-26T10:00:00Z")},
		},
	}
	for _, tt := range tests {
		got, inserted := b.decide(t, tt.rec)
		if !inserted {
			t.Errorf("%s: Decide inserted = false, want true", tt.name)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: Decide mismatch (-want +got):\n%s", tt.name, diff)
		}
		stored, err := b.store.Get(ctx, tt.rec.OrderID)
		if err != nil {
			t.Fatalf("%s: Get = %v, want nil", tt.name, err)
		}
		if diff := cmp.Diff(tt.want, stored); diff != "" {
			t.Errorf("%s: Get mismatch (-want +got):\n%s", tt.name, diff)
		}
	}

	var nullCustomer bool
	if err := b.pool.QueryRow(ctx, `SELECT customer_id IS NULL FROM orders WHERE order_id = 'o-expired'`).Scan(&nullCustomer); err != nil {
		t.Fatal(err)
	}
	if !nullCustomer {
		t.Errorf("customer_id of a row without customer is not NULL, want NULL")
	}

	if _, err := b.store.Get(ctx, "o-missing"); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("Get(o-missing) = %v, want orders.ErrNotFound", err)
	}

	// GetMany returns the decided ones among the ids, as Get does, and
	// leaves the undecided out.
	many, err := b.store.GetMany(ctx, []string{"o-merged", "o-missing", "o-expired"})
	if err != nil {
		t.Fatalf("GetMany = %v, want nil", err)
	}
	want := map[string]orders.Record{"o-merged": tests[1].want, "o-expired": tests[0].want}
	if diff := cmp.Diff(want, many); diff != "" {
		t.Errorf("GetMany mismatch (-want +got):\n%s", diff)
	}
}

// TestStoreDecideRefusesAtomically checks that a row whose lines break a
// constraint leaves nothing behind: no orders row without its lines.
func TestStoreDecideRefusesAtomically(t *testing.T) {
	t.Parallel()
	b, ctx := setupStore(t)

	bad := []orders.Record{
		{OrderID: "o-1", Status: "shipped"},
		{OrderID: "o-1", Status: orders.StatusConfirmed, Lines: []orders.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 0}}},
		{OrderID: "o-1", Status: orders.StatusConfirmed, Lines: []orders.Line{{SKU: "A", Qty: 10001}}},
		{OrderID: "", Status: orders.StatusRejected},
	}
	for _, rec := range bad {
		if _, _, err := b.store.Decide(ctx, rec); err == nil {
			t.Errorf("Decide(%+v) = nil, want an error", rec)
		}
	}
	var rows, lines int
	if err := b.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_lines)`).Scan(&rows, &lines); err != nil {
		t.Fatal(err)
	}
	if rows != 0 || lines != 0 {
		t.Errorf("after refused Decides: %d orders rows and %d order_lines rows, want 0 and 0", rows, lines)
	}
}

func TestStoreConfirmedBySKU(t *testing.T) {
	t.Parallel()
	b, ctx := setupStore(t)

	got, err := b.store.ConfirmedBySKU(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("ConfirmedBySKU() on no orders = %v, %v; want empty, nil", got, err)
	}
	for _, rec := range []orders.Record{
		{OrderID: "o-1", Status: orders.StatusConfirmed, Lines: []orders.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 1}}},
		{OrderID: "o-2", Status: orders.StatusConfirmed, Lines: []orders.Line{{SKU: "A", Qty: 5}}},
		{OrderID: "o-3", Status: orders.StatusRejected, Reason: "out_of_stock", Lines: []orders.Line{{SKU: "A", Qty: 100}, {SKU: "C", Qty: 1}}},
		{OrderID: "o-4", Status: orders.StatusFailed, Reason: "retries_exhausted", Lines: []orders.Line{{SKU: "B", Qty: 7}}},
		{OrderID: "o-5", Status: orders.StatusExpired, Reason: "hold_expired"},
		{OrderID: "o-6", Status: orders.StatusConfirmed, Lines: []orders.Line{{SKU: "C", Qty: 10000}}},
		{OrderID: "o-7", Status: orders.StatusConfirmed, Lines: []orders.Line{{SKU: "a", Qty: 1}, {SKU: "_z", Qty: 1}}},
	} {
		b.decide(t, rec)
	}
	got, err = b.store.ConfirmedBySKU(ctx)
	if err != nil {
		t.Fatalf("ConfirmedBySKU() = %v, want nil", err)
	}
	if diff := cmp.Diff(map[string]int64{"A": 7, "B": 1, "C": 10000, "_z": 1, "a": 1}, got); diff != "" {
		t.Errorf("ConfirmedBySKU() mismatch (-want +got):\n%s", diff)
	}
	// EachConfirmed gives the same in Go's byte order, whatever the
	// database's collation ("_" sorts between upper and lower case).
	var skus []string
	var qtys []int64
	if err := b.store.EachConfirmed(ctx, func(sku string, qty int64) error {
		skus, qtys = append(skus, sku), append(qtys, qty)
		return nil
	}); err != nil {
		t.Fatalf("EachConfirmed = %v", err)
	}
	if !cmp.Equal(skus, []string{"A", "B", "C", "_z", "a"}) || !cmp.Equal(qtys, []int64{7, 1, 10000, 1, 1}) {
		t.Errorf("EachConfirmed = %v %v, want A B C _z a in byte order with their sums", skus, qtys)
	}
}

func TestStoreStats(t *testing.T) {
	t.Parallel()
	b, ctx := setupStore(t)

	// 100 orders placed at one instant and decided 1ms, 2ms, ... 100ms
	// later, in shuffled order so that insertion order cannot pass for
	// latency order.
	placed := pgTime("2026-11-26T10:00:00Z")
	var ids []string
	for k := range 100 {
		i := (k*37)%100 + 1 // a permutation of 1..100
		id := fmt.Sprintf("o-%03d", i)
		ids = append(ids, id)
		rec := orders.Record{OrderID: id, CustomerID: "c", PlacedAt: &placed, DecidedAt: placed.Add(time.Duration(i) * time.Millisecond)}
		switch {
		case i <= 10:
			rec.Status = orders.StatusConfirmed
		case i <= 90:
			rec.Status, rec.Reason = orders.StatusRejected, "out_of_stock"
		case i <= 95:
			rec.Status, rec.Reason = orders.StatusRejected, "rate_limited"
		case i <= 98:
			rec.Status, rec.Reason = orders.StatusFailed, "retries_exhausted"
		default:
			rec.Status, rec.Reason = orders.StatusExpired, "hold_expired"
		}
		b.decide(t, rec)
	}
	// Rows outside the asked ids must not count, nor ids without rows.
	b.decide(t, orders.Record{OrderID: "other", Status: orders.StatusConfirmed, PlacedAt: &placed, DecidedAt: placed.Add(time.Hour)})
	ids = append(ids, "never-decided")

	got, err := b.store.Stats(ctx, ids)
	if err != nil {
		t.Fatalf("Stats() = %v, want nil", err)
	}
	want := Stats{
		Decided: 100, Confirmed: 10, Rejected: 85, Failed: 3, Expired: 2,
		P50: 50 * time.Millisecond, P95: 95 * time.Millisecond, P99: 99 * time.Millisecond,
		Reasons: map[string]int{"out_of_stock": 80, "rate_limited": 5, "retries_exhausted": 3, "hold_expired": 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}

	// A row without placed_at counts as decided, but has no latency.
	b.decide(t, orders.Record{OrderID: "no-placed", Status: orders.StatusExpired, Reason: "hold_expired"})
	got, err = b.store.Stats(ctx, []string{"no-placed"})
	if err != nil {
		t.Fatalf("Stats(no-placed) = %v, want nil", err)
	}
	want = Stats{Decided: 1, Expired: 1, Reasons: map[string]int{"hold_expired": 1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats(no-placed) mismatch (-want +got):\n%s", diff)
	}

	got, err = b.store.Stats(ctx, nil)
	if err != nil {
		t.Fatalf("Stats(nil) = %v, want nil", err)
	}
	if diff := cmp.Diff(Stats{Reasons: map[string]int{}}, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Stats(nil) mismatch (-want +got):\n%s", diff)
	}
}

func BenchmarkStoreDecide(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark")
	}
	pool := testdb.New(b)
	s := New(pool)
	ctx := context.Background()
	placed := time.Now()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		_, inserted, err := s.Decide(ctx, orders.Record{
			OrderID: fmt.Sprintf("bench-%d", i), CustomerID: "c", Status: orders.StatusConfirmed,
			PlacedAt: &placed, PayloadHash: "h", Lines: []orders.Line{{SKU: "SKU-1", Qty: 1}},
		})
		if err != nil || !inserted {
			b.Fatalf("Decide = %v, %v", inserted, err)
		}
	}
}
