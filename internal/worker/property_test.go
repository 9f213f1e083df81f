package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/stockgate/stockgate/internal/catalog"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/ratelimit"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/internal/testsvc/testdb"
)

// fakeClock is the handlers' and the sweeper's clock. Handlers running in
// goroutines read it while the test advances it, hence the mutex.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// errInjected is what the hook returns at the step chosen to fail. A failed
// non-final attempt returns at once, so its state is what a crash at that
// step leaves; on the last attempt it sends the handler down the
// retries-exhausted path instead.
var errInjected = errors.New("injected failure")

// Where a delivery fails. The first entry is "" so that a delivery shrinks
// to one that does not fail. An order's first deliveries fail more often:
// only an order without a row reaches after_reserve and after_persist.
var (
	propFailSteps      = []string{"", "", "", "", "after_reserve", "after_persist", "before_commit", "before_ack"}
	propFreshFailSteps = []string{"", "after_reserve", "after_persist", "before_commit", "before_ack"}
)

// attemptContexts returns contexts carrying Asynq's task metadata for the
// first attempt of a task with retries left, for a retry (retry count 1 of
// 3: a failed attempt, or a lease that expired under a worker that died,
// which is what makes the handler look the row up first), and for a last
// attempt (retry count == max retry), which is what sends the handler down
// the retries-exhausted path. Asynq keeps that metadata under a key in an
// internal package and sets it only in its processor, so a real server runs
// throwaway tasks of each kind; the test keeps the values of the contexts it
// was handed, without their deadlines.
func attemptContexts(t *testing.T, ropt asynq.RedisClientOpt) (first, retry, last context.Context) {
	t.Helper()
	const typ, queue = "prop:capture", "prop-capture"
	got := make(chan context.Context, 3)
	srv := asynq.NewServer(ropt, asynq.Config{
		Concurrency:       1,
		Queues:            map[string]int{queue: 1},
		LogLevel:          asynq.ErrorLevel,
		TaskCheckInterval: 10 * time.Millisecond,
		ShutdownTimeout:   5 * time.Second,
		RetryDelayFunc:    func(int, error, *asynq.Task) time.Duration { return 10 * time.Millisecond },
	})
	mux := asynq.NewServeMux()
	mux.HandleFunc(typ, func(ctx context.Context, task *asynq.Task) error {
		got <- context.WithoutCancel(ctx)
		// The task with retries fails once, so that it comes back as a retry.
		if n, _ := asynq.GetRetryCount(ctx); n == 0 && string(task.Payload()) == "3" {
			return errors.New("fail once, to be retried")
		}
		return nil
	})
	if err := srv.Start(mux); err != nil {
		t.Fatalf("asynq Start: %v", err)
	}
	defer srv.Shutdown()
	ac := asynq.NewClient(ropt)
	defer func() { _ = ac.Close() }()
	for _, maxRetry := range []int{3, 0} {
		task := asynq.NewTask(typ, []byte(strconv.Itoa(maxRetry)), asynq.Queue(queue), asynq.MaxRetry(maxRetry))
		if _, err := ac.Enqueue(task); err != nil {
			t.Fatalf("Enqueue(capture, max retry %d): %v", maxRetry, err)
		}
	}
	for range 3 {
		select {
		case ctx := <-got:
			n, _ := asynq.GetRetryCount(ctx)
			switch m, ok := asynq.GetMaxRetry(ctx); {
			case ok && n == 0 && m == 3:
				first = ctx
			case ok && n == 1 && m == 3:
				retry = ctx
			case ok && n == 0 && m == 0:
				last = ctx
			default:
				t.Fatalf("captured context has retry count %d, max retry %d (ok=%v)", n, m, ok)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the asynq server ran no capture task within 30s")
		}
	}
	if first == nil || retry == nil || last == nil {
		t.Fatal("did not capture a first-attempt, a retry and a last-attempt context")
	}
	return first, retry, last
}

// propEnv is what every check shares: one Redis database (flushed at the
// start of each check) and one Postgres database, which checks share safely
// because each uses its own order ids and SKUs.
type propEnv struct {
	rdb                *redis.Client
	pool               *pgxpool.Pool
	gate               *stock.Gate
	store              *orderstore.Store
	catalog            *catalog.Catalog
	first, retry, last context.Context
	log                *slog.Logger
	seq                atomic.Int64
	cov                propCoverage
}

// propCoverage counts what the checks exercised, so that a run that passes
// also says it reached the paths the property is about.
type propCoverage struct {
	mu       sync.Mutex
	fired    map[string]int // injected failures, by step ("last:" prefix on a last attempt)
	statuses map[string]int // final rows, by status
}

func (c *propCoverage) add(m *map[string]int, k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[k]++
}

// propOrder is one order id with its usual payload and a conflicting one
// (same id, another hash).
type propOrder struct {
	id       string
	payloads [2]orders.Order // [0] the usual payload, [1] the conflicting one
	tasks    [2]*asynq.Task
}

// delivery is one ProcessTask call, drawn before any goroutine starts.
type delivery struct {
	order   int
	payload int // index into propOrder.payloads
	failAt  string
	last    bool
	retry   bool // a retry, which looks the row up first; else a first attempt, which does not
}

func (d delivery) String() string {
	return fmt.Sprintf("order %d payload %d fail_at %q last %v retry %v", d.order, d.payload, d.failAt, d.last, d.retry)
}

// propRun is one rapid check.
type propRun struct {
	env       *propEnv
	clock     *fakeClock
	sweeper   *Sweeper
	skus      []string
	stocked   map[string]int64
	orders    []propOrder
	ids       []string
	delivered map[[2]int]bool // (order, payload) pairs delivered at least once
	fresh     int             // orders [0, fresh) were handed to a delivery
	// gone holds the (order id, SKU) tombstones that expired (deleted, as
	// their retention would): the units stay sold, and a later delivery of
	// the order must neither sell them again nor give them back.
	gone map[[2]string]bool
	// last is each order's status at the previous check: every change
	// must be a move the state machine has (orders.CanMove).
	last map[string]orders.Status
}

func newPropRun(rt *rapid.T, env *propEnv) *propRun {
	ctx := context.Background()
	if err := env.rdb.FlushDB(ctx).Err(); err != nil {
		rt.Fatalf("FLUSHDB: %v", err)
	}
	prefix := fmt.Sprintf("p%d", env.seq.Add(1))
	r := &propRun{
		env:       env,
		clock:     &fakeClock{now: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)},
		stocked:   map[string]int64{},
		delivered: map[[2]int]bool{},
		gone:      map[[2]string]bool{},
		last:      map[string]orders.Status{},
	}
	var err error
	r.sweeper, err = NewSweeper(env.gate, env.store, SweeperConfig{Now: r.clock.Now, Ledger: env.catalog, Logger: env.log})
	if err != nil {
		rt.Fatalf("NewSweeper: %v", err)
	}
	for _, name := range []string{"A", "B", "C"} {
		sku := prefix + "-" + name
		// Usually enough for a few orders, sometimes scarce or none: the
		// draw shrinks towards plenty.
		qty := 8 - rapid.Int64Range(0, 8).Draw(rt, "stock "+name+" short by")
		lv, err := env.gate.Set(ctx, sku, qty)
		if err != nil {
			rt.Fatalf("Set(%s, %d): %v", sku, qty, err)
		}
		if err := env.catalog.RecordStock(ctx, sku, lv.Total()); err != nil {
			rt.Fatalf("RecordStock(%s): %v", sku, err)
		}
		r.skus = append(r.skus, sku)
		r.stocked[sku] = lv.Total()
	}
	n := rapid.IntRange(1, 8).Draw(rt, "orders")
	for i := range n {
		o := propOrder{id: fmt.Sprintf("%s-o%d", prefix, i)}
		// Half the orders are checkouts, held until a confirm, a cancel or
		// their deadline; the draw shrinks towards plain orders.
		hold := rapid.SampledFrom([]string{"", "1m", "3m", "10m"}).Draw(rt, fmt.Sprintf("o%d hold", i))
		for p := range o.payloads {
			o.payloads[p] = orders.Order{OrderID: o.id, CustomerID: fmt.Sprintf("c%d", i),
				Lines: r.drawLines(rt, fmt.Sprintf("o%d payload %d", i, p)), Hold: hold}
		}
		if o.payloads[0].Hash() == o.payloads[1].Hash() {
			// Same lines, another customer: still a different order under this id.
			o.payloads[1].CustomerID += "x"
		}
		for p, po := range o.payloads {
			payload, err := orders.Encode(po)
			if err != nil {
				rt.Fatalf("Encode(%+v): %v", po, err)
			}
			o.tasks[p] = asynq.NewTask(orders.TaskType, payload)
		}
		r.orders = append(r.orders, o)
		r.ids = append(r.ids, o.id)
	}
	return r
}

