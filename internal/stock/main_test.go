package stock_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestMain stops the package's private redis-server and then looks for
// leaked goroutines: every Gate test closes its clients, so anything left
// running is a leak in the code under test or in a test.
func TestMain(m *testing.M) {
	os.Exit(testsvc.Finish(m.Run()))
}

// newGate gives a test a Gate over its own flushed database on the
// package's private redis-server, and the raw client for inspection.
func newGate(t *testing.T, cfg stock.Config) (*stock.Gate, *redis.Client) {
	t.Helper()
	_, _, rdb := testsvc.RedisDB(t)
	return stock.New(rdb, cfg), rdb
}

// stockSKU sets sku to qty available and fails the test on error.
func stockSKU(t testing.TB, g *stock.Gate, sku string, qty int64) {
	t.Helper()
	if _, err := g.Set(context.Background(), sku, qty); err != nil {
		t.Fatalf("Set(%s, %d) = %v, want nil", sku, qty, err)
	}
}

// levels reads sku's counters through Show.
func levels(t testing.TB, g *stock.Gate, sku string) stock.Levels {
	t.Helper()
	ls, err := g.Show(context.Background(), sku)
	if err != nil {
		t.Fatalf("Show(%s) = %v, want nil", sku, err)
	}
	return ls[0]
}

// wantLevels fails the test when sku's counters differ from want.
func wantLevels(t testing.TB, g *stock.Gate, want stock.Levels) {
	t.Helper()
	if diff := cmp.Diff(want, levels(t, g, want.SKU)); diff != "" {
		t.Errorf("Show(%s) mismatch (-want +got):\n%s", want.SKU, diff)
	}
}

// holdState is what one order's hold on one SKU looks like in Redis.
type holdState struct {
	Qty      string
	Deadline string
	State    string
	// Tok is the hold's token ("" for a hold without one).
	Tok string
	// InDeadlines is whether the order is in the SKU's deadlines zset.
	InDeadlines bool
}

func readHold(t testing.TB, rdb redis.Cmdable, sku, order string) holdState {
	t.Helper()
	ctx := context.Background()
	h, err := rdb.HGetAll(ctx, stock.HoldKey(sku, order)).Result()
	if err != nil {
		t.Fatalf("HGETALL %s: %v", stock.HoldKey(sku, order), err)
	}
	_, zerr := rdb.ZScore(ctx, stock.DeadlinesKey(sku), order).Result()
	if zerr != nil && zerr != redis.Nil {
		t.Fatalf("ZSCORE %s %s: %v", stock.DeadlinesKey(sku), order, zerr)
	}
	return holdState{Qty: h["qty"], Deadline: h["deadline"], State: h["state"], Tok: h["tok"], InDeadlines: zerr == nil}
}

// heldHold is the hold state Reserve leaves for qty units until deadline
// under token tok.
func heldHold(qty int64, deadline time.Time, tok string) holdState {
	return holdState{
		Qty:         strconv.FormatInt(qty, 10),
		Deadline:    strconv.FormatInt(deadline.UnixMilli(), 10),
		State:       "held",
		Tok:         tok,
		InDeadlines: true,
	}
}

// committedHold is the tombstone Commit leaves of a hold of qty units taken
// until deadline under token tok.
func committedHold(qty int64, deadline time.Time, tok string) holdState {
	h := heldHold(qty, deadline, tok)
	h.State, h.InDeadlines = "committed", false
	return h
}

// snapshot is every key of a database with its type, value and whether it
// has a TTL: enough to prove that a refused call changed nothing at all.
func snapshot(t testing.TB, rdb redis.Cmdable) map[string]string {
	t.Helper()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatalf("KEYS *: %v", err)
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if strings.HasPrefix(k, "sg:{holding:") {
			// The hold index is left out: a reserve marks its SKUs in the
			// round trip of its script, refused or not, and an entry with
			// nothing held only sends the sweeper to look (index.go).
			continue
		}
		typ := rdb.Type(ctx, k).Val()
		var v any
		switch typ {
		case "string":
			v = rdb.Get(ctx, k).Val()
		case "hash":
			v = rdb.HGetAll(ctx, k).Val()
		case "zset":
			v = rdb.ZRangeWithScores(ctx, k, 0, -1).Val()
		case "set":
			m := rdb.SMembers(ctx, k).Val()
			slices.Sort(m)
			v = m
		}
		ttl := rdb.PTTL(ctx, k).Val() > 0
		out[k] = fmt.Sprintf("%s %v ttl=%v", typ, v, ttl)
	}
	return out
}

// mustReserve reserves lines for order until deadline and fails the test
// unless the Reserve succeeds.
func mustReserve(t testing.TB, g *stock.Gate, order string, lines []stock.Line, deadline time.Time) stock.Reservation {
	t.Helper()
	r, err := g.Reserve(context.Background(), order, lines, deadline)
	if err != nil {
		t.Fatalf("Reserve(%s, %v) = %+v, %v, want nil error", order, lines, r, err)
	}
	return r
}

// setTok makes order's hold on sku carry token tok, or no token at all
// when tok is "": a hold another delivery took, or one written before
// holds had tokens.
func setTok(t testing.TB, rdb redis.Cmdable, sku, order, tok string) {
	t.Helper()
	ctx := context.Background()
	var err error
	if tok == "" {
		err = rdb.HDel(ctx, stock.HoldKey(sku, order), "tok").Err()
	} else {
		err = rdb.HSet(ctx, stock.HoldKey(sku, order), "tok", tok).Err()
	}
	if err != nil {
		t.Fatalf("set tok of %s: %v", stock.HoldKey(sku, order), err)
	}
}
