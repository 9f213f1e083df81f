package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestTwoWorkersDuplicateDeliveries: two worker processes share one sale in
// which every order is delivered twice (two tasks, one order id), so both
// processes often handle the same order at the same moment. Every order
// ends in one row, and stock moves once per confirmed order.
func TestTwoWorkersDuplicateDeliveries(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	const units, buyers = 60, 150
	s.mustRun(t, "stockctl", "set", "TW-1", fmt.Sprint(units))
	s.startWorker(t, nil, "--concurrency", "16")
	s.startWorker(t, nil, "--concurrency", "16")

	opt := asynq.RedisClientOpt{Addr: s.rdb.Options().Addr, DB: s.rdb.Options().DB}
	ac := asynq.NewClient(opt)
	defer ac.Close()
	ids := make([]string, buyers)
	for i := range ids {
		ids[i] = fmt.Sprintf("tw-%d", i)
		now := time.Now().UTC()
		payload, err := orders.Encode(orders.Order{OrderID: ids[i], CustomerID: fmt.Sprintf("c-%d", i),
			Lines: []orders.Line{{SKU: "TW-1", Qty: 1}}, PlacedAt: &now})
		if err != nil {
			t.Fatal(err)
		}
		// The same order under two task ids: Asynq's TaskID dedup is
		// bypassed, as a producer retrying with a fresh id would.
		for _, copy := range []string{"a", "b"} {
			task := asynq.NewTask(orders.TaskType, payload, asynq.Queue(orders.Queue),
				asynq.TaskID(ids[i]+"-"+copy), asynq.MaxRetry(5), asynq.Retention(time.Hour))
			if _, err := ac.Enqueue(task); err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
		}
	}

	insp := asynq.NewInspector(opt)
	defer insp.Close()
	testsvc.Poll(t, 2*time.Minute, "both copies of every order to be processed", func() bool {
		qi, err := insp.GetQueueInfo(orders.Queue)
		return err == nil && qi.Pending == 0 && qi.Active == 0 && qi.Retry == 0 && qi.Completed+qi.Archived == 2*buyers
	})
	if qi, _ := insp.GetQueueInfo(orders.Queue); qi.Archived != 0 {
		t.Errorf("%d tasks archived, want 0", qi.Archived)
	}

	pool, err := pgxpoolFor(t, envOf(s.env, "DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := orderstore.New(pool).Stats(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	if st.Decided != buyers || st.Confirmed != units || st.Reasons[orders.ReasonOutOfStock] != buyers-units {
		t.Errorf("Stats = %+v, want %d rows: %d confirmed, %d out_of_stock", st, buyers, units, buyers-units)
	}
	if r := s.run(t, nil, "stockctl", "reconcile"); r.code != 0 {
		t.Errorf("reconcile: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
