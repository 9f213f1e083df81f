package stock_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/stockgate/stockgate/internal/stock"
)

func TestSetAddShow(t *testing.T) {
	t.Parallel()

	ctx := context.Background()

	t.Run("SetAndAddKeepHeldAndSold", func(t *testing.T) {
		t.Parallel()
		g, _ := newGate(t, stock.Config{})

		got, err := g.Set(ctx, "A", 10)
		if diff := cmp.Diff(stock.Levels{SKU: "A", Available: 10, Stocked: true}, got); err != nil || diff != "" {
			t.Fatalf("Set(A, 10) = %v mismatch (-want +got):\n%s", err, diff)
		}
		if _, err := g.Reserve(ctx, "o1", []stock.Line{{SKU: "A", Qty: 3}}, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("Reserve(o1) = %v, want nil", err)
		}
		o2 := mustReserve(t, g, "o2", []stock.Line{{SKU: "A", Qty: 2}}, time.Now().Add(time.Hour))
		if _, err := g.Commit(ctx, "o2", o2.Token, []string{"A"}); err != nil {
			t.Fatalf("Commit(o2) = %v, want nil", err)
		}

		// Set makes exactly N available now; held and sold stay.
		got, err = g.Set(ctx, "A", 4)
		if diff := cmp.Diff(stock.Levels{SKU: "A", Available: 4, Held: 3, Sold: 2, Stocked: true}, got); err != nil || diff != "" {
			t.Errorf("Set(A, 4) = %v mismatch (-want +got):\n%s", err, diff)
		}
		got, err = g.Add(ctx, "A", 6)
		if diff := cmp.Diff(stock.Levels{SKU: "A", Available: 10, Held: 3, Sold: 2, Stocked: true}, got); err != nil || diff != "" {
			t.Errorf("Add(A, 6) = %v mismatch (-want +got):\n%s", err, diff)
		}
		wantLevels(t, g, stock.Levels{SKU: "A", Available: 10, Held: 3, Sold: 2, Stocked: true})
		got, err = g.Set(ctx, "A", 0)
		if diff := cmp.Diff(stock.Levels{SKU: "A", Available: 0, Held: 3, Sold: 2, Stocked: true}, got); err != nil || diff != "" {
			t.Errorf("Set(A, 0) = %v mismatch (-want +got):\n%s", err, diff)
		}

		// The hold taken before the Set still releases what it recorded.
		if units, err := g.Release(ctx, "o1", []string{"A"}); err != nil || units != 3 {
			t.Errorf("Release(o1) = %d, %v, want 3, nil", units, err)
		}
		wantLevels(t, g, stock.Levels{SKU: "A", Available: 3, Sold: 2, Stocked: true})
	})

	t.Run("AddStocksANewSKU", func(t *testing.T) {
		t.Parallel()
		g, _ := newGate(t, stock.Config{})

		got, err := g.Add(ctx, "fresh", 7)
		if diff := cmp.Diff(stock.Levels{SKU: "fresh", Available: 7, Stocked: true}, got); err != nil || diff != "" {
			t.Errorf("Add(fresh, 7) = %v mismatch (-want +got):\n%s", err, diff)
		}
		skus, err := g.SKUs(ctx)
		if diff := cmp.Diff([]string{"fresh"}, skus); err != nil || diff != "" {
			t.Errorf("SKUs() = %v mismatch (-want +got):\n%s", err, diff)
		}
	})

	t.Run("ShowEveryOrSome", func(t *testing.T) {
		t.Parallel()
		g, _ := newGate(t, stock.Config{})
		stockSKU(t, g, "b", 2)
		stockSKU(t, g, "a", 1)
		stockSKU(t, g, "c", 0)

		all, err := g.Show(ctx)
		want := []stock.Levels{
			{SKU: "a", Available: 1, Stocked: true},
			{SKU: "b", Available: 2, Stocked: true},
			{SKU: "c", Available: 0, Stocked: true},
		}
		if diff := cmp.Diff(want, all); err != nil || diff != "" {
			t.Errorf("Show() = %v mismatch (-want +got):\n%s", err, diff)
		}
		some, err := g.Show(ctx, "never", "b")
		want = []stock.Levels{
			{SKU: "b", Available: 2, Stocked: true},
			{SKU: "never"},
		}
		if diff := cmp.Diff(want, some); err != nil || diff != "" {
			t.Errorf("Show(never, b) = %v mismatch (-want +got):\n%s", err, diff)
		}
		if got := (stock.Levels{Available: 1, Held: 2, Sold: 3}).Total(); got != 6 {
			t.Errorf("Levels{1 2 3}.Total() = %d, want 6", got)
		}
	})

	t.Run("ShowOfEmptyDatabase", func(t *testing.T) {
		t.Parallel()
		g, _ := newGate(t, stock.Config{})

		got, err := g.Show(ctx)
		if err != nil || len(got) != 0 {
			t.Errorf("Show() = %v, %v, want empty, nil", got, err)
		}
	})

	t.Run("RefusesBadInputAndChangesNothing", func(t *testing.T) {
		t.Parallel()
		g, rdb := newGate(t, stock.Config{})
		stockSKU(t, g, "A", 5)
		before := snapshot(t, rdb)

		for name, call := range map[string]func() error{
			"Set negative":    func() error { _, err := g.Set(ctx, "A", -1); return err },
			"Set over max":    func() error { _, err := g.Set(ctx, "A", 1_000_000_000_001); return err },
			"Add zero":        func() error { _, err := g.Add(ctx, "A", 0); return err },
			"Add negative":    func() error { _, err := g.Add(ctx, "A", -3); return err },
			"Add past max":    func() error { _, err := g.Add(ctx, "A", 1_000_000_000_000); return err },
			"Set brace sku":   func() error { _, err := g.Set(ctx, "A}", 1); return err },
			"Add empty sku":   func() error { _, err := g.Add(ctx, "", 1); return err },
			"Show brace sku":  func() error { _, err := g.Show(ctx, "{A"); return err },
			"Set long sku":    func() error { _, err := g.Set(ctx, string(make([]byte, 65)), 1); return err },
			"Add space sku":   func() error { _, err := g.Add(ctx, "A B", 1); return err },
			"Show space sku":  func() error { _, err := g.Show(ctx, "A B"); return err },
			"Set unicode sku": func() error { _, err := g.Set(ctx, "é", 1); return err },
		} {
			if err := call(); !errors.Is(err, stock.ErrInvalid) {
				t.Errorf("%s = %v, want ErrInvalid", name, err)
			}
		}
		if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
			t.Errorf("refused calls changed the database (-before +after):\n%s", diff)
		}
	})

	t.Run("CorruptCounter", func(t *testing.T) {
		t.Parallel()
		g, rdb := newGate(t, stock.Config{})
		stockSKU(t, g, "A", 5)
		if err := rdb.Set(ctx, stock.HeldKey("A"), "2.5", 0).Err(); err != nil {
			t.Fatal(err)
		}
		before := snapshot(t, rdb)

		if _, err := g.Show(ctx, "A"); err == nil {
			t.Errorf("Show(A) with held 2.5 = nil, want an error")
		}
		if _, err := g.Add(ctx, "A", 1); !errors.Is(err, stock.ErrInvalid) {
			t.Errorf("Add(A) with held 2.5 = %v, want ErrInvalid", err)
		}
		if _, err := g.Set(ctx, "A", 1); !errors.Is(err, stock.ErrInvalid) {
			t.Errorf("Set(A) with held 2.5 = %v, want ErrInvalid", err)
		}
		if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
			t.Errorf("refused calls changed the database (-before +after):\n%s", diff)
		}
	})
}

