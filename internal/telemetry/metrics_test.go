package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stockgate/stockgate/internal/testsvc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// meterBundle is a private MeterProvider with a manual reader, so the
// metric tests run in parallel without the globals.
type meterBundle struct {
	meter  metric.Meter
	reader *sdkmetric.ManualReader
}

func newMeter(t *testing.T) *meterBundle {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	return &meterBundle{meter: mp.Meter(ScopeName), reader: r}
}

// collect returns every data point as "name{k=v,...}" -> value.
func (b *meterBundle) collect(t *testing.T) (map[string]float64, error) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	err := b.reader.Collect(context.Background(), &rm)
	out := map[string]float64{}
	key := func(name string, s attribute.Set) string {
		return name + "{" + s.Encoded(attribute.DefaultEncoder()) + "}"
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = p.Value
				}
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = float64(p.Value)
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					out[key(m.Name, p.Attributes)] = p.Value
				}
			default:
				t.Fatalf("metric %s has unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out, err
}

func (b *meterBundle) mustCollect(t *testing.T) map[string]float64 {
	t.Helper()
	got, err := b.collect(t)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	return got
}

func TestRegisterRedisPool(t *testing.T) {
	t.Parallel()
	b := newMeter(t)
	_, _, c := testsvc.RedisDB(t)
	if _, err := registerRedisPool(b.meter, "stock", c); err != nil {
		t.Fatalf("registerRedisPool: %v", err)
	}
	for range 3 {
		if err := c.Ping(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	got := b.mustCollect(t)
	s := c.PoolStats()
	want := map[string]float64{
		"stockgate.redis.pool.connections{pool=stock,state=idle}": float64(s.IdleConns),
		"stockgate.redis.pool.connections{pool=stock,state=used}": float64(s.TotalConns - s.IdleConns),
		"stockgate.redis.pool.connections.max{pool=stock}":        float64(c.Options().PoolSize),
		"stockgate.redis.pool.hits{pool=stock}":                   float64(s.Hits),
		"stockgate.redis.pool.misses{pool=stock}":                 float64(s.Misses),
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// The pings reused the connection the flush opened.
	if got["stockgate.redis.pool.hits{pool=stock}"] < 3 || got["stockgate.redis.pool.connections{pool=stock,state=idle}"] < 1 {
		t.Errorf("after 3 pings: hits = %v, idle = %v, want hits >= 3 and idle >= 1", got["stockgate.redis.pool.hits{pool=stock}"], got["stockgate.redis.pool.connections{pool=stock,state=idle}"])
	}
}

func TestRegisterPgxPool(t *testing.T) {
	t.Parallel()
	b := newMeter(t)
	pool, err := pgxpool.New(context.Background(), testsvc.NewDatabase(t)+"&pool_max_conns=4")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := registerPgxPool(b.meter, pool); err != nil {
		t.Fatalf("registerPgxPool: %v", err)
	}
	conn, err := pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	held := b.mustCollect(t)
	conn.Release()
	released := b.mustCollect(t)

	for _, c := range []struct {
		name      string
		got       map[string]float64
		key       string
		want      float64
		atLeastOK bool
	}{
		{"while held", held, "stockgate.pgx.pool.connections{state=acquired}", 1, false},
		{"while held", held, "stockgate.pgx.pool.connections.max{}", 4, false},
		{"while held", held, "stockgate.pgx.pool.acquires{}", 1, true},
		{"after release", released, "stockgate.pgx.pool.connections{state=acquired}", 0, false},
		{"after release", released, "stockgate.pgx.pool.connections{state=idle}", 1, true},
		{"after release", released, "stockgate.pgx.pool.connections.created{}", 1, true},
	} {
		if got := c.got[c.key]; got != c.want && !(c.atLeastOK && got > c.want) {
			t.Errorf("%s: %s = %v, want %v", c.name, c.key, got, c.want)
		}
	}
}

func TestRegisterQueues(t *testing.T) {
	t.Parallel()
	b := newMeter(t)
	r, db, _ := testsvc.RedisDB(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr, DB: db}
	client := asynq.NewClient(opt)
	defer client.Close()
	in := asynq.NewInspector(opt)
	defer in.Close()

	for i, o := range [][]asynq.Option{
		{asynq.Queue("orders")},
		{asynq.Queue("orders")},
		{asynq.Queue("orders"), asynq.ProcessIn(time.Hour)},
	} {
		if _, err := client.Enqueue(asynq.NewTask("order:place", nil), append(o, asynq.TaskID(fmt.Sprint("o-", i)))...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := registerQueues(b.meter, in, "orders", "sweeps"); err != nil {
		t.Fatalf("registerQueues: %v", err)
	}
	got := b.mustCollect(t)
	want := map[string]float64{}
	for _, q := range []string{"orders", "sweeps"} {
		for _, s := range queueStates {
			want[fmt.Sprintf("stockgate.queue.tasks{queue=%s,state=%s}", q, s)] = 0
		}
		want["stockgate.queue.paused{queue="+q+"}"] = 0
		want["stockgate.queue.processed{queue="+q+"}"] = 0
		want["stockgate.queue.failed{queue="+q+"}"] = 0
	}
	want["stockgate.queue.tasks{queue=orders,state=pending}"] = 2
	want["stockgate.queue.tasks{queue=orders,state=scheduled}"] = 1
	// Latency depends on the clock; check it apart.
	lat := got["stockgate.queue.latency{queue=orders}"]
	delete(got, "stockgate.queue.latency{queue=orders}")
	delete(got, "stockgate.queue.latency{queue=sweeps}")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("queue metrics mismatch (-want +got):\n%s", diff)
	}
	if lat <= 0 || lat > 60 {
		t.Errorf("stockgate.queue.latency{queue=orders} = %v, want the age of the oldest pending task in seconds", lat)
	}
}

// TestQueueObserverTimeout points the Inspector at a server that accepts
// connections and never answers: a scrape must give up, and the next one
// must not start a second stuck query.
func TestQueueObserverTimeout(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	hangup := func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}
	defer hangup()

	in := asynq.NewInspector(asynq.RedisClientOpt{Addr: l.Addr().String(), ReadTimeout: time.Minute, WriteTimeout: time.Minute})
	defer in.Close()
	qo := &queueObserver{in: in, queues: []string{"orders"}}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := qo.infos(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("infos() against a silent server = %v, want context.DeadlineExceeded", err)
	}
	if _, err := qo.infos(context.Background()); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("infos() while the first query hangs = %v, want a still-running error", err)
	}
	hangup()
	testsvc.Poll(t, 10*time.Second, "the stuck query to end once the server hangs up", func() bool {
		return !qo.busy.Load()
	})
}

func TestRegisterStock(t *testing.T) {
	t.Parallel()

	levels := func(n int, all int64) func(context.Context) (StockSample, error) {
		return func(context.Context) (StockSample, error) {
			var out []SKULevels
			for i := n - 1; i >= 0; i-- { // reverse order: the bound must sort
				out = append(out, SKULevels{SKU: fmt.Sprintf("SKU-%03d", i), Available: int64(i), Held: 1, Sold: 2})
			}
			return StockSample{SKUs: all, Levels: out}, nil
		}
	}
	tests := []struct {
		name     string
		skus     int
		all      int64 // StockSample.SKUs; 0 leaves it to len(Levels)
		maxSKUs  int
		wantSKUs int
	}{
		{"under the bound", 3, 0, 10, 3},
		{"over the bound", 12, 0, 10, 10},
		{"default bound", DefaultMaxSKUs + 50, 0, 0, DefaultMaxSKUs},
		{"a sample of a larger catalogue", 10, 1_000_000, 10, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newMeter(t)
			if _, err := registerStock(b.meter, levels(tt.skus, tt.all), tt.maxSKUs); err != nil {
				t.Fatalf("registerStock: %v", err)
			}
			got := b.mustCollect(t)
			if n := got["stockgate.stock.skus{}"]; n != float64(max(tt.all, int64(tt.skus))) {
				t.Errorf("stockgate.stock.skus = %v, want %d (all SKUs, bound or not)", n, max(tt.all, int64(tt.skus)))
			}
			series := 0
			for k := range got {
				if strings.HasPrefix(k, "stockgate.stock.units{") {
					series++
				}
			}
			if series != 3*tt.wantSKUs {
				t.Errorf("stockgate.stock.units has %d series, want %d (3 states x %d SKUs)", series, 3*tt.wantSKUs, tt.wantSKUs)
			}
			// The kept SKUs are the first ones by name, so the set is stable.
			last := fmt.Sprintf("SKU-%03d", tt.wantSKUs-1)
			if got["stockgate.stock.units{sku="+last+",state=available}"] != float64(tt.wantSKUs-1) ||
				got["stockgate.stock.units{sku="+last+",state=held}"] != 1 ||
				got["stockgate.stock.units{sku="+last+",state=sold}"] != 2 {
				t.Errorf("stock series for %s missing or wrong: %v", last, got)
			}
		})
	}
}

func TestRegisterHolds(t *testing.T) {
	t.Parallel()
	b := newMeter(t)
	var fail bool
	var gotDeadline bool
	if _, err := registerHolds(b.meter, func(ctx context.Context) (int64, error) {
		_, gotDeadline = ctx.Deadline()
		if fail {
			return 0, errors.New("redis: i/o timeout")
		}
		return 42, nil
	}); err != nil {
		t.Fatalf("registerHolds: %v", err)
	}
	if got := b.mustCollect(t)["stockgate.holds.outstanding{}"]; got != 42 {
		t.Errorf("stockgate.holds.outstanding = %v, want 42", got)
	}
	if !gotDeadline {
		t.Error("the holds callback's context has no deadline, want the scrape timeout")
	}
	fail = true
	if _, err := b.collect(t); err == nil || !strings.Contains(err.Error(), "redis: i/o timeout") {
		t.Errorf("Collect with a failing callback = %v, want the callback's error", err)
	}
}

// TestRegisterRedisMemory: used_memory and maxmemory of the one server, and
// of every master of a Redis Cluster, read in the background; a master
// that stops answering drops out once its reading is stale.
func TestRegisterRedisMemory(t *testing.T) {
	t.Parallel()
	single := testsvc.NewRedis(t, "--maxmemory", "64mb")
	node := testsvc.NewClusterNode(t)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{node.Addr}})
	t.Cleanup(func() { _ = cc.Close() })
	for _, c := range []struct {
		name    string
		rdb     redis.UniversalClient
		addr    string
		max     float64
		stopped func()
	}{
		{"server", single.Client(0), single.Addr, 64 << 20, single.Stop},
		// A one-node cluster does not know its own IP, so CLUSTER SLOTS
		// names it by its port alone.
		{"cluster", cc, node.Addr[strings.LastIndex(node.Addr, ":"):], 0, node.Stop},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := newMeter(t)
			_, stop, err := registerRedisMemory(b.meter, c.rdb, 10*time.Millisecond)
			if err != nil {
				t.Fatalf("registerRedisMemory: %v", err)
			}
			defer stop()
			var got map[string]float64
			testsvc.Poll(t, 10*time.Second, "a reading of "+c.addr, func() bool {
				got = b.mustCollect(t)
				return len(got) > 0
			})
			used, limit := -1.0, -1.0
			for k, v := range got {
				switch {
				case strings.HasPrefix(k, "stockgate.redis.used_memory{addr=") && strings.HasSuffix(k, c.addr+"}"):
					used = v
				case strings.HasPrefix(k, "stockgate.redis.maxmemory{addr=") && strings.HasSuffix(k, c.addr+"}"):
					limit = v
				}
			}
			if used <= 0 || limit != c.max || len(got) != 2 {
				t.Errorf("collected %v; want used_memory > 0 and maxmemory = %v for %s, nothing else", got, c.max, c.addr)
			}
			c.stopped()
			testsvc.Poll(t, 10*time.Second, "the stale reading to drop out", func() bool { return len(b.mustCollect(t)) == 0 })
		})
	}
}

