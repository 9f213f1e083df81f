package catalog

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/internal/testsvc/testdb"
)

func TestMain(m *testing.M) { os.Exit(testsvc.Finish(m.Run())) }

func TestProducts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := New(testdb.New(t))
	for _, s := range []struct {
		sku     string
		stocked int64
	}{{"A", 100}, {"B", 5}, {"A", 150}, {"C", 0}} {
		if err := c.RecordStock(ctx, s.sku, s.stocked); err != nil {
			t.Fatalf("RecordStock(%s, %d) = %v, want nil", s.sku, s.stocked, err)
		}
	}
	for _, s := range []struct {
		sku     string
		stocked int64
	}{{"{A}", 1}, {"", 1}, {"A", -1}} {
		if err := c.RecordStock(ctx, s.sku, s.stocked); err == nil {
			t.Errorf("RecordStock(%q, %d) = nil, want an error", s.sku, s.stocked)
		}
	}
	got, err := c.Products(ctx)
	if err != nil {
		t.Fatalf("Products() = %v, want nil", err)
	}
	if diff := cmp.Diff(map[string]int64{"A": 150, "B": 5, "C": 0}, got); diff != "" {
		t.Errorf("Products() mismatch (-want +got):\n%s", diff)
	}
	for sku, want := range map[string]bool{"A": true, "C": true, "D": false} {
		if ok, err := c.Catalogued(ctx, sku); err != nil || ok != want {
			t.Errorf("Catalogued(%s) = %v, %v; want %v", sku, ok, err, want)
		}
	}
	if known, err := c.CataloguedAmong(ctx, []string{"A", "D", "C"}); err != nil || !cmp.Equal(known, map[string]bool{"A": true, "C": true}) {
		t.Errorf("CataloguedAmong(A, D, C) = %v, %v; want A and C", known, err)
	}
	// EachProduct goes in Go's byte order, whatever the database's collation.
	for _, sku := range []string{"a", "_x"} {
		if err := c.RecordStock(ctx, sku, 1); err != nil {
			t.Fatal(err)
		}
	}
	var order []string
	if err := c.EachProduct(ctx, func(sku string, _ int64) error { order = append(order, sku); return nil }); err != nil {
		t.Fatalf("EachProduct = %v", err)
	}
	if want := []string{"A", "B", "C", "_x", "a"}; !cmp.Equal(order, want) {
		t.Errorf("EachProduct order = %v, want %v", order, want)
	}
}

type ledgerBundle struct {
	ledger *Ledger
	cat    *Catalog
	gate   *stock.Gate
	store  *orderstore.Store
}

func setupLedger(t *testing.T) *ledgerBundle {
	t.Helper()
	_, _, rdb := testsvc.RedisDB(t)
	pool := testdb.New(t)
	b := &ledgerBundle{cat: New(pool), gate: stock.New(rdb, stock.Config{}), store: orderstore.New(pool)}
	b.ledger = NewLedger(b.gate, b.cat, b.store)
	return b
}

// TestLedgerSetAdd: every movement lands in Redis and in the catalogue, so
// that the catalogue's total is Redis's available + held + sold.
func TestLedgerSetAdd(t *testing.T) {
	t.Parallel()
	b, ctx := setupLedger(t), context.Background()
	if _, err := b.ledger.Set(ctx, "L-1", 10); err != nil {
		t.Fatalf("Set(L-1, 10) = %v", err)
	}
	if _, err := b.gate.Reserve(ctx, "o-1", []stock.Line{{SKU: "L-1", Qty: 4}}, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	lv, err := b.ledger.Add(ctx, "L-1", 5)
	if err != nil {
		t.Fatalf("Add(L-1, 5) = %v", err)
	}
	if want := (stock.Levels{SKU: "L-1", Available: 11, Held: 4, Stocked: true}); lv != want {
		t.Errorf("Add(L-1, 5) = %+v, want %+v", lv, want)
	}
	if p, err := b.cat.Products(ctx); err != nil || p["L-1"] != 15 {
		t.Errorf("Products()[L-1] = %d, %v; want 15", p["L-1"], err)
	}
}

// TestLedgerRefusesLostSKU: a catalogued SKU without counters is Redis data
// loss; set and add refuse it rather than start it from zero.
func TestLedgerRefusesLostSKU(t *testing.T) {
	t.Parallel()
	b, ctx := setupLedger(t), context.Background()
	if err := b.cat.RecordStock(ctx, "LOST-1", 50); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ledger.Set(ctx, "LOST-1", 1); !errors.Is(err, ErrCountersLost) {
		t.Errorf("Set(LOST-1) = %v, want ErrCountersLost", err)
	}
	if _, err := b.ledger.Add(ctx, "LOST-1", 1); !errors.Is(err, ErrCountersLost) {
		t.Errorf("Add(LOST-1) = %v, want ErrCountersLost", err)
	}
	if lv, _ := b.gate.Show(ctx, "LOST-1"); lv[0].Stocked {
		t.Errorf("LOST-1 has counters after refused set/add: %+v", lv[0])
	}
}

// TestLedgerRebuild: a lost SKU comes back as stocked - sold, with sold from
// the confirmed rows; a live SKU is left alone; an oversell stays visible.
func TestLedgerRebuild(t *testing.T) {
	t.Parallel()
	b, ctx := setupLedger(t), context.Background()
	for sku, stocked := range map[string]int64{"RB-1": 100, "RB-2": 3} {
		if err := b.cat.RecordStock(ctx, sku, stocked); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.ledger.Set(ctx, "RB-LIVE", 7); err != nil {
		t.Fatal(err)
	}
	for id, l := range map[string]orders.Line{"o-1": {SKU: "RB-1", Qty: 30}, "o-2": {SKU: "RB-2", Qty: 5}} {
		if _, _, err := b.store.Decide(ctx, orders.Record{OrderID: id, CustomerID: "c", Status: orders.StatusConfirmed, Lines: []orders.Line{l}}); err != nil {
			t.Fatal(err)
		}
	}
	missing, err := b.ledger.Missing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"RB-1", "RB-2"}, missing); diff != "" {
		t.Fatalf("Missing() mismatch (-want +got):\n%s", diff)
	}
	got, err := b.ledger.Rebuild(ctx, append(missing, "RB-LIVE"), 0)
	if err != nil {
		t.Fatalf("Rebuild = %v", err)
	}
	want := []Rebuilt{
		{SKU: "RB-1", Levels: stock.Levels{SKU: "RB-1", Available: 70, Sold: 30, Stocked: true}, Stocked: 100},
		{SKU: "RB-2", Levels: stock.Levels{SKU: "RB-2", Sold: 5, Stocked: true}, Stocked: 3},
		{SKU: "RB-LIVE", Live: true, Stocked: 7},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Rebuild mismatch (-want +got):\n%s", diff)
	}
	if got[0].Oversold() || !got[1].Oversold() || got[2].Oversold() {
		t.Errorf("Oversold() = %v %v %v, want false true false", got[0].Oversold(), got[1].Oversold(), got[2].Oversold())
	}
	if lv, _ := b.gate.Show(ctx, "RB-LIVE"); lv[0].Available != 7 {
		t.Errorf("RB-LIVE after rebuild = %+v, want its 7 available untouched", lv[0])
	}
}

