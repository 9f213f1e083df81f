package telemetry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// DefaultMaxSKUs is the default cardinality bound of the per-SKU stock
// gauges: at most this many SKUs, so at most 3×DefaultMaxSKUs series,
// whatever the size of the catalogue. See RegisterStock.
const DefaultMaxSKUs = 100

// callbackTimeout bounds each gauge callback. Callbacks run on every
// scrape, and a scrape must answer even when Redis or Postgres does not.
const callbackTimeout = 2 * time.Second

// Attribute keys of the gauges registered here.
const (
	PoolKey  = attribute.Key("pool")
	StateKey = attribute.Key("state")
	QueueKey = attribute.Key("queue")
	SKUKey   = attribute.Key("sku")
	AddrKey  = attribute.Key("addr")
)

func meter() metric.Meter { return otel.Meter(ScopeName) }

// RegisterRedisPool exports the connection pool statistics of c under the
// label pool=name (so the stock client and Asynq's client can be told apart):
// stockgate_redis_pool_connections{state="idle"|"used"}, _connections_max,
// _pending_requests, and the counters _hits, _misses, _timeouts, _waits and
// _wait_duration_seconds. For a cluster client the statistics are summed
// over its nodes and _connections_max is the pool size of one node.
func RegisterRedisPool(name string, c redis.UniversalClient) error {
	_, err := registerRedisPool(meter(), name, c)
	return err
}

// RegisterPgxPool exports p.Stat(): stockgate_pgx_pool_connections
// {state="idle"|"acquired"|"constructing"}, _connections_max, and the
// counters _acquires, _acquires_empty (had to wait), _acquires_canceled,
// _acquire_duration_seconds and _connections_created.
func RegisterPgxPool(p *pgxpool.Pool) error {
	_, err := registerPgxPool(meter(), p)
	return err
}

// RegisterQueues exports, for each named queue, stockgate_queue_tasks by
// state (pending, active, scheduled, retry, archived, completed,
// aggregating), stockgate_queue_latency_seconds (age of the oldest pending
// task), stockgate_queue_paused, and the cumulative counters
// stockgate_queue_processed and stockgate_queue_failed. A queue Asynq has
// not seen yet reports zeros rather than disappearing.
//
// The Inspector's calls take no context, so each scrape runs them in a
// goroutine and stops waiting after a timeout; while a slow query is still
// running, later scrapes report an error instead of piling up more.
func RegisterQueues(in *asynq.Inspector, queues ...string) error {
	_, err := registerQueues(meter(), in, queues...)
	return err
}

// SKULevels is one SKU's stock for the gauges.
type SKULevels struct {
	SKU                   string
	Available, Held, Sold int64
}

// StockSample is what the stock gauges show: the levels of some SKUs, and
// how many SKUs are stocked in all (len(Levels) when 0).
type StockSample struct {
	SKUs   int64
	Levels []SKULevels
}

// RegisterStock exports stockgate_stock_units{sku, state="available"|"held"|
// "sold"} from sample, called once per scrape: at a large catalogue, a
// Sampler's Get, so that the scrape reads memory.
//
// Cardinality bound: a catalogue can hold any number of SKUs, a Prometheus
// server cannot hold any number of series. At most maxSKUs SKUs are exported
// (DefaultMaxSKUs when maxSKUs <= 0): when sample returns more, the first
// maxSKUs in byte order of the SKU are kept, so the exported set stays the
// same from scrape to scrape. stockgate_stock_skus reports how many SKUs are
// stocked in all, so a truncated view is visible. A sample that knows
// better (the SKUs on sale today) should return at most maxSKUs itself.
func RegisterStock(sample func(ctx context.Context) (StockSample, error), maxSKUs int) error {
	_, err := registerStock(meter(), sample, maxSKUs)
	return err
}

// DefaultRedisMemoryInterval is how often RegisterRedisMemory reads INFO
// memory by default.
const DefaultRedisMemoryInterval = 10 * time.Second

