package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orders/ordertest"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// heldOrder is a one-line order asking for a checkout hold.
func heldOrder(id, customer, sku string, qty int64, hold string) orders.Order {
	o := oneLine(id, customer, sku, qty)
	o.Hold = hold
	return o
}

// actionTask is an order:confirm or order:cancel task as the client makes it.
func actionTask(t *testing.T, typ, id, reason string) *asynq.Task {
	t.Helper()
	task, err := orders.NewActionTask(context.Background(), typ, orders.Action{OrderID: id, Reason: reason}, orders.TaskOptions{MaxRetry: 3})
	if err != nil {
		t.Fatalf("NewActionTask(%s, %s): %v", typ, id, err)
	}
	return task
}

// enqueueAction puts an order:confirm or order:cancel task on the queue.
func (b *pipeBundle) enqueueAction(t *testing.T, typ, id, reason string) {
	t.Helper()
	if _, err := b.ac.Enqueue(actionTask(t, typ, id, reason)); err != nil {
		t.Fatalf("Enqueue(%s %s): %v", typ, id, err)
	}
}

func (b *pipeBundle) row(t *testing.T, id string) orders.Record {
	t.Helper()
	rec, err := b.store.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("Get(%s): %v", id, err)
	}
	return rec
}

// waitMoved polls until none of ids is held any more.
func (b *pipeBundle) waitMoved(t *testing.T, ids []string) {
	t.Helper()
	if len(ids) == 0 {
		return
	}
	testsvc.Poll(t, time.Minute, fmt.Sprintf("%d checkouts to move", len(ids)), func() bool {
		rows, err := b.store.GetMany(context.Background(), ids)
		if err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		for _, id := range ids {
			if rows[id].Status == orders.StatusHeld {
				return false
			}
		}
		return true
	})
}

// checkI1 fails the test unless sku's counters add up to total, with
// available never below zero.
func (b *pipeBundle) checkI1(t *testing.T, sku string, total int64) {
	t.Helper()
	if lv := b.levels(t, sku); lv.Total() != total || lv.Available < 0 {
		t.Fatalf("I1: %s = %+v (total %d), want total %d and available >= 0", sku, lv, lv.Total(), total)
	}
}

// TestCheckoutSale: 2,000 buyers, in waves, each hold 1 unit of 100 for
// checkout. 30% of the holders cancel, 20% never come back and their hold
// expires (a short hold, the clock moved past it, a sweep), and the rest
// confirm. Each unit a cancel or an expiry gives back goes to a later
// buyer, so the sale ends with exactly 100 sold and reconcile clean.
func TestCheckoutSale(t *testing.T) {
	t.Parallel()
	const units, buyers, wave = 100, 2000, 100
	b := setupPipeline(t)
	b.stockSKU(t, "CO-1", units)
	clock := &fakeClock{now: time.Now()}
	b.startWorker(t, b.handler(t, HandlerConfig{Now: clock.Now}), 32)
	sweeper := newTestSweeper(t, b, clock.Now)
	ctx := context.Background()

	var all []string
	holders := 0
	want := map[orders.Status]int{}
	for start := 0; start < buyers; start += wave {
		ids := make([]string, wave)
		batch := make([]orders.Order, wave)
		for i := range batch {
			ids[i] = fmt.Sprintf("co-%04d", start+i)
			batch[i] = heldOrder(ids[i], fmt.Sprintf("c-%d", start+i), "CO-1", 1, "1m")
		}
		all = append(all, ids...)
		submitAll(t, b.client, batch, 16)
		b.waitRows(t, ids, time.Minute)
		rows, err := b.store.GetMany(ctx, ids)
		if err != nil {
			t.Fatalf("GetMany: %v", err)
		}
		var acted, expiring []string
		for _, id := range ids {
			switch rows[id].Status {
			case orders.StatusHeld:
			case orders.StatusRejected:
				want[orders.StatusRejected]++
				continue
			default:
				t.Fatalf("%s = %+v, want held or rejected", id, rows[id])
			}
			switch holders % 10 {
			case 0, 1, 2:
				b.enqueueAction(t, orders.CancelTaskType, id, "payment_failed")
				acted = append(acted, id)
				want[orders.StatusCancelled]++
			case 3, 4:
				expiring = append(expiring, id)
				want[orders.StatusExpired]++
			default:
				b.enqueueAction(t, orders.ConfirmTaskType, id, "")
				acted = append(acted, id)
				want[orders.StatusConfirmed]++
			}
			holders++
		}
		b.waitMoved(t, acted)
		b.checkI1(t, "CO-1", units)
		// The buyers who never came back: their holds pass the deadline.
		clock.Advance(time.Minute + time.Second)
		res, err := sweeper.SweepOnce(ctx)
		if err != nil || res.CheckoutsExpired != len(expiring) {
			t.Fatalf("SweepOnce = %+v, %v; want %d checkouts expired", res, err, len(expiring))
		}
		b.checkI1(t, "CO-1", units)
		if lv := b.levels(t, "CO-1"); lv.Held != 0 {
			t.Fatalf("after wave %d: %+v, want nothing held", start/wave, lv)
		}
	}

	st, err := b.store.Stats(ctx, all)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	rows, err := b.store.GetMany(ctx, all)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	got := map[orders.Status]int{}
	for _, r := range rows {
		got[r.Status]++
	}
	if st.Decided != buyers || fmt.Sprint(got) != fmt.Sprint(want) || want[orders.StatusConfirmed] != units {
		t.Errorf("%d buyers: rows %v (%d decided), want %v with %d confirmed", buyers, got, st.Decided, want, units)
	}
	if n := st.Reasons[orders.ReasonOutOfStock]; n != want[orders.StatusRejected] || n != buyers-holders {
		t.Errorf("%d rejected out_of_stock, want every buyer without a hold: %d (reasons %v)", n, buyers-holders, st.Reasons)
	}
	if lv := b.assertSettled(t, "CO-1", units); lv.Sold != units || lv.Available != 0 {
		t.Errorf("CO-1 = %+v, want all %d sold", lv, units)
	}
	t.Logf("%d buyers, %d holders: %v", len(all), holders, got)
}