// TestLedgerRebuildFence: a cancelled fence rebuilds nothing.
func TestLedgerRebuildFence(t *testing.T) {
	t.Parallel()
	b := setupLedger(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got, err := b.ledger.Rebuild(ctx, []string{"RB-1"}, time.Hour); err == nil || len(got) != 0 {
		t.Errorf("Rebuild(cancelled, fence 1h) = %v, %v; want an error and nothing rebuilt", got, err)
	}
}

// TestLedgerBatches: SetAll and AddAll follow set's and add's rules line by
// line, in a batch: a bad SKU, a catalogued SKU without counters and a
// restock past the limit are refused with nothing written for them; a SKU
// with an open hold keeps it; every line done is one stock movement, and
// the catalogue's total is Redis's.
func TestLedgerBatches(t *testing.T) {
	t.Parallel()
	b, ctx := setupLedger(t), context.Background()
	if err := b.cat.RecordStock(ctx, "B-LOST", 50); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ledger.Set(ctx, "B-HELD", 10); err != nil {
		t.Fatal(err)
	}
	if _, err := b.gate.Reserve(ctx, "o-1", []stock.Line{{SKU: "B-HELD", Qty: 4}}, time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	res, err := b.ledger.SetAll(ctx, []Change{{"B-NEW", 7}, {"{bad}", 1}, {"B-LOST", 3}, {"B-HELD", 2}, {"B-NEG", -1}})
	if err != nil {
		t.Fatalf("SetAll = %v", err)
	}
	wantErr := []error{nil, stock.ErrInvalid, ErrCountersLost, nil, stock.ErrInvalid}
	for i, r := range res {
		if !errors.Is(r.Err, wantErr[i]) || (wantErr[i] == nil) != (r.Err == nil) {
			t.Errorf("SetAll line %d: %v, want %v", i, r.Err, wantErr[i])
		}
	}
	if want := (stock.Levels{SKU: "B-HELD", Available: 2, Held: 4, Stocked: true}); res[3].Levels != want {
		t.Errorf("SetAll B-HELD = %+v, want %+v (the hold kept)", res[3].Levels, want)
	}
	res, err = b.ledger.AddAll(ctx, []Change{{"B-NEW", 3}, {"B-HELD", 1_000_000_000_000}, {"B-ZERO", 0}})
	if err != nil {
		t.Fatalf("AddAll = %v", err)
	}
	if res[0].Err != nil || res[0].Levels.Available != 10 || !errors.Is(res[1].Err, stock.ErrInvalid) || !errors.Is(res[2].Err, stock.ErrInvalid) {
		t.Errorf("AddAll = %+v; want B-NEW at 10, the others refused", res)
	}
	p, err := b.cat.Products(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int64{"B-LOST": 50, "B-HELD": 6, "B-NEW": 10}, p); diff != "" {
		t.Errorf("Products() mismatch (-want +got):\n%s", diff)
	}
	var n int
	if err := b.cat.pool.QueryRow(ctx, `SELECT count(*) FROM stock_movements`).Scan(&n); err != nil || n != 5 {
		t.Errorf("stock_movements rows = %d, %v; want 5 (B-LOST's record, B-HELD's set, and the 3 lines done)", n, err)
	}
	if _, err := b.ledger.SetAll(ctx, []Change{{"B-NEW", 1}, {"B-NEW", 2}}); err == nil {
		t.Errorf("SetAll with a SKU twice = nil error, want one")
	}
	if lv, _ := b.gate.Show(ctx, "B-LOST"); lv[0].Stocked {
		t.Errorf("B-LOST has counters after a refused line: %+v", lv[0])
	}
}
