package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
)

func newTestSweeper(t *testing.T, b *pipeBundle, now func() time.Time) *Sweeper {
	t.Helper()
	s, err := NewSweeper(b.gate, b.store, SweeperConfig{Now: now, Ledger: b.catalog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("NewSweeper: %v", err)
	}
	return s
}

// TestSweeper: a hold past its deadline with no row becomes expired and is
// released exactly once; a hold of a confirmed order is committed instead.
// Several sweepers run at once, as with several workers.
func TestSweeper(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "SW-1", 10)
	ctx := context.Background()
	past := time.Now().Add(-time.Minute)

	// An abandoned order: reserved, never decided.
	if _, err := b.gate.Reserve(ctx, "sw-lost", []stock.Line{{SKU: "SW-1", Qty: 3}}, past); err != nil {
		t.Fatalf("Reserve(sw-lost): %v", err)
	}
	// A confirmed order whose worker died before the commit.
	res, err := b.gate.Reserve(ctx, "sw-done", []stock.Line{{SKU: "SW-1", Qty: 2}}, past)
	if err != nil {
		t.Fatalf("Reserve(sw-done): %v", err)
	}
	if _, _, err := b.store.Decide(ctx, orders.Record{OrderID: "sw-done", CustomerID: "c-1", Status: orders.StatusConfirmed,
		HoldToken: res.Token, Lines: []orders.Line{{SKU: "SW-1", Qty: 2}}}); err != nil {
		t.Fatalf("Decide(sw-done): %v", err)
	}
	// A live order: its deadline is in the future, so it is left alone.
	if _, err := b.gate.Reserve(ctx, "sw-live", []stock.Line{{SKU: "SW-1", Qty: 1}}, time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Reserve(sw-live): %v", err)
	}

	var wg sync.WaitGroup
	results := make([]SweepResult, 4)
	for i := range results {
		s := newTestSweeper(t, b, time.Now)
		wg.Go(func() {
			var err error
			if results[i], err = s.SweepOnce(ctx); err != nil {
				t.Errorf("SweepOnce #%d: %v", i, err)
			}
		})
	}
	wg.Wait()
	var expired int
	for _, r := range results {
		expired += r.Expired
	}
	if expired != 1 {
		t.Errorf("expired rows inserted across sweepers = %d, want 1: %+v", expired, results)
	}

	lost, err := b.store.Get(ctx, "sw-lost")
	if err != nil || lost.Status != orders.StatusExpired || lost.Reason != orders.ReasonHoldExpired {
		t.Errorf("Get(sw-lost) = %+v, %v; want expired/%s", lost, err, orders.ReasonHoldExpired)
	}
	lv := b.levels(t, "SW-1")
	want := stock.Levels{SKU: "SW-1", Available: 7, Held: 1, Sold: 2, Stocked: true}
	if lv != want {
		t.Errorf("after sweeps SW-1 = %+v, want %+v (3 released once, 2 committed, 1 still live)", lv, want)
	}

	// Sweeping again changes nothing.
	if res, err := newTestSweeper(t, b, time.Now).SweepOnce(ctx); err != nil || res.Orders != 0 {
		t.Errorf("second SweepOnce = %+v, %v; want nothing to do", res, err)
	}
	if lv := b.levels(t, "SW-1"); lv != want {
		t.Errorf("after second sweep SW-1 = %+v, want %+v", lv, want)
	}

	// Once the live order's deadline passes it is settled too (a fake clock,
	// not a sleep).
	later := func() time.Time { return time.Now().Add(2 * time.Hour) }
	if res, err := newTestSweeper(t, b, later).SweepOnce(ctx); err != nil || res.Expired != 1 {
		t.Errorf("SweepOnce(later) = %+v, %v; want the live order expired", res, err)
	}
	if lv := b.assertSettled(t, "SW-1", 10); lv.Available != 8 || lv.Sold != 2 {
		t.Errorf("SW-1 = %+v, want 8 available, 2 sold", lv)
	}
}

