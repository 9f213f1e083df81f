package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/internal/worker"
)

// The soak's settings, from make soak (SEED=, DURATION=, FAULTS=).
const (
	soakSeedEnv     = "STOCKGATE_SOAK_SEED"
	soakDurationEnv = "STOCKGATE_SOAK_DURATION"
	soakFaultsEnv   = "STOCKGATE_SOAK_FAULTS"
)

// The faults a soak draws from. Each names what it does to the world:
//
//	kill        SIGKILL a worker, start a new one after a while (its leased tasks come back through Asynq's recoverer)
//	stop        SIGSTOP a worker for 1-20 s, within its 30 s lease, then SIGCONT
//	stop-long   SIGSTOP a worker for 35-50 s, past its lease: its tasks go to another worker while its own attempts wait, then run on
//	slow        restart a worker whose handlers stall 16-25 s after their reserve (a failpoint), past their handler timeout and their hold's deadline, then restart it plain
//	redis       SIGKILL Redis, start it again from its AOF (appendfsync always)
//	postgres    stop Postgres for 1-12 s, then start it
//	scriptflush SCRIPT FLUSH every 100 ms for 2-10 s
//	sweep       sweeps every 20 ms for 2-8 s with a clock past every hold's deadline, racing the handlers between their reserve and their row
var soakKinds = []string{"kill", "stop", "stop-long", "slow", "redis", "postgres", "scriptflush", "sweep"}

// soakQuickKinds are the faults of the short soak in make test: none waits
// for Asynq's lease recovery (60-120 s), so the run stays near a minute.
var soakQuickKinds = []string{"stop", "slow", "postgres", "scriptflush", "sweep"}

// The workers' settings in a soak: a short handler timeout and hold TTL so
// that a slow handler outlives both within the run, and short retries.
const (
	soakHandlerTimeout = 5 * time.Second
	soakHoldTTL        = 15 * time.Second
	soakQuietTimeout   = 8 * time.Minute
)

// TestSoak runs a seeded schedule of sales and faults (docs/reliability.md,
// "The soak"): cycles of a sale on several SKUs, with multi-line orders,
// duplicate deliveries, resubmissions, conflicting payloads and bad input,
// against 2 or 3 worker processes, while faults drawn from the seed hit the
// workers, Redis and Postgres. After each cycle's quiet period it checks I1
// to I5 and stockctl reconcile. The schedule depends on the seed and the
// fault kinds only: the same seed and FAULTS replay the same sales and
// faults, at the same offsets. It prints the seed, then one line per fault.
//
// make soak SEED=S DURATION=D [FAULTS=kill,stop,…] runs a long one; make
// test runs one minute of the quick kinds with a seed from the clock.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs a minute at least")
	}
	t.Parallel()
	sc := soakSettings(t)
	t.Logf("soak: seed=%d duration=%v faults=%s; replay: make soak SEED=%d DURATION=%v FAULTS=%s",
		sc.seed, sc.duration, strings.Join(sc.kinds, ","), sc.seed, sc.duration, strings.Join(sc.kinds, ","))
	w := newSoakWorld(t, sc)
	w.run()
}

type soakConfig struct {
	seed     uint64
	duration time.Duration
	kinds    []string
}

func soakSettings(t *testing.T) soakConfig {
	t.Helper()
	sc := soakConfig{seed: uint64(time.Now().UnixNano()) % 1_000_000, duration: time.Minute, kinds: soakQuickKinds}
	if v := os.Getenv(soakSeedEnv); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", soakSeedEnv, v)
		}
		sc.seed = n
		sc.kinds = soakKinds // a soak asked for runs every kind unless told
	}
	if v := os.Getenv(soakDurationEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("%s=%q: want a duration such as 30m", soakDurationEnv, v)
		}
		sc.duration = d
	}
	if v := os.Getenv(soakFaultsEnv); v != "" && v != "all" {
		sc.kinds = nil
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); !slices.Contains(soakKinds, k) {
				t.Fatalf("%s: unknown fault %q (want some of %s, or all)", soakFaultsEnv, k, strings.Join(soakKinds, ","))
			}
			if !slices.Contains(sc.kinds, k) {
				sc.kinds = append(sc.kinds, k)
			}
		}
	} else if v == "all" {
		sc.kinds = soakKinds
	}
	return sc
}