// RegisterRedisMemory exports stockgate_redis_used_memory_bytes and
// stockgate_redis_maxmemory_bytes (0 when Redis has no limit) for every
// master of rdb, labelled addr: each master of a Redis Cluster, or the one
// server. Redis refuses writes once used_memory passes maxmemory (under
// noeviction, which stockgate needs), so an alert on their ratio fires
// before a sale stalls (docs/reliability.md, "Redis is full").
//
// The values are read from INFO memory in the background, every interval
// (DefaultRedisMemoryInterval when <= 0), not on a scrape: a scrape costs no
// round trip to each master. A master whose last reading is older than
// three intervals is left out rather than shown stale. stop ends the
// background reads.
func RegisterRedisMemory(rdb redis.UniversalClient, interval time.Duration) (stop func(), err error) {
	_, stop, err = registerRedisMemory(meter(), rdb, interval)
	return stop, err
}

// RegisterHolds exports stockgate_holds_outstanding from open, called once
// per scrape (a Sampler's Get, for the same reason as RegisterStock's).
func RegisterHolds(open func(ctx context.Context) (int64, error)) error {
	_, err := registerHolds(meter(), open)
	return err
}

func registerRedisPool(m metric.Meter, name string, c redis.UniversalClient) (metric.Registration, error) {
	var size int64
	switch c := c.(type) {
	case *redis.Client:
		if c == nil {
			return nil, errors.New("redis pool metrics: nil client")
		}
		size = int64(c.Options().PoolSize)
	case *redis.ClusterClient:
		if c == nil {
			return nil, errors.New("redis pool metrics: nil client")
		}
		size = int64(c.Options().PoolSize)
	default:
		return nil, fmt.Errorf("redis pool metrics: client %T", c)
	}
	var errs []error
	gauge := func(n, unit, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(n, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	counter := func(n, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(n, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	conns := gauge("stockgate.redis.pool.connections", "{connection}", "Redis pool connections by state.")
	maxConns := gauge("stockgate.redis.pool.connections.max", "{connection}", "Redis pool size.")
	pending := gauge("stockgate.redis.pool.pending_requests", "{request}", "Requests waiting for a Redis connection.")
	hits := counter("stockgate.redis.pool.hits", "Times a free Redis connection was found in the pool.")
	misses := counter("stockgate.redis.pool.misses", "Times no free Redis connection was found in the pool.")
	timeouts := counter("stockgate.redis.pool.timeouts", "Times waiting for a Redis connection timed out.")
	waits := counter("stockgate.redis.pool.waits", "Times a caller waited for a Redis connection.")
	waitDur, err := m.Float64ObservableCounter("stockgate.redis.pool.wait.duration", metric.WithUnit("s"),
		metric.WithDescription("Total time spent waiting for a Redis connection."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("redis pool metrics: %w", err)
	}
	pool := attribute.NewSet(PoolKey.String(name))
	idle := attribute.NewSet(PoolKey.String(name), StateKey.String("idle"))
	used := attribute.NewSet(PoolKey.String(name), StateKey.String("used"))
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := c.PoolStats() // an in-memory snapshot: no I/O, no timeout needed
		o.ObserveInt64(conns, int64(s.IdleConns), metric.WithAttributeSet(idle))
		o.ObserveInt64(conns, int64(s.TotalConns)-int64(s.IdleConns), metric.WithAttributeSet(used))
		o.ObserveInt64(maxConns, size, metric.WithAttributeSet(pool))
		o.ObserveInt64(pending, int64(s.PendingRequests), metric.WithAttributeSet(pool))
		o.ObserveInt64(hits, int64(s.Hits), metric.WithAttributeSet(pool))
		o.ObserveInt64(misses, int64(s.Misses), metric.WithAttributeSet(pool))
		o.ObserveInt64(timeouts, int64(s.Timeouts), metric.WithAttributeSet(pool))
		o.ObserveInt64(waits, int64(s.WaitCount), metric.WithAttributeSet(pool))
		o.ObserveFloat64(waitDur, time.Duration(s.WaitDurationNs).Seconds(), metric.WithAttributeSet(pool))
		return nil
	}, conns, maxConns, pending, hits, misses, timeouts, waits, waitDur)
}

func registerPgxPool(m metric.Meter, p *pgxpool.Pool) (metric.Registration, error) {
	if p == nil {
		return nil, errors.New("pgx pool metrics: nil pool")
	}
	var errs []error
	gauge := func(n, desc string) metric.Int64ObservableGauge {
		g, err := m.Int64ObservableGauge(n, metric.WithUnit("{connection}"), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	counter := func(n, desc string) metric.Int64ObservableCounter {
		c, err := m.Int64ObservableCounter(n, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	conns := gauge("stockgate.pgx.pool.connections", "Postgres pool connections by state.")
	maxConns := gauge("stockgate.pgx.pool.connections.max", "Postgres pool size.")
	acquires := counter("stockgate.pgx.pool.acquires", "Successful acquires from the Postgres pool.")
	empty := counter("stockgate.pgx.pool.acquires.empty", "Acquires that had to wait for a Postgres connection.")
	canceled := counter("stockgate.pgx.pool.acquires.canceled", "Acquires canceled by their context.")
	created := counter("stockgate.pgx.pool.connections.created", "Postgres connections opened.")
	acquireDur, err := m.Float64ObservableCounter("stockgate.pgx.pool.acquire.duration", metric.WithUnit("s"),
		metric.WithDescription("Total time spent acquiring Postgres connections."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pgx pool metrics: %w", err)
	}
	idle := attribute.NewSet(StateKey.String("idle"))
	acquired := attribute.NewSet(StateKey.String("acquired"))
	constructing := attribute.NewSet(StateKey.String("constructing"))
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := p.Stat() // an in-memory snapshot: no I/O, no timeout needed
		o.ObserveInt64(conns, int64(s.IdleConns()), metric.WithAttributeSet(idle))
		o.ObserveInt64(conns, int64(s.AcquiredConns()), metric.WithAttributeSet(acquired))
		o.ObserveInt64(conns, int64(s.ConstructingConns()), metric.WithAttributeSet(constructing))
		o.ObserveInt64(maxConns, int64(s.MaxConns()))
		o.ObserveInt64(acquires, s.AcquireCount())
		o.ObserveInt64(empty, s.EmptyAcquireCount())
		o.ObserveInt64(canceled, s.CanceledAcquireCount())
		o.ObserveInt64(created, s.NewConnsCount())
		o.ObserveFloat64(acquireDur, s.AcquireDuration().Seconds())
		return nil
	}, conns, maxConns, acquires, empty, canceled, created, acquireDur)
}

// queueStates are the task states exported per queue, in QueueInfo order.
var queueStates = []string{"pending", "active", "scheduled", "retry", "archived", "completed", "aggregating"}

func queueCounts(qi *asynq.QueueInfo) []int {
	return []int{qi.Pending, qi.Active, qi.Scheduled, qi.Retry, qi.Archived, qi.Completed, qi.Aggregating}
}

type queueObserver struct {
	in     *asynq.Inspector
	queues []string
	busy   atomic.Bool
}

type queueResult struct {
	infos []*asynq.QueueInfo
	err   error
}

// infos gives up waiting when ctx ends; the query itself cannot be
// cancelled, so busy keeps a second one from starting beside it.
func (q *queueObserver) infos(ctx context.Context) ([]*asynq.QueueInfo, error) {
	if !q.busy.CompareAndSwap(false, true) {
		return nil, errors.New("queue stats: the previous query is still running")
	}
	done := make(chan queueResult, 1)
	go func() {
		defer q.busy.Store(false)
		infos, err := q.query()
		done <- queueResult{infos, err}
	}()
	select {
	case r := <-done:
		return r.infos, r.err
	case <-ctx.Done():
		return nil, fmt.Errorf("queue stats: %w", ctx.Err())
	}
}

func (q *queueObserver) query() ([]*asynq.QueueInfo, error) {
	known, err := q.in.Queues()
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	out := make([]*asynq.QueueInfo, 0, len(q.queues))
	for _, name := range q.queues {
		if !slices.Contains(known, name) {
			out = append(out, &asynq.QueueInfo{Queue: name})
			continue
		}
		qi, err := q.in.GetQueueInfo(name)
		if err != nil {
			return nil, fmt.Errorf("queue stats %s: %w", name, err)
		}
		out = append(out, qi)
	}
	return out, nil
}

func registerQueues(m metric.Meter, in *asynq.Inspector, queues ...string) (metric.Registration, error) {
	if in == nil {
		return nil, errors.New("queue metrics: nil inspector")
	}
	if len(queues) == 0 {
		return nil, errors.New("queue metrics: no queues named")
	}
	var errs []error
	tasks, err := m.Int64ObservableGauge("stockgate.queue.tasks", metric.WithUnit("{task}"),
		metric.WithDescription("Asynq tasks per queue and state."))
	errs = append(errs, err)
	latency, err := m.Float64ObservableGauge("stockgate.queue.latency", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest pending task per queue."))
	errs = append(errs, err)
	paused, err := m.Int64ObservableGauge("stockgate.queue.paused",
		metric.WithDescription("1 when the queue is paused."))
	errs = append(errs, err)
	processed, err := m.Int64ObservableCounter("stockgate.queue.processed", metric.WithUnit("{task}"),
		metric.WithDescription("Tasks processed per queue, succeeded or failed, since the queue was created."))
	errs = append(errs, err)
	failed, err := m.Int64ObservableCounter("stockgate.queue.failed", metric.WithUnit("{task}"),
		metric.WithDescription("Tasks whose processing failed per queue, since the queue was created."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("queue metrics: %w", err)
	}

	qo := &queueObserver{in: in, queues: slices.Clone(queues)}
	return m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
		defer cancel()
		infos, err := qo.infos(ctx)
		if err != nil {
			return err
		}
		for _, qi := range infos {
			q := QueueKey.String(qi.Queue)
			for i, n := range queueCounts(qi) {
				o.ObserveInt64(tasks, int64(n), metric.WithAttributes(q, StateKey.String(queueStates[i])))
			}
			o.ObserveFloat64(latency, qi.Latency.Seconds(), metric.WithAttributes(q))
			p := int64(0)
			if qi.Paused {
				p = 1
			}
			o.ObserveInt64(paused, p, metric.WithAttributes(q))
			o.ObserveInt64(processed, int64(qi.ProcessedTotal), metric.WithAttributes(q))
			o.ObserveInt64(failed, int64(qi.FailedTotal), metric.WithAttributes(q))
		}
		return nil
	}, tasks, latency, paused, processed, failed)
}

func registerStock(m metric.Meter, sample func(ctx context.Context) (StockSample, error), maxSKUs int) (metric.Registration, error) {
	if sample == nil {
		return nil, errors.New("stock metrics: nil levels func")
	}
	if maxSKUs <= 0 {
		maxSKUs = DefaultMaxSKUs
	}
	units, err := m.Int64ObservableGauge("stockgate.stock.units", metric.WithUnit("{unit}"),
		metric.WithDescription(fmt.Sprintf("Stock units per SKU and state (available, held, sold), for at most %d SKUs.", maxSKUs)))
	if err != nil {
		return nil, fmt.Errorf("stock metrics: %w", err)
	}
	skus, err := m.Int64ObservableGauge("stockgate.stock.skus", metric.WithUnit("{sku}"),
		metric.WithDescription("Stocked SKUs, including those beyond the per-SKU gauges' bound."))
	if err != nil {
		return nil, fmt.Errorf("stock metrics: %w", err)
	}
	available, held, sold := StateKey.String("available"), StateKey.String("held"), StateKey.String("sold")
	return m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
		defer cancel()
		smp, err := sample(ctx)
		if err != nil {
			return fmt.Errorf("stock levels: %w", err)
		}
		ls := smp.Levels
		o.ObserveInt64(skus, max(smp.SKUs, int64(len(ls))))
		if len(ls) > maxSKUs {
			ls = slices.SortedFunc(slices.Values(ls), func(a, b SKULevels) int { return strings.Compare(a.SKU, b.SKU) })[:maxSKUs]
		}
		for _, l := range ls {
			sku := SKUKey.String(l.SKU)
			o.ObserveInt64(units, l.Available, metric.WithAttributes(sku, available))
			o.ObserveInt64(units, l.Held, metric.WithAttributes(sku, held))
			o.ObserveInt64(units, l.Sold, metric.WithAttributes(sku, sold))
		}
		return nil
	}, units, skus)
}

func registerHolds(m metric.Meter, open func(ctx context.Context) (int64, error)) (metric.Registration, error) {
	if open == nil {
		return nil, errors.New("holds metrics: nil func")
	}
	g, err := m.Int64ObservableGauge("stockgate.holds.outstanding", metric.WithUnit("{hold}"),
		metric.WithDescription("Stock holds reserved but neither committed nor released."))
	if err != nil {
		return nil, fmt.Errorf("holds metrics: %w", err)
	}
	return m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		ctx, cancel := context.WithTimeout(ctx, callbackTimeout)
		defer cancel()
		n, err := open(ctx)
		if err != nil {
			return fmt.Errorf("holds outstanding: %w", err)
		}
		o.ObserveInt64(g, n)
		return nil
	}, g)
}

// memReading is one master's INFO memory.
type memReading struct {
	used, max int64
	at        time.Time
}

// redisMemory keeps the last reading of every master.
type redisMemory struct {
	rdb      redis.UniversalClient
	interval time.Duration
	mu       sync.Mutex
	last     map[string]memReading // by address
}

func registerRedisMemory(m metric.Meter, rdb redis.UniversalClient, interval time.Duration) (metric.Registration, func(), error) {
	switch rdb.(type) {
	case *redis.Client, *redis.ClusterClient:
	default:
		return nil, nil, fmt.Errorf("redis memory metrics: unsupported client %T", rdb)
	}
	if interval <= 0 {
		interval = DefaultRedisMemoryInterval
	}
	used, err := m.Int64ObservableGauge("stockgate.redis.used_memory", metric.WithUnit("By"),
		metric.WithDescription("Redis used_memory per master, from INFO memory."))
	if err != nil {
		return nil, nil, fmt.Errorf("redis memory metrics: %w", err)
	}
	limit, err := m.Int64ObservableGauge("stockgate.redis.maxmemory", metric.WithUnit("By"),
		metric.WithDescription("Redis maxmemory per master (0: no limit); past it, writes are refused with OOM."))
	if err != nil {
		return nil, nil, fmt.Errorf("redis memory metrics: %w", err)
	}
	rm := &redisMemory{rdb: rdb, interval: interval, last: map[string]memReading{}}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for addr, r := range rm.fresh(time.Now()) {
			a := metric.WithAttributes(AddrKey.String(addr))
			o.ObserveInt64(used, r.used, a)
			o.ObserveInt64(limit, r.max, a)
		}
		return nil
	}, used, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("redis memory metrics: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rm.run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			_ = reg.Unregister()
		})
	}
	return reg, stop, nil
}