// drawLines draws one to three lines on distinct SKUs.
func (r *propRun) drawLines(rt *rapid.T, label string) []orders.Line {
	skus := rapid.Permutation(r.skus).Draw(rt, label+" skus")
	n := rapid.IntRange(1, len(skus)).Draw(rt, label+" lines")
	lines := make([]orders.Line, n)
	for i := range lines {
		lines[i] = orders.Line{SKU: skus[i], Qty: rapid.SampledFrom([]int64{1, 1, 2, 3}).Draw(rt, label+" qty")}
	}
	return lines
}

func (r *propRun) drawDelivery(rt *rapid.T, order int) delivery {
	steps := propFailSteps
	if !r.delivered[[2]int{order, 0}] && !r.delivered[[2]int{order, 1}] {
		steps = propFreshFailSteps
	}
	return delivery{
		order:   order,
		payload: rapid.SampledFrom([]int{0, 0, 0, 1}).Draw(rt, "payload"),
		failAt:  rapid.SampledFrom(steps).Draw(rt, "fail_at"),
		last:    rapid.SampledFrom([]bool{false, false, false, true}).Draw(rt, "last_attempt"),
		retry:   rapid.Bool().Draw(rt, "retry"),
	}
}

// drawOrder picks any order: with several deliveries per order it is mostly
// one delivered before, so first deliveries come from nextOrder.
func (r *propRun) drawOrder(rt *rapid.T) int {
	return rapid.IntRange(0, len(r.orders)-1).Draw(rt, "order")
}

