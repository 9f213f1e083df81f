package stock_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
)

// contentionGate is newGate with a connection pool sized for thousands of
// goroutines: the default pool would make most of them wait for a
// connection, which is fine, but its 4s pool timeout on a busy shared
// machine is not. The returned client is a separate, default-sized one for
// the invariant sampler.
func contentionGate(t *testing.T) (*stock.Gate, *redis.Client) {
	t.Helper()
	_, sampler := newGate(t, stock.Config{Retention: time.Hour})
	opts := *sampler.Options()
	opts.PoolSize = 64
	opts.PoolTimeout = time.Minute
	opts.ReadTimeout = 30 * time.Second
	rdb := redis.NewClient(&opts)
	t.Cleanup(func() { _ = rdb.Close() })
	return stock.New(rdb, stock.Config{Retention: time.Hour}), sampler
}

// sampleI1 reads the counters of skus again and again until stop is closed,
// and reports every reading that breaks I1 (available < 0, or available +
// held + sold != total). MGET is atomic with respect to the scripts, so one
// reading is one consistent moment. It returns the number of readings.
func sampleI1(ctx context.Context, rdb *redis.Client, totals map[string]int64, stop <-chan struct{}) (int, []string) {
	var n int
	var bad []string
	for {
		select {
		case <-stop:
			return n, bad
		default:
		}
		for sku, total := range totals {
			vals, err := rdb.MGet(ctx, stock.AvailKey(sku), stock.HeldKey(sku), stock.SoldKey(sku)).Result()
			if err != nil {
				bad = append(bad, fmt.Sprintf("MGET %s: %v", sku, err))
				return n, bad
			}
			var c [3]int64
			for i, v := range vals {
				if v != nil {
					c[i], _ = strconv.ParseInt(v.(string), 10, 64)
				}
			}
			if c[0] < 0 || c[0]+c[1]+c[2] != total {
				bad = append(bad, fmt.Sprintf("%s: available %d, held %d, sold %d, want available >= 0 and a sum of %d", sku, c[0], c[1], c[2], total))
			}
			n++
		}
	}
}

// TestReserveContention releases 2,500 goroutines at once on one SKU with
// 100 units, each reserving one unit for its own order and committing it.
// Exactly 100 may succeed, and a sampler reading the counters throughout
// must never see available below zero or units appear or vanish.
func TestReserveContention(t *testing.T) {
	t.Parallel()

	const (
		buyers = 2500
		units  = 100
	)
	ctx := context.Background()
	g, sampler := contentionGate(t)
	stockSKU(t, g, "hot", units)

	start := make(chan struct{})
	var ready, wg sync.WaitGroup
	errs := make([]error, buyers)
	res := make([]stock.Reservation, buyers)
	var committed atomic.Int64
	for i := range buyers {
		ready.Add(1)
		wg.Go(func() {
			order := "buyer-" + strconv.Itoa(i)
			ready.Done()
			<-start
			res[i], errs[i] = g.Reserve(ctx, order, []stock.Line{{SKU: "hot", Qty: 1}}, time.Now().Add(time.Hour))
			if errs[i] != nil {
				return
			}
			c, err := g.Commit(ctx, order, res[i].Token, []string{"hot"})
			if err != nil {
				errs[i] = fmt.Errorf("commit: %w", err)
				return
			}
			committed.Add(c.Units)
		})
	}
	ready.Wait()

	stop := make(chan struct{})
	type samples struct {
		n   int
		bad []string
	}
	sampled := make(chan samples)
	go func() {
		n, bad := sampleI1(ctx, sampler, map[string]int64{"hot": units}, stop)
		sampled <- samples{n, bad}
	}()
	close(start)
	wg.Wait()
	close(stop)
	s := <-sampled

	var reserved, outOfStock int
	tokens := map[string]bool{}
	for i, err := range errs {
		var oos *stock.OutOfStockError
		switch {
		case err == nil && res[i].Outcome == stock.Reserved && res[i].Token != "":
			reserved++
			tokens[res[i].Token] = true
		case errors.As(err, &oos) && oos.SKU == "hot" && oos.Available == 0:
			outOfStock++
		default:
			t.Errorf("buyer %d: Reserve = %+v, %v, want reserved under a token or out of stock with 0 left", i, res[i], err)
		}
	}
	if reserved != units || outOfStock != buyers-units {
		t.Errorf("reserved, out of stock = %d, %d, want %d, %d", reserved, outOfStock, units, buyers-units)
	}
	if len(tokens) != reserved {
		t.Errorf("distinct tokens of the %d holds = %d, want one each", reserved, len(tokens))
	}
	if got := committed.Load(); got != units {
		t.Errorf("units committed = %d, want %d", got, units)
	}
	// The buyers arrived together, so reserves queued behind the running
	// script calls and went out many to a call.
	if b := g.Batches(); b >= buyers+units {
		t.Errorf("batches = %d for %d Reserves and %d Commits, want fewer: concurrent calls were not batched", b, buyers, units)
	} else {
		t.Logf("batches: %d for %d buyers' reserves and %d commits", b, buyers, units)
	}
	wantLevels(t, g, stock.Levels{SKU: "hot", Available: 0, Held: 0, Sold: units, Stocked: true})
	if s.n == 0 {
		t.Errorf("I1 samples taken = 0, want > 0")
	}
	for _, b := range s.bad {
		t.Errorf("I1 broken while racing: %s", b)
	}
	t.Logf("I1 samples taken while racing: %d", s.n)
}