func TestExpiredHolds(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, _ := newGate(t, stock.Config{})
	stockSKU(t, g, "A", 10)
	stockSKU(t, g, "B", 10)
	now := time.UnixMilli(time.Now().UnixMilli())

	tokens := map[string]string{}
	for _, r := range []struct {
		order    string
		skus     []string
		deadline time.Time
	}{
		{"past-a", []string{"A"}, now.Add(-time.Minute)},
		{"future-a", []string{"A"}, now.Add(time.Hour)},
		{"past-b", []string{"B"}, now.Add(-2 * time.Minute)},
		{"now-ab", []string{"A", "B"}, now},
		{"committed", []string{"A"}, now.Add(-time.Hour)},
		{"released", []string{"B"}, now.Add(-time.Hour)},
	} {
		var lines []stock.Line
		for _, s := range r.skus {
			lines = append(lines, stock.Line{SKU: s, Qty: 1})
		}
		tokens[r.order] = mustReserve(t, g, r.order, lines, r.deadline).Token
	}
	if _, err := g.Commit(ctx, "committed", tokens["committed"], []string{"A"}); err != nil {
		t.Fatalf("Commit(committed) = %v, want nil", err)
	}
	if _, err := g.Release(ctx, "released", []string{"B"}); err != nil {
		t.Fatalf("Release(released) = %v, want nil", err)
	}

	got, err := g.ExpiredHolds(ctx, now, 100)
	if err != nil {
		t.Fatalf("ExpiredHolds(now, 100) = %v, want nil", err)
	}
	// Per SKU in SKU order, each SKU's holds by deadline.
	want := []stock.Hold{
		{SKU: "A", OrderID: "past-a", Deadline: now.Add(-time.Minute)},
		{SKU: "A", OrderID: "now-ab", Deadline: now},
		{SKU: "B", OrderID: "past-b", Deadline: now.Add(-2 * time.Minute)},
		{SKU: "B", OrderID: "now-ab", Deadline: now},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ExpiredHolds(now, 100) mismatch (-want +got):\n%s", diff)
	}

	for limit := range 5 {
		got, err := g.ExpiredHolds(ctx, now, limit)
		if err != nil {
			t.Fatalf("ExpiredHolds(now, %d) = %v, want nil", limit, err)
		}
		if diff := cmp.Diff(want[:limit], got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("ExpiredHolds(now, %d) mismatch (-want +got):\n%s", limit, diff)
		}
	}

	if n, err := g.OpenHolds(ctx); err != nil || n != 5 {
		t.Errorf("OpenHolds() = %d, %v, want 5, nil", n, err)
	}
}

