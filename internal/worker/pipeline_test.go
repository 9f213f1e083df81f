package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/catalog"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/ratelimit"
	"github.com/stockgate/stockgate/internal/reconcile"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/internal/testsvc/testdb"
)

// pipeBundle is one isolated pipeline: its own Redis DB (stock and queue),
// its own migrated database, a gate, a store and an enqueue client.
type pipeBundle struct {
	rdb     *redis.Client
	ropt    asynq.RedisClientOpt
	pool    *pgxpool.Pool
	gate    *stock.Gate
	store   *orderstore.Store
	catalog *catalog.Catalog
	ac      *asynq.Client
	client  producer
	insp    *asynq.Inspector
}

func setupPipeline(t *testing.T) *pipeBundle {
	t.Helper()
	r, db, rdb := testsvc.RedisDB(t)
	b := &pipeBundle{
		rdb:  rdb,
		ropt: asynq.RedisClientOpt{Addr: r.Addr, DB: db},
		pool: testdb.New(t),
		gate: stock.New(rdb, stock.Config{}),
	}
	b.store = orderstore.New(b.pool)
	b.catalog = catalog.New(b.pool)
	b.ac = asynq.NewClient(b.ropt)
	t.Cleanup(func() { _ = b.ac.Close() })
	b.client = producer{b.ac}
	b.insp = asynq.NewInspector(b.ropt)
	t.Cleanup(func() { _ = b.insp.Close() })
	return b
}

func (b *pipeBundle) handler(t *testing.T, cfg HandlerConfig) *Handler {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h, err := NewHandler(Deps{Gate: b.gate, Store: b.store, Catalog: b.catalog, Ledger: b.catalog, Limiter: ratelimit.New(b.rdb)}, cfg)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	return h
}