// TestCheckoutRaces: for many held orders at once, a confirm racing a
// cancel, a confirm racing the expiry, and two cancels each end in one
// outcome, with I1 and sold = confirmed at the end: no unit is both given
// back and sold.
func TestCheckoutRaces(t *testing.T) {
	t.Parallel()
	const n = 30
	b := setupPipeline(t)
	b.stockSKU(t, "RC-1", 3*n)
	clock := &fakeClock{now: time.Now()}
	h := b.handler(t, HandlerConfig{Now: clock.Now})
	sweeper := newTestSweeper(t, b, clock.Now)
	ctx := context.Background()
	place := func(prefix string) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("%s-%d", prefix, i)
			task, err := b.client.NewTask(ctx, heldOrder(ids[i], "c-1", "RC-1", 1, "1m"))
			if err != nil {
				t.Fatal(err)
			}
			if err := h.ProcessTask(ctx, task); err != nil {
				t.Fatalf("ProcessTask(%s) = %v", ids[i], err)
			}
		}
		return ids
	}
	confirmCancel, confirmExpire, twoCancels := place("cc"), place("ce"), place("dc")
	var wg sync.WaitGroup
	act := func(typ, id string) func() {
		return func() {
			if err := h.ProcessAction(ctx, actionTask(t, typ, id, "")); err != nil {
				t.Errorf("ProcessAction(%s %s) = %v", typ, id, err)
			}
		}
	}
	// The confirms of the second group run after the deadline on half of
	// the orders: the clock is past it while the sweep runs.
	for i := range n {
		wg.Go(act(orders.ConfirmTaskType, confirmCancel[i]))
		wg.Go(act(orders.CancelTaskType, confirmCancel[i]))
		wg.Go(act(orders.CancelTaskType, twoCancels[i]))
		wg.Go(act(orders.CancelTaskType, twoCancels[i]))
		if i%2 == 0 {
			wg.Go(act(orders.ConfirmTaskType, confirmExpire[i]))
		}
	}
	wg.Wait()
	clock.Advance(time.Minute + time.Second)
	for i := 1; i < n; i += 2 {
		wg.Go(act(orders.ConfirmTaskType, confirmExpire[i]))
	}
	wg.Go(func() {
		if _, err := sweeper.SweepOnce(ctx); err != nil {
			t.Errorf("SweepOnce = %v", err)
		}
	})
	wg.Wait()

	count := func(ids []string) map[orders.Status]int {
		rows, err := b.store.GetMany(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		out := map[orders.Status]int{}
		for _, id := range ids {
			out[rows[id].Status]++
		}
		return out
	}
	// A cancel racing a confirm always ends cancelled: before it, the hold
	// goes back; after it, the sale does.
	if got := count(confirmCancel); got[orders.StatusCancelled] != n {
		t.Errorf("confirm racing cancel = %v, want all %d cancelled", got, n)
	}
	if got := count(confirmExpire); got[orders.StatusConfirmed] != n/2 || got[orders.StatusExpired] != n/2 {
		t.Errorf("confirm racing expiry = %v, want %d confirmed in time and %d expired", got, n/2, n/2)
	}
	if got := count(twoCancels); got[orders.StatusCancelled] != n {
		t.Errorf("two cancels = %v, want all %d cancelled", got, n)
	}
	var movements int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM stock_movements WHERE op = 'cancel'`).Scan(&movements); err != nil {
		t.Fatal(err)
	}
	after, err := orderstore.Sums(ctx, b.store.EachReturned)
	if err != nil {
		t.Fatal(err)
	}
	if int64(movements) != after["RC-1"] {
		t.Errorf("%d cancel movements, %d units cancelled after their sale; want one movement each", movements, after["RC-1"])
	}
	if lv := b.assertSettled(t, "RC-1", 3*n); lv.Sold != int64(n/2) {
		t.Errorf("RC-1 = %+v, want the %d confirmed in time sold", lv, n/2)
	}
}

// TestCheckoutCrashAfterTransition: a worker that dies between the row's
// move and its holds following it, for a confirm, a cancel of a hold and
// a cancel after the sale. The retry (a real worker retrying the task)
// finishes it once; with no retry left, the sweeper does.
func TestCheckoutCrashAfterTransition(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		typ       string
		confirmed bool  // confirm the order before the crashing task
		sold      int64 // units of CR-1 sold at the end
	}{
		{"confirm", orders.ConfirmTaskType, false, 2},
		{"cancel", orders.CancelTaskType, false, 0},
		{"cancel-after-sale", orders.CancelTaskType, true, 0},
	} {
		t.Run(c.name+"/retry", func(t *testing.T) {
			t.Parallel()
			b := setupPipeline(t)
			b.stockSKU(t, "CR-1", 5)
			var crashes atomic.Int64
			h := b.handler(t, HandlerConfig{hook: func(step string) error {
				if step == orders.StepAfterTransition && crashes.Add(1) == 1+btoi(c.confirmed) {
					return errors.New("injected crash after the transition")
				}
				return nil
			}})
			b.startWorker(t, h, 4)
			o := heldOrder("cr-"+c.name, "c-1", "CR-1", 2, "10m")
			if _, err := b.client.Submit(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			b.waitRows(t, []string{o.OrderID}, 30*time.Second)
			if c.confirmed {
				b.enqueueAction(t, orders.ConfirmTaskType, o.OrderID, "")
				b.waitMoved(t, []string{o.OrderID})
			}
			b.enqueueAction(t, c.typ, o.OrderID, "")
			testsvc.Poll(t, 30*time.Second, "the task to be retried past the crash", func() bool {
				return crashes.Load() > 1+btoi(c.confirmed) || b.levels(t, "CR-1").Held == 0 && b.levels(t, "CR-1").Sold == c.sold
			})
			if lv := b.assertSettled(t, "CR-1", 5); lv.Sold != c.sold {
				t.Errorf("CR-1 = %+v, want %d sold", lv, c.sold)
			}
			testsvc.Poll(t, 30*time.Second, "the queue to drain", func() bool {
				qi, err := b.insp.GetQueueInfo(orders.Queue)
				return err == nil && qi.Pending+qi.Active+qi.Retry+qi.Scheduled == 0 && qi.Archived == 0
			})
		})
		t.Run(c.name+"/sweeper", func(t *testing.T) {
			t.Parallel()
			b := setupPipeline(t)
			b.stockSKU(t, "CR-1", 5)
			clock := &fakeClock{now: time.Now()}
			ctx := context.Background()
			o := heldOrder("cs-"+c.name, "c-1", "CR-1", 2, "10m")
			task, err := b.client.NewTask(ctx, o)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.handler(t, HandlerConfig{Now: clock.Now}).ProcessTask(ctx, task); err != nil {
				t.Fatal(err)
			}
			if c.confirmed {
				if err := b.handler(t, HandlerConfig{Now: clock.Now}).ProcessAction(ctx, actionTask(t, orders.ConfirmTaskType, o.OrderID, "")); err != nil {
					t.Fatal(err)
				}
			}
			crash := b.handler(t, HandlerConfig{Now: clock.Now, hook: failOnceAt(orders.StepAfterTransition)})
			if err := crash.ProcessAction(ctx, actionTask(t, c.typ, o.OrderID, "")); !errors.Is(err, errInjected) {
				t.Fatalf("ProcessAction = %v, want the injected crash", err)
			}
			// The task is gone (archived, say): only the sweeper is left,
			// once the Redis hold's deadline (10m) or, for a cancellation
			// after the sale, at once.
			clock.Advance(11 * time.Minute)
			sw := newTestSweeper(t, b, clock.Now)
			for range 2 {
				if _, err := sw.SweepOnce(ctx); err != nil {
					t.Fatalf("SweepOnce = %v", err)
				}
			}
			if lv := b.assertSettled(t, "CR-1", 5); lv.Sold != c.sold {
				t.Errorf("CR-1 = %+v, want %d sold", lv, c.sold)
			}
			if rec := b.row(t, o.OrderID); rec.CancelledAfterSale() && rec.ReturnedAt == nil {
				t.Errorf("row %+v: the sweep did not finish the give-back", rec)
			}
		})
	}
}

func btoi(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// TestCheckoutTasksBadInput sends every hostile confirm and cancel payload
// through a real worker: each task is archived with a one-line reason,
// never retried, nothing changes, and the worker goes on serving. Then the
// tasks that read fine but change nothing: a confirm of a rejected order,
// a cancel of a failed one, and an order that has no row.
func TestCheckoutTasksBadInput(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "BI-1", 5)
	h := b.handler(t, HandlerConfig{})
	b.startWorker(t, h, 4)
	ctx := context.Background()
	held := heldOrder("bi-held", "c-1", "BI-1", 2, "10m")
	if _, err := b.client.Submit(ctx, held); err != nil {
		t.Fatal(err)
	}
	b.waitRows(t, []string{held.OrderID}, 30*time.Second)

	for i, c := range ordertest.HostileActions {
		typ := []string{orders.ConfirmTaskType, orders.CancelTaskType}[i%2]
		task := asynq.NewTask(typ, c.Payload, asynq.Queue(orders.Queue), asynq.MaxRetry(3),
			asynq.TaskID(fmt.Sprintf("hostile-action-%d", i)), asynq.Retention(time.Hour))
		if _, err := b.ac.Enqueue(task); err != nil {
			t.Fatalf("Enqueue(%s): %v", c.Name, err)
		}
	}
	testsvc.Poll(t, time.Minute, "every hostile checkout task to be archived", func() bool {
		qi, err := b.insp.GetQueueInfo(orders.Queue)
		return err == nil && qi.Archived == len(ordertest.HostileActions)
	})
	archived, err := b.insp.ListArchivedTasks(orders.Queue, asynq.PageSize(100))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range archived {
		if !strings.HasPrefix(ti.LastErr, "invalid: ") || strings.Contains(ti.LastErr, "\n") || len(ti.LastErr) > 300 || ti.Retried != 0 {
			t.Errorf("archived %s: last error %q after %d retries, want one short \"invalid: …\" line and no retry", ti.ID, ti.LastErr, ti.Retried)
		}
	}
	if rec := b.row(t, held.OrderID); rec.Status != orders.StatusHeld {
		t.Errorf("the held order after hostile tasks = %s, want still held", rec.Status)
	}
	if lv := b.levels(t, "BI-1"); lv.Held != 2 || lv.Available != 3 {
		t.Errorf("BI-1 = %+v after hostile tasks, want 2 held, 3 available", lv)
	}

	// Readable, but nothing to move.
	rejected := oneLine("bi-rejected", "c-1", "BI-1", 9)
	failed := oneLine("bi-failed", "c-1", "BI-1", 1)
	if _, _, err := b.store.Decide(ctx, orders.Record{OrderID: failed.OrderID, Status: orders.StatusFailed, Reason: orders.ReasonRetriesExhausted,
		Lines: failed.Lines}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.Submit(ctx, rejected); err != nil {
		t.Fatal(err)
	}
	b.waitRows(t, []string{rejected.OrderID}, 30*time.Second)
	for _, a := range []struct{ typ, id string }{
		{orders.ConfirmTaskType, rejected.OrderID}, {orders.CancelTaskType, rejected.OrderID},
		{orders.CancelTaskType, failed.OrderID}, {orders.ConfirmTaskType, "bi-never"},
	} {
		if err := h.ProcessAction(ctx, actionTask(t, a.typ, a.id, "")); err != nil {
			t.Errorf("ProcessAction(%s %s) = %v, want nil (nothing to move)", a.typ, a.id, err)
		}
	}
	for id, want := range map[string]orders.Status{rejected.OrderID: orders.StatusRejected, failed.OrderID: orders.StatusFailed} {
		if rec := b.row(t, id); rec.Status != want || rec.ChangedAt != nil {
			t.Errorf("%s = %+v, want %s, never moved", id, rec, want)
		}
	}
	if lv := b.levels(t, "BI-1"); lv.Held != 2 || lv.Available != 3 || lv.Sold != 0 {
		t.Errorf("BI-1 = %+v, want unchanged", lv)
	}

	// The worker still serves: the held order is confirmed.
	b.enqueueAction(t, orders.ConfirmTaskType, held.OrderID, "")
	b.waitMoved(t, []string{held.OrderID})
	if lv := b.assertSettled(t, "BI-1", 5); lv.Sold != 2 {
		t.Errorf("BI-1 = %+v, want 2 sold", lv)
	}
}

// TestHoldOverMaxRejected: a hold longer than the worker's --max-hold is
// rejected with the reason, and takes nothing; a hold within it is held.
func TestHoldOverMaxRejected(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "MH-1", 5)
	h := b.handler(t, HandlerConfig{MaxHold: 5 * time.Minute})
	ctx := context.Background()
	for _, o := range []orders.Order{heldOrder("mh-long", "c-1", "MH-1", 1, "10m"), heldOrder("mh-ok", "c-1", "MH-1", 1, "5m")} {
		task, err := b.client.NewTask(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.ProcessTask(ctx, task); err != nil {
			t.Fatalf("ProcessTask(%s) = %v", o.OrderID, err)
		}
	}
	if rec := b.row(t, "mh-long"); rec.Status != orders.StatusRejected || rec.Reason != "invalid: hold 10m0s is over the maximum of 5m0s" {
		t.Errorf("mh-long = %s/%q, want rejected, invalid: hold 10m0s is over the maximum of 5m0s", rec.Status, rec.Reason)
	}
	rec := b.row(t, "mh-ok")
	if rec.Status != orders.StatusHeld || rec.HoldUntil == nil || rec.HoldToken == "" {
		t.Errorf("mh-ok = %+v, want held with a deadline and a token", rec)
	}
	if lv := b.levels(t, "MH-1"); lv.Held != 1 || lv.Available != 4 {
		t.Errorf("MH-1 = %+v, want 1 held", lv)
	}
	// The hold in Redis outlives the checkout's deadline: the sweeper's
	// hold TTL (5m) or the hold, whichever is longer.
	score, err := b.rdb.ZScore(ctx, "sg:{MH-1}:deadlines", "mh-ok").Result()
	if err != nil || time.UnixMilli(int64(score)).Before(*rec.HoldUntil) {
		t.Errorf("Redis deadline %v, %v; want at or after the checkout's %v", time.UnixMilli(int64(score)), err, rec.HoldUntil)
	}
	// A redelivery of the held order changes nothing.
	task, _ := b.client.NewTask(ctx, heldOrder("mh-ok", "c-1", "MH-1", 1, "5m"))
	if err := h.ProcessTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	if lv := b.levels(t, "MH-1"); lv.Held != 1 || lv.Available != 4 {
		t.Errorf("MH-1 after a redelivery = %+v, want 1 held", lv)
	}
	if got := b.row(t, "mh-ok"); got.Status != orders.StatusHeld || !slices.Equal(got.SKUs(), []string{"MH-1"}) {
		t.Errorf("mh-ok after a redelivery = %+v", got)
	}
}