// TestRebuild: counters come back as stocked - sold with nothing held, and
// a SKU with any counter left is never overwritten.
func TestRebuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{})

	got, err := g.Rebuild(ctx, "R", 100, 30)
	if diff := cmp.Diff(stock.Levels{SKU: "R", Available: 70, Sold: 30, Stocked: true}, got); err != nil || diff != "" {
		t.Fatalf("Rebuild(R, 100, 30) = %v mismatch (-want +got):\n%s", err, diff)
	}
	wantLevels(t, g, stock.Levels{SKU: "R", Available: 70, Sold: 30, Stocked: true})
	if skus, err := g.SKUs(ctx); err != nil || !slices.Contains(skus, "R") {
		t.Errorf("SKUs() = %v, %v; want R registered", skus, err)
	}

	// A live SKU (its available counter exists) is left exactly as it is.
	if _, err := g.Rebuild(ctx, "R", 5, 0); !errors.Is(err, stock.ErrLive) {
		t.Errorf("Rebuild of a live SKU = %v, want ErrLive", err)
	}
	wantLevels(t, g, stock.Levels{SKU: "R", Available: 70, Sold: 30, Stocked: true})

	// Only available lost, with an open hold: the surviving held and sold
	// counters win over Postgres's sold (which would miss the hold), and
	// the hold still releases into the rebuilt counter.
	stockSKU(t, g, "P", 10)
	if _, err := g.Reserve(ctx, "p1", []stock.Line{{SKU: "P", Qty: 3}}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	p2 := mustReserve(t, g, "p2", []stock.Line{{SKU: "P", Qty: 2}}, time.Now().Add(time.Hour))
	if _, err := g.Commit(ctx, "p2", p2.Token, []string{"P"}); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, stock.AvailKey("P")).Err(); err != nil {
		t.Fatal(err)
	}
	got, err = g.Rebuild(ctx, "P", 10, 99)
	if diff := cmp.Diff(stock.Levels{SKU: "P", Available: 5, Held: 3, Sold: 2, Stocked: true}, got); err != nil || diff != "" {
		t.Errorf("Rebuild after losing only available = %v mismatch (-want +got):\n%s", err, diff)
	}
	if units, err := g.Release(ctx, "p1", []string{"P"}); err != nil || units != 3 {
		t.Errorf("Release(p1) after the rebuild = %d, %v; want 3, nil", units, err)
	}
	wantLevels(t, g, stock.Levels{SKU: "P", Available: 8, Sold: 2, Stocked: true})

	// A surviving counter that is not an integer is refused, nothing written.
	if err := rdb.Set(ctx, stock.HeldKey("C"), "1.5", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Rebuild(ctx, "C", 10, 0); !errors.Is(err, stock.ErrInvalid) {
		t.Errorf("Rebuild over a corrupt held counter = %v, want ErrInvalid", err)
	}
	if n, _ := rdb.Exists(ctx, stock.AvailKey("C")).Result(); n != 0 {
		t.Error("a refused rebuild wrote the available counter")
	}

	// Sold above stocked (an oversell before the rebuild) leaves nothing to
	// sell rather than a negative counter.
	got, err = g.Rebuild(ctx, "O", 10, 12)
	if diff := cmp.Diff(stock.Levels{SKU: "O", Available: 0, Sold: 12, Stocked: true}, got); err != nil || diff != "" {
		t.Errorf("Rebuild(O, 10, 12) = %v mismatch (-want +got):\n%s", err, diff)
	}
	if _, err := g.Reserve(ctx, "o1", []stock.Line{{SKU: "O", Qty: 1}}, time.Now().Add(time.Hour)); !errors.Is(err, stock.ErrOutOfStock) {
		t.Errorf("Reserve after an oversold rebuild = %v, want out of stock", err)
	}
	for _, bad := range []struct {
		sku           string
		stocked, sold int64
	}{{"", 1, 0}, {"{x}", 1, 0}, {"N", -1, 0}, {"N", 1, -1}} {
		if _, err := g.Rebuild(ctx, bad.sku, bad.stocked, bad.sold); err == nil {
			t.Errorf("Rebuild(%q, %d, %d) = nil, want an error", bad.sku, bad.stocked, bad.sold)
		}
	}
}