// startWorker runs a real Asynq server over h, as cmd/worker does, with
// short retry delays so retries happen within the test.
func (b *pipeBundle) startWorker(t *testing.T, h asynq.Handler, concurrency int) {
	t.Helper()
	srv := asynq.NewServer(b.ropt, asynq.Config{
		Concurrency:    concurrency,
		Queues:         map[string]int{orders.Queue: 1},
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond },
		LogLevel:       asynq.ErrorLevel,
		// Poll often: tests wait on outcomes, and the default 1s idle
		// check would dominate their run time.
		TaskCheckInterval:        10 * time.Millisecond,
		DelayedTaskCheckInterval: 50 * time.Millisecond,
		ShutdownTimeout:          5 * time.Second,
	})
	mux := asynq.NewServeMux()
	mux.Handle(orders.TaskType, h)
	if hh, ok := h.(*Handler); ok {
		mux.HandleFunc(orders.ConfirmTaskType, hh.ProcessAction)
		mux.HandleFunc(orders.CancelTaskType, hh.ProcessAction)
	}
	if err := srv.Start(mux); err != nil {
		t.Fatalf("asynq Start: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

func (b *pipeBundle) stockSKU(t *testing.T, sku string, qty int64) {
	t.Helper()
	lv, err := b.gate.Set(context.Background(), sku, qty)
	if err != nil {
		t.Fatalf("Set(%s, %d): %v", sku, qty, err)
	}
	if err := b.catalog.RecordStock(context.Background(), sku, lv.Total()); err != nil {
		t.Fatalf("RecordStock: %v", err)
	}
}

func (b *pipeBundle) levels(t *testing.T, sku string) stock.Levels {
	t.Helper()
	lv, err := b.gate.Show(context.Background(), sku)
	if err != nil {
		t.Fatalf("Show(%s): %v", sku, err)
	}
	return lv[0]
}

// waitRows polls until every id has its row.
func (b *pipeBundle) waitRows(t *testing.T, ids []string, timeout time.Duration) orderstore.Stats {
	t.Helper()
	var st orderstore.Stats
	testsvc.Poll(t, timeout, fmt.Sprintf("%d orders to have rows", len(ids)), func() bool {
		var err error
		st, err = b.store.Stats(context.Background(), ids)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		return st.Decided == len(ids)
	})
	return st
}

// assertSettled checks I1 and I3 for sku once the system is quiet: the
// totals add up, nothing is held, sold equals the confirmed quantities, and
// reconcile is clean.
func (b *pipeBundle) assertSettled(t *testing.T, sku string, total int64) stock.Levels {
	t.Helper()
	ctx := context.Background()
	var lv stock.Levels
	testsvc.Poll(t, 10*time.Second, "holds on "+sku+" to settle", func() bool {
		lv = b.levels(t, sku)
		return lv.Held == 0
	})
	if lv.Total() != total || lv.Available < 0 {
		t.Errorf("%s levels = %+v (total %d), want total %d and available >= 0", sku, lv, lv.Total(), total)
	}
	if n, err := b.gate.OpenHolds(ctx); err != nil || n != 0 {
		t.Errorf("OpenHolds() = %d, %v, want 0", n, err)
	}
	confirmed, err := b.store.ConfirmedBySKU(ctx)
	if err != nil {
		t.Fatalf("ConfirmedBySKU: %v", err)
	}
	if confirmed[sku] != lv.Sold {
		t.Errorf("confirmed %s = %d, sold = %d; want equal", sku, confirmed[sku], lv.Sold)
	}
	rows, err := reconcile.Compare(ctx, b.gate, b.catalog, b.store)
	if err != nil {
		t.Fatalf("reconcile.Compare: %v", err)
	}
	for _, r := range rows {
		if len(r.Drift) > 0 {
			t.Errorf("reconcile %s drift: %v", r.SKU, r.Drift)
		}
	}
	return lv
}

// producer enqueues orders the way the public stockgate.Client does
// (orders.NewTask, then Asynq), with three retries. The client itself is
// tested in the root package; these tests are about the handler.
type producer struct{ ac *asynq.Client }

func (p producer) NewTask(ctx context.Context, o orders.Order) (*asynq.Task, error) {
	return orders.NewTask(ctx, o, orders.TaskOptions{MaxRetry: 3})
}

func (p producer) Submit(ctx context.Context, o orders.Order) (*asynq.TaskInfo, error) {
	t, err := p.NewTask(ctx, o)
	if err != nil {
		return nil, err
	}
	return p.ac.EnqueueContext(ctx, t)
}

func submitAll(t *testing.T, c producer, os []orders.Order, concurrency int) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan orders.Order)
	var failed atomic.Int64
	for range concurrency {
		wg.Go(func() {
			for o := range next {
				if _, err := c.Submit(context.Background(), o); err != nil {
					failed.Add(1)
					t.Errorf("Submit(%s): %v", o.OrderID, err)
				}
			}
		})
	}
	for _, o := range os {
		next <- o
	}
	close(next)
	wg.Wait()
	if failed.Load() > 0 {
		t.FailNow()
	}
}

func oneLine(id, customer, sku string, qty int64) orders.Order {
	now := time.Now().UTC()
	return orders.Order{OrderID: id, CustomerID: customer, Lines: []orders.Line{{SKU: sku, Qty: qty}}, PlacedAt: &now}
}