func (rm *redisMemory) run(ctx context.Context) {
	t := time.NewTicker(rm.interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, callbackTimeout)
		_ = rm.read(rctx) // a master that does not answer is left out once its reading is stale
		cancel()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// read takes one reading of every master.
func (rm *redisMemory) read(ctx context.Context) error {
	one := func(ctx context.Context, c *redis.Client) error {
		info, err := c.Info(ctx, "memory").Result()
		if err != nil {
			return err
		}
		r, err := parseMemory(info)
		if err != nil {
			return err
		}
		r.at = time.Now()
		rm.mu.Lock()
		rm.last[c.Options().Addr] = r
		rm.mu.Unlock()
		return nil
	}
	switch c := rm.rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, one)
	case *redis.Client:
		return one(ctx, c)
	}
	return nil
}

// fresh returns the readings taken within three intervals of now.
func (rm *redisMemory) fresh(now time.Time) map[string]memReading {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	out := make(map[string]memReading, len(rm.last))
	for addr, r := range rm.last {
		if now.Sub(r.at) <= 3*rm.interval {
			out[addr] = r
		}
	}
	return out
}

// parseMemory reads used_memory and maxmemory from INFO memory's reply.
func parseMemory(info string) (memReading, error) {
	var r memReading
	var seen int
	for line := range strings.Lines(info) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (k != "used_memory" && k != "maxmemory") {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return r, fmt.Errorf("INFO memory: %s=%q: %w", k, v, err)
		}
		if k == "used_memory" {
			r.used = n
		} else {
			r.max = n
		}
		seen++
	}
	if seen != 2 {
		return r, errors.New("INFO memory: used_memory or maxmemory missing")
	}
	return r, nil
}
