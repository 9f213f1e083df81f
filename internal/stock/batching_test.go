package stock_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// loggedGate is a Gate over a flushed database whose client logs every
// script call.
func loggedGate(t *testing.T, cfg stock.Config) (*stock.Gate, *redis.Client, *scriptLog) {
	t.Helper()
	_, rdb := newGate(t, stock.Config{})
	log := &scriptLog{}
	rdb.AddHook(log)
	return stock.New(rdb, cfg), rdb, log
}

// wantOneCall fails the test unless calls is one script call for n orders.
func wantOneCall(t *testing.T, calls []scriptCall, n int, argPos int) {
	t.Helper()
	if len(calls) != 1 {
		t.Fatalf("script calls = %d, want 1 for the whole batch", len(calls))
	}
	if got := calls[0].args[argPos]; got != strconv.Itoa(n) {
		t.Errorf("orders in the script call = %s, want %d", got, n)
	}
}

// TestReserveBatch runs one batch of orders with every outcome side by side
// in one script call: each order gets its own outcome, a refused order
// leaves its lines' stock as it was, and each order sees the stock the
// orders before it in the batch left.
func TestReserveBatch(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb, log := loggedGate(t, stock.Config{Retention: time.Hour})
	stockSKU(t, g, "A", 10)
	stockSKU(t, g, "B", 3)
	deadline := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	held := mustReserve(t, g, "held", []stock.Line{{SKU: "A", Qty: 2}}, deadline)
	done := mustReserve(t, g, "done", []stock.Line{{SKU: "B", Qty: 1}}, deadline)
	if _, err := g.Commit(ctx, "done", done.Token, []string{"B"}); err != nil {
		t.Fatal(err)
	}
	// A: 8 available, B: 2.
	log.take()

	line := func(sku string, qty int64) stock.Line { return stock.Line{SKU: sku, Qty: qty} }
	tests := []struct {
		order stock.ReserveOrder
		want  stock.Reservation
		err   error
	}{
		{order: stock.ReserveOrder{OrderID: "r1", Token: "t-r1", Lines: []stock.Line{line("A", 3)}},
			want: stock.Reservation{Outcome: stock.Reserved, Token: "t-r1"}},
		{order: stock.ReserveOrder{OrderID: "short", Token: "t-short", Lines: []stock.Line{line("B", 1), line("A", 6)}},
			err: &stock.OutOfStockError{SKU: "A", Available: 5}},
		{order: stock.ReserveOrder{OrderID: "ghost", Token: "t-ghost", Lines: []stock.Line{line("B", 1), line("ghost", 1)}},
			err: &stock.NotStockedError{SKU: "ghost"}},
		{order: stock.ReserveOrder{OrderID: "held", Token: "t-x", Lines: []stock.Line{line("A", 3)}},
			err: stock.ErrConflict},
		{order: stock.ReserveOrder{OrderID: "held", Token: "t-y", Lines: []stock.Line{line("A", 2)}},
			want: stock.Reservation{Outcome: stock.AlreadyHeld, Token: held.Token}},
		{order: stock.ReserveOrder{OrderID: "done", Token: "t-z", Lines: []stock.Line{line("B", 1)}},
			want: stock.Reservation{Outcome: stock.AlreadyCommitted, Token: done.Token}},
		// B still has 2: the refused orders took none of it.
		{order: stock.ReserveOrder{OrderID: "r2", Token: "t-r2", Lines: []stock.Line{line("B", 2)}},
			want: stock.Reservation{Outcome: stock.Reserved, Token: "t-r2"}},
		// r2 took the last of B earlier in this call.
		{order: stock.ReserveOrder{OrderID: "late", Token: "t-late", Lines: []stock.Line{line("B", 1)}},
			err: &stock.OutOfStockError{SKU: "B", Available: 0}},
		// r1 holds A since earlier in this call: a duplicate delivery.
		{order: stock.ReserveOrder{OrderID: "r1", Token: "t-again", Lines: []stock.Line{line("A", 3)}},
			want: stock.Reservation{Outcome: stock.AlreadyHeld, Token: "t-r1"}},
	}
	orders := make([]stock.ReserveOrder, len(tests))
	for i, tt := range tests {
		orders[i] = tt.order
		orders[i].Deadline = deadline
	}
	got, errs := g.ReserveBatch(ctx, orders)
	if len(got) != len(tests) || len(errs) != len(tests) {
		t.Fatalf("ReserveBatch of %d orders = %d results, %d errors", len(tests), len(got), len(errs))
	}
	for i, tt := range tests {
		o := tt.order.OrderID
		switch {
		case tt.err == nil:
			if errs[i] != nil {
				t.Errorf("order %d (%s) = %v, want %+v", i, o, errs[i], tt.want)
			}
		case errors.Is(tt.err, stock.ErrConflict):
			if !errors.Is(errs[i], stock.ErrConflict) {
				t.Errorf("order %d (%s) = %v, want ErrConflict", i, o, errs[i])
			}
		default:
			if diff := cmp.Diff(tt.err, errs[i]); diff != "" {
				t.Errorf("order %d (%s) error mismatch (-want +got):\n%s", i, o, diff)
			}
		}
		if diff := cmp.Diff(tt.want, got[i]); diff != "" {
			t.Errorf("order %d (%s) mismatch (-want +got):\n%s", i, o, diff)
		}
	}
	wantOneCall(t, log.take(), len(tests), 0)

	wantLevels(t, g, stock.Levels{SKU: "A", Available: 5, Held: 5, Stocked: true})
	wantLevels(t, g, stock.Levels{SKU: "B", Available: 0, Held: 2, Sold: 1, Stocked: true})
	for _, h := range []struct {
		sku, order string
		want       holdState
	}{
		{"A", "r1", heldHold(3, deadline, "t-r1")},
		{"B", "r2", heldHold(2, deadline, "t-r2")},
		{"A", "held", heldHold(2, deadline, held.Token)},
		{"B", "done", committedHold(1, deadline, done.Token)},
		{"A", "short", holdState{}},
		{"B", "short", holdState{}},
		{"B", "ghost", holdState{}},
		{"B", "late", holdState{}},
	} {
		if diff := cmp.Diff(h.want, readHold(t, rdb, h.sku, h.order)); diff != "" {
			t.Errorf("hold %s/%s mismatch (-want +got):\n%s", h.sku, h.order, diff)
		}
	}
	if keys := rdb.Keys(ctx, "*ghost*").Val(); len(keys) != 0 {
		t.Errorf("keys of ghost after the batch = %v, want none", keys)
	}
	holdsAddUp(t, rdb, "A")
	holdsAddUp(t, rdb, "B")
}

