package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// checkoutFigures is a checkout scenario's outcome, printed as one line.
type checkoutFigures struct {
	Orders, Held, Confirmed, Cancelled, Rejected, Other int
	Lost, Oversold, Leaked                              int64
	Seconds                                             float64
}

func (f checkoutFigures) String() string {
	return fmt.Sprintf("orders=%d held=%d confirmed=%d cancelled=%d rejected=%d other=%d lost=%d oversold=%d leaked=%d seconds=%.0f",
		f.Orders, f.Held, f.Confirmed, f.Cancelled, f.Rejected, f.Other, f.Lost, f.Oversold, f.Leaked, f.Seconds)
}

// placeCheckouts submits the sale's buyers as checkouts (a 10m hold each)
// through enqueue file, and waits until each is held or rejected.
func (c *cluster) placeCheckouts(s sale) {
	c.t.Helper()
	var b strings.Builder
	for i := 1; i <= s.buyers; i++ {
		fmt.Fprintf(&b, `{"order_id":"%s-%d","customer_id":"c-%d","lines":[{"sku":%q,"qty":1}],"hold":"10m"}`+"\n", s.run, i, i, s.sku)
	}
	path := filepath.Join(c.t.TempDir(), "checkouts.ndjson")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
	c.must("enqueue", "file", path)
	c.waitRows(s, s.buyers, 2*time.Minute)
}

// statusCount counts the sale's rows in status.
func (c *cluster) statusCount(s sale, status orders.Status) int {
	var n int
	if err := c.pool.QueryRow(context.Background(), `SELECT count(*) FROM orders WHERE order_id LIKE $1 AND status = $2`,
		s.run+"-%", string(status)).Scan(&n); err != nil {
		return -1
	}
	return n
}

// TestKillAfterTransition: a storefront confirms every checkout of a sale,
// or cancels every one, or cancels every one after its sale (a return), and
// a worker is SIGKILLed at after_transition, its 20th move: the order's
// row has moved in Postgres, its holds (or its sold units) have not yet
// followed in Redis. A second worker carries on. The killed worker's
// leased tasks come back through Asynq's lease recovery, and each retry
// finds its row moved and finishes the rest, exactly once: every unit of a
// confirmed checkout sold, every unit of a cancelled one available, none
// left held, reconcile clean.
func TestKillAfterTransition(t *testing.T) {
	slow(t)
	t.Parallel()
	for _, tt := range []struct {
		name string
		typ  string
		// from is where the checkouts stand when the storefront calls:
		// held, or confirmed (then the cancels are returns of sales).
		from orders.Status
		want orders.Status
	}{
		{"confirm", orders.ConfirmTaskType, orders.StatusHeld, orders.StatusConfirmed},
		{"cancel", orders.CancelTaskType, orders.StatusHeld, orders.StatusCancelled},
		{"cancel-after-sale", orders.CancelTaskType, orders.StatusConfirmed, orders.StatusCancelled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, clusterOpts{})
			s := newSale(t.Name(), 100, 300)
			c.stock(s)
			c.startWorker(nil, "--concurrency", "4")
			c.placeCheckouts(s)
			held := c.held(s)
			if len(held) != s.units {
				t.Fatalf("%d of %d buyers held, want %d (the units)", len(held), s.buyers, s.units)
			}
			if tt.from == orders.StatusConfirmed {
				c.act(orders.ConfirmTaskType, held)
				testsvc.Poll(t, 2*time.Minute, "every checkout to be confirmed", func() bool { return c.statusCount(s, orders.StatusConfirmed) == s.units })
			}
			// The victim joins now, so that its 20th move is one of these.
			victim := c.startWorker([]string{"STOCKGATE_FAILPOINTS=after_transition=kill@20"}, "--concurrency", "16")
			c.act(tt.typ, held)
			testsvc.Poll(t, 2*time.Minute, "the worker to die at after_transition", victim.Exited)
			if want := "failpoint: after_transition hit 20: SIGKILL"; !strings.Contains(victim.Output(), want) {
				t.Fatalf("the worker exited (%v) without %q:\n%s", victim.Err(), want, victim.Tail(2000))
			}
			left := c.statusCount(s, tt.from)
			if left == 0 {
				t.Fatalf("every checkout had moved when the worker died; the scenario tested nothing")
			}
			t.Logf("killed after a %s's move with %d of %d orders still %s", tt.name, left, len(held), tt.from)

			f := c.settleCheckout(s, tt.want, recovery)
			if f.Held != 0 || f.Rejected != s.buyers-s.units || f.Other != 0 ||
				tt.want == orders.StatusConfirmed && f.Confirmed != s.units || tt.want == orders.StatusCancelled && f.Cancelled != s.units {
				t.Errorf("%s; want every checkout %s and every other buyer rejected", f, tt.want)
			}
		})
	}
}

