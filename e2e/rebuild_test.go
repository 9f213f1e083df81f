package e2e

import (
	"context"
	"strings"
	"testing"

	"github.com/stockgate/stockgate/internal/stock"
)

// TestRebuildCommand: stockctl rebuild restores, from Postgres, the
// counters of catalogued SKUs that Redis no longer has, and only those; it
// records the movement; its usage errors exit 2.
func TestRebuildCommand(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "RB-1", "10")
	s.mustRun(t, "stockctl", "set", "RB-2", "7")
	if out := s.mustRun(t, "stockctl", "rebuild", "--fence", "0"); !strings.Contains(out, "nothing to do") {
		t.Errorf("rebuild with every SKU live printed %q, want nothing to do", out)
	}
	// RB-1 loses its counters, as in a Redis restart without persistence.
	if err := s.rdb.Del(ctx, stock.AvailKey("RB-1"), stock.HeldKey("RB-1"), stock.SoldKey("RB-1")).Err(); err != nil {
		t.Fatal(err)
	}
	if r := s.run(t, nil, "stockctl", "reconcile"); r.code != 1 {
		t.Errorf("reconcile with RB-1 gone: exit %d, want 1 (drift)", r.code)
	}
	out := s.mustRun(t, "stockctl", "rebuild", "--dry-run")
	if !strings.Contains(out, "RB-1") || strings.Contains(out, "RB-2") {
		t.Errorf("rebuild --dry-run printed %q, want RB-1 listed and not RB-2", out)
	}
	if n, _ := s.rdb.Exists(ctx, stock.AvailKey("RB-1")).Result(); n != 0 {
		t.Fatal("rebuild --dry-run wrote RB-1's counters")
	}
	// set and add refuse a catalogued SKU without counters: they would
	// start it from zero and forget what was sold.
	if r := s.run(t, nil, "stockctl", "add", "RB-1", "5"); r.code != 1 || !strings.Contains(r.stderr, "run stockctl rebuild first") {
		t.Errorf("add on a lost SKU: exit %d, stderr %q; want exit 1 and a pointer to rebuild", r.code, r.stderr)
	}
	out = s.mustRun(t, "stockctl", "rebuild", "--fence", "0")
	if !strings.Contains(out, "RB-1: available 10, held 0, sold 0") || !strings.Contains(out, "1 SKU(s) rebuilt") {
		t.Errorf("rebuild printed %q, want RB-1 restored to 10", out)
	}
	s.mustRun(t, "stockctl", "reconcile")

	// Only RB-2's available counter lost: rebuilt from the surviving held
	// and sold, not left stuck as "live".
	if err := s.rdb.Set(ctx, stock.SoldKey("RB-2"), 3, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.Del(ctx, stock.AvailKey("RB-2")).Err(); err != nil {
		t.Fatal(err)
	}
	if out := s.mustRun(t, "stockctl", "rebuild", "--fence", "0"); !strings.Contains(out, "RB-2: available 4, held 0, sold 3") {
		t.Errorf("rebuild after losing only available printed %q, want RB-2: available 4, held 0, sold 3", out)
	}

	pool, err := pgxpoolFor(t, envOf(s.env, "DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	var ops string
	if err := pool.QueryRow(ctx,
		`SELECT string_agg(op || ':' || qty || ':' || stocked, ' ' ORDER BY id) FROM stock_movements WHERE sku = 'RB-1'`).Scan(&ops); err != nil {
		t.Fatal(err)
	}
	if ops != "set:10:10 rebuild:10:10" {
		t.Errorf("stock_movements for RB-1 = %q, want set:10:10 rebuild:10:10", ops)
	}

	// An oversell that happened before the rebuild stays visible: rebuild
	// exits 1 and the catalogue keeps its total, so reconcile flags it.
	s.mustRun(t, "stockctl", "set", "RB-3", "5")
	if _, err := pool.Exec(ctx, `
		INSERT INTO orders (order_id, customer_id, status) VALUES ('rb-o1', 'c1', 'confirmed');
		INSERT INTO order_lines (order_id, sku, qty) VALUES ('rb-o1', 'RB-3', 7)`); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.Del(ctx, stock.AvailKey("RB-3"), stock.HeldKey("RB-3"), stock.SoldKey("RB-3")).Err(); err != nil {
		t.Fatal(err)
	}
	r := s.run(t, nil, "stockctl", "rebuild", "--fence", "0")
	if r.code != 1 || !strings.Contains(r.stdout, "RB-3: available 0, held 0, sold 7") || !strings.Contains(r.stderr, "oversold") {
		t.Errorf("rebuild of an oversold SKU: exit %d, stdout %q, stderr %q; want exit 1 naming the oversell", r.code, r.stdout, r.stderr)
	}
	if r := s.run(t, nil, "stockctl", "reconcile"); r.code != 1 || !strings.Contains(r.stdout, "RB-3") {
		t.Errorf("reconcile after an oversold rebuild: exit %d, stdout %q; want exit 1 with RB-3 drifting", r.code, r.stdout)
	}

	for _, args := range [][]string{{"rebuild", "--fence", "-1s"}, {"rebuild", "RB-1"}, {"rebuild", "--fence", "soon"}} {
		r := s.run(t, nil, "stockctl", args...)
		if r.code != 2 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.HasPrefix(r.stderr, "stockctl rebuild: ") {
			t.Errorf("stockctl %v: exit %d, stderr %q; want exit 2 and one line", args, r.code, r.stderr)
		}
	}
}
