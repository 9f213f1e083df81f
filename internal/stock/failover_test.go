package stock_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/stock"
)

// TestFenceAbsorbRebuild is the failover repair on one SKU: the promoted
// replica lost o-2's hold, whose row was confirmed; o-1 committed and o-3
// holds. Fenced, a reserve fails closed and a release leaves available
// missing; Absorb sells o-2 once; Rebuild restores I1.
func TestFenceAbsorbRebuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, _ := newGate(t, stock.Config{})
	stockSKU(t, g, "F", 10)
	deadline := time.Now().Add(time.Hour)
	r1 := mustReserve(t, g, "o-1", []stock.Line{{SKU: "F", Qty: 1}}, deadline)
	if _, err := g.Commit(ctx, "o-1", r1.Token, []string{"F"}); err != nil {
		t.Fatalf("Commit(o-1) = %v", err)
	}
	mustReserve(t, g, "o-3", []stock.Line{{SKU: "F", Qty: 2}}, deadline)
	mustReserve(t, g, "o-4", []stock.Line{{SKU: "F", Qty: 4}}, deadline)

	if _, _, err := g.Absorb(ctx, "F", []stock.Sale{{OrderID: "o-2", Qty: 3}}); !errors.Is(err, stock.ErrLive) {
		t.Fatalf("Absorb before Fence = %v, want ErrLive", err)
	}
	if err := g.Fence(ctx, []string{"F"}); err != nil {
		t.Fatalf("Fence = %v", err)
	}
	var ns *stock.NotStockedError
	if _, err := g.Reserve(ctx, "o-5", []stock.Line{{SKU: "F", Qty: 1}}, deadline); !errors.As(err, &ns) {
		t.Fatalf("Reserve on a fenced SKU = %v, want NotStockedError", err)
	}
	if n, err := g.Release(ctx, "o-4", []string{"F"}); err != nil || n != 4 {
		t.Fatalf("Release(o-4) while fenced = %d, %v; want 4, nil", n, err)
	}
	if lv := levels(t, g, "F"); lv.Stocked {
		t.Fatalf("levels after a release while fenced = %+v, want no available counter", lv)
	}

	sales := []stock.Sale{{OrderID: "o-1", Qty: 1, Token: r1.Token}, {OrderID: "o-2", Qty: 3, Token: "t2"}}
	for run := range 2 {
		units, orders, err := g.Absorb(ctx, "F", sales)
		want := int64(3)
		if run > 0 {
			want = 0
		}
		if err != nil || units != want || orders != int(want/3) {
			t.Fatalf("Absorb run %d = %d units, %d orders, %v; want %d units", run, units, orders, err, want)
		}
	}
	// o-2's late commit finds the tombstone Absorb left.
	if got, err := g.Commit(ctx, "o-2", "t2", []string{"F"}); err != nil || got.Units != 0 || got.Missing != 0 {
		t.Fatalf("Commit(o-2) after Absorb = %+v, %v; want nothing moved, nothing missing", got, err)
	}
	lv, err := g.Rebuild(ctx, "F", 10, 0)
	if err != nil {
		t.Fatalf("Rebuild = %v", err)
	}
	if want := (stock.Levels{SKU: "F", Stocked: true, Available: 4, Held: 2, Sold: 4}); lv != want {
		t.Fatalf("Rebuild = %+v, want %+v", lv, want)
	}
}
