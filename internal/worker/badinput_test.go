package worker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orders/ordertest"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestBadInputThroughWorker sends the whole hostile catalogue through a real
// worker. Each payload gets a clear reason (a rejected row, or an archived
// task when it has no usable order id), stock stays unchanged, nothing sits
// in retry, and the worker goes on serving.
func TestBadInputThroughWorker(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "SKU-1", 50)
	b.startWorker(t, b.handler(t, HandlerConfig{}), 8)
	ctx := context.Background()

	var withID []string
	noID := 0
	for i, c := range ordertest.Hostile {
		// Raw tasks: the storefront client validates, so go around it the
		// way a buggy or hostile producer would.
		task := asynq.NewTask(orders.TaskType, c.Payload, asynq.Queue(orders.Queue), asynq.MaxRetry(3),
			asynq.TaskID(fmt.Sprintf("hostile-%d", i)), asynq.Retention(time.Hour))
		if _, err := b.ac.Enqueue(task); err != nil {
			t.Fatalf("Enqueue(%s): %v", c.Name, err)
		}
		if c.HasOrderID {
			withID = append(withID, c.OrderID)
		} else {
			noID++
		}
	}
	if len(ordertest.Hostile) < 25 {
		t.Fatalf("catalogue has %d payloads, want at least 25", len(ordertest.Hostile))
	}

	b.waitRows(t, withID, time.Minute)
	testsvc.Poll(t, time.Minute, fmt.Sprintf("%d id-less payloads to be archived", noID), func() bool {
		qi, err := b.insp.GetQueueInfo(orders.Queue)
		return err == nil && qi.Archived == noID
	})

	for _, c := range ordertest.Hostile {
		if !c.HasOrderID {
			continue
		}
		rec, err := b.store.Get(ctx, c.OrderID)
		if err != nil {
			t.Errorf("%s: Get(%s): %v", c.Name, c.OrderID, err)
			continue
		}
		if rec.Status != orders.StatusRejected || !strings.HasPrefix(rec.Reason, "invalid: ") || strings.Contains(rec.Reason, "\n") {
			t.Errorf("%s: row = %s/%q, want rejected with a one-line \"invalid: …\" reason", c.Name, rec.Status, rec.Reason)
		}
	}
	archived, err := b.insp.ListArchivedTasks(orders.Queue, asynq.PageSize(100))
	if err != nil {
		t.Fatalf("ListArchivedTasks: %v", err)
	}
	for _, ti := range archived {
		if !strings.HasPrefix(ti.LastErr, "invalid: ") || strings.Contains(ti.LastErr, "\n") || len(ti.LastErr) > 300 {
			t.Errorf("archived task %s last error = %q, want one short \"invalid: …\" line", ti.ID, ti.LastErr)
		}
		if ti.Retried != 0 {
			t.Errorf("archived task %s was retried %d times, want 0 (bad input is never retried)", ti.ID, ti.Retried)
		}
	}
	qi, err := b.insp.GetQueueInfo(orders.Queue)
	if err != nil {
		t.Fatalf("GetQueueInfo: %v", err)
	}
	if qi.Retry != 0 || qi.Pending != 0 || qi.Active != 0 {
		t.Errorf("queue = %d retry, %d pending, %d active; want all 0", qi.Retry, qi.Pending, qi.Active)
	}
	if lv := b.levels(t, "SKU-1"); lv.Available != 50 || lv.Held != 0 || lv.Sold != 0 {
		t.Errorf("SKU-1 = %+v after hostile input, want untouched 50 available", lv)
	}

	// The worker still serves.
	good := oneLine("after-hostile", "c-1", "SKU-1", 5)
	if _, err := b.client.Submit(ctx, good); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	if st := b.waitRows(t, []string{good.OrderID}, 30*time.Second); st.Confirmed != 1 {
		t.Errorf("good order after hostile input: %+v, want confirmed", st)
	}
	b.assertSettled(t, "SKU-1", 50)
}