// pickOrder is a fresh order or a drawn one, half and half.
func (r *propRun) pickOrder(rt *rapid.T) int {
	if rapid.Bool().Draw(rt, "fresh_order") {
		return r.nextOrder(rt)
	}
	return r.drawOrder(rt)
}

// nextOrder is the first order never delivered yet, or a drawn one once
// every order was: the failures before and at the row need orders without one.
func (r *propRun) nextOrder(rt *rapid.T) int {
	if r.fresh < len(r.orders) {
		r.fresh++
		return r.fresh - 1
	}
	return r.drawOrder(rt)
}

// handler is a fresh handler per delivery, so that each delivery has its own
// failure; handlers keep no state of their own, as with separate workers.
func (r *propRun) handler(failAt string, last bool) (*Handler, error) {
	cfg := HandlerConfig{Now: r.clock.Now, Logger: r.env.log}
	if failAt != "" {
		fail := failOnceAt(failAt)
		cfg.hook = func(step string) error {
			err := fail(step)
			if err != nil {
				key := step
				if last {
					key = "last:" + step
				}
				r.env.cov.add(&r.env.cov.fired, key)
			}
			return err
		}
	}
	return NewHandler(Deps{Gate: r.env.gate, Store: r.env.store, Catalog: r.env.catalog, Ledger: r.env.catalog, Limiter: ratelimit.New(r.env.rdb)}, cfg)
}

// deliver runs one delivery and says what was wrong with its result, if
// anything. It runs in goroutines, so it reports rather than fails.
func (r *propRun) deliver(d delivery) error {
	h, err := r.handler(d.failAt, d.last)
	if err != nil {
		return fmt.Errorf("NewHandler: %w", err)
	}
	ctx := r.env.first
	switch {
	case d.last:
		ctx = r.env.last
	case d.retry:
		ctx = r.env.retry
	}
	err = h.ProcessTask(ctx, r.orders[d.order].tasks[d.payload])
	switch {
	case err == nil:
	case d.failAt == "":
		return fmt.Errorf("delivery %v: ProcessTask = %v, want nil (nothing was injected)", d, err)
	case !errors.Is(err, errInjected):
		return fmt.Errorf("delivery %v: ProcessTask = %v, want nil or the injected failure", d, err)
	}
	return nil
}

// Where a confirm or a cancel fails: between the row's move and its holds
// following it, or right before a commit.
var propActionFailSteps = []string{"", "", orders.StepAfterTransition, orders.StepBeforeCommit}

