package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/internal/catalog"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/worker"
)

// startWorker runs a real worker on the bundle's Redis DB and database and
// stocks SKU-1 with 10.
func (b *testBundle) startWorker(t *testing.T) {
	t.Helper()
	cat := catalog.New(b.pool)
	if _, err := catalog.NewLedger(b.gate, cat, b.store).Set(context.Background(), "SKU-1", 10); err != nil {
		t.Fatal(err)
	}
	h, err := worker.NewHandler(worker.Deps{Gate: b.gate, Store: b.store, Catalog: cat, Ledger: cat},
		worker.HandlerConfig{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency: 4, Queues: map[string]int{orders.Queue: 1}, LogLevel: asynq.ErrorLevel,
		TaskCheckInterval: 10 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
	})
	mux := asynq.NewServeMux()
	mux.Handle(orders.TaskType, h)
	mux.HandleFunc(orders.ConfirmTaskType, h.ProcessAction)
	mux.HandleFunc(orders.CancelTaskType, h.ProcessAction)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}

func heldJSON(id string, qty int) string {
	return fmt.Sprintf(`{"order_id":%q,"customer_id":"c-1","lines":[{"sku":"SKU-1","qty":%d}],"hold":"10m"}`, id, qty)
}

// place posts a checkout and waits for its hold.
func (b *testBundle) place(t *testing.T, id string, qty int) stockgate.Status {
	t.Helper()
	if r := b.do(t, "POST", "/v1/orders", heldJSON(id, qty)); r.code != 202 {
		t.Fatalf("POST %s = %d %s, want 202", id, r.code, r.body)
	}
	r := b.do(t, "GET", "/v1/orders/"+id+"?wait=20s", "")
	st := decodeStatus(t, r.body)
	if r.code != 200 || st.State != stockgate.StateHeld || st.HoldUntil == nil || !strings.Contains(r.body, `"hold_until":`) {
		t.Fatalf("GET %s?wait = %d %s, want 200 held with hold_until", id, r.code, r.body)
	}
	return st
}