// soakFault is one fault of the schedule: at an offset into its cycle's
// load phase, lasting dur.
type soakFault struct {
	kind   string
	at     time.Duration
	dur    time.Duration
	worker int           // kill, stop, stop-long, slow
	stall  time.Duration // slow: how long each handler stalls
}

func (f soakFault) String() string {
	s := fmt.Sprintf("%-11s at +%5.1fs for %5.1fs", f.kind, f.at.Seconds(), f.dur.Seconds())
	switch f.kind {
	case "kill", "stop", "stop-long":
		s += fmt.Sprintf(" worker %d", f.worker)
	case "slow":
		s += fmt.Sprintf(" worker %d stalling %.1fs", f.worker, f.stall.Seconds())
	}
	return s
}

// soakOrder is one planned submission.
type soakOrder struct {
	at       time.Duration
	o        stockgate.Order
	hash     string
	dup      bool          // also delivered under a second task id
	fragile  bool          // submitted with a retry budget of 1, so an outage can exhaust it
	resubmit time.Duration // > 0: submitted again this long after
	conflict bool          // then also another payload under its id
}

// soakCycle is one cycle of the schedule.
type soakCycle struct {
	n       int
	load    time.Duration
	restock map[string]int64
	faults  []soakFault
	orders  []soakOrder
	bad     []soakBad
}

// soakBad is bad input put straight on the queue: junk without a usable
// order id, or an invalid order with one.
type soakBad struct {
	at      time.Duration
	id      string // the task id
	orderID string // "" for junk
	payload []byte
	// maxRetry 1 lets an outage archive the task before a worker could
	// record its rejection: the sweeper then must.
	maxRetry int
}

// soakSchedule draws the cycles from the seed, in order: cycle n depends on
// the seed, the kinds and n alone, never on how the run went.
type soakSchedule struct {
	faults *rand.Rand
	load   *rand.Rand
	kinds  []string
	skus   []string
	nwork  int
	next   int
}

func newSoakSchedule(seed uint64, kinds []string) *soakSchedule {
	s := &soakSchedule{
		faults: rand.New(rand.NewPCG(seed, 0x50a1)),
		load:   rand.New(rand.NewPCG(seed, 0x10ad)),
		kinds:  kinds,
	}
	s.nwork = 2 + s.faults.IntN(2)
	nsku := 3 + s.faults.IntN(3)
	for i := range nsku {
		s.skus = append(s.skus, fmt.Sprintf("SOAK-%c", 'A'+i))
	}
	return s
}

// between draws a duration from lo to hi, in tenths of a second.
func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	const step = 100 * time.Millisecond
	return lo + step*time.Duration(r.Int64N(int64((hi-lo)/step)+1))
}