// TestSKUScans: CountSKUs, ScanSKUs and FirstSKUs see every stocked SKU,
// whatever the number of SSCAN chunks, and FirstSKUs keeps the first n in
// byte order.
func TestSKUScans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{})
	var all []string
	for i := range 2500 {
		all = append(all, fmt.Sprintf("S-%05d", (i*7919)%2500)) // not in order
	}
	if err := rdb.SAdd(ctx, stock.SKUsKey, toAny(all)...).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := g.CountSKUs(ctx); err != nil || n != 2500 {
		t.Errorf("CountSKUs = %d, %v; want 2500", n, err)
	}
	seen := map[string]bool{}
	if err := g.ScanSKUs(ctx, func(skus []string) error {
		for _, s := range skus {
			seen[s] = true
		}
		return nil
	}); err != nil || len(seen) != 2500 {
		t.Errorf("ScanSKUs saw %d SKUs, %v; want 2500", len(seen), err)
	}
	sorted := slices.Sorted(slices.Values(all))
	for _, n := range []int{0, 1, 100, 2500, 3000} {
		got, err := g.FirstSKUs(ctx, n)
		want := sorted[:min(n, len(sorted))]
		if err != nil || !slices.Equal(got, want) && !(n == 0 && len(got) == 0) {
			t.Errorf("FirstSKUs(%d) = %d SKUs (%v…), %v; want the first %d in order", n, len(got), got[:min(len(got), 3)], err, len(want))
		}
	}
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// TestSetMany: a batch is line by line: a bad line or one whose keys the
// script refuses fails alone, the others are done, also when Redis has
// forgotten the script (SCRIPT FLUSH) and when a SKU comes twice.
func TestSetMany(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{})
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, stock.HeldKey("WT"), "x", "1").Err(); err != nil { // a hash where a counter goes
		t.Fatal(err)
	}
	res, err := g.SetMany(ctx, []stock.Line{{SKU: "M-1", Qty: 5}, {SKU: "WT", Qty: 1}, {SKU: "{x}", Qty: 1}, {SKU: "M-1", Qty: 6}, {SKU: "M-2", Qty: -1}})
	if err != nil {
		t.Fatalf("SetMany = %v", err)
	}
	if res[0].Err != nil || res[3].Err != nil || res[3].Levels.Available != 6 {
		t.Errorf("SetMany M-1 twice = %+v, %+v; want 5 then 6", res[0], res[3])
	}
	if res[1].Err == nil || !errors.Is(res[2].Err, stock.ErrInvalid) || !errors.Is(res[4].Err, stock.ErrInvalid) {
		t.Errorf("SetMany refusals = %v, %v, %v; want WT's WRONGTYPE and two ErrInvalid", res[1].Err, res[2].Err, res[4].Err)
	}
	wantLevels(t, g, stock.Levels{SKU: "M-1", Available: 6, Stocked: true})
	res, err = g.AddMany(ctx, []stock.Line{{SKU: "M-1", Qty: 4}, {SKU: "M-3", Qty: 0}})
	if err != nil || res[0].Levels.Available != 10 || !errors.Is(res[1].Err, stock.ErrInvalid) {
		t.Errorf("AddMany = %+v, %v; want M-1 at 10, M-3 refused", res, err)
	}
	if skus, err := g.SKUs(ctx); err != nil || !slices.Equal(skus, []string{"M-1", "WT"}) {
		t.Errorf("SKUs = %v, %v; want M-1 and WT registered (WT's counters are its own to mend)", skus, err)
	}
}