// TestCommitBatch runs one batch of commits with every outcome side by side
// in one script call.
func TestCommitBatch(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb, log := loggedGate(t, stock.Config{Retention: time.Hour})
	stockSKU(t, g, "A", 10)
	stockSKU(t, g, "B", 10)
	deadline := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	sell := mustReserve(t, g, "sell", []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 1}}, deadline)
	mustReserve(t, g, "stale", []stock.Line{{SKU: "A", Qty: 3}}, deadline)
	done := mustReserve(t, g, "done", []stock.Line{{SKU: "B", Qty: 1}}, deadline)
	if _, err := g.Commit(ctx, "done", done.Token, []string{"B"}); err != nil {
		t.Fatal(err)
	}
	twice := mustReserve(t, g, "twice", []stock.Line{{SKU: "A", Qty: 1}}, deadline)
	log.take()

	tests := []struct {
		order stock.CommitOrder
		want  stock.CommitResult
	}{
		{stock.CommitOrder{OrderID: "sell", Token: sell.Token, SKUs: []string{"A", "B"}}, stock.CommitResult{Units: 3}},
		{stock.CommitOrder{OrderID: "stale", Token: "row-token", SKUs: []string{"A"}}, stock.CommitResult{Released: 3}},
		{stock.CommitOrder{OrderID: "none", Token: "t", SKUs: []string{"A", "B"}}, stock.CommitResult{Missing: 2}},
		{stock.CommitOrder{OrderID: "done", Token: done.Token, SKUs: []string{"B"}}, stock.CommitResult{}},
		{stock.CommitOrder{OrderID: "twice", Token: twice.Token, SKUs: []string{"A"}}, stock.CommitResult{Units: 1}},
		// A second commit of the same order in the call finds the first's
		// tombstone.
		{stock.CommitOrder{OrderID: "twice", Token: twice.Token, SKUs: []string{"A"}}, stock.CommitResult{}},
	}
	orders := make([]stock.CommitOrder, len(tests))
	for i, tt := range tests {
		orders[i] = tt.order
	}
	got, errs := g.CommitBatch(ctx, orders)
	for i, tt := range tests {
		if errs[i] != nil {
			t.Errorf("commit %d (%s) = %v, want nil", i, tt.order.OrderID, errs[i])
		}
		if diff := cmp.Diff(tt.want, got[i]); diff != "" {
			t.Errorf("commit %d (%s) mismatch (-want +got):\n%s", i, tt.order.OrderID, diff)
		}
	}
	wantOneCall(t, log.take(), len(tests), 1)

	wantLevels(t, g, stock.Levels{SKU: "A", Available: 7, Sold: 3, Stocked: true})
	wantLevels(t, g, stock.Levels{SKU: "B", Available: 8, Sold: 2, Stocked: true})
	if diff := cmp.Diff(holdState{}, readHold(t, rdb, "A", "stale")); diff != "" {
		t.Errorf("hold A/stale after the batch mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(committedHold(1, deadline, twice.Token), readHold(t, rdb, "A", "twice")); diff != "" {
		t.Errorf("hold A/twice after the batch mismatch (-want +got):\n%s", diff)
	}
	holdsAddUp(t, rdb, "A")
	holdsAddUp(t, rdb, "B")
}