// TestFlashSale is the product's promise end to end: 5,000 buyers race for
// 100 units through the real queue, worker, scripts and database.
func TestFlashSale(t *testing.T) {
	t.Parallel()
	buyers, units := 5000, int64(100)
	if testing.Short() {
		buyers = 1000
	}
	b := setupPipeline(t)
	b.stockSKU(t, "HOT-1", units)
	b.startWorker(t, b.handler(t, HandlerConfig{}), 32)

	ids := make([]string, buyers)
	os := make([]orders.Order, buyers)
	for i := range os {
		ids[i] = fmt.Sprintf("fs-%d", i)
		os[i] = oneLine(ids[i], fmt.Sprintf("c-%d", i), "HOT-1", 1)
	}
	submitAll(t, b.client, os, 32)
	st := b.waitRows(t, ids, 3*time.Minute)

	if st.Confirmed != int(units) || st.Rejected != buyers-int(units) || st.Failed != 0 || st.Expired != 0 {
		t.Errorf("outcomes = %d confirmed, %d rejected, %d failed, %d expired; want %d, %d, 0, 0",
			st.Confirmed, st.Rejected, st.Failed, st.Expired, units, buyers-int(units))
	}
	if got := st.Reasons[orders.ReasonOutOfStock]; got != buyers-int(units) {
		t.Errorf("rejections with reason %q = %d, want %d (all reasons: %v)", orders.ReasonOutOfStock, got, buyers-int(units), st.Reasons)
	}
	lv := b.assertSettled(t, "HOT-1", units)
	if lv.Available != 0 || lv.Sold != units {
		t.Errorf("HOT-1 = %+v, want available 0, sold %d", lv, units)
	}
}

// TestDuplicateDelivery delivers one order more than once: at the same time
// to two handlers (two workers), then again in sequence. One row, one decrement.
func TestDuplicateDelivery(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "DUP-1", 10)
	h1 := b.handler(t, HandlerConfig{})
	h2 := b.handler(t, HandlerConfig{})
	ctx := context.Background()

	for round := range 20 {
		o := oneLine(fmt.Sprintf("dup-%d", round), "c-1", "DUP-1", 1)
		task, err := b.client.NewTask(ctx, o)
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		start := make(chan struct{})
		errs := make([]error, 4)
		var wg sync.WaitGroup
		for i, h := range []*Handler{h1, h2, h1, h2} {
			wg.Go(func() {
				<-start
				errs[i] = h.ProcessTask(ctx, task)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: ProcessTask #%d = %v, want nil", round, i, err)
			}
		}
		// And once more after the fact, as a late redelivery would.
		if err := h1.ProcessTask(ctx, task); err != nil {
			t.Fatalf("round %d: sequential redelivery = %v, want nil", round, err)
		}
	}
	st, err := b.store.Stats(ctx, func() []string {
		ids := make([]string, 20)
		for i := range ids {
			ids[i] = fmt.Sprintf("dup-%d", i)
		}
		return ids
	}())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.Decided != 20 || st.Confirmed != 10 || st.Reasons[orders.ReasonOutOfStock] != 10 {
		t.Errorf("Stats = %+v, want 20 rows: 10 confirmed, 10 out_of_stock", st)
	}
	lv := b.assertSettled(t, "DUP-1", 10)
	if lv.Sold != 10 {
		t.Errorf("sold = %d, want 10 (one decrement per confirmed order)", lv.Sold)
	}
}

// TestRetryAtEveryStep injects an infrastructure failure at each step of the
// flow; the retry must finish the order with I1 to I4 intact.
func TestRetryAtEveryStep(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"after_reserve", "after_persist", "before_commit"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			b := setupPipeline(t)
			b.stockSKU(t, "RT-1", 5)
			b.stockSKU(t, "RT-2", 5)
			var failures atomic.Int64
			h := b.handler(t, HandlerConfig{hook: func(s string) error {
				// Fail the first two times the step is reached.
				if s == step && failures.Add(1) <= 2 {
					return errors.New("injected failure at " + s)
				}
				return nil
			}})
			b.startWorker(t, h, 4)
			o := orders.Order{OrderID: "rt-" + step, CustomerID: "c-1",
				Lines: []orders.Line{{SKU: "RT-1", Qty: 2}, {SKU: "RT-2", Qty: 3}}}
			if _, err := b.client.Submit(context.Background(), o); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			st := b.waitRows(t, []string{o.OrderID}, 30*time.Second)
			if st.Confirmed != 1 {
				t.Fatalf("Stats = %+v, want the order confirmed after retries", st)
			}
			for sku, want := range map[string]int64{"RT-1": 2, "RT-2": 3} {
				if lv := b.assertSettled(t, sku, 5); lv.Sold != want {
					t.Errorf("%s sold = %d, want %d (exactly one decrement)", sku, lv.Sold, want)
				}
			}
			// After a failure past the row, the retry finds the row and
			// follows it, so after_persist is not reached a second time.
			wantReached := map[string]int64{"after_reserve": 3, "after_persist": 1, "before_commit": 3}[step]
			if got := failures.Load(); got != wantReached {
				t.Errorf("step %s reached %d times, want %d", step, got, wantReached)
			}
			// I4: running the task again changes nothing. As a first
			// attempt it skips the lookup, reaching every step again, so
			// it runs on a handler without the injected failures.
			task, _ := b.client.NewTask(context.Background(), o)
			if err := b.handler(t, HandlerConfig{}).ProcessTask(context.Background(), task); err != nil {
				t.Fatalf("rerun ProcessTask = %v, want nil", err)
			}
			if lv := b.levels(t, "RT-1"); lv.Sold != 2 || lv.Held != 0 {
				t.Errorf("after rerun RT-1 = %+v, want sold 2, held 0", lv)
			}
		})
	}
}