func (s *soakSchedule) cycle() soakCycle {
	s.next++
	r := s.faults
	c := soakCycle{n: s.next, load: between(r, 10*time.Second, 30*time.Second), restock: map[string]int64{}}
	// Between a third of the sale's demand and all of it: the sale sells
	// out on some SKUs, with holds, commits and rejections all mixed.
	supply := 0.3 + 0.7*r.Float64()
	// Faults, none overlapping another on the same target.
	busy := map[string][][2]time.Duration{}
	free := func(target string, from, to time.Duration) bool {
		for _, iv := range busy[target] {
			if from < iv[1] && iv[0] < to {
				return false
			}
		}
		return true
	}
	for range 1 + r.IntN(4) {
		f := soakFault{kind: s.kinds[r.IntN(len(s.kinds))], at: between(r, 0, c.load*4/5)}
		switch f.kind {
		case "kill":
			f.dur = between(r, 500*time.Millisecond, 8*time.Second)
		case "stop":
			f.dur = between(r, time.Second, 20*time.Second)
		case "stop-long":
			f.dur = between(r, 35*time.Second, 50*time.Second)
		case "slow":
			f.dur = between(r, 10*time.Second, 30*time.Second)
			f.stall = between(r, 16*time.Second, 25*time.Second)
		case "redis":
			f.dur = between(r, 200*time.Millisecond, 5*time.Second)
		case "postgres":
			f.dur = between(r, time.Second, 12*time.Second)
		case "scriptflush":
			f.dur = between(r, 2*time.Second, 10*time.Second)
		case "sweep":
			f.dur = between(r, 2*time.Second, 8*time.Second)
		}
		target := f.kind
		if slices.Contains([]string{"kill", "stop", "stop-long", "slow"}, f.kind) {
			f.worker = r.IntN(s.nwork)
			target = fmt.Sprintf("worker-%d", f.worker)
		}
		// A worker restarted or resumed needs a moment before it is hit again.
		if !free(target, f.at, f.at+f.dur+2*time.Second) {
			continue
		}
		busy[target] = append(busy[target], [2]time.Duration{f.at, f.at + f.dur + 2*time.Second})
		c.faults = append(c.faults, f)
	}
	slices.SortStableFunc(c.faults, func(a, b soakFault) int { return int(a.at - b.at) })

	// The sale: orders spread evenly over the load phase.
	l := s.load
	rate := 30 + l.IntN(71)
	n := int(c.load.Seconds() * float64(rate))
	placed := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC).Add(time.Duration(c.n) * time.Hour)
	for i := range n {
		o := stockgate.Order{OrderID: fmt.Sprintf("soak-%d-%d", c.n, i), CustomerID: fmt.Sprintf("c-%d", l.IntN(1000))}
		for _, k := range l.Perm(len(s.skus))[:1+l.IntN(3)] {
			o.Lines = append(o.Lines, stockgate.Line{SKU: s.skus[k], Qty: 1 + l.Int64N(3)})
		}
		at := placed.Add(time.Duration(i) * time.Millisecond)
		o.PlacedAt = &at
		so := soakOrder{at: time.Duration(float64(i) / float64(rate) * float64(time.Second)), o: o, hash: internalOrder(o).Hash()}
		so.dup = l.Float64() < 0.1
		so.fragile = l.Float64() < 0.1
		if l.Float64() < 0.1 {
			so.resubmit = between(l, 200*time.Millisecond, 5*time.Second)
			so.conflict = l.Float64() < 0.3
		}
		c.orders = append(c.orders, so)
	}
	demand := map[string]int64{}
	for _, so := range c.orders {
		for _, ln := range so.o.Lines {
			demand[ln.SKU] += ln.Qty
		}
	}
	for _, sku := range s.skus {
		c.restock[sku] = 1 + int64(supply*float64(demand[sku]))
	}
	for i := range 2 + l.IntN(3) {
		b := soakBad{at: between(l, 0, c.load), id: fmt.Sprintf("soak-%d-bad-%d", c.n, i), maxRetry: []int{1, 25}[l.IntN(2)]}
		if i%2 == 0 {
			b.payload = []byte(`{"junk":` + strconv.Itoa(i) + `}`)
		} else {
			b.orderID = b.id
			b.payload = []byte(`{"order_id":"` + b.id + `","customer_id":"c-bad","lines":[{"sku":"` + s.skus[0] + `","qty":0}]}`)
		}
		c.bad = append(c.bad, b)
	}
	return c
}

func internalOrder(o stockgate.Order) orders.Order {
	out := orders.Order{OrderID: o.OrderID, CustomerID: o.CustomerID, PlacedAt: o.PlacedAt}
	for _, l := range o.Lines {
		out.Lines = append(out.Lines, orders.Line{SKU: l.SKU, Qty: l.Qty})
	}
	return out
}

// soakSlot is one worker's place: the process in it changes as faults
// kill, freeze and restart it. want is what the schedule says should run
// there; the process follows it as soon as Redis and Postgres are up.
type soakSlot struct {
	i       int
	proc    *testsvc.Process
	admin   string
	stopped bool          // SIGSTOPped by a fault
	running time.Duration // the stall of the process running: 0 plain, -1 none
	want    time.Duration // the stall it should have: 0 plain, -1 none (killed)
}

// soakWorld is the running soak: services, workers, storefront, and what
// was accepted.
type soakWorld struct {
	t       *testing.T
	sc      soakConfig
	c       *cluster
	pg      *testsvc.Postgres
	sched   *soakSchedule
	slots   []*soakSlot
	client  *stockgate.Client
	fragile *stockgate.Client // MaxRetry 1
	ac      *asynq.Client
	insp    *asynq.Inspector
	gate    *stock.Gate
	store   *orderstore.Store
	start   time.Time

	redisUp, pgUp bool
	faultsRun     int

	mu       sync.Mutex
	accepted map[string]soakOrder // this cycle's: the first payload accepted per order id
	badIDs   []string             // this cycle's invalid orders with a usable id
	total    int                  // orders accepted in all cycles
	counts   map[string]int
}