// act runs one order:confirm or order:cancel of an order, failing at
// failAt, and says what was wrong with its result, if anything.
func (r *propRun) act(typ string, order int, failAt string) error {
	h, err := r.handler(failAt, false)
	if err != nil {
		return fmt.Errorf("NewHandler: %w", err)
	}
	task, err := orders.NewActionTask(context.Background(), typ, orders.Action{OrderID: r.orders[order].id, Reason: "prop"}, orders.TaskOptions{})
	if err != nil {
		return err
	}
	err = h.ProcessAction(r.env.first, task)
	if err != nil && (failAt == "" || !errors.Is(err, errInjected)) {
		return fmt.Errorf("%s of order %d failing at %q: ProcessAction = %v, want nil or the injected failure", typ, order, failAt, err)
	}
	return nil
}

func (r *propRun) drawAction(rt *rapid.T) (typ string, order int, failAt string) {
	return rapid.SampledFrom([]string{orders.ConfirmTaskType, orders.CancelTaskType}).Draw(rt, "action"),
		r.drawOrder(rt), rapid.SampledFrom(propActionFailSteps).Draw(rt, "action_fail_at")
}

func (r *propRun) markDelivered(ds ...delivery) {
	for _, d := range ds {
		r.delivered[[2]int{d.order, d.payload}] = true
	}
}

// concurrently runs fns at the same moment and returns their errors.
func concurrently(fns ...func() error) error {
	start := make(chan struct{})
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, fn := range fns {
		wg.Go(func() {
			<-start
			errs[i] = fn()
		})
	}
	close(start)
	wg.Wait()
	return errors.Join(errs...)
}

func (r *propRun) sweep() error {
	if _, err := r.sweeper.SweepOnce(context.Background()); err != nil {
		return fmt.Errorf("SweepOnce at %v: %w", r.clock.Now().Format(time.TimeOnly), err)
	}
	return nil
}

func (r *propRun) actions() map[string]func(*rapid.T) {
	return map[string]func(*rapid.T){
		"deliver": func(rt *rapid.T) {
			d := r.drawDelivery(rt, r.drawOrder(rt))
			r.markDelivered(d)
			if err := r.deliver(d); err != nil {
				rt.Fatal(err)
			}
		},
		"deliver_new": func(rt *rapid.T) {
			d := r.drawDelivery(rt, r.nextOrder(rt))
			r.markDelivered(d)
			if err := r.deliver(d); err != nil {
				rt.Fatal(err)
			}
		},
		// The same order delivered to two handlers at once, as when a lease
		// runs out under a slow worker; each copy may fail on its own.
		"deliver_twice_at_once": func(rt *rapid.T) {
			o := r.pickOrder(rt)
			d1, d2 := r.drawDelivery(rt, o), r.drawDelivery(rt, o)
			r.markDelivered(d1, d2)
			if err := concurrently(func() error { return r.deliver(d1) }, func() error { return r.deliver(d2) }); err != nil {
				rt.Fatal(err)
			}
		},
		// A delivery racing a sweep: with the clock moved past the hold
		// deadline first, the sweeper may expire the very order the handler
		// is deciding (a hold left by an earlier failed attempt).
		"deliver_during_sweep": func(rt *rapid.T) {
			d := r.drawDelivery(rt, r.pickOrder(rt))
			if rapid.Bool().Draw(rt, "past_deadline_first") {
				r.clock.Advance(DefaultHoldTTL + time.Second)
			}
			r.markDelivered(d)
			if err := concurrently(func() error { return r.deliver(d) }, r.sweep); err != nil {
				rt.Fatal(err)
			}
		},
		"sweep": func(rt *rapid.T) {
			if err := r.sweep(); err != nil {
				rt.Fatal(err)
			}
		},
		"sweep_past_deadlines": func(rt *rapid.T) {
			r.clock.Advance(DefaultHoldTTL + time.Duration(rapid.IntRange(1, 60).Draw(rt, "extra_seconds"))*time.Second)
			if err := r.sweep(); err != nil {
				rt.Fatal(err)
			}
		},
		// An order's tombstones expire, as after the retention window: a
		// delivery that comes later (a storefront resubmitting an old id)
		// reserves afresh, finds the confirmed row, and must give the new
		// hold back instead of selling the units twice.
		"tombstones_expire": func(rt *rapid.T) {
			id := r.orders[r.drawOrder(rt)].id
			holds, _ := r.snapshot(rt)
			for k, h := range holds {
				if k[0] == id && h.state == "committed" {
					if err := r.env.rdb.Del(context.Background(), stock.HoldKey(k[1], k[0])).Err(); err != nil {
						rt.Fatalf("DEL tombstone: %v", err)
					}
					r.gone[k] = true
				}
			}
		},
		// A storefront confirming or cancelling a checkout (or a sale).
		"confirm_or_cancel": func(rt *rapid.T) {
			typ, o, failAt := r.drawAction(rt)
			if err := r.act(typ, o, failAt); err != nil {
				rt.Fatal(err)
			}
		},
		// A confirm racing a cancel, two cancels, two confirms, of one order.
		"actions_at_once": func(rt *rapid.T) {
			typ1, o, fail1 := r.drawAction(rt)
			typ2 := rapid.SampledFrom([]string{orders.ConfirmTaskType, orders.CancelTaskType}).Draw(rt, "second_action")
			fail2 := rapid.SampledFrom(propActionFailSteps).Draw(rt, "second_action_fail_at")
			if err := concurrently(func() error { return r.act(typ1, o, fail1) }, func() error { return r.act(typ2, o, fail2) }); err != nil {
				rt.Fatal(err)
			}
		},
		// A confirm or cancel racing the sweep, maybe past the deadlines,
		// or a delivery of the same order.
		"action_during_sweep": func(rt *rapid.T) {
			typ, o, failAt := r.drawAction(rt)
			if rapid.Bool().Draw(rt, "past_checkout_deadline_first") {
				r.clock.Advance(time.Duration(rapid.IntRange(50, 200).Draw(rt, "seconds")) * time.Second)
			}
			other := r.sweep
			if rapid.Bool().Draw(rt, "against_a_delivery") {
				d := r.drawDelivery(rt, o)
				r.markDelivered(d)
				other = func() error { return r.deliver(d) }
			}
			if err := concurrently(func() error { return r.act(typ, o, failAt) }, other); err != nil {
				rt.Fatal(err)
			}
		},
		// The "returned" markers of an order whose give-back is recorded
		// expire, as after the retention window: a later delivery holds
		// afresh and must give that hold back, never the sale's units again.
		"markers_expire": func(rt *rapid.T) {
			id := r.orders[r.drawOrder(rt)].id
			holds, rows := r.snapshot(rt)
			if row, ok := rows[id]; !ok || !row.returned {
				return
			}
			for k, h := range holds {
				if k[0] == id && h.state == "returned" {
					if err := r.env.rdb.Del(context.Background(), stock.HoldKey(k[1], k[0])).Err(); err != nil {
						rt.Fatalf("DEL marker: %v", err)
					}
				}
			}
		},
		"advance_clock": func(rt *rapid.T) {
			r.clock.Advance(time.Duration(rapid.IntRange(1, 400).Draw(rt, "seconds")) * time.Second)
		},
		"": r.checkSteady,
	}
}