// held lists the sale's held orders.
func (c *cluster) held(s sale) []string {
	c.t.Helper()
	rows, err := c.pool.Query(context.Background(), `SELECT order_id FROM orders WHERE order_id LIKE $1 AND status = 'held'`, s.run+"-%")
	if err != nil {
		c.t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			c.t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

// act is the storefront's calls: one order:confirm or order:cancel task
// per order, as the client's Confirm and Cancel enqueue them (the client
// would wait for each; here the scenario does).
func (c *cluster) act(typ string, ids []string) {
	c.t.Helper()
	ac := asynq.NewClientFromRedisClient(c.rdb)
	for _, id := range ids {
		task, err := orders.NewActionTask(context.Background(), typ, orders.Action{OrderID: id, Reason: "chaos"}, orders.TaskOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		if _, err := ac.Enqueue(task); err != nil {
			c.t.Fatalf("enqueue %s %s: %v", typ, id, err)
		}
	}
}

// settleCheckout waits (up to timeout) until every row of the sale stands
// in want or rejected and no hold is left, and checks what cluster.settle
// checks: one row each, I1, sold = the confirmed quantities, nothing held,
// reconcile clean. It prints the figures line either way.
func (c *cluster) settleCheckout(s sale, want orders.Status, timeout time.Duration) checkoutFigures {
	c.t.Helper()
	t := c.t
	ctx := context.Background()
	// The rows move first, before the kill for some; their holds follow
	// once the dead worker's tasks come back, so both are waited for.
	moved := func() bool { return c.statusCount(s, want)+c.statusCount(s, orders.StatusRejected) == s.buyers }
	settled := func() bool {
		lv, err := stock.New(c.rdb, stock.Config{}).Show(ctx, s.sku)
		if err != nil || len(lv) != 1 || lv[0].Held != 0 {
			return false
		}
		n, err := c.rdb.ZCard(ctx, stock.DeadlinesKey(s.sku)).Result()
		return err == nil && n == 0
	}
	quiet := eventually(timeout, func() bool { return moved() && settled() })
	f := checkoutFigures{Orders: s.buyers, Seconds: time.Since(c.start).Seconds()}
	var rows int
	var confirmedQty, stocked int64
	if err := c.pool.QueryRow(ctx, `SELECT count(*),
		count(*) FILTER (WHERE status = 'held'),
		count(*) FILTER (WHERE status = 'confirmed'),
		count(*) FILTER (WHERE status = 'cancelled'),
		count(*) FILTER (WHERE status = 'rejected'),
		coalesce((SELECT sum(qty) FROM order_lines l JOIN orders o USING (order_id)
			WHERE o.status = 'confirmed' AND l.sku = $2), 0),
		coalesce((SELECT stocked FROM products WHERE sku = $2), -1)
		FROM orders WHERE order_id LIKE $1`, s.run+"-%", s.sku).Scan(
		&rows, &f.Held, &f.Confirmed, &f.Cancelled, &f.Rejected, &confirmedQty, &stocked); err != nil {
		t.Fatalf("read outcome: %v", err)
	}
	f.Other = rows - f.Held - f.Confirmed - f.Cancelled - f.Rejected
	lv, err := stock.New(c.rdb, stock.Config{}).Show(ctx, s.sku)
	if err != nil {
		t.Fatalf("show %s: %v", s.sku, err)
	}
	l := lv[0]
	f.Lost = int64(s.buyers - rows)
	f.Oversold = max(0, confirmedQty-stocked, l.Sold-stocked)
	f.Leaked = l.Held + max(0, stocked-l.Total())
	line := fmt.Sprintf("chaos: %-34s %s", s.name, f)
	printFigures(line)
	if !quiet {
		t.Errorf("after %v: %d checkouts still held, or units still held, or orders left in the deadlines set", timeout, f.Held)
	}
	c.checkBooks(f.Lost, f.Oversold, f.Leaked, l, stocked, confirmedQty)
	return f
}