func newSoakWorld(t *testing.T, sc soakConfig) *soakWorld {
	t.Helper()
	pg := testsvc.StartPostgres(t, testsvc.PostgresOptions{})
	c := newCluster(t, clusterOpts{pg: pg, redisArgs: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	w := &soakWorld{t: t, sc: sc, c: c, pg: pg, sched: newSoakSchedule(sc.seed, sc.kinds), start: time.Now(),
		redisUp: true, pgUp: true, accepted: map[string]soakOrder{}, counts: map[string]int{}}
	var err error
	// Storefront retries are the soak's own (submit); the client's
	// MaxRetry is the task's budget, enough to ride out the outages drawn.
	w.client, err = stockgate.NewClient(context.Background(), stockgate.Config{RedisURL: c.redis.URL(0), MaxRetry: 25})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.client.Close() })
	// A producer with a budget of one retry: an outage ends its orders
	// failed (retries_exhausted), or archived for the sweeper to record.
	w.fragile, err = stockgate.NewClient(context.Background(), stockgate.Config{RedisURL: c.redis.URL(0), MaxRetry: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.fragile.Close() })
	w.ac = asynq.NewClientFromRedisClient(c.rdb)
	w.insp = asynq.NewInspectorFromRedisClient(c.rdb)
	w.gate = stock.New(c.rdb, stock.Config{})
	w.store = orderstore.New(c.pool)
	for i := range w.sched.nwork {
		w.slots = append(w.slots, &soakSlot{i: i, running: -1})
	}
	w.converge()
	t.Logf("soak: %d workers, SKUs %s", len(w.slots), strings.Join(w.sched.skus, " "))
	return w
}

func (w *soakWorld) logf(format string, args ...any) {
	w.t.Helper()
	w.t.Logf("soak: +%6.1fs "+format, append([]any{time.Since(w.start).Seconds()}, args...)...)
}

func (w *soakWorld) count(key string, n int) {
	w.mu.Lock()
	w.counts[key] += n
	w.mu.Unlock()
}

// startSlot starts a worker in s, stalling each handler for stall after
// its reserve when stall > 0, and waits until it is ready; false when it did
// not become ready, so the caller tries again.
func (w *soakWorld) startSlot(s *soakSlot, stall time.Duration) bool {
	port, err := testsvc.FreePort()
	if err != nil {
		return false
	}
	s.admin = fmt.Sprintf("127.0.0.1:%d", port)
	env := slices.Clone(w.c.env)
	if stall > 0 {
		env = append(env, "STOCKGATE_FAILPOINTS=after_reserve=sleep:"+stall.String())
	}
	s.proc = testsvc.StartProcess(w.t, filepath.Join(binDir, "worker"), env,
		"--admin-addr", s.admin, "--concurrency", "8", "--sweep-interval", "500ms",
		"--retry-base", "100ms", "--retry-max", "2s", "--poll-interval", "20ms", "--shutdown-timeout", "2s",
		"--handler-timeout", soakHandlerTimeout.String(), "--hold-ttl", soakHoldTTL.String())
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if s.proc.Exited() {
			return false
		}
		if resp, err := http.Get("http://" + s.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				s.stopped, s.running = false, stall
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.proc.Kill()
	return false
}

// end ends s's process: SIGTERM, so Asynq hands its unfinished tasks back
// (after the 2 s shutdown timeout) instead of leaving them to lease
// recovery, then SIGKILL if it lingers.
func (w *soakWorld) end(s *soakSlot) {
	if s.proc != nil && !s.proc.Exited() {
		_ = s.proc.Signal(syscall.SIGCONT)
		_ = s.proc.Signal(syscall.SIGTERM)
		select {
		case <-s.proc.Done():
		case <-time.After(30 * time.Second):
			w.t.Errorf("worker %d still running 30s after SIGTERM", s.i)
			s.proc.Kill()
		}
	}
	s.stopped, s.running = false, -1
}

// converge makes every slot run what the schedule wants, once Redis and
// Postgres are up (a worker cannot start without them); it keeps trying,
// since a start can lose a race with a port.
func (w *soakWorld) converge() {
	if !w.redisUp || !w.pgUp {
		return
	}
	for _, s := range w.slots {
		if s.running >= 0 && s.proc.Exited() {
			w.t.Errorf("worker %d exited on its own: %v\n%s", s.i, s.proc.Err(), s.proc.Tail(3000))
			s.running = -1
		}
		if s.want == s.running {
			continue
		}
		w.end(s)
		if s.want < 0 {
			continue
		}
		deadline := time.Now().Add(3 * time.Minute)
		for !w.startSlot(s, s.want) {
			if time.Now().After(deadline) {
				w.t.Fatalf("worker %d would not start again: %v\n%s", s.i, s.proc.Err(), s.proc.Tail(2000))
			}
			time.Sleep(200 * time.Millisecond)
		}
		if s.want > 0 {
			w.logf("worker %d started with handlers stalling %v", s.i, s.want)
		} else {
			w.logf("worker %d started", s.i)
		}
	}
}

// run plays cycles until the duration is spent, checking after each.
func (w *soakWorld) run() {
	t := w.t
	for cycles := 0; ; cycles++ {
		if time.Since(w.start) >= w.sc.duration && cycles > 0 {
			break
		}
		c := w.sched.cycle()
		w.play(c)
		w.quiet(c)
		if t.Failed() {
			t.Logf("soak: FAILED in cycle %d; replay: make soak SEED=%d DURATION=%v FAULTS=%s",
				c.n, w.sc.seed, w.sc.duration, strings.Join(w.sc.kinds, ","))
			return
		}
	}
	line := fmt.Sprintf("soak: seed=%d cycles=%d faults=%d seconds=%.0f %s", w.sc.seed, w.sched.next, w.faultsRun,
		time.Since(w.start).Seconds(), w.summary())
	t.Log(line)
	printFigures(line)
}

func (w *soakWorld) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range w.counts {
			if !yield(k) {
				return
			}
		}
	})
	var b strings.Builder
	fmt.Fprintf(&b, "accepted=%d", w.total+len(w.accepted))
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%d", k, w.counts[k])
	}
	return b.String()
}