func TestParseMemory(t *testing.T) {
	t.Parallel()
	r, err := parseMemory("# Memory\r\nused_memory:1024\r\nused_memory_human:1.00K\r\nmaxmemory:2048\r\nmaxmemory_policy:noeviction\r\n")
	if err != nil || r.used != 1024 || r.max != 2048 {
		t.Errorf("parseMemory = %+v, %v; want used 1024, max 2048", r, err)
	}
	for _, bad := range []string{"", "used_memory:1\r\n", "used_memory:x\r\nmaxmemory:0\r\n"} {
		if _, err := parseMemory(bad); err == nil {
			t.Errorf("parseMemory(%q) = nil error, want one", bad)
		}
	}
}

func TestRegisterNil(t *testing.T) {
	t.Parallel()
	b := newMeter(t)
	for name, err := range map[string]error{
		"redis":  second(registerRedisPool(b.meter, "x", nil)),
		"pgx":    second(registerPgxPool(b.meter, nil)),
		"queues": second(registerQueues(b.meter, nil, "orders")),
		"stock":  second(registerStock(b.meter, nil, 0)),
		"holds":  second(registerHolds(b.meter, nil)),
		"memory": func() error { _, _, err := registerRedisMemory(b.meter, nil, 0); return err }(),
	} {
		if err == nil {
			t.Errorf("register %s with nil = nil error, want one", name)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestSampler: Get answers from memory with the last sample; before the
// first, and once sampling has failed for three intervals, it fails, so a
// gauge goes missing rather than show a value that stopped being true.
func TestSampler(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	n, fail := 0, false
	s := NewSampler(10*time.Millisecond, func(ctx context.Context) (int, error) {
		if _, ok := ctx.Deadline(); !ok {
			t.Error("the sampled function's context has no deadline")
		}
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return 0, errors.New("redis: i/o timeout")
		}
		n++
		return n, nil
	})
	if _, err := s.Get(context.Background()); err == nil {
		t.Errorf("Get before Start = nil error, want one")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)
	defer s.Stop()
	testsvc.Poll(t, 5*time.Second, "a few samples", func() bool {
		v, err := s.Get(context.Background())
		return err == nil && v >= 3
	})
	mu.Lock()
	fail = true
	mu.Unlock()
	testsvc.Poll(t, 5*time.Second, "Get to fail once sampling fails", func() bool {
		_, err := s.Get(context.Background())
		return err != nil && strings.Contains(err.Error(), "i/o timeout")
	})
	s.Stop()
	s.Stop() // a second Stop is harmless
}