type holdState struct {
	qty   int64
	state string // "held" or "committed"; "" when there is no hold
}

type rowState struct {
	status orders.Status
	lines  map[string]int64
	// afterSale is a cancellation after the sale; returned, one whose
	// units are recorded as given back (returned_at).
	afterSale, returned bool
}

// snapshot reads every hold of this run's orders on its SKUs, and their rows.
func (r *propRun) snapshot(rt *rapid.T) (map[[2]string]holdState, map[string]rowState) {
	ctx := context.Background()
	pipe := r.env.rdb.Pipeline()
	cmds := map[[2]string]*redis.SliceCmd{}
	for _, id := range r.ids {
		for _, sku := range r.skus {
			cmds[[2]string{id, sku}] = pipe.HMGet(ctx, stock.HoldKey(sku, id), "qty", "state")
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		rt.Fatalf("read holds: %v", err)
	}
	holds := map[[2]string]holdState{}
	for k, cmd := range cmds {
		v := cmd.Val()
		if v[0] == nil {
			continue
		}
		qty, err := strconv.ParseInt(v[0].(string), 10, 64)
		if err != nil {
			rt.Fatalf("hold %v has qty %v", k, v[0])
		}
		state, _ := v[1].(string)
		holds[k] = holdState{qty: qty, state: state}
	}

	rows := map[string]rowState{}
	pgRows, err := r.env.pool.Query(ctx, `
		SELECT o.order_id, o.status, o.previous_status, o.returned_at IS NOT NULL, coalesce(l.sku, ''), coalesce(l.qty, 0)
		FROM orders o LEFT JOIN order_lines l ON l.order_id = o.order_id
		WHERE o.order_id = ANY($1::text[])`, r.ids)
	if err != nil {
		rt.Fatalf("read rows: %v", err)
	}
	defer pgRows.Close()
	for pgRows.Next() {
		var id, status, previous, sku string
		var returned bool
		var qty int64
		if err := pgRows.Scan(&id, &status, &previous, &returned, &sku, &qty); err != nil {
			rt.Fatalf("scan rows: %v", err)
		}
		row, ok := rows[id]
		if !ok {
			row = rowState{status: orders.Status(status), lines: map[string]int64{}, returned: returned,
				afterSale: status == string(orders.StatusCancelled) && previous == string(orders.StatusConfirmed)}
		}
		if sku != "" {
			row.lines[sku] = qty
		}
		rows[id] = row
	}
	if err := pgRows.Err(); err != nil {
		rt.Fatalf("read rows: %v", err)
	}
	return holds, rows
}

// checkSteady runs after every step:
//   - I1: for each SKU, stocked = available + held + sold, available >= 0;
//   - units are sold only for confirmed orders, on their row's lines and
//     quantities (a committed hold belongs to a confirmed row's line);
//   - a confirmed order is never restocked: each line of its row still has
//     its hold, held or committed, with the row's quantity.
func (r *propRun) checkSteady(rt *rapid.T) {
	rt.Helper()
	levels, err := r.env.gate.Show(context.Background(), r.skus...)
	if err != nil {
		rt.Fatalf("Show: %v", err)
	}
	for _, lv := range levels {
		if lv.Total() != r.stocked[lv.SKU] || lv.Available < 0 || lv.Held < 0 || lv.Sold < 0 {
			rt.Fatalf("I1: %s = %+v (total %d), want total %d with no negative counter",
				lv.SKU, lv, lv.Total(), r.stocked[lv.SKU])
		}
	}
	holds, rows := r.snapshot(rt)
	for k, h := range holds {
		row, ok := rows[k[0]]
		switch h.state {
		case "committed":
			// Sold: for a confirmed row's line, or for a cancellation after
			// the sale whose give-back a crash cut off (Postgres moves first).
			if !ok || row.lines[k[1]] != h.qty || row.status != orders.StatusConfirmed && !(row.afterSale && !row.returned) {
				rt.Fatalf("order %s: %d units of %s sold, but its row is %+v (present %v); want a confirmed row with that line",
					k[0], h.qty, k[1], row, ok)
			}
		case "returned":
			// Given back once: only a cancellation after the sale's line.
			if !ok || !row.afterSale || row.lines[k[1]] != h.qty {
				rt.Fatalf("order %s: %d units of %s given back, but its row is %+v (present %v); want a cancellation after the sale",
					k[0], h.qty, k[1], row, ok)
			}
		}
	}
	for id, row := range rows {
		if row.status != orders.StatusConfirmed && row.status != orders.StatusHeld {
			continue
		}
		// A confirmed order is never restocked, and a checkout keeps its
		// holds until it moves.
		for sku, qty := range row.lines {
			h := holds[[2]string{id, sku}]
			if h.qty != qty && !r.gone[[2]string{id, sku}] || row.status == orders.StatusHeld && h.state != "held" {
				rt.Fatalf("order %s is %s for %d of %s, but its hold there is %+v: its units went back to available",
					id, row.status, qty, sku, h)
			}
		}
	}
	// I2: rows move only as the state machine allows.
	for id, row := range rows {
		if prev, ok := r.last[id]; ok && prev != row.status && !orders.CanMove(prev, row.status) {
			rt.Fatalf("order %s moved from %s to %s: no such transition", id, prev, row.status)
		}
		r.last[id] = row.status
	}
}

// finish delivers every payload that was delivered once more, without
// failures, then sweeps once past every deadline, and checks the end state.
func (r *propRun) finish(rt *rapid.T) {
	ctx := context.Background()
	var pairs [][2]int
	for k := range r.delivered {
		pairs = append(pairs, k)
	}
	slices.SortFunc(pairs, func(a, b [2]int) int { return a[0]*2 + a[1] - (b[0]*2 + b[1]) })
	for _, k := range pairs {
		if err := r.deliver(delivery{order: k[0], payload: k[1]}); err != nil {
			rt.Fatalf("final redelivery: %v", err)
		}
	}
	// Past every deadline: the hold TTL's and the longest checkout's.
	r.clock.Advance(max(DefaultHoldTTL, 10*time.Minute) + time.Minute)
	if err := r.sweep(); err != nil {
		rt.Fatalf("final sweep: %v", err)
	}
	r.checkSteady(rt)

	holds, rows := r.snapshot(rt)
	for _, row := range rows {
		key := string(row.status)
		if row.afterSale {
			key += " after sale"
		}
		r.env.cov.add(&r.env.cov.statuses, key)
	}
	// I2: every delivered order id has exactly one terminal row (order_id is
	// the primary key, so "exactly one" is "one").
	for _, k := range pairs {
		id := r.orders[k[0]].id
		if _, ok := rows[id]; !ok {
			rt.Fatalf("I2: order %s was delivered but has no row", id)
		}
	}
	var n int
	if err := r.env.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE order_id = ANY($1::text[])`, r.ids).Scan(&n); err != nil {
		rt.Fatalf("count rows: %v", err)
	}
	if n != len(rows) {
		rt.Fatalf("I2: %d rows for %d order ids", n, len(rows))
	}
	// Every checkout ended (past its deadline it expired), and every
	// cancellation after the sale has its units back, recorded once.
	for id, row := range rows {
		if !row.status.Terminal() {
			rt.Fatalf("I2: order %s is still %s after the final sweep past every deadline", id, row.status)
		}
		if row.afterSale && !row.returned {
			rt.Fatalf("order %s was cancelled after its sale, but its units are not recorded as given back", id)
		}
	}
	var moves, afterSaleLines int
	if err := r.env.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM stock_movements WHERE op = 'cancel' AND order_id = ANY($1::text[])),
		(SELECT count(*) FROM order_lines l JOIN orders o USING (order_id)
			WHERE o.order_id = ANY($1::text[]) AND o.status = 'cancelled' AND o.previous_status = 'confirmed')`,
		r.ids).Scan(&moves, &afterSaleLines); err != nil {
		rt.Fatalf("count cancel movements: %v", err)
	}
	if moves != afterSaleLines {
		rt.Fatalf("%d cancel movements for %d lines cancelled after their sale; want one each", moves, afterSaleLines)
	}
	// I3: no hold is left undecided, least of all one of an order with a row.
	for k, h := range holds {
		if h.state != "committed" && h.state != "returned" {
			_, hasRow := rows[k[0]]
			rt.Fatalf("I3: order %s still holds %d of %s (%q) after the final sweep; it has a row: %v",
				k[0], h.qty, k[1], h.state, hasRow)
		}
	}
	if open, err := r.env.gate.OpenHolds(ctx); err != nil || open != 0 {
		rt.Fatalf("I3: OpenHolds = %d, %v; want 0", open, err)
	}
	// Sold equals the confirmed quantities, and every confirmed line was
	// committed, not merely held or given back.
	confirmed, err := r.env.store.ConfirmedBySKU(ctx)
	if err != nil {
		rt.Fatalf("ConfirmedBySKU: %v", err)
	}
	levels, err := r.env.gate.Show(ctx, r.skus...)
	if err != nil {
		rt.Fatalf("Show: %v", err)
	}
	for _, lv := range levels {
		if lv.Sold != confirmed[lv.SKU] || lv.Held != 0 {
			rt.Fatalf("%s = %+v, want sold = %d (the confirmed quantities) and nothing held", lv.SKU, lv, confirmed[lv.SKU])
		}
	}
	for id, row := range rows {
		if row.status != orders.StatusConfirmed {
			continue
		}
		for sku, qty := range row.lines {
			if r.gone[[2]string{id, sku}] {
				// Its tombstone expired: no hold, or the tombstone again if
				// it had not been committed yet when it went.
				continue
			}
			if h := holds[[2]string{id, sku}]; h.state != "committed" || h.qty != qty {
				rt.Fatalf("confirmed order %s, %d of %s: hold %+v, want committed", id, qty, sku, h)
			}
		}
	}
}