// soakEvent is one step of a cycle's timeline: a fault's start or end.
type soakEvent struct {
	at  time.Duration
	do  func()
	end bool
}

// play restocks, then runs the cycle's sale and its faults.
func (w *soakWorld) play(c soakCycle) {
	t := w.t
	for _, sku := range w.sched.skus {
		w.c.must("stockctl", "add", sku, strconv.FormatInt(c.restock[sku], 10))
	}
	w.logf("cycle %d: %v of load, %d orders, %d bad tasks, %d faults", c.n, c.load.Round(100*time.Millisecond), len(c.orders), len(c.bad), len(c.faults))

	var events []soakEvent
	var bg sync.WaitGroup // fault goroutines that need no *testing.T
	for _, f := range c.faults {
		w.logf("cycle %d fault: %s", c.n, f)
		events = append(events, w.faultEvents(f, &bg)...)
	}
	slices.SortStableFunc(events, func(a, b soakEvent) int { return int(a.at - b.at) })

	// The storefront runs beside the timeline.
	sale := make(chan struct{})
	go func() {
		defer close(sale)
		w.sale(c)
	}()
	begin := time.Now()
	for _, e := range events {
		if d := e.at - time.Since(begin); d > 0 {
			time.Sleep(d) // the schedule's own clock: faults land at their offsets
		}
		e.do()
		w.converge()
	}
	<-sale
	bg.Wait()
	if t.Failed() {
		return
	}
}

