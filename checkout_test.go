package stockgate

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/catalog"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/internal/worker"
)

// startWorker runs a real worker (handler and sweeper) on the bundle's
// Redis DB and database, as cmd/worker wires it, and stocks SKU-1 with 10.
func (b *testBundle) startWorker(t *testing.T, now func() time.Time) *worker.Sweeper {
	t.Helper()
	gate := stock.New(b.rdb, stock.Config{})
	cat := catalog.New(b.pool)
	if _, err := catalog.NewLedger(gate, cat, b.store).Set(context.Background(), "SKU-1", 10); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	h, err := worker.NewHandler(worker.Deps{Gate: gate, Store: b.store, Catalog: cat, Ledger: cat},
		worker.HandlerConfig{Now: now, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency: 4, Queues: map[string]int{orders.Queue: 1}, LogLevel: asynq.ErrorLevel,
		TaskCheckInterval: 10 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
		RetryDelayFunc: func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond },
	})
	mux := asynq.NewServeMux()
	mux.Handle(orders.TaskType, h)
	mux.HandleFunc(orders.ConfirmTaskType, h.ProcessAction)
	mux.HandleFunc(orders.CancelTaskType, h.ProcessAction)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	sw, err := worker.NewSweeper(gate, b.store, worker.SweeperConfig{Now: now, Ledger: cat, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return sw
}

func (b *testBundle) stock(t *testing.T) Stock {
	t.Helper()
	st, err := b.client.Stock(context.Background(), "SKU-1")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func checkout(id string, qty int64) Order {
	o := order(id, qty)
	o.Hold = 10 * time.Minute
	return o
}

// TestCheckout: the storefront's story through the client. Submit with a
// hold, Wait for the hold, pay, Confirm; or Cancel instead; or Cancel
// after the sale (a return). Each answer is the state that stands, and
// asking twice is harmless.
func TestCheckout(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{PollInterval: 10 * time.Millisecond})
	b.startWorker(t, time.Now)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	for _, id := range []string{"ck-pay", "ck-abandon"} {
		if err := b.client.Submit(ctx, checkout(id, 2)); err != nil {
			t.Fatalf("Submit(%s) = %v", id, err)
		}
	}
	// A Confirm of an order still pending waits for its hold first.
	st, err := b.client.Confirm(ctx, "ck-pay")
	if err != nil || st.State != StateConfirmed || st.HoldUntil == nil || st.ChangedAt == nil {
		t.Fatalf("Confirm(ck-pay) = %+v, %v; want confirmed, with its hold's deadline and the move's time", st, err)
	}
	if st, err = b.client.Confirm(ctx, "ck-pay"); err != nil || st.State != StateConfirmed {
		t.Errorf("Confirm(ck-pay) again = %+v, %v; want confirmed, nil", st, err)
	}
	if s := b.stock(t); s.Sold != 2 || s.Held != 2 || s.Available != 6 {
		t.Errorf("stock after one confirm and one hold = %+v, want 2 sold, 2 held, 6 available", s)
	}

	st, err = b.client.Cancel(ctx, "ck-abandon", "payment_failed")
	if err != nil || st.State != StateCancelled || st.Reason != orders.ReasonCheckoutCancelled || st.Detail != "payment_failed" {
		t.Fatalf("Cancel(ck-abandon) = %+v, %v; want cancelled, checkout_cancelled, payment_failed", st, err)
	}
	if st, err = b.client.Confirm(ctx, "ck-abandon"); !errors.Is(err, ErrTooLate) || st.State != StateCancelled {
		t.Errorf("Confirm(cancelled) = %+v, %v; want cancelled and ErrTooLate", st, err)
	}
	if s := b.stock(t); s.Sold != 2 || s.Held != 0 || s.Available != 8 {
		t.Errorf("stock after the cancel = %+v, want 2 sold, 8 available", s)
	}

	// A return: the sale is cancelled, its units available again, once.
	st, err = b.client.Cancel(ctx, "ck-pay", "returned by the customer")
	if err != nil || st.State != StateCancelled || st.Reason != orders.ReasonCancelledAfterSale {
		t.Fatalf("Cancel(ck-pay) after the sale = %+v, %v; want cancelled, cancelled_after_sale", st, err)
	}
	if st, err = b.client.Cancel(ctx, "ck-pay", ""); err != nil || st.State != StateCancelled {
		t.Errorf("Cancel(ck-pay) again = %+v, %v; want cancelled, nil", st, err)
	}
	testsvc.Poll(t, 10*time.Second, "the return's units to be back", func() bool { return b.stock(t).Available == 10 })
	if s := b.stock(t); s.Sold != 0 || s.Held != 0 {
		t.Errorf("stock after the return = %+v, want everything available", s)
	}

	// An order without a hold is confirmed at once: Confirm says so, and
	// Cancel takes the sale back.
	if err := b.client.Submit(ctx, order("ck-plain", 1)); err != nil {
		t.Fatal(err)
	}
	if st, err = b.client.Confirm(ctx, "ck-plain"); err != nil || st.State != StateConfirmed || st.HoldUntil != nil {
		t.Errorf("Confirm(a plain order) = %+v, %v; want confirmed without a hold", st, err)
	}
	// An order that sold nothing has nothing to cancel.
	if err := b.client.Submit(ctx, order("ck-short", 100)); err != nil {
		t.Fatal(err)
	}
	if st, err = b.client.Cancel(ctx, "ck-short", ""); !errors.Is(err, ErrTooLate) || st.State != StateRejected {
		t.Errorf("Cancel(rejected) = %+v, %v; want rejected and ErrTooLate", st, err)
	}

	if _, err := b.client.Confirm(ctx, "ck-never"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Confirm(never submitted) = %v, want ErrNotFound", err)
	}
	if _, err := b.client.Cancel(ctx, "bad id", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("Cancel(bad id) = %v, want ErrNotFound", err)
	}
	var inv *InvalidError
	if _, err := b.client.Cancel(ctx, "ck-plain", strings.Repeat("r", 201)); !errors.As(err, &inv) || !strings.Contains(inv.Reason, "reason is 201 characters") {
		t.Errorf("Cancel(oversized reason) = %v, want an *InvalidError", err)
	}
	if _, err := b.client.Cancel(ctx, "ck-plain", "two\nlines"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Cancel(two-line reason) = %v, want ErrInvalid", err)
	}
}

// TestCheckoutConcurrentCalls: many storefront calls at once on one
// checkout, confirms and cancels mixed: every call answers with the one
// state that stands at its end, and the units are sold and given back at
// most once.
func TestCheckoutConcurrentCalls(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{PollInterval: 10 * time.Millisecond})
	b.startWorker(t, time.Now)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.client.Submit(ctx, checkout("cc-1", 3)); err != nil {
		t.Fatal(err)
	}
	if st, err := b.client.Wait(ctx, "cc-1"); err != nil || st.State != StateHeld {
		t.Fatalf("Wait(cc-1) = %+v, %v; want held", st, err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	for i := range 8 {
		wg.Go(func() {
			var st Status
			var err error
			if i%2 == 0 {
				st, err = b.client.Confirm(ctx, "cc-1")
			} else {
				st, err = b.client.Cancel(ctx, "cc-1", "")
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil, errors.Is(err, ErrTooLate):
				got[string(st.State)]++
			default:
				t.Errorf("call %d = %v", i, err)
			}
		})
	}
	wg.Wait()
	// Cancels always win in the end (before the confirm, or after it);
	// a confirm answers confirmed if it ran first.
	if got["cancelled"] < 4 || got["held"] != 0 {
		t.Errorf("answers = %v, want every cancel cancelled and no call left held", got)
	}
	testsvc.Poll(t, 10*time.Second, "the units to be back", func() bool { s := b.stock(t); return s.Available == 10 && s.Held == 0 })
	if s := b.stock(t); s.Sold != 0 {
		t.Errorf("stock = %+v, want nothing sold", s)
	}
}

// TestCheckoutExpired: a confirm after the hold's deadline is too late: the
// order expires and its units go back.
func TestCheckoutExpired(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{PollInterval: 10 * time.Millisecond})
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	sw := b.startWorker(t, clock)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.client.Submit(ctx, checkout("ex-1", 1)); err != nil {
		t.Fatal(err)
	}
	if st, err := b.client.Wait(ctx, "ex-1"); err != nil || st.State != StateHeld {
		t.Fatalf("Wait = %+v, %v; want held", st, err)
	}
	mu.Lock()
	now = now.Add(11 * time.Minute)
	mu.Unlock()
	st, err := b.client.Confirm(ctx, "ex-1")
	if !errors.Is(err, ErrTooLate) || st.State != StateExpired || st.Reason != orders.ReasonHoldExpired {
		t.Errorf("Confirm past the deadline = %+v, %v; want expired, hold_expired, ErrTooLate", st, err)
	}
	if _, err := sw.SweepOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if s := b.stock(t); s.Available != 10 || s.Held != 0 {
		t.Errorf("stock = %+v, want the unit back", s)
	}
}

// TestConfirmWaitEnds: with no worker, Confirm returns when ctx ends, with
// the order as it stands (held) and ctx's error; the task stays queued.
func TestConfirmWaitEnds(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{PollInterval: 10 * time.Millisecond})
	until := time.Now().Add(time.Hour)
	if _, _, err := b.store.Decide(context.Background(), orders.Record{OrderID: "we-1", CustomerID: "c-1", Status: orders.StatusHeld,
		HoldUntil: &until, Lines: []orders.Line{{SKU: "SKU-1", Qty: 1}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st, err := b.client.Confirm(ctx, "we-1")
	if !errors.Is(err, context.DeadlineExceeded) || st.State != StateHeld {
		t.Errorf("Confirm with no worker = %+v, %v; want held and the deadline", st, err)
	}
	info, err := b.insp.GetTaskInfo(orders.Queue, orders.ActionTaskID(orders.ConfirmTaskType, "we-1"))
	if err != nil || info.Type != orders.ConfirmTaskType {
		t.Fatalf("the confirm task = %+v, %v; want it queued", info, err)
	}
	if a, err := orders.DecodeAction(info.Payload); err != nil || a.OrderID != "we-1" {
		t.Errorf("its payload = %+v, %v", a, err)
	}
	// Asking again enqueues nothing more.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, _ = b.client.Confirm(ctx2, "we-1")
	if n := b.queued(t); n != 1 {
		t.Errorf("queue holds %d tasks after two Confirms, want 1", n)
	}
}

// TestOrderHold: the hold travels in the payload, and Submit refuses one
// over the client's MaxHold with the reason a worker would record.
func TestOrderHold(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{MaxHold: 20 * time.Minute})
	ctx := context.Background()
	if err := b.client.Submit(ctx, checkout("oh-1", 1)); err != nil {
		t.Fatal(err)
	}
	info, err := b.insp.GetTaskInfo(orders.Queue, "oh-1")
	if err != nil {
		t.Fatal(err)
	}
	o, err := DecodeOrder(info.Payload)
	if err != nil || o.Hold != 10*time.Minute {
		t.Errorf("DecodeOrder(payload) = %+v, %v; want a 10m hold", o, err)
	}
	long := checkout("oh-2", 1)
	long.Hold = time.Hour
	var inv *InvalidError
	if err := b.client.Submit(ctx, long); !errors.As(err, &inv) || inv.Reason != "hold 1h0m0s is over the maximum of 20m0s" {
		t.Errorf("Submit(1h hold) = %v, want invalid: hold 1h0m0s is over the maximum of 20m0s", err)
	}
	long.Hold = -time.Minute
	if err := b.client.Submit(ctx, long); !errors.Is(err, ErrInvalid) {
		t.Errorf("Submit(negative hold) = %v, want ErrInvalid", err)
	}
	js, err := json.Marshal(checkout("oh-3", 1))
	if err != nil || !strings.Contains(string(js), `"hold":"10m0s"`) {
		t.Errorf("json.Marshal(checkout) = %s, %v; want the payload's hold", js, err)
	}
	var back Order
	if err := json.Unmarshal(js, &back); err != nil || back.Hold != 10*time.Minute {
		t.Errorf("json.Unmarshal = %+v, %v; want the hold back", back, err)
	}
	if _, err := NewClient(ctx, Config{MaxHold: time.Millisecond}); err == nil {
		t.Error("NewClient(MaxHold 1ms) = nil error, want a refusal")
	}
}
