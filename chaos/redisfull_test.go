package chaos

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestRedisFull: Redis reaches its maxmemory (noeviction) in the middle of
// a sale. New orders are refused with ErrRedisFull (one line from the
// enqueue command) and nothing is enqueued for them; the accepted orders
// stall, since the workers' writes are refused too. Then an operator raises
// maxmemory: every accepted order ends in exactly one row, nothing stays
// held, and reconcile is clean. Orders never accepted have no row.
func TestRedisFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newCluster(t, clusterOpts{redisArgs: []string{"--maxmemory-policy", "noeviction"}})
	s := newSale(t.Name(), 300, 0)
	c.stock(s)
	// A hold TTL of a minute: leases lost while Redis refused the
	// heartbeats come back through Asynq's recoverer, and the sweeper
	// settles the holds of attempts that have not.
	workers := []*testsvc.Process{
		c.startWorker(nil, "--concurrency", "16", "--hold-ttl", "1m"),
		c.startWorker(nil, "--concurrency", "16", "--hold-ttl", "1m"),
	}

	// Room for a few thousand orders beyond what Redis holds now.
	used := usedMemory(t, c)
	const room = 3 << 20
	if err := c.rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(used+room, 10)).Err(); err != nil {
		t.Fatalf("CONFIG SET maxmemory: %v", err)
	}

	// The storefront: new buyers, one after another, until the operator
	// has raised the limit; the ones Redis refuses are not accepted.
	client, err := stockgate.NewClient(ctx, stockgate.Config{RedisURL: c.redis.URL(0)})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var (
		next     atomic.Int64
		refused  atomic.Int64
		mu       sync.Mutex
		accepted []string
		other    []error
		wg       sync.WaitGroup
	)
	stop := make(chan struct{})
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				n := next.Add(1)
				id := fmt.Sprintf("%s-%d", s.run, n)
				err := client.Submit(ctx, stockgate.Order{OrderID: id, CustomerID: fmt.Sprintf("c-%d", n),
					Lines: []stockgate.Line{{SKU: s.sku, Qty: 1}}})
				mu.Lock()
				switch {
				case err == nil:
					accepted = append(accepted, id)
				case errors.Is(err, stockgate.ErrRedisFull):
					refused.Add(1)
				default:
					other = append(other, err)
				}
				mu.Unlock()
				if errors.Is(err, stockgate.ErrRedisFull) {
					time.Sleep(2 * time.Millisecond) // the storefront backs off, as Retry-After asks
				}
			}
		})
	}
	counts := func() (int, int64) {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted), refused.Load()
	}
	testsvc.Poll(t, 2*time.Minute, "Redis to refuse orders", func() bool { _, r := counts(); return r > 0 })
	n, _ := counts()
	t.Logf("redis full with %d orders accepted, %d rows written; used_memory %d -> %d", n, c.rows(newSaleRows(s, n)), used, usedMemory(t, c))

	// The command line says so in one line, and enqueues nothing.
	r := c.run(nil, "enqueue", "order", "--id", s.run+"-cli", "--customer", "c-cli", s.sku+"=1")
	if line := strings.TrimRight(r.Stderr, "\n"); r.Code != 1 || strings.Contains(line, "\n") || !strings.Contains(line, "redis is full") {
		t.Errorf("enqueue order with Redis full: exit %d, stderr %q; want exit 1 and one line saying redis is full", r.Code, r.Stderr)
	}

	// Redis stays full while the storefront goes on: the fault itself, not
	// a wait for a condition. The workers' reserves, commits and
	// acknowledgements are refused meanwhile, and they must ride it out.
	time.Sleep(5 * time.Second)
	for i, w := range workers {
		if w.Exited() {
			t.Fatalf("worker %d exited while Redis was full: %v\n%s", i, w.Err(), w.Tail(2000))
		}
	}

	// The operator raises the limit (never an evicting policy).
	n, _ = counts()
	at := c.rows(newSaleRows(s, n))
	if err := c.rdb.ConfigSet(ctx, "maxmemory", strconv.FormatInt(usedMemory(t, c)+64<<20, 10)).Err(); err != nil {
		t.Fatalf("CONFIG SET maxmemory: %v", err)
	}
	close(stop)
	wg.Wait()
	if len(other) > 0 {
		t.Fatalf("%d submits failed with something other than ErrRedisFull, e.g. %v", len(other), other[0])
	}
	s.buyers = len(accepted)
	t.Logf("maxmemory raised with %d orders accepted (%d when raised), %d refused, %d rows written", s.buyers, n, refused.Load(), at)
	if at >= n {
		t.Errorf("every accepted order had its row while Redis was full (%d of %d): the scenario tested no stall", at, n)
	}
	f := c.settle(s, recovery)
	if got := c.rows(s); got != s.buyers {
		t.Errorf("%d rows for the sale, want %d: one per accepted order and none for the refused", got, s.buyers)
	}
	c.wantSoldOut(s, f)
}

// newSaleRows is s with buyers set, for counting its rows.
func newSaleRows(s sale, buyers int) sale { s.buyers = buyers; return s }

// usedMemory is Redis's used_memory now.
func usedMemory(t *testing.T, c *cluster) int64 {
	t.Helper()
	info, err := c.rdb.Info(context.Background(), "memory").Result()
	if err != nil {
		t.Fatalf("INFO memory: %v", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatalf("used_memory %q: %v", v, err)
			}
			return n
		}
	}
	t.Fatal("INFO memory has no used_memory")
	return 0
}