// faultEvents turns a fault into the timeline's steps. Those touching
// processes and servers run on the test's goroutine; the others run in bg.
func (w *soakWorld) faultEvents(f soakFault, bg *sync.WaitGroup) []soakEvent {
	var s *soakSlot
	if f.worker < len(w.slots) {
		s = w.slots[f.worker]
	}
	start := func(do func()) soakEvent {
		return soakEvent{at: f.at, do: func() { w.faultsRun++; do() }}
	}
	end := func(do func()) soakEvent { return soakEvent{at: f.at + f.dur, do: do, end: true} }
	switch f.kind {
	case "kill":
		return []soakEvent{
			start(func() { s.proc.Kill(); s.running, s.want = -1, -1; w.logf("killed worker %d (SIGKILL)", s.i) }),
			end(func() { s.want = 0 }),
		}
	case "stop", "stop-long":
		return []soakEvent{
			start(func() {
				if s.running >= 0 {
					_ = s.proc.Signal(syscall.SIGSTOP)
					s.stopped = true
					w.logf("froze worker %d (SIGSTOP)", s.i)
				}
			}),
			end(func() {
				if s.stopped {
					_ = s.proc.Signal(syscall.SIGCONT)
					s.stopped = false
					w.logf("resumed worker %d (SIGCONT)", s.i)
				}
			}),
		}
	case "slow":
		return []soakEvent{
			start(func() { s.want = f.stall }),
			end(func() { s.want = 0 }),
		}
	case "redis":
		return []soakEvent{
			start(func() { w.c.redis.Stop(); w.redisUp = false; w.logf("redis killed") }),
			end(func() {
				if err := w.c.redis.Start(); err != nil {
					w.t.Fatalf("restart redis from its AOF: %v", err)
				}
				w.redisUp = true
				w.logf("redis started again from its AOF")
			}),
		}
	case "postgres":
		return []soakEvent{
			start(func() {
				if err := w.pg.Stop(); err != nil {
					w.t.Fatalf("stop postgres: %v", err)
				}
				w.pgUp = false
				w.logf("postgres stopped")
			}),
			end(func() {
				if err := w.pg.Start(); err != nil {
					w.t.Fatalf("start postgres: %v", err)
				}
				w.pgUp = true
				w.logf("postgres started")
			}),
		}
	case "scriptflush":
		return []soakEvent{start(func() {
			bg.Go(func() {
				n := 0
				for until := time.Now().Add(f.dur); time.Now().Before(until); time.Sleep(100 * time.Millisecond) {
					if w.c.rdb.ScriptFlush(context.Background()).Err() == nil {
						n++
					}
				}
				w.count("script_flushes", n)
			})
		})}
	case "sweep":
		return []soakEvent{start(func() {
			bg.Go(func() {
				sw, err := worker.NewSweeper(w.gate, w.store, worker.SweeperConfig{
					Logger: slog.New(slog.DiscardHandler),
					Now:    func() time.Time { return time.Now().Add(soakHoldTTL + time.Second) }})
				if err != nil {
					w.t.Errorf("NewSweeper: %v", err)
					return
				}
				// Sweep all the time: a hold lives milliseconds between a
				// reserve and its row.
				for until := time.Now().Add(f.dur); time.Now().Before(until); time.Sleep(20 * time.Millisecond) {
					res, _ := sw.SweepOnce(context.Background()) // an outage may refuse it; the next try goes on
					w.count("swept_ahead", res.Expired)
				}
			})
		})}
	}
	return nil
}

// sale submits the cycle's orders at their offsets, as storefronts would:
// through the Go client, retrying what an outage refused.
func (w *soakWorld) sale(c soakCycle) {
	begin := time.Now()
	work := make(chan func())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for f := range work {
				f()
			}
		})
	}
	var later sync.WaitGroup
	bad := slices.Clone(c.bad)
	for _, so := range c.orders {
		for len(bad) > 0 && bad[0].at <= so.at {
			b := bad[0]
			bad = bad[1:]
			work <- func() { w.submitBad(b) }
		}
		if d := so.at - time.Since(begin); d > 0 {
			time.Sleep(d) // the sale's pace
		}
		work <- func() {
			if !w.submit(so) {
				return
			}
			if so.dup {
				w.deliverTwice(so)
			}
			if so.resubmit > 0 {
				later.Go(func() {
					time.Sleep(so.resubmit) // a storefront resubmitting later
					w.resubmit(so)
				})
			}
		}
	}
	for _, b := range bad {
		work <- func() { w.submitBad(b) }
	}
	close(work)
	wg.Wait()
	later.Wait()
}

// submit places the order, retrying through outages; true once it is
// accepted.
func (w *soakWorld) submit(so soakOrder) bool {
	o, hash, client := so.o, so.hash, w.client
	if so.fragile {
		client = w.fragile
	}
	var err error
	for try := range 8 {
		err = client.Submit(context.Background(), o)
		switch {
		case err == nil, try > 0 && errors.Is(err, stockgate.ErrDuplicate) && !errors.Is(err, stockgate.ErrConflict):
			// A retry that finds the task: an earlier try got it in.
			w.mu.Lock()
			if _, ok := w.accepted[o.OrderID]; !ok {
				w.accepted[o.OrderID] = soakOrder{o: o, hash: hash}
			}
			w.counts["submit_retries"] += try
			w.mu.Unlock()
			return true
		case errors.Is(err, stockgate.ErrDuplicate):
			w.count("unexpected_duplicates", 1)
			return false
		}
		time.Sleep(time.Duration(250<<min(try, 3)) * time.Millisecond)
	}
	w.count("refused", 1)
	return false
}