// TestCheckoutRoutes: hold, pay, confirm; hold and cancel; a return; and
// the answers for orders that can no longer move, bad bodies and ids.
func TestCheckoutRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, setupOpts{})
	b.startWorker(t)

	b.place(t, "ck-1", 2)
	r := b.do(t, "POST", "/v1/orders/ck-1/confirm", "")
	if st := decodeStatus(t, r.body); r.code != 200 || st.State != stockgate.StateConfirmed || st.ChangedAt == nil {
		t.Fatalf("confirm ck-1 = %d %s, want 200 confirmed with changed_at", r.code, r.body)
	}
	if r = b.do(t, "POST", "/v1/orders/ck-1/confirm", "{}"); r.code != 200 || decodeStatus(t, r.body).State != stockgate.StateConfirmed {
		t.Errorf("confirm ck-1 again = %d %s, want 200 confirmed", r.code, r.body)
	}
	if r = b.do(t, "GET", "/v1/stock/SKU-1", ""); r.body != `{"sku":"SKU-1","available":8,"held":0,"sold":2}`+"\n" {
		t.Errorf("stock after the confirm = %s", r.body)
	}

	b.place(t, "ck-2", 1)
	r = b.do(t, "POST", "/v1/orders/ck-2/cancel", `{"reason":"payment_failed"}`)
	if st := decodeStatus(t, r.body); r.code != 200 || st.State != stockgate.StateCancelled || st.Reason != "checkout_cancelled" || st.Detail != "payment_failed" {
		t.Fatalf("cancel ck-2 = %d %s, want 200 cancelled, checkout_cancelled, payment_failed", r.code, r.body)
	}
	r = b.do(t, "POST", "/v1/orders/ck-2/confirm", "")
	var late tooLateBody
	if err := json.Unmarshal([]byte(r.body), &late); r.code != 409 || err != nil || late.Reason != "too_late" || late.Order.State != stockgate.StateCancelled {
		t.Errorf("confirm a cancelled checkout = %d %s, want 409 too_late with the cancelled order", r.code, r.body)
	}

	// A return: the sale is cancelled and its units go back.
	r = b.do(t, "POST", "/v1/orders/ck-1/cancel", `{"reason":"returned"}`)
	if st := decodeStatus(t, r.body); r.code != 200 || st.State != stockgate.StateCancelled || st.Reason != "cancelled_after_sale" {
		t.Fatalf("cancel ck-1 after its sale = %d %s, want 200 cancelled_after_sale", r.code, r.body)
	}
	if r = b.do(t, "POST", "/v1/orders/ck-1/cancel", ""); r.code != 200 {
		t.Errorf("cancel ck-1 again = %d %s, want 200", r.code, r.body)
	}

	// Bad input: nothing is enqueued.
	before := b.queued(t)
	for _, c := range []struct{ path, body, ct, reason string }{
		{"/v1/orders/ck-1/cancel", `{"reason":"` + strings.Repeat("r", 201) + `"}`, "application/json", "invalid: reason is 201 characters"},
		{"/v1/orders/ck-1/cancel", `{"reason":"a","refund":5}`, "application/json", "invalid: body must be"},
		{"/v1/orders/ck-1/cancel", `{"Reason":"a"}`, "application/json", "invalid: body must be"},
		{"/v1/orders/ck-1/cancel", `{"reason":"a"}{}`, "application/json", "invalid: body must be"},
		{"/v1/orders/ck-1/cancel", `{"reason":"two\nlines"}`, "application/json", "invalid: reason must be one line"},
		{"/v1/orders/ck-1/confirm", `{"reason":"paid"}`, "application/json", "invalid: a confirm takes no reason"},
	} {
		if r := b.do(t, "POST", c.path, c.body, "Content-Type", c.ct); r.code != 400 || !strings.HasPrefix(r.err.Reason, c.reason) {
			t.Errorf("POST %s %s = %d %s, want 400 %s", c.path, c.body, r.code, r.body, c.reason)
		}
	}
	for _, route := range []string{"confirm", "cancel"} {
		p := "/v1/orders/ck-1/" + route
		if r := b.do(t, "POST", p, `{"reason":"a"}`, "Content-Type", "text/plain"); r.code != 415 || r.err.Reason != "unsupported_media_type" {
			t.Errorf("%s with text/plain = %d %s, want 415", route, r.code, r.body)
		}
		if r := b.do(t, "POST", p, `{"reason":"`+strings.Repeat("r", 5000)+`"}`); r.code != 413 || r.err.Reason != "too_large" {
			t.Errorf("%s with a 5 KiB body = %d %s, want 413", route, r.code, r.body)
		}
	}
	if n := b.queued(t); n != before {
		t.Errorf("queue holds %d tasks after bad requests, want %d", n, before)
	}

	// An order that sold nothing has nothing to cancel; one never
	// submitted, or not an id, is not found.
	if r := b.do(t, "POST", "/v1/orders", orderJSON("ck-short", 50)); r.code != 202 {
		t.Fatal(r.body)
	}
	r = b.do(t, "POST", "/v1/orders/ck-short/cancel", "")
	if err := json.Unmarshal([]byte(r.body), &late); r.code != 409 || err != nil || late.Order.State != stockgate.StateRejected {
		t.Errorf("cancel a rejected order = %d %s, want 409 with the rejected order", r.code, r.body)
	}
	for _, p := range []string{"/v1/orders/never-1/confirm", "/v1/orders/never-1/cancel", "/v1/orders/%C3%BC/confirm"} {
		if r := b.do(t, "POST", p, ""); r.code != 404 || r.err.Reason != "not_found" {
			t.Errorf("POST %s = %d %s, want 404", p, r.code, r.body)
		}
	}
}

// TestCheckoutRouteQueued: with no worker to move it, a confirm or a cancel
// answers 202 with the order still held once the wait is over; the task is
// queued.
func TestCheckoutRouteQueued(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{MoveWait: 200 * time.Millisecond}, setupOpts{})
	until := time.Now().Add(time.Hour)
	if _, _, err := b.store.Decide(context.Background(), orders.Record{OrderID: "q-1", CustomerID: "c-1", Status: orders.StatusHeld,
		HoldUntil: &until, Lines: []orders.Line{{SKU: "SKU-1", Qty: 1}}}); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{orders.ConfirmTaskType, orders.CancelTaskType} {
		route := strings.TrimPrefix(typ, "order:")
		r := b.do(t, "POST", "/v1/orders/q-1/"+route, "")
		if st := decodeStatus(t, r.body); r.code != 202 || st.State != stockgate.StateHeld {
			t.Errorf("%s with no worker = %d %s, want 202 held", route, r.code, r.body)
		}
		if _, err := b.insp.GetTaskInfo(orders.Queue, orders.ActionTaskID(typ, "q-1")); err != nil {
			t.Errorf("the %s task: %v, want it queued", route, err)
		}
	}
}
