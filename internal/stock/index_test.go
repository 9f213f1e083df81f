package stock_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/lua"
)

// indexScore is sku's score in the hold index, and whether it is there.
func indexScore(t testing.TB, rdb redis.Cmdable, sku string) (int64, bool) {
	t.Helper()
	for b := range stock.IndexBuckets {
		s, err := rdb.ZScore(context.Background(), stock.HoldingKey(b), sku).Result()
		if err == redis.Nil {
			continue
		}
		if err != nil {
			t.Fatalf("ZSCORE %s %s: %v", stock.HoldingKey(b), sku, err)
		}
		return int64(s), true
	}
	return 0, false
}

// unindexed takes sku out of the hold index by hand: a mark Redis lost.
func unindexed(t testing.TB, rdb redis.Cmdable, sku string) {
	t.Helper()
	for b := range stock.IndexBuckets {
		if err := rdb.ZRem(context.Background(), stock.HoldingKey(b), sku).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// fullPass runs ScanHolding from the start to the end of a pass, count keys
// a step, and returns the SKUs it put back and the steps it took.
func fullPass(t testing.TB, g *stock.Gate, count int64) (added, steps int) {
	t.Helper()
	var cur stock.ScanCursor
	for {
		next, n, err := g.ScanHolding(context.Background(), cur, count)
		if err != nil {
			t.Fatalf("ScanHolding(%+v) = %v", cur, err)
		}
		added += n
		steps++
		if next == (stock.ScanCursor{}) {
			return added, steps
		}
		if steps > 100000 {
			t.Fatalf("ScanHolding never ended its pass")
		}
		cur = next
	}
}

// TestHoldIndex: every reserve marks its SKUs with its deadline, the latest
// one kept; the sweep reads only the SKUs of the index, and drops an entry
// once its deadlines set is empty and its latest mark is past, never while
// a hold or a later mark stands.
func TestHoldIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{})
	now := time.UnixMilli(time.Now().UnixMilli())
	for _, s := range []string{"A", "B", "IDLE"} {
		stockSKU(t, g, s, 10)
	}
	if _, ok := indexScore(t, rdb, "IDLE"); ok {
		t.Errorf("a SKU stocked but never reserved is in the hold index")
	}

	mustReserve(t, g, "o1", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, now.Add(-time.Minute))
	mustReserve(t, g, "o2", []stock.Line{{SKU: "A", Qty: 1}}, now.Add(time.Hour))
	mustReserve(t, g, "o3", []stock.Line{{SKU: "A", Qty: 1}}, now.Add(time.Minute)) // earlier: the mark stays
	for sku, want := range map[string]time.Time{"A": now.Add(time.Hour), "B": now.Add(-time.Minute)} {
		if got, ok := indexScore(t, rdb, sku); !ok || got != want.UnixMilli() {
			t.Errorf("index score of %s = %d, %v; want %d, the latest deadline marked", sku, got, ok, want.UnixMilli())
		}
	}
	// A refused reserve marks too (one round trip, sent before the
	// script's answer); the entry goes with the others.
	if _, err := g.Reserve(ctx, "o4", []stock.Line{{SKU: "IDLE", Qty: 11}}, now.Add(-time.Minute)); err == nil {
		t.Fatalf("Reserve(o4, 11 of 10) = nil, want out of stock")
	}

	got, err := g.ExpiredHolds(ctx, now, 100)
	want := []stock.Hold{{SKU: "A", OrderID: "o1", Deadline: now.Add(-time.Minute)}, {SKU: "B", OrderID: "o1", Deadline: now.Add(-time.Minute)}}
	if err != nil || !cmp.Equal(want, got) {
		t.Fatalf("ExpiredHolds = %v, %v; want %v", got, err, want)
	}
	// IDLE's deadlines are empty and its mark is past: dropped. B still
	// holds o1: it stays.
	if _, ok := indexScore(t, rdb, "IDLE"); ok {
		t.Errorf("IDLE still in the index after a sweep, with nothing held and its mark past")
	}
	if _, err := g.Release(ctx, "o1", []string{"A", "B"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.ExpiredHolds(ctx, now, 100); err != nil {
		t.Fatal(err)
	}
	if _, ok := indexScore(t, rdb, "B"); ok {
		t.Errorf("B still in the index after its last hold went and its mark passed")
	}
	if _, ok := indexScore(t, rdb, "A"); !ok {
		t.Errorf("A left the index while o2 and o3 hold it")
	}
	// Nothing held on A any more, but its latest mark is an hour away: a
	// reserve that marked it may still be on its way, so it stays until
	// the mark passes.
	for _, o := range []string{"o2", "o3"} {
		if _, err := g.Release(ctx, o, []string{"A"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := g.ExpiredHolds(ctx, now, 100); err != nil {
		t.Fatal(err)
	}
	if _, ok := indexScore(t, rdb, "A"); !ok {
		t.Errorf("A left the index before its latest mark passed")
	}
	if _, err := g.ExpiredHolds(ctx, now.Add(2*time.Hour), 100); err != nil {
		t.Fatal(err)
	}
	for b := range stock.IndexBuckets {
		if n := rdb.Exists(ctx, stock.HoldingKey(b)).Val(); n != 0 {
			t.Errorf("%s still exists once nothing is held", stock.HoldingKey(b))
		}
	}
	if n, err := g.OpenHolds(ctx); err != nil || n != 0 {
		t.Errorf("OpenHolds = %d, %v; want 0", n, err)
	}
}

// TestUnindexKeepsAMovedScore: the entry is dropped only when the score the
// sweeper read still stands; a reserve that marked the SKU in between keeps
// it.
func TestUnindexKeepsAMovedScore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, rdb := newGate(t, stock.Config{})
	key := stock.HoldingKey(0)
	if err := rdb.ZAdd(ctx, key, redis.Z{Score: 1000, Member: "S"}).Err(); err != nil {
		t.Fatal(err)
	}
	unindex := redis.NewScript(lua.Unindex)
	if err := rdb.ZAddGT(ctx, key, redis.Z{Score: 2000, Member: "S"}).Err(); err != nil { // a reserve's mark
		t.Fatal(err)
	}
	if n, err := unindex.Run(ctx, rdb, []string{key}, "S", "1000").Int(); err != nil || n != 0 {
		t.Errorf("unindex with a score that moved = %d, %v; want 0", n, err)
	}
	if n, err := unindex.Run(ctx, rdb, []string{key}, "S", "2000").Int(); err != nil || n != 1 {
		t.Errorf("unindex with the score that stands = %d, %v; want 1", n, err)
	}
	if n, err := unindex.Run(ctx, rdb, []string{key}, "S", "2000").Int(); err != nil || n != 0 {
		t.Errorf("unindex of an entry already gone = %d, %v; want 0", n, err)
	}
}

// TestFullPassFindsUnindexedHolds: a hold whose SKU lost its index entry is
// missed by the sweep until the full pass, a cursor over every key a
// bounded step at a time, puts the SKU back; then the sweep finds it. The
// pass puts back nothing that is there already, and reads nothing but
// deadlines sets.
func TestFullPassFindsUnindexedHolds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{})
	now := time.UnixMilli(time.Now().UnixMilli())
	// Enough idle SKUs that the pass takes many steps.
	for i := range 300 {
		stockSKU(t, g, fmt.Sprintf("IDLE-%d", i), 1)
	}
	stockSKU(t, g, "LOST", 5)
	stockSKU(t, g, "KEPT", 5)
	mustReserve(t, g, "lost-1", []stock.Line{{SKU: "LOST", Qty: 2}}, now.Add(-time.Minute))
	mustReserve(t, g, "lost-2", []stock.Line{{SKU: "LOST", Qty: 1}}, now.Add(time.Hour))
	mustReserve(t, g, "kept-1", []stock.Line{{SKU: "KEPT", Qty: 1}}, now.Add(-time.Minute))
	unindexed(t, rdb, "LOST")

	got, err := g.ExpiredHolds(ctx, now, 100)
	if want := []stock.Hold{{SKU: "KEPT", OrderID: "kept-1", Deadline: now.Add(-time.Minute)}}; err != nil || !cmp.Equal(want, got) {
		t.Fatalf("ExpiredHolds without LOST's entry = %v, %v; want only %v", got, err, want)
	}

	added, steps := fullPass(t, g, 20)
	if added != 1 || steps < 10 {
		t.Errorf("full pass put back %d SKUs in %d steps; want 1 (LOST), in many bounded steps", added, steps)
	}
	if score, ok := indexScore(t, rdb, "LOST"); !ok || score != now.Add(time.Hour).UnixMilli() {
		t.Errorf("LOST's entry after the pass = %d, %v; want its latest deadline %d", score, ok, now.Add(time.Hour).UnixMilli())
	}
	got, err = g.ExpiredHolds(ctx, now, 100)
	want := []stock.Hold{{SKU: "KEPT", OrderID: "kept-1", Deadline: now.Add(-time.Minute)}, {SKU: "LOST", OrderID: "lost-1", Deadline: now.Add(-time.Minute)}}
	if err != nil || !cmp.Equal(want, got) {
		t.Errorf("ExpiredHolds after the full pass = %v, %v; want %v", got, err, want)
	}
	if added, _ := fullPass(t, g, 1000); added != 0 {
		t.Errorf("a second full pass put back %d SKUs, want 0", added)
	}
}

// TestReserveFailsWhenItsMarkFails: a reserve whose index mark Redis
// refused is an error, so that the order's retry marks it again (the
// retry finds the hold already there); a hold is never left with no mark
// and no error.
func TestReserveFailsWhenItsMarkFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{})
	stockSKU(t, g, "M", 5)
	for b := range stock.IndexBuckets {
		// Which bucket M goes to is the gate's business: break them all.
		if err := rdb.Set(ctx, stock.HoldingKey(b), "not a zset", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(time.Hour)
	if _, err := g.Reserve(ctx, "m1", []stock.Line{{SKU: "M", Qty: 2}}, deadline); err == nil || !strings.Contains(err.Error(), "WRONGTYPE") {
		t.Fatalf("Reserve with its mark refused = %v, want the WRONGTYPE error", err)
	}
	for b := range stock.IndexBuckets {
		if err := rdb.Del(ctx, stock.HoldingKey(b)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if r := mustReserve(t, g, "m1", []stock.Line{{SKU: "M", Qty: 2}}, deadline); r.Outcome != stock.AlreadyHeld {
		t.Errorf("retried Reserve = %+v, want %v", r, stock.AlreadyHeld)
	}
	if _, ok := indexScore(t, rdb, "M"); !ok {
		t.Errorf("M not in the index after the retry")
	}
	wantLevels(t, g, stock.Levels{SKU: "M", Available: 3, Held: 2, Stocked: true})
}

// TestClusterHoldIndex: on a Redis Cluster the marks go to the index's own
// slots, and the full pass scans every master.
func TestClusterHoldIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testsvc.NewClusterNode(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	g := stock.New(cc, stock.Config{Retention: time.Hour})
	now := time.UnixMilli(time.Now().UnixMilli())
	for _, s := range []string{"red", "blue", "green"} {
		stockSKU(t, g, s, 10)
	}
	mustReserve(t, g, "c1", []stock.Line{{SKU: "red", Qty: 1}, {SKU: "blue", Qty: 1}, {SKU: "green", Qty: 1}}, now.Add(-time.Second))
	for _, s := range []string{"red", "blue", "green"} {
		if _, ok := indexScore(t, cc, s); !ok {
			t.Errorf("%s not in the index after a multi-slot reserve", s)
		}
	}
	unindexed(t, cc, "blue")
	if added, _ := fullPass(t, g, 10); added != 1 {
		t.Errorf("full pass on the cluster put back %d SKUs, want 1 (blue)", added)
	}
	got, err := g.ExpiredHolds(ctx, now, 10)
	if err != nil || len(got) != 3 {
		t.Errorf("ExpiredHolds on the cluster = %v, %v; want c1's three holds", got, err)
	}
}