// deliverTwice puts a second task for the order on the queue under another
// task id, as a producer retrying with a fresh id would: two handlers may
// then run the order at once.
func (w *soakWorld) deliverTwice(so soakOrder) {
	t, err := orders.NewTask(context.Background(), internalOrder(so.o), orders.TaskOptions{MaxRetry: 25})
	if err != nil {
		w.t.Errorf("NewTask(%s): %v", so.o.OrderID, err)
		return
	}
	if _, err := w.ac.Enqueue(t, asynq.TaskID(so.o.OrderID+"~dup")); err == nil {
		w.count("duplicates", 1)
	}
}

// resubmit submits an accepted order again, and maybe another payload
// under its id: the first stands either way.
func (w *soakWorld) resubmit(so soakOrder) {
	switch err := w.client.Submit(context.Background(), so.o); {
	case err == nil, errors.Is(err, stockgate.ErrDuplicate) && !errors.Is(err, stockgate.ErrConflict):
		w.count("resubmits", 1)
	case errors.Is(err, stockgate.ErrConflict):
		w.t.Errorf("resubmit of %s with the same payload = %v, want nil or ErrDuplicate", so.o.OrderID, err)
	}
	if !so.conflict {
		return
	}
	other := so.o
	other.Lines = slices.Clone(so.o.Lines)
	other.Lines[0].Qty = other.Lines[0].Qty%3 + 1
	switch err := w.client.Submit(context.Background(), other); {
	case errors.Is(err, stockgate.ErrConflict):
		w.count("conflicts_refused", 1)
	case err == nil:
		w.count("conflicts_enqueued", 1) // the first task is gone; its row stands
	}
}

