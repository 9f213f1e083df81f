package chaos

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// recovery is how long a scenario waits for the orders a dead or frozen
// worker held: Asynq's lease is 30 s and its recoverer, every minute, takes
// back leases expired for 30 s more, then the retry delay.
const recovery = 5 * time.Minute

// TestKillAtFailpoint: SIGKILL a worker at each named step of the flow, on
// its 40th pass there, while a second worker keeps selling. The killed
// worker's leased orders come back through Asynq's lease recovery and end
// like every other: one row, the holds following it.
func TestKillAtFailpoint(t *testing.T) {
	slow(t)
	t.Parallel()
	for _, step := range []string{"after_reserve", "after_persist", "before_commit", "before_ack"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, clusterOpts{})
			s := newSale(t.Name(), 200, 800)
			c.stock(s)
			victim := c.startWorker([]string{"STOCKGATE_FAILPOINTS=" + step + "=kill@40"}, "--concurrency", "16")
			c.startWorker(nil, "--concurrency", "4")
			c.enqueue(s)
			testsvc.Poll(t, 2*time.Minute, "the worker to die at "+step, victim.Exited)
			if want := fmt.Sprintf("failpoint: %s hit 40: SIGKILL", step); !strings.Contains(victim.Output(), want) {
				t.Fatalf("the worker exited (%v) without %q:\n%s", victim.Err(), want, victim.Tail(2000))
			}
			at := c.rows(s)
			c.midSale(s, at)
			t.Logf("killed at %s with %d of %d rows written", step, at, s.buyers)
			c.wantSoldOut(s, c.settle(s, recovery))
		})
	}
}

// TestKillAtRandomMoment: SIGKILL from outside, at whatever moment the
// sale is in, then a replacement worker.
func TestKillAtRandomMoment(t *testing.T) {
	slow(t)
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	s := newSale(t.Name(), 600, 3000)
	c.stock(s)
	victim := c.startWorker(nil, "--concurrency", "32")
	c.startWorker(nil, "--concurrency", "8")
	c.enqueue(s)
	c.waitRows(s, 400, 2*time.Minute)
	victim.Signal(syscall.SIGKILL)
	<-victim.Done()
	at := c.rows(s)
	c.midSale(s, at)
	t.Logf("killed a worker with %d of %d rows written", at, s.buyers)
	c.startWorker(nil, "--concurrency", "16")
	c.wantSoldOut(s, c.settle(s, recovery))
}

// TestHandlerOutlivesLease: a worker frozen (SIGSTOP, as a VM pause or a
// stop-the-world stall would) with handlers between their reserve and
// their row. Its leases expire and Asynq hands those orders to the other
// worker, which decides them. Then the frozen worker resumes and its stale
// attempts run on: Asynq cancels their context once it notices the lease is
// gone, and a call already under way completes. Every order still has one
// row and one decrement.
func TestHandlerOutlivesLease(t *testing.T) {
	slow(t)
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	s := newSale(t.Name(), 200, 800)
	c.stock(s)
	// A long handler timeout, so the resumed attempts are stopped by the
	// lease, not by their own deadline.
	frozen := c.startWorker([]string{"STOCKGATE_FAILPOINTS=after_reserve=sleep:1s"},
		"--concurrency", "32", "--handler-timeout", "10m", "--hold-ttl", "30m")
	c.startWorker(nil, "--concurrency", "4", "--handler-timeout", "10m", "--hold-ttl", "30m")
	c.enqueue(s)
	testsvc.Poll(t, 2*time.Minute, "handlers to hold stock", func() bool {
		n, _ := c.rdb.ZCard(context.Background(), "sg:{"+s.sku+"}:deadlines").Result()
		return n >= 16
	})
	frozen.Signal(syscall.SIGSTOP)
	at := c.rows(s)
	c.midSale(s, at)
	woke := strings.Count(frozen.Output(), "after_reserve hit")
	t.Logf("froze a worker with %d of %d rows written and %d stalls finished", at, s.buyers, woke)
	c.waitRows(s, s.buyers, recovery)
	frozen.Signal(syscall.SIGCONT)
	// Check only once the stale attempts have run on past their stall:
	// each prints a line as it wakes, and the frozen worker had some
	// mid-stall (at least 16 holds were open when it stopped).
	testsvc.Poll(t, time.Minute, "stale attempts of the resumed worker to wake", func() bool {
		return strings.Count(frozen.Output(), "after_reserve hit") > woke
	})
	t.Logf("every order decided while frozen; the resumed worker's stale attempts ran on (%d stalls finished)",
		strings.Count(frozen.Output(), "after_reserve hit"))
	f := c.settle(s, time.Minute)
	if frozen.Exited() {
		t.Errorf("the resumed worker exited: %v", frozen.Err())
	}
	c.wantSoldOut(s, f)
}

