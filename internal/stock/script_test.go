package stock_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/lua"
)

// keys5 is the five-key layout of one line in reserve, release and commit.
func keys5(sku, order string) []string {
	return []string{stock.AvailKey(sku), stock.HeldKey(sku), stock.SoldKey(sku), stock.HoldKey(sku, order), stock.DeadlinesKey(sku)}
}

func concat(ks ...[]string) []string {
	var out []string
	for _, k := range ks {
		out = append(out, k...)
	}
	return out
}

func strs(ss ...string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// scriptCase is one call made straight to a script, bypassing every check
// the Go API does, that the script itself must refuse.
type scriptCase struct {
	name string
	keys []string
	args []any
}

// TestScriptsRefuseBadArguments sends malformed and malicious KEYS and ARGV
// to every script with both EVAL and EVALSHA, and checks that each is
// refused with the script's bad-arguments code and that not one key of the
// database changed. The fixture has stock, a live hold and a tombstone, so
// a call that slipped through would have something to change.
func TestScriptsRefuseBadArguments(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{Retention: time.Hour})
	stockSKU(t, g, "A", 10)
	stockSKU(t, g, "B", 10)
	deadline := time.Now().Add(time.Hour)
	if _, err := g.Reserve(ctx, "held", []stock.Line{{SKU: "A", Qty: 2}}, deadline); err != nil {
		t.Fatalf("Reserve(held) = %v, want nil", err)
	}
	if _, err := g.Reserve(ctx, "done", []stock.Line{{SKU: "B", Qty: 1}}, deadline); err != nil {
		t.Fatalf("Reserve(done) = %v, want nil", err)
	}
	if _, err := g.Commit(ctx, "done", []string{"B"}); err != nil {
		t.Fatalf("Commit(done) = %v, want nil", err)
	}
	if err := rdb.Set(ctx, stock.RateKey("c1"), "1", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	dl := strconv.FormatInt(deadline.UnixMilli(), 10)

	// Keys of one line that mix two SKUs: had they run, units would move
	// from one SKU's counters to another's.
	mixed := []string{stock.AvailKey("B"), stock.HeldKey("A"), stock.SoldKey("A"), stock.HoldKey("A", "held"), stock.DeadlinesKey("A")}
	mixedNew := []string{stock.AvailKey("A"), stock.HeldKey("B"), stock.SoldKey("B"), stock.HoldKey("B", "new"), stock.DeadlinesKey("B")}

	badQty := map[string]string{
		"negative": "-1", "zero": "0", "fractional": "1.5", "exponent": "1e3", "hex": "0x10",
		"non-numeric": "abc", "leading space": " 1", "trailing space": "1 ", "huge": "99999999999999999999",
		"over max": "10001", "empty": "", "plus sign": "+1",
	}

	var reserve []scriptCase
	for name, q := range badQty {
		reserve = append(reserve,
			scriptCase{"qty " + name, keys5("A", "new"), strs("new", dl, q)},
			scriptCase{"second line qty " + name, concat(keys5("A", "new"), keys5("B", "new")), strs("new", dl, "1", q)},
		)
	}
	reserve = append(reserve,
		scriptCase{"deadline negative", keys5("A", "new"), strs("new", "-1", "1")},
		scriptCase{"deadline non-numeric", keys5("A", "new"), strs("new", "soon", "1")},
		scriptCase{"deadline empty", keys5("A", "new"), strs("new", "", "1")},
		scriptCase{"missing order id", keys5("A", "new"), nil},
		scriptCase{"empty order id", keys5("A", ""), strs("", dl, "1")},
		scriptCase{"no lines", nil, strs("new", dl)},
		scriptCase{"no keys", nil, strs("new", dl, "1")},
		scriptCase{"four keys", keys5("A", "new")[:4], strs("new", dl, "1")},
		scriptCase{"six keys", append(keys5("A", "new"), "sg:{A}:extra"), strs("new", dl, "1")},
		scriptCase{"keys for two lines, one qty", concat(keys5("A", "new"), keys5("B", "new")), strs("new", dl, "1")},
		scriptCase{"duplicated sku", concat(keys5("A", "new"), keys5("A", "new")), strs("new", dl, "1", "1")},
		scriptCase{"duplicated sku after another", concat(keys5("A", "new"), keys5("B", "new"), keys5("A", "new")), strs("new", dl, "1", "1", "1")},
		scriptCase{"hold key of another order", concat(keys5("A", "other")), strs("new", dl, "1")},
		scriptCase{"keys of two skus in one line", mixedNew, strs("new", dl, "1")},
	)

	var release []scriptCase
	release = append(release,
		scriptCase{"missing order id", keys5("A", "held"), nil},
		scriptCase{"empty order id", keys5("A", ""), strs("")},
		scriptCase{"quantity from the caller", keys5("A", "held"), strs("held", "5")},
		scriptCase{"no keys", nil, strs("held")},
		scriptCase{"four keys", keys5("A", "held")[:4], strs("held")},
		scriptCase{"six keys", append(keys5("A", "held"), "sg:{A}:extra"), strs("held")},
		scriptCase{"duplicated sku", concat(keys5("A", "held"), keys5("A", "held")), strs("held")},
		scriptCase{"hold key of another order", keys5("A", "held"), strs("someone-else")},
		scriptCase{"keys of two skus in one line", mixed, strs("held")},
	)

	var commit []scriptCase
	for name, r := range map[string]string{
		"negative": "-1", "zero": "0", "fractional": "1.5", "exponent": "1e3",
		"non-numeric": "abc", "empty": "", "huge": "99999999999999999999",
	} {
		commit = append(commit, scriptCase{"retention " + name, keys5("A", "held"), strs("held", r)})
	}
	commit = append(commit,
		scriptCase{"missing order id", keys5("A", "held"), nil},
		scriptCase{"missing retention", keys5("A", "held"), strs("held")},
		scriptCase{"empty order id", keys5("A", ""), strs("", "1000")},
		scriptCase{"extra argument", keys5("A", "held"), strs("held", "1000", "2")},
		scriptCase{"no keys", nil, strs("held", "1000")},
		scriptCase{"four keys", keys5("A", "held")[:4], strs("held", "1000")},
		scriptCase{"duplicated sku", concat(keys5("A", "held"), keys5("A", "held")), strs("held", "1000")},
		scriptCase{"hold key of another order", keys5("A", "held"), strs("someone-else", "1000")},
		scriptCase{"keys of two skus in one line", mixed, strs("held", "1000")},
	)

	counters := func(sku string) []string {
		return []string{stock.AvailKey(sku), stock.HeldKey(sku), stock.SoldKey(sku)}
	}
	adjust := func(minQty int) []scriptCase {
		var out []scriptCase
		bad := map[string]string{
			"negative": "-1", "fractional": "1.5", "exponent": "1e3", "non-numeric": "abc", "empty": "",
			"leading space": " 1", "over max": "1000000000001", "huge": "99999999999999999999",
		}
		if minQty == 1 {
			bad["zero"] = "0"
		}
		for name, q := range bad {
			out = append(out, scriptCase{"qty " + name, counters("A"), strs(q)})
		}
		return append(out,
			scriptCase{"missing qty", counters("A"), nil},
			scriptCase{"extra argument", counters("A"), strs("1", "2")},
			scriptCase{"two keys", counters("A")[:2], strs("1")},
			scriptCase{"four keys", append(counters("A"), "sg:{A}:extra"), strs("1")},
			scriptCase{"counters of two skus", []string{stock.AvailKey("A"), stock.HeldKey("B"), stock.SoldKey("B")}, strs("1")},
		)
	}

	var rebuild []scriptCase
	for name, q := range map[string]string{
		"negative": "-1", "fractional": "1.5", "exponent": "1e3", "non-numeric": "abc", "empty": "",
		"over max": "1000000000001", "huge": "99999999999999999999",
	} {
		rebuild = append(rebuild,
			scriptCase{"stocked " + name, counters("A"), strs(q, "0")},
			scriptCase{"sold " + name, counters("A"), strs("10", q)},
		)
	}
	rebuild = append(rebuild,
		scriptCase{"missing sold", counters("A"), strs("10")},
		scriptCase{"two keys", counters("A")[:2], strs("10", "0")},
		scriptCase{"counters of two skus", []string{stock.AvailKey("A"), stock.HeldKey("B"), stock.SoldKey("B")}, strs("10", "0")},
	)

	var rate []scriptCase
	for name, v := range map[string]string{
		"negative": "-1", "zero": "0", "fractional": "1.5", "exponent": "1e3", "non-numeric": "abc",
		"empty": "", "huge": "99999999999999999999",
	} {
		rate = append(rate,
			scriptCase{"limit " + name, []string{stock.RateKey("c1")}, strs(v, "1000")},
			scriptCase{"window " + name, []string{stock.RateKey("c1")}, strs("5", v)},
		)
	}
	rate = append(rate,
		scriptCase{"missing window", []string{stock.RateKey("c1")}, strs("5")},
		scriptCase{"no keys", nil, strs("5", "1000")},
		scriptCase{"two keys", []string{stock.RateKey("c1"), stock.RateKey("c2")}, strs("5", "1000")},
	)

	scripts := []struct {
		name  string
		src   string
		cases []scriptCase
	}{
		{"reserve", lua.Reserve, reserve},
		{"release", lua.Release, release},
		{"commit", lua.Commit, commit},
		{"set", lua.Set, adjust(0)},
		{"add", lua.Add, adjust(1)},
		{"rebuild", lua.Rebuild, rebuild},
		{"ratelimit", lua.RateLimit, rate},
	}

	before := snapshot(t, rdb)
	for _, s := range scripts {
		sha, err := rdb.ScriptLoad(ctx, s.src).Result()
		if err != nil {
			t.Fatalf("SCRIPT LOAD %s: %v", s.name, err)
		}
		for _, c := range s.cases {
			for _, via := range []string{"EVAL", "EVALSHA"} {
				var res []int64
				if via == "EVAL" {
					res, err = rdb.Eval(ctx, s.src, c.keys, c.args...).Int64Slice()
				} else {
					res, err = rdb.EvalSha(ctx, sha, c.keys, c.args...).Int64Slice()
				}
				if err != nil {
					t.Errorf("%s %s (%s) = error %v, want a refusal reply", via, s.name, c.name, err)
					continue
				}
				if len(res) == 0 || res[0] != -2 {
					t.Errorf("%s %s (%s) = %v, want [-2 ...] (bad arguments)", via, s.name, c.name, res)
				}
				if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
					t.Fatalf("%s %s (%s) changed the database (-before +after):\n%s", via, s.name, c.name, diff)
				}
			}
		}
	}
}