// TestHandlerProperty runs random interleavings of deliveries (duplicates,
// conflicting payloads, two handlers at once, injected failures at every
// named step, last attempts), checkout confirms and cancels (alone, two at
// once, racing a sweep or a delivery, failing between the row's move and
// its holds), expiries, sweeps and clock advances over a few small SKUs and
// multi-line orders, half of them checkouts. I1, "sold only for confirmed
// lines (or a give-back a crash cut off), never restocked once confirmed,
// given back only after a cancellation after the sale", "a checkout keeps
// its holds" and "rows move only as the state machine allows" hold after
// every step; after one clean redelivery of everything and a sweep past
// every deadline, I2 (every row terminal), I3, every give-back done and
// recorded once, and sold = confirmed hold too.
func TestHandlerProperty(t *testing.T) {
	t.Parallel()
	r, db, rdb := testsvc.RedisDB(t)
	pool := testdb.New(t)
	env := &propEnv{
		rdb:     rdb,
		pool:    pool,
		gate:    stock.New(rdb, stock.Config{}),
		store:   orderstore.New(pool),
		catalog: catalog.New(pool),
		log:     slog.New(slog.DiscardHandler),
	}
	env.first, env.retry, env.last = attemptContexts(t, asynq.RedisClientOpt{Addr: r.Addr, DB: db})

	rapid.Check(t, func(rt *rapid.T) {
		run := newPropRun(rt, env)
		rt.Repeat(run.actions())
		run.finish(rt)
	})
	t.Logf("coverage: injected failures %v; final rows %v", env.cov.fired, env.cov.statuses)
}

