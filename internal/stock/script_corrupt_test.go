package stock_test

import (
	"context"
	"slices"
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
)

// mustHSet sets field of hash key to val and fails the test on error.
func mustHSet(t *testing.T, rdb *redis.Client, key, field, val string) {
	t.Helper()
	if err := rdb.HSet(context.Background(), key, field, val).Err(); err != nil {
		t.Fatal(err)
	}
}

// mustSet sets key to val and fails the test on error.
func mustSet(t *testing.T, rdb *redis.Client, key, val string) {
	t.Helper()
	if err := rdb.Set(context.Background(), key, val, 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// holdsAddUp fails the test unless sku's held counter is the sum of the
// quantities of its held holds and its deadlines zset names exactly the
// orders holding them.
func holdsAddUp(t *testing.T, rdb *redis.Client, sku string) {
	t.Helper()
	ctx := context.Background()
	prefix := stock.HoldKey(sku, "")
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatalf("KEYS %s*: %v", prefix, err)
	}
	var sum int64
	var holding []string
	for _, k := range keys {
		h := rdb.HGetAll(ctx, k).Val()
		if h["state"] != "held" {
			continue
		}
		q, err := strconv.ParseInt(h["qty"], 10, 64)
		if err != nil {
			t.Fatalf("hold %s qty %q: %v", k, h["qty"], err)
		}
		sum += q
		holding = append(holding, strings.TrimPrefix(k, prefix))
	}
	held, err := rdb.Get(ctx, stock.HeldKey(sku)).Int64()
	if err != nil || held != sum {
		t.Errorf("held of %s = %d, %v, want %d (the sum of its held holds)", sku, held, err, sum)
	}
	members := rdb.ZRange(ctx, stock.DeadlinesKey(sku), 0, -1).Val()
	slices.Sort(members)
	slices.Sort(holding)
	if !slices.Equal(members, holding) {
		t.Errorf("deadlines of %s = %v, want the orders holding it, %v", sku, members, holding)
	}
}

// TestScriptsRefuseCorruptCounters puts values in the keys that only a hand
// edit could leave there (non-integer counters, keys of the wrong type), and
// checks that no script writes anything before noticing: Redis has no
// rollback, so an error raised halfway through a multi-line script would
// leave half its writes behind.
func TestScriptsRefuseCorruptCounters(t *testing.T) {
	t.Parallel()

	// commitHeld commits order "held" under the token given.
	commitHeld := func(ctx context.Context, g *stock.Gate, token string) error {
		_, err := g.Commit(ctx, "held", token, []string{"A", "B"})
		return err
	}
	for _, tt := range []struct {
		name    string
		corrupt func(ctx context.Context, rdb redis.Cmdable) error
		// call gets the token of order "held"'s holds.
		call func(ctx context.Context, g *stock.Gate, token string) error
	}{
		{
			name: "reserve with fractional available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "5.5", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with exponent available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "1e3", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
				_, err := g.Reserve(ctx, "new", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}}, time.Now().Add(time.Hour))
				return err
			},
		},
		{
			name: "reserve with non-numeric held on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.HeldKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
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
			call: commitHeld,
		},
		{
			// Giving back a hold under another token reads available.
			name: "commit under another token with non-numeric available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
				_, err := g.Commit(ctx, "held", "other", []string{"A", "B"})
				return err
			},
		},
		{
			name: "commit with held of the wrong type on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				if err := rdb.Del(ctx, stock.HeldKey("B")).Err(); err != nil {
					return err
				}
				return rdb.LPush(ctx, stock.HeldKey("B"), "x").Err()
			},
			call: commitHeld,
		},
		{
			name: "release with non-numeric available on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.AvailKey("B"), "x", 0).Err()
			},
			call: func(ctx context.Context, g *stock.Gate, _ string) error {
				_, err := g.Release(ctx, "held", []string{"A", "B"})
				return err
			},
		},
		{
			name: "commit with fractional sold on the second line",
			corrupt: func(ctx context.Context, rdb redis.Cmdable) error {
				return rdb.Set(ctx, stock.SoldKey("B"), "0.5", 0).Err()
			},
			call: commitHeld,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			ctx := context.Background()
			g, rdb := newGate(t, stock.Config{})
			stockSKU(t, g, "A", 10)
			stockSKU(t, g, "B", 10)
			lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}
			r := mustReserve(t, g, "held", lines, time.Now().Add(time.Hour))
			if err := tt.corrupt(ctx, rdb); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, rdb)

			err := tt.call(ctx, g, r.Token)
			if err == nil {
				t.Errorf("call = nil, want an error")
			}
			if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
				t.Errorf("call changed the database (-before +after):\n%s", diff)
			}
		})
	}
}

// TestScriptFlushMidRun flushes the script cache again and again while
// concurrent reserves run and are batched: each call must still succeed
// through the EVAL fallback, and the counters must add up. On a single node
// a batch is one script call (EVALSHA, then EVAL on NOSCRIPT); with the
// per-slot path over SKUs of several slots, a batch is a pipeline of
// EVALSHAs whose NOSCRIPT replies are sent again (TestScriptFlushPipelined
// covers that path deterministically). It runs on a redis-server of its
// own, because SCRIPT FLUSH is server-wide and would disturb the package's
// other tests.
func TestScriptFlushMidRun(t *testing.T) {
	t.Parallel()

	for _, tt := range []struct {
		name    string
		cluster bool
		skus    []string
	}{
		{"SingleNode", false, []string{"hot"}},
		{"PerSlot", true, []string{"red", "blue", "green", "hot"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
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

			// Count EVAL fallbacks, to prove the flushes really forced some,
			// and the script calls and orders, to prove calls were batched.
			var evals atomic.Int64
			rdb.AddHook(evalCounter{&evals})
			log := &scriptLog{}
			rdb.AddHook(log)
			g := stock.New(rdb, stock.Config{Cluster: tt.cluster})
			for _, s := range tt.skus {
				stockSKU(t, g, s, total)
			}
			log.take()

			var done atomic.Int64
			start := make(chan struct{})
			errs := make(chan error, total)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					<-start
					sku := tt.skus[w%len(tt.skus)]
					for i := range perWorker {
						order := "o-" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
						_, err := g.Reserve(ctx, order, []stock.Line{{SKU: sku, Qty: 1}}, time.Now().Add(time.Hour))
						if err != nil {
							errs <- err
						}
						done.Add(1)
					}
				})
			}
			// Flush again and again for as long as the workers run, on a
			// client of its own, counting the flushes that landed while
			// reserves were under way.
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
			calls := log.take()
			orders := 0
			for _, c := range calls {
				n, _ := strconv.Atoi(c.args[0])
				orders += n
			}
			if orders != total || len(calls) >= total {
				t.Errorf("script calls, orders in them = %d, %d, want fewer calls than orders and %d orders (each run once)", len(calls), orders, total)
			}
			if tt.cluster && log.noscript == 0 {
				t.Errorf("pipelined script calls that came back NOSCRIPT = 0, want some: the flushes missed the pipeline path")
			}
			t.Logf("flushes mid-run: %d, EVAL fallbacks: %d, script calls: %d, pipelined NOSCRIPT: %d", mid, evals.Load(), len(calls), log.noscript)
			held := int64(0)
			for _, s := range tt.skus {
				l := levels(t, g, s)
				held += l.Held
				if l.Total() != total || l.Sold != 0 {
					t.Errorf("Show(%s) = %+v, want a total of %d and nothing sold", s, l, total)
				}
			}
			if held != total {
				t.Errorf("units held = %d, want %d (one per Reserve)", held, total)
			}
		})
	}
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
