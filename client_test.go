package stockgate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/internal/testsvc/testdb"
)

type testBundle struct {
	client *Client
	rdb    *redis.Client
	pool   *pgxpool.Pool
	store  *orderstore.Store
	insp   *asynq.Inspector
}

// setup gives a test a client on its own Redis DB and migrated database,
// with no worker: the tests decide rows themselves through the store.
func setup(t *testing.T, cfg Config) *testBundle {
	t.Helper()
	ctx := context.Background()
	r, db, rdb := testsvc.RedisDB(t)
	dbURL, pool := testdb.NewURL(t)
	cfg.RedisURL, cfg.DatabaseURL = r.URL(db), dbURL
	c, err := NewClient(ctx, cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	insp := asynq.NewInspectorFromRedisClient(rdb)
	return &testBundle{client: c, rdb: rdb, pool: pool, store: orderstore.New(pool), insp: insp}
}

func order(id string, qty int64) Order {
	return Order{OrderID: id, CustomerID: "c-1", Lines: []Line{{SKU: "SKU-1", Qty: qty}}}
}

// decide writes the order's row as a worker would.
func (b *testBundle) decide(t *testing.T, id string, st orders.Status, reason string) {
	t.Helper()
	_, _, err := b.store.Decide(context.Background(), orders.Record{OrderID: id, CustomerID: "c-1", Status: st, Reason: reason,
		Lines: []orders.Line{{SKU: "SKU-1", Qty: 1}}})
	if err != nil {
		t.Fatalf("Decide(%s): %v", id, err)
	}
}

func (b *testBundle) queued(t *testing.T) int {
	t.Helper()
	info, err := b.insp.GetQueueInfo(orders.Queue)
	if errors.Is(err, asynq.ErrQueueNotFound) {
		return 0
	}
	if err != nil {
		t.Fatalf("GetQueueInfo: %v", err)
	}
	return info.Size
}

func TestSubmit(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	if err := b.client.Submit(ctx, order("s-1", 2)); err != nil {
		t.Fatalf("Submit(s-1) = %v, want nil", err)
	}
	info, err := b.insp.GetTaskInfo(orders.Queue, "s-1")
	if err != nil {
		t.Fatalf("GetTaskInfo(s-1): %v", err)
	}
	if info.Type != orders.TaskType || info.MaxRetry != DefaultMaxRetry || info.Retention != DefaultRetention {
		t.Errorf("task = type %s, max retry %d, retention %v; want %s, %d, %v", info.Type, info.MaxRetry, info.Retention,
			orders.TaskType, DefaultMaxRetry, DefaultRetention)
	}

	// A retry of the same order, lines in another order included, is a
	// duplicate; another order under the id is a conflict, which is a
	// duplicate too.
	again := order("s-1", 2)
	if err := b.client.Submit(ctx, again); !errors.Is(err, ErrDuplicate) || errors.Is(err, ErrConflict) {
		t.Errorf("Submit(same order again) = %v, want ErrDuplicate and not ErrConflict", err)
	}
	if err := b.client.Submit(ctx, order("s-1", 3)); !errors.Is(err, ErrConflict) || !errors.Is(err, ErrDuplicate) {
		t.Errorf("Submit(other qty, same id) = %v, want ErrConflict (and ErrDuplicate)", err)
	}

	var inv *InvalidError
	err = b.client.Submit(ctx, Order{OrderID: "bad id", CustomerID: "c-1", Lines: []Line{{SKU: "SKU-1", Qty: 1}}})
	if !errors.As(err, &inv) || !errors.Is(err, ErrInvalid) || inv.Error() != "invalid: "+inv.Reason {
		t.Errorf("Submit(bad id) = %v, want an *InvalidError", err)
	}
	if err := b.client.Submit(ctx, order("s-2", 10001)); !errors.Is(err, ErrInvalid) {
		t.Errorf("Submit(qty 10001) = %v, want ErrInvalid", err)
	}
	if n := b.queued(t); n != 1 {
		t.Errorf("queue holds %d tasks, want 1: only s-1 was accepted", n)
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	placed := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

	if _, err := b.client.Status(ctx, "never-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Status(never submitted) = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"", "a/b", "..", "ü", string(make([]byte, 65))} {
		if _, err := b.client.Status(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Status(%q) = %v, want ErrNotFound", id, err)
		}
	}

	o := Order{OrderID: "st-1", CustomerID: "c-9", Lines: []Line{{SKU: "B", Qty: 1}, {SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}, PlacedAt: &placed}
	if err := b.client.Submit(ctx, o); err != nil {
		t.Fatal(err)
	}
	got, err := b.client.Status(ctx, "st-1")
	want := Status{OrderID: "st-1", CustomerID: "c-9", State: StatePending, Lines: []Line{{SKU: "B", Qty: 4}, {SKU: "A", Qty: 2}}, PlacedAt: &placed}
	if diff := cmp.Diff(want, got); err != nil || diff != "" {
		t.Errorf("Status(submitted, no row) = %v (-want +got):\n%s", err, diff)
	}
	if got.Decided() {
		t.Error("pending Status.Decided() = true, want false")
	}

	decided := time.Date(2026, 11, 26, 10, 0, 1, 0, time.UTC)
	if _, _, err := b.store.Decide(ctx, orders.Record{OrderID: "st-1", CustomerID: "c-9", Status: orders.StatusRejected,
		Reason: orders.ReasonOutOfStock, Detail: "B has 0 available", PlacedAt: &placed, DecidedAt: decided,
		Lines: []orders.Line{{SKU: "B", Qty: 4}, {SKU: "A", Qty: 2}}}); err != nil {
		t.Fatal(err)
	}
	got, err = b.client.Status(ctx, "st-1")
	want = Status{OrderID: "st-1", CustomerID: "c-9", State: StateRejected, Reason: "out_of_stock", Detail: "B has 0 available",
		Lines: []Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 4}}, PlacedAt: &placed, DecidedAt: &decided}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); err != nil || diff != "" {
		t.Errorf("Status(decided) = %v (-want +got):\n%s", err, diff)
	}

	// A row without its task: the task's retention ended long ago.
	b.decide(t, "old-1", orders.StatusConfirmed, "")
	if got, err := b.client.Status(ctx, "old-1"); err != nil || got.State != StateConfirmed {
		t.Errorf("Status(row, no task) = %+v, %v; want confirmed", got, err)
	}

	noDB, err := NewClient(ctx, Config{RedisURL: b.client.cfg.RedisURL})
	if err != nil {
		t.Fatal(err)
	}
	defer noDB.Close()
	if _, err := noDB.Status(ctx, "st-1"); !errors.Is(err, ErrNoDatabase) {
		t.Errorf("Status without DatabaseURL = %v, want ErrNoDatabase", err)
	}
	if _, err := noDB.Wait(ctx, "st-1"); !errors.Is(err, ErrNoDatabase) {
		t.Errorf("Wait without DatabaseURL = %v, want ErrNoDatabase", err)
	}
}