// TestBatchSplitsOnLines checks the bound on one script call's lines: a
// batch is cut into calls of at most stock.MaxBatchLines lines, sent in one
// pipeline, and an order longer than that is never split (it is all or
// nothing) but sent in a call of its own.
func TestBatchSplitsOnLines(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb, log := loggedGate(t, stock.Config{Retention: time.Hour})
	deadline := time.Now().Add(time.Hour)
	orderLines := func(prefix string, n int) []stock.Line {
		ls := make([]stock.Line, n)
		for i := range ls {
			ls[i] = stock.Line{SKU: prefix + strconv.Itoa(i), Qty: 1}
		}
		return ls
	}
	for _, l := range append(orderLines("s", 50), orderLines("t", stock.MaxBatchLines+44)...) {
		stockSKU(t, g, l.SKU, 10)
	}
	log.take()

	var orders []stock.ReserveOrder
	var wantCalls []string // orders per call
	perCall := stock.MaxBatchLines / 50
	for i := range perCall {
		orders = append(orders, stock.ReserveOrder{OrderID: "o" + strconv.Itoa(i), Token: "t", Lines: orderLines("s", 50)})
	}
	wantCalls = append(wantCalls, strconv.Itoa(perCall))
	orders = append(orders, stock.ReserveOrder{OrderID: "one-more", Token: "t", Lines: orderLines("s", 50)})
	wantCalls = append(wantCalls, "1")
	orders = append(orders, stock.ReserveOrder{OrderID: "long", Token: "t", Lines: orderLines("t", stock.MaxBatchLines+44)})
	wantCalls = append(wantCalls, "1")
	for i := range orders {
		orders[i].Deadline = deadline
	}

	got, errs := g.ReserveBatch(ctx, orders)
	for i, o := range orders {
		if errs[i] != nil || got[i].Outcome != stock.Reserved {
			t.Errorf("order %s = %+v, %v, want %v", o.OrderID, got[i], errs[i], stock.Reserved)
		}
	}
	var gotCalls []string
	for _, c := range log.take() {
		gotCalls = append(gotCalls, c.args[0])
	}
	if diff := cmp.Diff(wantCalls, gotCalls); diff != "" {
		t.Errorf("orders per script call mismatch (-want +got):\n%s", diff)
	}
	wantLevels(t, g, stock.Levels{SKU: "s0", Available: 10 - int64(perCall) - 1, Held: int64(perCall) + 1, Stocked: true})
	wantLevels(t, g, stock.Levels{SKU: "t0", Available: 9, Held: 1, Stocked: true})
	holdsAddUp(t, rdb, "s49")
}

// TestScriptFlushPipelined flushes the script cache before batches that
// span several slots, which go out as one pipeline of EVALSHA calls: every
// call that comes back NOSCRIPT must be sent again, loading the script,
// and none twice. It runs on a redis-server of its own, because SCRIPT
// FLUSH is server-wide.
func TestScriptFlushPipelined(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	r := testsvc.NewRedis(t)
	rdb := r.Client(0)
	t.Cleanup(func() { _ = rdb.Close() })
	log := &scriptLog{}
	rdb.AddHook(log)
	g := stock.New(rdb, stock.Config{Cluster: true, Retention: time.Hour})
	skus := []string{"red", "blue", "green"}
	for _, s := range skus {
		stockSKU(t, g, s, 10)
	}
	deadline := time.Now().Add(time.Hour)

	var reserves []stock.ReserveOrder
	var commits []stock.CommitOrder
	for i, s := range skus {
		o := "o" + strconv.Itoa(i)
		reserves = append(reserves, stock.ReserveOrder{OrderID: o, Token: "t-" + o, Lines: []stock.Line{{SKU: s, Qty: 2}}, Deadline: deadline})
		commits = append(commits, stock.CommitOrder{OrderID: o, Token: "t-" + o, SKUs: []string{s}})
	}

	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	log.take()
	got, errs := g.ReserveBatch(ctx, reserves)
	for i, o := range reserves {
		if errs[i] != nil || got[i] != (stock.Reservation{Outcome: stock.Reserved, Token: o.Token}) {
			t.Errorf("reserve %s after SCRIPT FLUSH = %+v, %v, want %v", o.OrderID, got[i], errs[i], stock.Reserved)
		}
	}
	if n := len(log.take()); log.noscript != len(skus) || n != len(skus) {
		t.Errorf("pipelined NOSCRIPT, calls that ran = %d, %d, want %d, %d", log.noscript, n, len(skus), len(skus))
	}

	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	res, errs := g.CommitBatch(ctx, commits)
	for i, o := range commits {
		if errs[i] != nil || res[i] != (stock.CommitResult{Units: 2}) {
			t.Errorf("commit %s after SCRIPT FLUSH = %+v, %v, want 2 units", o.OrderID, res[i], errs[i])
		}
	}
	for _, s := range skus {
		wantLevels(t, g, stock.Levels{SKU: s, Available: 8, Sold: 2, Stocked: true})
	}
}
