package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestCompetingWorkers: two and four worker processes on one sale of a hot
// SKU sell exactly the stock, no more and no less.
func TestCompetingWorkers(t *testing.T) {
	t.Parallel()
	for _, n := range []int{2, 4} {
		t.Run(fmt.Sprintf("%d-workers", n), func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, clusterOpts{})
			s := newSale(t.Name(), 250, 1200)
			c.stock(s)
			for range n {
				c.startWorker(nil, "--concurrency", "8")
			}
			c.enqueue(s)
			c.wantSoldOut(s, c.settle(s, 3*time.Minute))
		})
	}
}

// TestScriptFlushMidSale: SCRIPT FLUSH, over and over while a sale runs,
// costs no order: go-redis and Asynq reload a script on NOSCRIPT.
func TestScriptFlushMidSale(t *testing.T) {
	t.Parallel()
	c := newCluster(t, clusterOpts{})
	s := newSale(t.Name(), 250, 1200)
	c.stock(s)
	c.startWorker(nil, "--concurrency", "16")
	// The flushes start before the enqueue: on a quiet machine the worker
	// keeps up with it, and the sale is over by the time it returns.
	var flushCount atomic.Int64
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			if err := c.rdb.ScriptFlush(context.Background()).Err(); err == nil {
				flushCount.Add(1)
			}
		}
	}()
	c.enqueue(s)
	testsvc.Poll(t, 3*time.Minute, "the sale to finish under SCRIPT FLUSH", func() bool { return c.rows(s) >= s.buyers })
	close(stop)
	<-flushed
	flushes := flushCount.Load()
	if flushes < 3 {
		t.Errorf("only %d SCRIPT FLUSH landed during the sale; the scenario did not test much", flushes)
	}
	t.Logf("%d SCRIPT FLUSH during the sale", flushes)
	c.wantSoldOut(s, c.settle(s, time.Minute))
}

// TestSIGTERMUnderLoad: a worker told to stop in the middle of a sale, with
// handlers in flight, drains: it exits 0 within its shutdown timeout, the
// tasks it could not finish go back to the queue, and a new worker
// finishes the sale with nothing lost. With handlers faster than the
// timeout the drain finishes them; with slower ones Asynq requeues them and
// the process exits with their holds still taken, which the next attempt
// finds (the reserve is idempotent per order).
func TestSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		stall string // how long each attempt stalls after its reserve
	}{
		{"drain-finishes", "200ms"},
		{"drain-times-out", "6s"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testSIGTERM(t, c.stall)
		})
	}
}

func testSIGTERM(t *testing.T, stall string) {
	c := newCluster(t, clusterOpts{})
	s := newSale(t.Name(), 250, 1200)
	c.stock(s)
	const shutdownTimeout = 2 * time.Second
	w := c.startWorker([]string{"STOCKGATE_FAILPOINTS=after_reserve=sleep:" + stall},
		"--concurrency", "32", "--shutdown-timeout", shutdownTimeout.String())
	c.enqueue(s)
	testsvc.Poll(t, 2*time.Minute, "handlers to be in flight", func() bool {
		n, _ := c.rdb.ZCard(context.Background(), "sg:{"+s.sku+"}:deadlines").Result()
		return n >= 16
	})
	c.midSale(s, c.rows(s))
	sent := time.Now()
	w.Signal(syscall.SIGTERM)
	// The bound is the worker's contract (Asynq's wait plus closing the
	// pools), with room for a loaded machine; not a benchmark.
	select {
	case <-w.Done():
	case <-time.After(shutdownTimeout + 20*time.Second):
		t.Fatalf("worker still running %v after SIGTERM (shutdown timeout %v)", time.Since(sent), shutdownTimeout)
	}
	took := time.Since(sent)
	if w.Err() != nil {
		t.Fatalf("worker exit after SIGTERM = %v, want 0\n%s", w.Err(), w.Tail(2000))
	}
	t.Logf("worker exited %.2fs after SIGTERM (timeout %v) with %d of %d rows written", took.Seconds(), shutdownTimeout, c.rows(s), s.buyers)
	c.startWorker(nil, "--concurrency", "16")
	c.wantSoldOut(s, c.settle(s, 3*time.Minute))
}

// TestNoFailpointsInProductionBuild: the failpoints exist only in binaries
// built with the tag. A plain build of the worker does not contain the
// variable that arms them.
func TestNoFailpointsInProductionBuild(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir+"/worker", "../cmd/worker")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	plain, err := os.ReadFile(dir + "/worker")
	if err != nil {
		t.Fatal(err)
	}
	armed, err := os.ReadFile(binDir + "/worker")
	if err != nil {
		t.Fatal(err)
	}
	const marker = "STOCKGATE_FAILPOINTS"
	if !strings.Contains(string(armed), marker) {
		t.Fatalf("the failpoints build does not contain %s: the check below would prove nothing", marker)
	}
	if strings.Contains(string(plain), marker) {
		t.Errorf("a plain go build of cmd/worker contains %s: failpoints leaked into production", marker)
	}
}