// TestWaitShared: thousands of Waits share one poller, which asks Postgres
// once per tick whatever their number, and each gets its own order's row.
func TestWaitShared(t *testing.T) {
	t.Parallel()
	const waiters = 2000
	b := setup(t, Config{PollInterval: 20 * time.Millisecond})
	ctx := context.Background()
	ids := make([]string, waiters)
	for i := range ids {
		ids[i] = fmt.Sprintf("w-%d", i)
		if err := b.client.Submit(ctx, order(ids[i], 1)); err != nil {
			t.Fatal(err)
		}
	}
	results := make([]Status, waiters)
	errs := make([]error, waiters)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			wctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			results[i], errs[i] = b.client.Wait(wctx, id)
		})
	}
	testsvc.Poll(t, time.Minute, "every Wait to register", func() bool {
		b.client.waits.mu.Lock()
		defer b.client.waits.mu.Unlock()
		return len(b.client.waits.waiters) == waiters
	})
	// Every waiter is parked: hold them for ten ticks and count the poll
	// queries, then decide the orders, half confirmed and half rejected.
	before := b.client.waits.queries.Load()
	time.Sleep(10 * 20 * time.Millisecond) // the ticks themselves are what is measured
	idle := b.client.waits.queries.Load() - before
	if idle > 12 {
		t.Errorf("%d poll queries in 10 ticks with %d waiters, want about 10 (one per tick)", idle, waiters)
	}
	t.Logf("%d waiters cost %d poll queries in 10 ticks", waiters, idle)
	for i, id := range ids {
		st, reason := orders.StatusConfirmed, ""
		if i%2 == 1 {
			st, reason = orders.StatusRejected, orders.ReasonOutOfStock
		}
		b.decide(t, id, st, reason)
	}
	wg.Wait()
	for i, id := range ids {
		want := StateConfirmed
		if i%2 == 1 {
			want = StateRejected
		}
		if errs[i] != nil || results[i].OrderID != id || results[i].State != want || results[i].DecidedAt == nil {
			t.Fatalf("Wait(%s) = %+v, %v; want %s", id, results[i], errs[i], want)
		}
	}
	if !b.client.waits.idle() {
		t.Error("poller still holds waited ids after every Wait returned, want none")
	}
}

func TestWaitEnds(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{PollInterval: 10 * time.Millisecond})
	ctx := context.Background()
	if _, err := b.client.Wait(ctx, "never-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Wait(never submitted) = %v, want ErrNotFound at once", err)
	}
	b.decide(t, "done-1", orders.StatusExpired, orders.ReasonHoldExpired)
	if st, err := b.client.Wait(ctx, "done-1"); err != nil || st.State != StateExpired || st.Reason != "hold_expired" {
		t.Errorf("Wait(decided) = %+v, %v; want expired / hold_expired", st, err)
	}

	if err := b.client.Submit(ctx, order("slow-1", 1)); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	st, err := b.client.Wait(wctx, "slow-1")
	if !errors.Is(err, context.DeadlineExceeded) || st.State != StatePending || st.OrderID != "slow-1" {
		t.Errorf("Wait(undecided, 50ms) = %+v, %v; want pending and DeadlineExceeded", st, err)
	}
	if !b.client.waits.idle() {
		t.Error("a Wait whose ctx ended left its id with the poller, want none")
	}

	done := make(chan error, 1)
	go func() {
		_, err := b.client.Wait(ctx, "slow-1")
		done <- err
	}()
	testsvc.Poll(t, 10*time.Second, "the Wait to register", func() bool { return !b.client.waits.idle() })
	_ = b.client.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Wait across Close = %v, want ErrClosed", err)
	}
}