// TestRedisRestartAOF: the Redis server with the stock and the queue is
// killed with SIGKILL mid-sale and restarted from its append-only file. A
// process crash loses nothing under either fsync policy: Redis writes the
// AOF before it replies, and the kernel keeps what was written. (An OS
// crash or power loss is what everysec's last second is exposed to; see
// docs/reliability.md.)
func TestRedisRestartAOF(t *testing.T) {
	slow(t)
	t.Parallel()
	for _, policy := range []string{"always", "everysec"} {
		t.Run(policy, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, clusterOpts{redisArgs: []string{"--appendonly", "yes", "--appendfsync", policy}})
			s := newSale(t.Name(), 300, 1500)
			c.stock(s)
			// A hold TTL of a minute (the least a 30s handler timeout
			// allows): the sweeper, the design's backstop, settles within the
			// checks' window the holds of an attempt whose task Asynq has not
			// yet taken back from a lease lost with the restart (its
			// recoverer may need 90s or more).
			c.startWorker(nil, "--concurrency", "16", "--hold-ttl", "1m")
			c.startWorker(nil, "--concurrency", "16", "--hold-ttl", "1m")
			c.enqueue(s)
			c.waitRows(s, 200, 2*time.Minute)
			c.redis.Stop()
			at := c.rows(s)
			c.midSale(s, at)
			if err := c.redis.Start(); err != nil {
				t.Fatalf("restart redis from its AOF: %v", err)
			}
			t.Logf("redis killed and restarted with %d of %d rows written", at, s.buyers)
			c.wantSoldOut(s, c.settle(s, recovery))
		})
	}
}

// TestRedisLosesData: Redis without persistence is killed mid-sale and
// comes back empty: the counters, the holds and Asynq's queue are gone,
// including the tasks of the orders being processed (Asynq cannot move a
// task it no longer has to its retry set), so those must be resubmitted
// like the queued ones.
//   - Orders submitted again before the rebuild fail closed: their SKU is
//     in the Postgres catalogue, so a missing counter is retried, never
//     rejected.
//   - stockctl rebuild waits out the fence (every attempt that reserved
//     before the loss has passed its deadline), then restores available =
//     stocked - sold from Postgres.
//   - The storefront submits the sale's orders again (Asynq's queued tasks
//     died with Redis): decided orders keep their row, the rest are sold
//     or rejected. Nothing is oversold.
func TestRedisLosesData(t *testing.T) {
	slow(t)
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	s := newSale(t.Name(), 300, 1500)
	c.stock(s)
	// A short handler timeout keeps the fence short: HANDLER_TIMEOUT is
	// what stockctl rebuild waits out, plus a margin for batched writes.
	c.env = append(c.env, "HANDLER_TIMEOUT=3s")
	// One worker stalls 2s between each reserve and its row, so that when
	// Redis dies some orders have reserved (their holds now gone) and will
	// still write confirmed, during the fence. Reading sold before they do
	// would sell their units twice; wantSoldOut catches that.
	w1 := c.startWorker([]string{"STOCKGATE_FAILPOINTS=after_reserve=sleep:2s"}, "--concurrency", "16", "--hold-ttl", "1m")
	w2 := c.startWorker(nil, "--concurrency", "16", "--hold-ttl", "1m")
	c.enqueue(s)
	c.waitRows(s, 150, 2*time.Minute)
	c.redis.Stop()
	lostAt := c.rows(s)
	c.midSale(s, lostAt)
	if err := c.redis.Start(); err != nil {
		t.Fatalf("restart redis: %v", err)
	}
	t.Logf("redis lost its data with %d of %d rows written", lostAt, s.buyers)
	// The storefront resubmits at once; the orders find no counters and
	// the workers must say they are retrying, not reject them.
	c.enqueue(s)
	testsvc.Poll(t, time.Minute, "a worker to retry an order on missing counters", func() bool {
		return strings.Contains(w1.Output()+w2.Output(), "stock not loaded in Redis for a catalogued SKU")
	})

	r := c.run(nil, "stockctl", "rebuild")
	if r.Code != 0 || !strings.Contains(r.Stdout, "fencing") || !strings.Contains(r.Stdout, s.sku+": available") {
		t.Fatalf("stockctl rebuild: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	t.Logf("stockctl rebuild:\n%s", r.Stdout)
	// No order may have been rejected because its counters were missing.
	var wrong int
	if err := c.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM orders WHERE order_id LIKE $1 AND reason NOT IN ('', 'out_of_stock')`, s.run+"-%").Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 {
		t.Errorf("%d orders were rejected or failed for a reason other than out_of_stock while Redis was empty", wrong)
	}
	c.enqueue(s)
	c.wantSoldOut(s, c.settle(s, recovery))
}

// TestPostgresDown: the Postgres with the order rows is stopped for 20 s in
// the middle of a sale, then started again. Attempts that cannot write
// their row return an error and Asynq retries them with backoff; their
// holds wait for them. Every order completes once Postgres is back, with
// nothing lost and nothing oversold.
func TestPostgresDown(t *testing.T) {
	slow(t)
	t.Parallel()
	pg := testsvc.StartPostgres(t, testsvc.PostgresOptions{})
	c := newCluster(t, clusterOpts{pg: pg})
	s := newSale(t.Name(), 300, 1500)
	c.stock(s)
	c.startWorker(nil, "--concurrency", "16")
	c.startWorker(nil, "--concurrency", "16")
	c.enqueue(s)
	c.waitRows(s, 200, 2*time.Minute)
	at := c.rows(s)
	c.midSale(s, at)
	if err := pg.Stop(); err != nil {
		t.Fatalf("stop postgres: %v", err)
	}
	t.Logf("postgres stopped with %d of %d rows written", at, s.buyers)
	// The outage itself is the fault being injected, not a wait for a
	// condition: the workers must ride out 20 s without Postgres.
	time.Sleep(20 * time.Second)
	if err := pg.Start(); err != nil {
		t.Fatalf("start postgres: %v", err)
	}
	t.Logf("postgres was down for 20s")
	c.wantSoldOut(s, c.settle(s, recovery))
}
