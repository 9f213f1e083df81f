package worker

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/lease"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// dropIndex takes sku out of the hold index by hand: a mark Redis lost.
func (b *pipeBundle) dropIndex(t *testing.T, sku string) {
	t.Helper()
	for i := range stock.IndexBuckets {
		if err := b.rdb.ZRem(context.Background(), stock.HoldingKey(i), sku).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSweeperFullPass: an expired hold whose SKU lost its index entry is
// missed by the sweep, never forever: the full pass puts the SKU back, and
// the next sweep expires the order and releases its hold. Without the
// index entry and without the full pass nothing finds it, which is what
// the pass is for.
func TestSweeperFullPass(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	ctx := context.Background()
	for _, s := range []string{"FP-1", "FP-IDLE-1", "FP-IDLE-2"} {
		b.stockSKU(t, s, 10)
	}
	if _, err := b.gate.Reserve(ctx, "fp-lost", []stock.Line{{SKU: "FP-1", Qty: 4}}, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	b.dropIndex(t, "FP-1")

	s := newTestSweeper(t, b, time.Now)
	if res, err := s.SweepOnce(ctx); err != nil || res.Orders != 0 {
		t.Fatalf("SweepOnce without the index entry = %+v, %v; want nothing found", res, err)
	}
	if n, err := s.FullPassStep(ctx); err != nil || n != 1 {
		t.Fatalf("FullPassStep = %d, %v; want FP-1 put back", n, err)
	}
	if res, err := s.SweepOnce(ctx); err != nil || res.Expired != 1 {
		t.Fatalf("SweepOnce after the full pass = %+v, %v; want fp-lost expired", res, err)
	}
	if rec, err := b.store.Get(ctx, "fp-lost"); err != nil || rec.Status != orders.StatusExpired {
		t.Errorf("Get(fp-lost) = %+v, %v; want expired", rec, err)
	}
	b.assertSettled(t, "FP-1", 10)
	// The pass is over; the next starts only after FullPassInterval.
	if n, err := s.FullPassStep(ctx); err != nil || n != 0 || s.idx.running {
		t.Errorf("FullPassStep right after a pass = %d, %v (running %v); want nothing", n, err, s.idx.running)
	}
}

// TestSweeperLease: of several workers' sweepers only the lease holder
// sweeps; when it stops it gives the lease up and another takes over at its
// next tick, and an expired hold is settled once.
func TestSweeperLease(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	ctx := context.Background()
	b.stockSKU(t, "LS-1", 10)

	sweepers := make([]*Sweeper, 3)
	for i := range sweepers {
		l, err := lease.New(b.rdb, "test:sweeper:lease", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		sweepers[i], err = NewSweeper(b.gate, b.store, SweeperConfig{Interval: 20 * time.Millisecond, Lease: l,
			Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
	}
	leaders := 0
	for _, s := range sweepers {
		if s.lead(ctx) {
			leaders++
		}
	}
	if leaders != 1 {
		t.Fatalf("sweepers leading = %d, want 1", leaders)
	}

	// Run them all; stop the leader; the hold expires afterwards.
	type running struct {
		cancel context.CancelFunc
		done   chan struct{}
	}
	runs := make([]running, len(sweepers))
	for i, s := range sweepers {
		rctx, cancel := context.WithCancel(ctx)
		runs[i] = running{cancel, make(chan struct{})}
		go func() { defer close(runs[i].done); s.Run(rctx) }()
	}
	t.Cleanup(func() {
		for _, r := range runs {
			r.cancel()
			<-r.done
		}
	})
	var first int
	testsvc.Poll(t, 5*time.Second, "a sweeper to lead", func() bool {
		for i, s := range sweepers {
			if s.idx.leading.Load() {
				first = i
				return true
			}
		}
		return false
	})
	runs[first].cancel()
	<-runs[first].done
	if _, err := b.gate.Reserve(ctx, "ls-lost", []stock.Line{{SKU: "LS-1", Qty: 3}}, time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	testsvc.Poll(t, 10*time.Second, "ls-lost expired by the next leader", func() bool {
		rec, err := b.store.Get(ctx, "ls-lost")
		return err == nil && rec.Status == orders.StatusExpired
	})
	b.assertSettled(t, "LS-1", 10)
	n := 0
	for i, s := range sweepers {
		if i != first && s.idx.leading.Load() {
			n++
		}
	}
	if n != 1 {
		t.Errorf("sweepers leading after the first stopped = %d, want 1", n)
	}
}