// TestMixedContention races 2,000 goroutines over two SKUs with multi-line
// orders. Every order is run by two goroutines at once (a duplicate
// delivery); half of the orders are committed, each goroutine under the
// token its Reserve returned, and half released. I1 is sampled throughout;
// at the end nothing is held, and sold is exactly the sum of the committed
// orders' tombstones.
func TestMixedContention(t *testing.T) {
	t.Parallel()

	const (
		orders = 1000
		totalA = 600
		totalB = 300
	)
	ctx := context.Background()
	g, sampler := contentionGate(t)
	stockSKU(t, g, "A", totalA)
	stockSKU(t, g, "B", totalB)

	lines := func(i int) []stock.Line {
		switch i % 3 {
		case 0:
			return []stock.Line{{SKU: "A", Qty: int64(1 + i%4)}}
		case 1:
			return []stock.Line{{SKU: "B", Qty: int64(1 + i%2)}}
		}
		return []stock.Line{{SKU: "B", Qty: 1}, {SKU: "A", Qty: int64(1 + i%3)}}
	}
	commits := func(i int) bool { return i%2 == 0 }

	start := make(chan struct{})
	var ready, wg sync.WaitGroup
	for i := range orders {
		for range 2 {
			ready.Add(1)
			wg.Go(func() {
				order := "o-" + strconv.Itoa(i)
				ls := lines(i)
				ready.Done()
				<-start
				r, err := g.Reserve(ctx, order, ls, time.Now().Add(time.Hour))
				if err != nil && !errors.Is(err, stock.ErrOutOfStock) {
					t.Errorf("Reserve(%s) = %v, want nil or out of stock", order, err)
				}
				skus := []string{"A", "B"}
				if commits(i) {
					// Under the token Reserve returned even when it refused
					// (a token no hold has): a hold the twin delivery took is
					// then given back, as a row that relied on no hold would.
					_, err = g.Commit(ctx, order, r.Token, skus)
				} else {
					_, err = g.Release(ctx, order, skus)
				}
				if err != nil {
					t.Errorf("order %s: commit/release = %v, want nil", order, err)
				}
			})
		}
	}
	ready.Wait()

	stop := make(chan struct{})
	type samples struct {
		n   int
		bad []string
	}
	sampled := make(chan samples)
	go func() {
		n, bad := sampleI1(ctx, sampler, map[string]int64{"A": totalA, "B": totalB}, stop)
		sampled <- samples{n, bad}
	}()
	close(start)
	wg.Wait()
	close(stop)
	s := <-sampled
	for _, b := range s.bad {
		t.Errorf("I1 broken while racing: %s", b)
	}

	// Whatever interleaving happened, a committed order's tombstone records
	// what it sold, and released orders left nothing behind.
	soldWant := map[string]int64{}
	for i := range orders {
		for _, sku := range []string{"A", "B"} {
			h := readHold(t, sampler, sku, "o-"+strconv.Itoa(i))
			switch {
			case h.State == "":
			case h.State == "committed" && commits(i):
				q, _ := strconv.ParseInt(h.Qty, 10, 64)
				soldWant[sku] += q
			default:
				t.Errorf("hold %s/o-%d = %+v after the race, want none or committed", sku, i, h)
			}
		}
	}
	for sku, total := range map[string]int64{"A": totalA, "B": totalB} {
		l := levels(t, g, sku)
		if l.Held != 0 || l.Available < 0 || l.Total() != total || l.Sold != soldWant[sku] {
			t.Errorf("Show(%s) = %+v, want held 0, total %d, sold %d", sku, l, total, soldWant[sku])
		}
	}
	if n, err := g.OpenHolds(ctx); err != nil || n != 0 {
		t.Errorf("OpenHolds() = %d, %v, want 0, nil", n, err)
	}
	t.Logf("I1 samples taken while racing: %d; sold A %d, B %d", s.n, soldWant["A"], soldWant["B"])
}