// TestScriptsRefuseCorruptCounters puts values in the keys that only a hand
// edit could leave there (non-integer counters, keys of the wrong type), and
// checks that no script writes anything before noticing: Redis has no
// rollback, so an error raised halfway through a multi-line script would
// leave half its writes behind.
func TestScriptsRefuseCorruptCounters(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		name    string
		corrupt func(ctx context.Context, rdb redis.Cmdable) error
		call    func(ctx context.Context, g *stock.Gate) error
	}{
		{
			name: "reserve with fractional available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "5.5", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with exponent available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "1e3", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with non-numeric held on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.HeldKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with held of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.HeldKey("B")).Err(); err != nil {
					return err
				}
				return rdb.HSet(ctx, stock.HeldKey("B"), "x", "1").Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with deadlines of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.DeadlinesKey("B")).Err(); err != nil {
					return err
				}
				return rdb.Set(ctx, stock.DeadlinesKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "single-line reserve with deadlines of the wrong type",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.DeadlinesKey("B")).Err(); err != nil {
					return err
				}
				return rdb.Set(ctx, stock.DeadlinesKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "release with deadlines of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.DeadlinesKey("B")).Err(); err != nil {
					return err
				}
				return rdb.Set(ctx, stock.DeadlinesKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Release(ctx, "held", []string{"A", "B"})
				return err
			},
		},
		{
			name: "commit with deadlines of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.DeadlinesKey("B")).Err(); err != nil {
					return err
				}
				return rdb.Set(ctx, stock.DeadlinesKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Commit(ctx, "held", []string{"A", "B"})
				return err
			},
		},
		{
			name: "release with non-numeric available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Release(ctx, "held", []string{"A", "B"})
				return err
			},
		},
		{
			name: "commit with fractional sold on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.SoldKey("B"), "0.5", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate) error {
				_, err := g.Commit(ctx, "held", []string{"A", "B"})
				return err
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			ctx := context.Background()
			g, rdb := newGate(t, stock.Config{})
			stockSKU(t, g, "A", 10)
			stockSKU(t, g, "B", 10)
			lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}
			if _, err := g.Reserve(ctx, "held", lines, time.Now().Add(time.Hour)); err != nil {
				t.Fatalf("Reserve(held) = %v, want nil", err)
			}
			if err := tt.corrupt(ctx, rdb); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, rdb)

			err := tt.call(ctx, g)
			if err == nil {
				t.Errorf("call = nil, want an error")
			}
			if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
				t.Errorf("call changed the database (-before +after):\n%s", diff)
			}
		})
	}
}

