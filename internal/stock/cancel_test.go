package stock_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
)

// TestCancel gives a confirmed order's units back (cancel.lua against a
// real redis-server): from sold when its hold was committed or its
// tombstone is gone, from held when the commit never ran, and once only.
func TestCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	type testBundle struct {
		gate     *stock.Gate
		rdb      *redis.Client
		deadline time.Time
		tok      string // o1's hold token, which its row records
	}
	// setup stocks A and B with 10 each and sells order o1 2 of A and 3 of
	// B (reserved and committed).
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		g, rdb := newGate(t, stock.Config{Retention: time.Hour})
		stockSKU(t, g, "A", 10)
		stockSKU(t, g, "B", 10)
		b := &testBundle{gate: g, rdb: rdb, deadline: time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())}
		res := mustReserve(t, g, "o1", []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}, b.deadline)
		if _, err := g.Commit(ctx, "o1", res.Token, []string{"A", "B"}); err != nil {
			t.Fatalf("Commit(o1) = %v", err)
		}
		b.tok = res.Token
		return b
	}
	lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}

	t.Run("GivesBackWhatWasSoldOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for i, want := range []stock.CancelResult{{Returned: 5}, {Already: 2}} {
			got, err := b.gate.Cancel(ctx, "o1", b.tok, lines)
			if err != nil || got != want {
				t.Fatalf("Cancel(o1) #%d = %+v, %v; want %+v", i+1, got, err, want)
			}
			wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
			wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 10, Stocked: true})
		}
		h := readHold(t, b.rdb, "A", "o1")
		if h.State != "returned" || h.Qty != "2" || h.InDeadlines {
			t.Errorf("hold A/o1 after Cancel = %+v, want a returned marker for 2", h)
		}
		if ttl := b.rdb.PTTL(ctx, stock.HoldKey("A", "o1")).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("marker TTL = %v, want the retention (1h)", ttl)
		}
		// Reserve, Release and Commit change nothing on a returned order.
		if r, err := b.gate.Reserve(ctx, "o1", lines, b.deadline); err != nil || r.Outcome == stock.Reserved {
			t.Errorf("Reserve(o1) after Cancel = %+v, %v; want no new hold", r, err)
		}
		if n, err := b.gate.Release(ctx, "o1", []string{"A", "B"}); err != nil || n != 0 {
			t.Errorf("Release(o1) after Cancel = %d, %v; want 0", n, err)
		}
		if r, err := b.gate.Commit(ctx, "o1", "any", []string{"A", "B"}); err != nil || r.Units != 0 || r.Released != 0 {
			t.Errorf("Commit(o1) after Cancel = %+v, %v; want nothing moved", r, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
	})

	t.Run("TombstoneGoneGivesBackTheRowsQuantities", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if err := b.rdb.Del(ctx, stock.HoldKey("A", "o1"), stock.HoldKey("B", "o1")).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := b.gate.Cancel(ctx, "o1", b.tok, lines); err != nil || got != (stock.CancelResult{Returned: 5}) {
			t.Fatalf("Cancel(o1) = %+v, %v; want 5 returned", got, err)
		}
		if got, err := b.gate.Cancel(ctx, "o1", b.tok, lines); err != nil || got != (stock.CancelResult{Already: 2}) {
			t.Fatalf("Cancel(o1) again = %+v, %v; want nothing", got, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 10, Stocked: true})
	})

	t.Run("LaterDeliverysHoldGoesBackWithTheSale", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		// o1's tombstones expire and a late delivery of o1 holds again,
		// under a new token.
		if err := b.rdb.Del(ctx, stock.HoldKey("A", "o1"), stock.HoldKey("B", "o1")).Err(); err != nil {
			t.Fatal(err)
		}
		if r := mustReserve(t, b.gate, "o1", lines, b.deadline); r.Outcome != stock.Reserved || r.Token == b.tok {
			t.Fatalf("late Reserve(o1) = %+v, want a new hold under a new token", r)
		}
		got, err := b.gate.Cancel(ctx, "o1", b.tok, lines)
		if err != nil || got != (stock.CancelResult{Returned: 5, Released: 5}) {
			t.Fatalf("Cancel(o1) = %+v, %v; want 5 returned from sold and the late hold's 5 released", got, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 10, Stocked: true})
		holdsAddUp(t, b.rdb, "A")
	})

	t.Run("HoldNeverCommittedIsReleased", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		r2 := mustReserve(t, b.gate, "o2", []stock.Line{{SKU: "A", Qty: 4}}, b.deadline)
		got, err := b.gate.Cancel(ctx, "o2", r2.Token, []stock.Line{{SKU: "A", Qty: 4}})
		if err != nil || got != (stock.CancelResult{Released: 4}) {
			t.Fatalf("Cancel(o2) = %+v, %v; want 4 released from held", got, err)
		}
		// o1's 2 stay sold: nothing o2 did not hold went back.
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Sold: 2, Stocked: true})
		holdsAddUp(t, b.rdb, "A")
		// A commit arriving late (the worker that confirmed resumes) sells nothing.
		if r, err := b.gate.Commit(ctx, "o2", "any", []string{"A"}); err != nil || r.Units != 0 {
			t.Errorf("late Commit(o2) = %+v, %v; want nothing sold", r, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Sold: 2, Stocked: true})
	})

	t.Run("RefusesMoreThanSoldAndChangesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		before := snapshot(t, b.rdb)
		// o9 never sold anything; A has 2 sold (o1's), B 3, so 5 of B is too many.
		_, err := b.gate.Cancel(ctx, "o9", "t9", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 5}})
		if !errors.Is(err, stock.ErrInvalid) {
			t.Fatalf("Cancel(o9, B=5) = %v, want ErrInvalid", err)
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("a refused Cancel changed the database (-before +after):\n%s", diff)
		}
	})

	t.Run("FailsClosedOnLostCounters", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		if err := b.rdb.Del(ctx, stock.AvailKey("B")).Err(); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, b.rdb)
		_, err := b.gate.Cancel(ctx, "o1", b.tok, lines)
		var ns *stock.NotStockedError
		if !errors.As(err, &ns) || ns.SKU != "B" {
			t.Fatalf("Cancel(o1) with B's counters lost = %v, want *NotStockedError for B", err)
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("Cancel changed the database (-before +after):\n%s", diff)
		}
	})

	t.Run("ConcurrentCancelsGiveBackOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		var wg sync.WaitGroup
		results := make([]stock.CancelResult, 16)
		start := make(chan struct{})
		for i := range results {
			wg.Go(func() {
				<-start
				var err error
				if results[i], err = b.gate.Cancel(ctx, "o1", b.tok, lines); err != nil {
					t.Errorf("Cancel #%d = %v", i, err)
				}
			})
		}
		close(start)
		wg.Wait()
		var returned int64
		for _, r := range results {
			returned += r.Returned
		}
		if returned != 5 {
			t.Errorf("units returned across 16 concurrent Cancels = %d, want 5: %+v", returned, results)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
	})

	t.Run("RacingCommitAndCancelEndOnce", func(t *testing.T) {
		t.Parallel()
		g, rdb := newGate(t, stock.Config{Retention: time.Hour})
		stockSKU(t, g, "A", 100)
		deadline := time.Now().Add(time.Hour)
		for i := range 50 {
			id := fmt.Sprintf("r%d", i)
			res := mustReserve(t, g, id, []stock.Line{{SKU: "A", Qty: 1}}, deadline)
			var wg sync.WaitGroup
			wg.Go(func() {
				if _, err := g.Commit(ctx, id, res.Token, []string{"A"}); err != nil {
					t.Errorf("Commit(%s) = %v", id, err)
				}
			})
			wg.Go(func() {
				if _, err := g.Cancel(ctx, id, res.Token, []stock.Line{{SKU: "A", Qty: 1}}); err != nil {
					t.Errorf("Cancel(%s) = %v", id, err)
				}
			})
			wg.Wait()
		}
		// Whichever ran first, every unit ends available: sold and given
		// back, or given back before it could be sold.
		wantLevels(t, g, stock.Levels{SKU: "A", Available: 100, Stocked: true})
		holdsAddUp(t, rdb, "A")
	})

	t.Run("RefusesBadArgumentsInGo", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, ls := range [][]stock.Line{nil, {{SKU: "A", Qty: 0}}, {{SKU: "{A}", Qty: 1}}, {{SKU: "A", Qty: 1}, {SKU: "A", Qty: 1}}} {
			if _, err := b.gate.Cancel(ctx, "o1", b.tok, ls); !errors.Is(err, stock.ErrInvalid) {
				t.Errorf("Cancel(o1, %v) = %v, want ErrInvalid", ls, err)
			}
		}
		if _, err := b.gate.Cancel(ctx, "", b.tok, lines); !errors.Is(err, stock.ErrInvalid) {
			t.Errorf("Cancel(\"\") = %v, want ErrInvalid", err)
		}
	})
}