// failOnceAt is a hook that fails the first time the attempt reaches step.
func failOnceAt(step string) func(string) error {
	var fired atomic.Bool
	return func(s string) error {
		if s == step && fired.CompareAndSwap(false, true) {
			return fmt.Errorf("%w at %s", errInjected, s)
		}
		return nil
	}
}

// TestLastAttemptAfterConfirm pins a case TestHandlerProperty found: a last
// attempt that fails after the order's confirmed row is written must commit
// its holds. Giving them back first (the compensating restock) sold units
// that were available again.
func TestLastAttemptAfterConfirm(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "LA-1", 3)
	_, _, last := attemptContexts(t, b.ropt)
	for _, step := range []string{"after_persist", "before_commit"} {
		o := oneLine("la-"+step, "c-1", "LA-1", 1)
		task, err := b.client.NewTask(context.Background(), o)
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		if err := b.handler(t, HandlerConfig{hook: failOnceAt(step)}).ProcessTask(last, task); err != nil {
			t.Fatalf("last attempt failing at %s: ProcessTask = %v, want nil (the confirmed row stands)", step, err)
		}
		if rec, err := b.store.Get(context.Background(), o.OrderID); err != nil || rec.Status != orders.StatusConfirmed {
			t.Fatalf("Get(%s) = %+v, %v; want confirmed", o.OrderID, rec, err)
		}
	}
	if lv := b.assertSettled(t, "LA-1", 3); lv.Sold != 2 {
		t.Errorf("LA-1 = %+v, want 2 sold: one per confirmed order", lv)
	}
}

