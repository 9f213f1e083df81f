package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
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
	// Junk without a usable order id, and an invalid order with one whose
	// worker could not record its rejection (Postgres down past its retries).
	for id, payload := range map[string]string{
		"junk-1":   `{"no":"id"}`,
		"ar-bad-1": `{"order_id":"ar-bad-1","customer_id":"c-1","lines":[{"sku":"AR-1","qty":0}]}`,
	} {
		task := asynq.NewTask(orders.TaskType, []byte(payload), asynq.Queue(orders.Queue), asynq.TaskID(id))
		if _, err := b.ac.Enqueue(task); err != nil {
			t.Fatalf("Enqueue(%s): %v", id, err)
		}
		if err := b.insp.ArchiveTask(orders.Queue, id); err != nil {
			t.Fatalf("ArchiveTask(%s): %v", id, err)
		}
	}

	s, err := NewSweeper(b.gate, b.store, SweeperConfig{Archive: b.insp, ArchiveClient: b.ac, Ledger: b.catalog, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		res, err := s.SweepOnce(ctx)
		if err != nil {
			t.Fatalf("SweepOnce #%d: %v", i, err)
		}
		if want := 2 * (1 - i); res.Archived != want || res.Settled != want+1-i {
			t.Errorf("SweepOnce #%d = %+v; want %d rows recorded and %d tasks settled", i, res, want, want+1-i)
		}
	}
	rec, err := b.store.Get(ctx, o.OrderID)
	if err != nil || rec.Status != orders.StatusFailed || rec.Reason != orders.ReasonTaskArchived || len(rec.Lines) != 1 {
		t.Errorf("Get(%s) = %+v, %v; want failed/%s with its line", o.OrderID, rec, err, orders.ReasonTaskArchived)
	}
	if lv := b.assertSettled(t, "AR-1", 10); lv.Available != 10 {
		t.Errorf("AR-1 = %+v, want the 3 held units back", lv)
	}
	bad, err := b.store.Get(ctx, "ar-bad-1")
	if err != nil || bad.Status != orders.StatusRejected || !strings.HasPrefix(bad.Reason, "invalid: ") {
		t.Errorf("Get(ar-bad-1) = %+v, %v; want rejected with an invalid: reason", bad, err)
	}
	// All three left the queue's archive for the settled queue's, where
	// operators still see them with what the sweeper did.
	if qi, err := b.insp.GetQueueInfo(orders.Queue); err != nil || qi.Archived != 0 {
		t.Errorf("%s archived = %+v, %v; want 0", orders.Queue, qi, err)
	}
	settled := orders.SettledQueue(orders.Queue)
	tasks, err := b.insp.ListArchivedTasks(settled)
	if err != nil || len(tasks) != 3 {
		t.Fatalf("ListArchivedTasks(%s) = %d tasks, %v; want 3", settled, len(tasks), err)
	}
	for _, ti := range tasks {
		if ti.Headers[HeaderSettled] == "" || ti.Type != orders.TaskType {
			t.Errorf("settled task %s = type %q, headers %v; want order:place with a %s header", ti.ID, ti.Type, ti.Headers, HeaderSettled)
		}
		if ti.ID == "junk-1" && !strings.Contains(ti.Headers[HeaderSettled], "no usable order id") {
			t.Errorf("settled junk-1 %s = %q, want it to say it had no usable order id", HeaderSettled, ti.Headers[HeaderSettled])
		}
	}
}

// TestSweeperArchivedBehindJunk is issue 14's repro: 1,200 archived
// order:place tasks with no usable order id sit in the orders queue's
// archive (a storefront bug), then a valid order's task is archived before
// any attempt decided it. The sweeper must still find that order and record
// its row, however much junk was archived before it, and at a cost that does
// not grow with the junk: the junk it has handled leaves the queue's archive,
// so a later sweep reads none of it again.
func TestSweeperArchivedBehindJunk(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "AJ-1", 10)
	ctx := context.Background()
	const junk = 1200
	for i := range junk {
		task := asynq.NewTask(orders.TaskType, []byte(`{"junk":1}`), asynq.Queue(orders.Queue), asynq.TaskID(fmt.Sprintf("junk-%04d", i)))
		if _, err := b.ac.Enqueue(task); err != nil {
			t.Fatalf("Enqueue(junk %d): %v", i, err)
		}
	}
	if n, err := b.insp.ArchiveAllPendingTasks(orders.Queue); err != nil || n != junk {
		t.Fatalf("ArchiveAllPendingTasks = %d, %v; want %d", n, err, junk)
	}
	// Asynq scores archived tasks in whole seconds: the order is archived in
	// a later second than the junk, so it sorts after all of it.
	junkAt := time.Now().Unix()
	testsvc.Poll(t, 3*time.Second, "the next second", func() bool { return time.Now().Unix() > junkAt })

	o := oneLine("aj-1", "c-1", "AJ-1", 2)
	task, err := b.client.NewTask(ctx, o)
	if err != nil {
		t.Fatalf("NewTask: %v", err)
	}
	if _, err := b.ac.Enqueue(task, asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatalf("Enqueue(%s): %v", o.OrderID, err)
	}
	if err := b.insp.ArchiveTask(orders.Queue, o.OrderID); err != nil {
		t.Fatalf("ArchiveTask(%s): %v", o.OrderID, err)
	}

	// The worker's sweeper runs; a few sweeps are plenty.
	s, err := NewSweeper(b.gate, b.store, SweeperConfig{Archive: b.insp, ArchiveClient: b.ac, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := s.SweepOnce(ctx); err != nil {
			t.Fatalf("SweepOnce #%d: %v", i, err)
		}
	}
	rec, err := b.store.Get(ctx, o.OrderID)
	if err != nil || rec.Status != orders.StatusFailed || rec.Reason != orders.ReasonTaskArchived {
		t.Fatalf("after 3 sweeps Get(%s) = %+v, %v; want failed/%s (the order was orphaned behind %d archived junk tasks)",
			o.OrderID, rec, err, orders.ReasonTaskArchived, junk)
	}
	b.assertSettled(t, "AJ-1", 10)

	// What was handled left the queue's archive, and operators still find
	// it, with its reason, in the settled queue's.
	if qi, err := b.insp.GetQueueInfo(orders.Queue); err != nil || qi.Archived != 0 {
		t.Errorf("%s archived = %+v, %v; want 0 left for the next sweeps to read", orders.Queue, qi, err)
	}
	if qi, err := b.insp.GetQueueInfo(orders.SettledQueue(orders.Queue)); err != nil || qi.Archived != junk+1 {
		t.Errorf("%s archived = %+v, %v; want %d", orders.SettledQueue(orders.Queue), qi, err, junk+1)
	}
	if res, err := s.SweepOnce(ctx); err != nil || res.ArchivedRead != 0 {
		t.Errorf("SweepOnce after = %+v, %v; want no archived task read", res, err)
	}
}