// TestRetriesExhausted: when every attempt fails, the last one releases the
// holds (the compensating restock) and records the order failed.
func TestRetriesExhausted(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "EX-1", 5)
	var reached atomic.Int64
	h := b.handler(t, HandlerConfig{hook: func(s string) error {
		if s == "after_reserve" {
			reached.Add(1)
			return errors.New("injected: postgres unreachable")
		}
		return nil
	}})
	b.startWorker(t, h, 2)
	o := oneLine("ex-1", "c-1", "EX-1", 4)
	if _, err := b.client.Submit(context.Background(), o); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	b.waitRows(t, []string{o.OrderID}, 30*time.Second)
	rec, err := b.store.Get(context.Background(), o.OrderID)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if rec.Status != orders.StatusFailed || rec.Reason != orders.ReasonRetriesExhausted {
		t.Errorf("row = %s/%s, want failed/%s", rec.Status, rec.Reason, orders.ReasonRetriesExhausted)
	}
	if got := reached.Load(); got != 4 {
		t.Errorf("attempts = %d, want 4 (1 + MaxRetry 3)", got)
	}
	lv := b.assertSettled(t, "EX-1", 5)
	if lv.Available != 5 || lv.Sold != 0 {
		t.Errorf("EX-1 = %+v, want all 5 available again", lv)
	}
}

// TestConflictingPayload: the same order id with a different payload after
// the first was decided: the first stands and stock moves once.
func TestConflictingPayload(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "CF-1", 10)
	b.stockSKU(t, "CF-2", 10)
	h := b.handler(t, HandlerConfig{})
	ctx := context.Background()
	first := oneLine("cf-1", "c-1", "CF-1", 2)
	second := oneLine("cf-1", "c-1", "CF-2", 7)
	for _, o := range []orders.Order{first, second} {
		task, err := b.client.NewTask(ctx, o)
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		if err := h.ProcessTask(ctx, task); err != nil {
			t.Fatalf("ProcessTask(%+v) = %v, want nil", o.Lines, err)
		}
	}
	rec, err := b.store.Get(ctx, "cf-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if rec.Status != orders.StatusConfirmed || len(rec.Lines) != 1 || rec.Lines[0].SKU != "CF-1" {
		t.Errorf("row = %+v, want the first payload confirmed", rec)
	}
	if lv := b.assertSettled(t, "CF-1", 10); lv.Sold != 2 {
		t.Errorf("CF-1 sold = %d, want 2", lv.Sold)
	}
	if lv := b.assertSettled(t, "CF-2", 10); lv.Sold != 0 || lv.Available != 10 {
		t.Errorf("CF-2 = %+v, want untouched", lv)
	}
}