// TestSweeperDropsConflictingHold pins a case TestHandlerProperty found: a
// payload that lost to another one with the same order id, and died holding
// a SKU the winner's confirmed row does not list, has that hold given back
// by the sweeper, not sold.
func TestSweeperDropsConflictingHold(t *testing.T) {
	t.Parallel()
	b := setupPipeline(t)
	b.stockSKU(t, "SC-1", 5)
	b.stockSKU(t, "SC-2", 5)
	clock := &fakeClock{now: time.Now()}
	ctx := context.Background()
	loser := oneLine("sc-1", "c-1", "SC-2", 1)
	winner := oneLine("sc-1", "c-1", "SC-1", 2)
	for _, c := range []struct {
		o    orders.Order
		hook func(string) error
	}{{loser, failOnceAt("after_reserve")}, {winner, nil}} {
		task, err := b.client.NewTask(ctx, c.o)
		if err != nil {
			t.Fatalf("NewTask: %v", err)
		}
		err = b.handler(t, HandlerConfig{Now: clock.Now, hook: c.hook}).ProcessTask(ctx, task)
		if c.hook == nil && err != nil || c.hook != nil && !errors.Is(err, errInjected) {
			t.Fatalf("ProcessTask(%+v) = %v", c.o.Lines, err)
		}
	}
	clock.Advance(DefaultHoldTTL + time.Minute)
	if _, err := newTestSweeper(t, b, clock.Now).SweepOnce(ctx); err != nil {
		t.Fatalf("SweepOnce: %v", err)
	}
	if lv := b.assertSettled(t, "SC-1", 5); lv.Sold != 2 {
		t.Errorf("SC-1 = %+v, want the winner's 2 sold", lv)
	}
	if lv := b.assertSettled(t, "SC-2", 5); lv.Sold != 0 || lv.Available != 5 {
		t.Errorf("SC-2 = %+v, want the loser's unit back: 5 available, 0 sold", lv)
	}
}