// TestSweeperRacesHandler: the sweeper expires an order while a slow
// handler is about to confirm it. Whoever writes the row first wins, and the
// holds follow that row either way.
func TestSweeperRacesHandler(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	const n = 40
	b.stockSKU(t, "SR-1", n)
	ctx := context.Background()
	sweepNow := make(chan struct{})
	h := b.handler(t, HandlerConfig{hook: func(step string) error {
		if step == "after_reserve" {
			<-sweepNow // the hold is taken; the sweeper's clock says it is due
		}
		return nil
	}})
	// The clock runs ahead so every hold is past its deadline when swept.
	s := newTestSweeper(t, b, func() time.Time { return time.Now().Add(time.Hour) })
	var wg sync.WaitGroup
	for i := range n {
		o := oneLine(fmt.Sprintf("sr-%d", i), "c-1", "SR-1", 1)
		task, err := b.client.NewTask(ctx, o)
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		wg.Go(func() {
			if err := h.ProcessTask(context.Background(), task); err != nil {
				t.Errorf("ProcessTask(%s) = %v, want nil", o.OrderID, err)
			}
		})
	}
	// Let the handlers and the sweeper go at the same moment.
	close(sweepNow)
	if _, err := s.SweepOnce(ctx); err != nil {
		t.Logf("SweepOnce: %v", err)
	}
	wg.Wait()
	if _, err := s.SweepOnce(ctx); err != nil {
		t.Fatalf("final SweepOnce: %v", err)
	}
	lv := b.assertSettled(t, "SR-1", n)
	st, err := b.store.Stats(ctx, func() []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("sr-%d", i)
		}
		return ids
	}())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Decided != n || st.Confirmed+st.Expired != n || int64(st.Confirmed) != lv.Sold {
		t.Errorf("Stats = %+v, sold = %d; want %d rows, each confirmed or expired, confirmed == sold", st, lv.Sold, n)
	}
	t.Logf("race outcome: %d confirmed, %d expired", st.Confirmed, st.Expired)
}

// TestSweeperArchivedTasks: an order whose task Asynq archived before any
// attempt decided it (a worker died holding its lease, again and again)
// still ends with one row, failed, and its holds are released. An archived
// task with no usable order id is left alone, and a sweep again changes
// nothing.
func TestSweeperArchivedTasks(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "AR-1", 10)
	ctx := context.Background()

	o := oneLine("ar-1", "c-1", "AR-1", 3)
	info, err := b.client.Submit(ctx, o)
	if err != nil {
		t.Fatalf("Submit: %v", err)
	}
	// The dead worker's first attempt got as far as the reserve.
	if _, err := b.gate.Reserve(ctx, o.OrderID, o.StockLines(), time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if err := b.insp.ArchiveTask(orders.Queue, info.ID); err != nil {
		t.Fatalf("ArchiveTask: %v", err)
	}
	junk := asynq.NewTask(orders.TaskType, []byte(`{"no":"id"}`), asynq.Queue(orders.Queue), asynq.TaskID("junk-1"))
	if _, err := b.ac.Enqueue(junk); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	if err := b.insp.ArchiveTask(orders.Queue, "junk-1"); err != nil {
		t.Fatalf("ArchiveTask(junk): %v", err)
	}

	s, err := NewSweeper(b.gate, b.store, SweeperConfig{Archive: b.insp, Ledger: b.catalog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		res, err := s.SweepOnce(ctx)
		if err != nil {
			t.Fatalf("SweepOnce #%d: %v", i, err)
		}
		if want := 1 - i; res.Archived != want {
			t.Errorf("SweepOnce #%d recorded %d archived orders, want %d", i, res.Archived, want)
		}
	}
	rec, err := b.store.Get(ctx, o.OrderID)
	if err != nil || rec.Status != orders.StatusFailed || rec.Reason != orders.ReasonTaskArchived || len(rec.Lines) != 1 {
		t.Errorf("Get(%s) = %+v, %v; want failed/%s with its line", o.OrderID, rec, err, orders.ReasonTaskArchived)
	}
	if lv := b.assertSettled(t, "AR-1", 10); lv.Available != 10 {
		t.Errorf("AR-1 = %+v, want the 3 held units back", lv)
	}
	if qi, err := b.insp.GetQueueInfo(orders.Queue); err != nil || qi.Archived != 2 {
		t.Errorf("archived tasks = %v, %v; want both left for operators to see", qi, err)
	}
}