func TestStock(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{})
	ctx := context.Background()
	if _, err := stock.New(b.rdb, stock.Config{}).Set(ctx, "ST-1", 7); err != nil {
		t.Fatal(err)
	}
	got, err := b.client.Stock(ctx, "ST-1")
	if want := (Stock{SKU: "ST-1", Available: 7}); err != nil || got != want {
		t.Errorf("Stock(ST-1) = %+v, %v; want %+v", got, err, want)
	}
	for _, sku := range []string{"NEVER-1", "{x}", ""} {
		if _, err := b.client.Stock(ctx, sku); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stock(%q) = %v, want ErrNotFound", sku, err)
		}
	}
}

func TestNewClientErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, cfg := range []Config{
		{RedisURL: "http://x"},
		{MaxRetry: -1},
		{PollInterval: time.Microsecond},
		{RedisURL: "redis://127.0.0.1:1/0"},
	} {
		if c, err := NewClient(ctx, cfg); err == nil {
			_ = c.Close()
			t.Errorf("NewClient(%+v) = nil error, want one", cfg)
		}
	}
}

// TestSubmitQueueShards: with QueueShards each order goes on the shard
// orders.QueueFor names, and a re-submit, Status and the conflict check
// all look there.
func TestSubmitQueueShards(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{QueueShards: 3})
	ctx := context.Background()
	shards := map[string]bool{}
	for i := range 30 {
		id := fmt.Sprintf("qs-%d", i)
		if err := b.client.Submit(ctx, order(id, 1)); err != nil {
			t.Fatalf("Submit(%s) = %v", id, err)
		}
		q := orders.QueueFor(id, 3)
		if _, err := b.insp.GetTaskInfo(q, id); err != nil {
			t.Fatalf("GetTaskInfo(%s, %s) = %v, want the task on its shard", q, id, err)
		}
		shards[q] = true
		if err := b.client.Submit(ctx, order(id, 1)); !errors.Is(err, ErrDuplicate) || errors.Is(err, ErrConflict) {
			t.Errorf("Submit(%s again) = %v, want ErrDuplicate", id, err)
		}
		if err := b.client.Submit(ctx, order(id, 2)); !errors.Is(err, ErrConflict) {
			t.Errorf("Submit(%s, other qty) = %v, want ErrConflict", id, err)
		}
		if st, err := b.client.Status(ctx, id); err != nil || st.State != StatePending {
			t.Errorf("Status(%s) = %+v, %v; want pending", id, st, err)
		}
	}
	if len(shards) != 3 {
		t.Errorf("30 orders went on %d shards, want 3", len(shards))
	}
	if _, err := b.insp.GetQueueInfo(orders.Queue); err == nil {
		t.Errorf("GetQueueInfo(%s) = %v, want no unsharded queue", orders.Queue, err)
	}
	if _, err := NewClient(ctx, Config{QueueShards: orders.MaxQueueShards + 1}); err == nil {
		t.Errorf("NewClient(QueueShards %d) = nil error, want a refusal", orders.MaxQueueShards+1)
	}
}

// TestSubmitRedisFull: a Redis at its maxmemory (noeviction) refuses the
// order with ErrRedisFull and nothing is enqueued; once maxmemory is raised
// the same order goes in.
func TestSubmitRedisFull(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := testsvc.NewRedis(t, "--maxmemory-policy", "noeviction")
	c, err := NewClient(ctx, Config{RedisURL: r.URL(0)})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	rdb := r.Client(0)
	t.Cleanup(func() { _ = rdb.Close() })
	// The first Submit makes Asynq register the queue, which it does once
	// per client: the refusal below then comes from its enqueue script, not
	// from that command.
	if err := c.Submit(ctx, order("ok-1", 1)); err != nil {
		t.Fatalf("Submit(ok-1): %v", err)
	}
	// One byte: every write that may grow memory is refused.
	if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	err = c.Submit(ctx, order("full-1", 1))
	if !errors.Is(err, ErrRedisFull) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Submit with Redis full = %v, want one line wrapping ErrRedisFull", err)
	}
	if n, err := rdb.Exists(ctx, "asynq:{orders}:t:full-1").Result(); err != nil || n != 0 {
		t.Errorf("task full-1 exists = %d, %v; want nothing enqueued", n, err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Submit(ctx, order("full-1", 1)); err != nil {
		t.Errorf("Submit once maxmemory is raised = %v, want nil", err)
	}
}