// TestRejectionReasons covers the business outcomes that are never retried.
func TestRejectionReasons(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "RR-1", 3)
	h := b.handler(t, HandlerConfig{RateLimit: 2, RateWindow: time.Hour})
	ctx := context.Background()
	cases := []struct {
		o      orders.Order
		status orders.Status
		reason string
	}{
		{oneLine("rr-ok", "c-1", "RR-1", 1), orders.StatusConfirmed, ""},
		{oneLine("rr-short", "c-2", "RR-1", 3), orders.StatusRejected, orders.ReasonOutOfStock},
		{oneLine("rr-unknown", "c-3", "NEVER-STOCKED", 1), orders.StatusRejected, orders.ReasonUnknownSKU},
		{oneLine("rr-limit-1", "c-9", "RR-1", 1), orders.StatusConfirmed, ""},
		{oneLine("rr-limit-2", "c-9", "RR-1", 1), orders.StatusConfirmed, ""},
		{oneLine("rr-limit-3", "c-9", "RR-1", 1), orders.StatusRejected, orders.ReasonRateLimited},
	}
	for _, c := range cases {
		task, err := b.client.NewTask(ctx, c.o)
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		if err := h.ProcessTask(ctx, task); err != nil {
			t.Fatalf("ProcessTask(%s) = %v, want nil (business outcomes are not retried)", c.o.OrderID, err)
		}
		rec, err := b.store.Get(ctx, c.o.OrderID)
		if err != nil {
			t.Fatalf("Get(%s): %v", c.o.OrderID, err)
		}
		if rec.Status != c.status || rec.Reason != c.reason {
			t.Errorf("%s = %s/%q, want %s/%q", c.o.OrderID, rec.Status, rec.Reason, c.status, c.reason)
		}
	}
	if exists, _ := b.rdb.Exists(ctx, stock.AvailKey("NEVER-STOCKED")).Result(); exists != 0 {
		t.Error("a missing stock key was created by a reserve; it must fail closed")
	}
	if lv := b.assertSettled(t, "RR-1", 3); lv.Sold != 3 {
		t.Errorf("RR-1 sold = %d, want 3", lv.Sold)
	}
}

// TestStockNotLoadedFailsClosed: a SKU the Postgres catalogue knows but
// Redis has no counters for (Redis lost its data) is an infrastructure
// failure: the attempt returns a retryable error, writes no row and takes
// no stock. Once the counters are back, the retry sells.
func TestStockNotLoadedFailsClosed(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	ctx := context.Background()
	b.stockSKU(t, "LOST-1", 5)
	// What a Redis restart without persistence leaves behind.
	if err := b.rdb.Del(ctx, stock.AvailKey("LOST-1"), stock.HeldKey("LOST-1"), stock.SoldKey("LOST-1")).Err(); err != nil {
		t.Fatal(err)
	}
	h := b.handler(t, HandlerConfig{})
	task, err := b.client.NewTask(ctx, oneLine("lost-1", "c-1", "LOST-1", 2))
	if err != nil {
		t.Fatal(err)
	}
	err = h.ProcessTask(ctx, task)
	if !errors.Is(err, ErrStockNotLoaded) || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("ProcessTask with the counters gone = %v, want a retryable ErrStockNotLoaded", err)
	}
	if _, err := b.store.Get(ctx, "lost-1"); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("Get(lost-1) = %v, want no row while the stock is not loaded", err)
	}
	if n, _ := b.rdb.Exists(ctx, stock.AvailKey("LOST-1")).Result(); n != 0 {
		t.Error("the failed attempt created a stock key")
	}

	if _, err := b.gate.Rebuild(ctx, "LOST-1", 5, 0); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	if err := h.ProcessTask(ctx, task); err != nil {
		t.Fatalf("ProcessTask after the rebuild = %v, want nil", err)
	}
	if rec, err := b.store.Get(ctx, "lost-1"); err != nil || rec.Status != orders.StatusConfirmed {
		t.Errorf("Get(lost-1) = %+v, %v; want confirmed", rec, err)
	}
	if lv := b.assertSettled(t, "LOST-1", 5); lv.Sold != 2 {
		t.Errorf("LOST-1 sold = %d, want 2", lv.Sold)
	}
}