// TestScriptFlushMidRun flushes the script cache while concurrent reserves
// are running: each call must still succeed through the EVAL fallback, and
// the counters must add up. It runs on a redis-server of its own, because
// SCRIPT FLUSH is server-wide and would disturb the package's other tests.
func TestScriptFlushMidRun(t *testing.T) {
	t.Parallel()

	const (
		workers   = 16
		perWorker = 40
		total     = workers * perWorker
	)
	ctx := context.Background()
	r := testsvc.NewRedis(t)
	rdb := r.Client(0)
	t.Cleanup(func() { _ = rdb.Close() })

	// Count EVAL fallbacks, to prove the flushes really forced some.
	var evals atomic.Int64
	rdb.AddHook(evalCounter{&evals})
	g := stock.New(rdb, stock.Config{})
	stockSKU(t, g, "hot", total)

	var done atomic.Int64
	start := make(chan struct{})
	errs := make(chan error, total)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range perWorker {
				order := "o-" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				_, err := g.Reserve(ctx, order, []stock.Line{{SKU: "hot", Qty: 1}}, time.Now().Add(time.Hour))
				if err != nil {
					errs <- err
				}
				done.Add(1)
			}
		})
	}
	// Flush again and again for as long as the workers run, on a client of
	// its own, counting the flushes that landed while reserves were under way.
	flusher := r.Client(0)
	t.Cleanup(func() { _ = flusher.Close() })
	stop := make(chan struct{})
	flushed := make(chan int)
	go func() {
		mid := 0
		for {
			select {
			case <-stop:
				flushed <- mid
				return
			default:
			}
			n := done.Load()
			if err := flusher.ScriptFlush(ctx).Err(); err != nil {
				t.Errorf("SCRIPT FLUSH: %v", err)
			}
			if n > 0 && done.Load() < total {
				mid++
			}
		}
	}()
	close(start)
	wg.Wait()
	close(stop)
	mid := <-flushed
	close(errs)
	for err := range errs {
		t.Errorf("Reserve during SCRIPT FLUSH = %v, want nil", err)
	}
	if mid == 0 || evals.Load() == 0 {
		t.Errorf("flushes mid-run, EVAL fallbacks = %d, %d, want both > 0", mid, evals.Load())
	}
	t.Logf("flushes mid-run: %d, EVAL fallbacks: %d", mid, evals.Load())
	wantLevels(t, g, stock.Levels{SKU: "hot", Available: 0, Held: total, Sold: 0, Stocked: true})
}

// evalCounter counts EVAL commands, which go-redis only sends after EVALSHA
// came back NOSCRIPT.
type evalCounter struct{ n *atomic.Int64 }

func (evalCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h evalCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if strings.EqualFold(cmd.Name(), "eval") {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (evalCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