// submitBad puts a bad task on the queue, as a buggy producer skipping the
// client's validation would.
func (w *soakWorld) submitBad(b soakBad) {
	task := asynq.NewTask(orders.TaskType, b.payload, asynq.Queue(orders.Queue), asynq.TaskID(b.id), asynq.MaxRetry(b.maxRetry))
	for range 8 {
		if _, err := w.ac.Enqueue(task); err == nil || errors.Is(err, asynq.ErrTaskIDConflict) {
			w.mu.Lock()
			if b.orderID != "" {
				w.badIDs = append(w.badIDs, b.orderID)
			}
			w.counts["bad_tasks"]++
			w.mu.Unlock()
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// quiet brings every worker back, waits until every accepted order has its
// row and nothing is in flight, then checks the invariants.
func (w *soakWorld) quiet(c soakCycle) {
	t := w.t
	if t.Failed() {
		return
	}
	// Every fault of the cycle has ended; plain workers everywhere.
	for _, s := range w.slots {
		if s.stopped {
			_ = s.proc.Signal(syscall.SIGCONT)
			s.stopped = false
		}
		s.want = 0
	}
	w.converge()
	began := time.Now()
	ctx := context.Background()
	w.mu.Lock()
	ids := make([]string, 0, len(w.accepted)+len(w.badIDs))
	for id := range w.accepted {
		ids = append(ids, id)
	}
	ids = append(ids, w.badIDs...)
	w.mu.Unlock()

	var missing []string
	var why string
	settled := eventually(soakQuietTimeout, func() bool {
		rows, err := w.store.GetMany(ctx, ids)
		if err != nil {
			why = err.Error()
			return false
		}
		missing = missing[:0]
		for _, id := range ids {
			if _, ok := rows[id]; !ok {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			why = fmt.Sprintf("%d accepted orders without a row, e.g. %s", len(missing), missing[0])
			return false
		}
		qi, err := w.insp.GetQueueInfo(orders.Queue)
		if err != nil {
			why = err.Error()
			return false
		}
		if n := qi.Pending + qi.Active + qi.Scheduled + qi.Retry + qi.Archived; n > 0 {
			why = fmt.Sprintf("queue %s: %d pending, %d active, %d scheduled, %d retry, %d archived", orders.Queue,
				qi.Pending, qi.Active, qi.Scheduled, qi.Retry, qi.Archived)
			return false
		}
		for _, sku := range w.sched.skus {
			lv, err := w.gate.Show(ctx, sku)
			if err != nil || len(lv) != 1 || lv[0].Held != 0 {
				why = fmt.Sprintf("%s still holds units: %+v %v", sku, lv, err)
				return false
			}
			if n, err := w.c.rdb.ZCard(ctx, stock.DeadlinesKey(sku)).Result(); err != nil || n != 0 {
				why = fmt.Sprintf("%s has %d orders in its deadlines set (%v)", sku, n, err)
				return false
			}
		}
		return true
	})
	if !settled {
		t.Errorf("cycle %d not quiet after %v: %s", c.n, soakQuietTimeout, why)
		for _, s := range w.slots {
			t.Logf("worker %d output tail:\n%s", s.i, s.proc.Tail(3000))
		}
		return
	}
	w.check(c, ids)
	w.logf("cycle %d quiet after %.0fs, checked: %s", c.n, time.Since(began).Seconds(), w.summary())
	w.mu.Lock()
	w.total += len(w.accepted)
	w.accepted, w.badIDs = map[string]soakOrder{}, nil
	w.mu.Unlock()
}

// check asserts I1 to I5 and reconcile on a quiet system.
func (w *soakWorld) check(c soakCycle, ids []string) {
	t := w.t
	ctx := context.Background()
	rows, err := w.store.GetMany(ctx, ids)
	if err != nil {
		t.Fatalf("GetMany: %v", err)
	}
	// I2: one terminal row per accepted order (the primary key makes it at
	// most one), and the first payload stands.
	w.mu.Lock()
	byStatus := map[orders.Status]int{}
	for id, so := range w.accepted {
		row := rows[id]
		byStatus[row.Status]++
		switch row.Reason {
		case orders.ReasonTaskArchived, orders.ReasonRetriesExhausted, orders.ReasonHoldExpired:
			w.counts[row.Reason]++
		}
		if !row.Status.Valid() {
			t.Errorf("I2: %s has status %q", id, row.Status)
		}
		if row.PayloadHash != "" && row.PayloadHash != so.hash {
			t.Errorf("I2: %s's row is for another payload than the first accepted", id)
		}
	}
	// I5: an invalid order with a usable id is rejected with its reason.
	for _, id := range w.badIDs {
		if row := rows[id]; row.Status != orders.StatusRejected || !strings.HasPrefix(row.Reason, "invalid: ") {
			t.Errorf("I5: bad order %s = %s/%q, want rejected with an invalid: reason", id, row.Status, row.Reason)
		}
	}
	for st, n := range byStatus {
		w.counts[string(st)] += n
	}
	w.mu.Unlock()

	// I1 and I3: per SKU, stocked = available + held + sold with available
	// >= 0, nothing held, and sold = the confirmed quantities.
	confirmed, err := w.store.ConfirmedBySKU(ctx)
	if err != nil {
		t.Fatalf("ConfirmedBySKU: %v", err)
	}
	for _, sku := range w.sched.skus {
		var stocked int64
		if err := w.c.pool.QueryRow(ctx, `SELECT stocked FROM products WHERE sku = $1`, sku).Scan(&stocked); err != nil {
			t.Fatalf("stocked %s: %v", sku, err)
		}
		lv, err := w.gate.Show(ctx, sku)
		if err != nil || len(lv) != 1 {
			t.Fatalf("Show(%s) = %v, %v", sku, lv, err)
		}
		l := lv[0]
		if l.Available < 0 || l.Total() != stocked || l.Held != 0 {
			t.Errorf("I1/I3: %s available %d + held %d + sold %d = %d, stocked %d", sku, l.Available, l.Held, l.Sold, l.Total(), stocked)
		}
		if l.Sold != confirmed[sku] {
			t.Errorf("I1: %s sold %d in Redis, confirmed %d in Postgres", sku, l.Sold, confirmed[sku])
		}
	}
	// I5 too: junk ended in the settled archive, not in the queue's.
	if qi, err := w.insp.GetQueueInfo(orders.Queue); err != nil || qi.Archived != 0 {
		t.Errorf("I5: %s archive = %+v, %v; want every archived task handled and moved", orders.Queue, qi, err)
	}
	if r := w.c.run(nil, "stockctl", "reconcile"); r.Code != 0 {
		t.Errorf("stockctl reconcile after cycle %d: exit %d\n%s%s", c.n, r.Code, r.Stdout, r.Stderr)
	}
	// I5: no worker died of anything the soak did not do to it.
	for _, s := range w.slots {
		if s.proc.Exited() {
			t.Errorf("worker %d exited: %v\n%s", s.i, s.proc.Err(), s.proc.Tail(3000))
		}
	}
}
