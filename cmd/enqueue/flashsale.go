package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/term"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/conn"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/stock"
)

// Summary is what flash-sale prints; with --json it is one object with
// these keys (a contract: load scripts parse it).
type Summary struct {
	Enqueued int `json:"enqueued"`
	// AlreadySubmitted counts orders of a --run resubmission whose task was
	// still queued or retained, so nothing was enqueued for them.
	AlreadySubmitted int       `json:"already_submitted,omitempty"`
	Confirmed        int       `json:"confirmed"`
	Rejected         int       `json:"rejected"`
	Failed           int       `json:"failed"`
	Expired          int       `json:"expired"`
	Seconds          float64   `json:"seconds"`
	OrdersPerSec     float64   `json:"orders_per_sec"`
	LatencyMS        Latencies `json:"latency_ms"`

	noLatency bool // --run orders carry no placed_at to measure from
}

// Latencies are from placed_at to decided_at, in milliseconds.
type Latencies struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

type saleFlags struct {
	sku         string
	buyers      int
	qty         int64
	concurrency int
	wait        bool
	asJSON      bool
	waitTimeout time.Duration
	run         string
	rate        float64
}

// parseSale reads and checks flash-sale's flags into f, before anything
// connects.
func parseSale(args []string, stderr io.Writer, f *saleFlags) error {
	pos, err := config.Subcommand("enqueue", "flash-sale", "flash-sale --sku SKU --buyers N [--qty Q] [--concurrency C] [--rate R] [--run ID] [--wait] [--json]", stderr, args,
		func(fs *flag.FlagSet) {
			fs.StringVar(&f.sku, "sku", "", "the SKU every buyer orders (required)")
			fs.IntVar(&f.buyers, "buyers", 0, "number of one-line orders, each from a distinct customer (required)")
			fs.Int64Var(&f.qty, "qty", 1, "units per order")
			fs.IntVar(&f.concurrency, "concurrency", 32, "orders enqueued in parallel")
			fs.Float64Var(&f.rate, "rate", 0, "offer R orders per second, spread evenly (an open loop: the schedule does not wait for the worker, "+
				"and each order's placed_at is its slot in the schedule); 0 enqueues as fast as --concurrency allows")
			fs.BoolVar(&f.wait, "wait", false, "wait until every order has its row in Postgres, then summarise outcomes and latency")
			fs.BoolVar(&f.asJSON, "json", false, "print the summary as one JSON object")
			fs.DurationVar(&f.waitTimeout, "wait-timeout", 10*time.Minute, "give up waiting after this long")
			fs.StringVar(&f.run, "run", "", "sale id: orders are RUN-1..RUN-N (default: a new id). The same --run submits the same orders again, "+
				"e.g. after Redis lost its queue; orders still queued are skipped and decided ones keep their row. "+
				"These orders carry no placed_at, so --wait reports no latency")
		})
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return fmt.Errorf("%w: unexpected argument %q", config.ErrUsage, pos[0])
	case f.sku == "":
		return fmt.Errorf("%w: --sku is required", config.ErrUsage)
	case f.buyers == 0:
		return fmt.Errorf("%w: --buyers is required", config.ErrUsage)
	case f.buyers < 1 || f.buyers > 10_000_000:
		return fmt.Errorf("%w: --buyers must be 1..10000000", config.ErrUsage)
	case f.concurrency < 1 || f.concurrency > 1024:
		return fmt.Errorf("%w: --concurrency must be 1..1024", config.ErrUsage)
	case f.rate < 0 || f.rate > 1_000_000 || f.rate != f.rate:
		return fmt.Errorf("%w: --rate must be 0..1000000 orders per second", config.ErrUsage)
	case f.waitTimeout <= 0:
		// With --wait it would give up the moment the orders are enqueued.
		return fmt.Errorf("%w: --wait-timeout must be positive", config.ErrUsage)
	}
	if err := stock.CheckSKU(f.sku); err != nil {
		return fmt.Errorf("%w: %v", config.ErrUsage, err)
	}
	if f.run != "" {
		// The longest order id is RUN-10000000, within the 64 bytes an id may have.
		if err := orders.CheckID(f.run + "-10000000"); err != nil || len(f.run) > 40 {
			return fmt.Errorf("%w: --run %q must be 1-40 characters usable in an order id", config.ErrUsage, f.run)
		}
	}
	if f.qty < 1 || f.qty > stock.MaxQty {
		return fmt.Errorf("%w: --qty must be 1..%d", config.ErrUsage, stock.MaxQty)
	}
	return nil
}

func flashSale(ctx context.Context, e *env, args []string) error {
	var f saleFlags
	if err := parseSale(args, e.stderr, &f); err != nil {
		return err
	}
	if err := e.connect(ctx); err != nil {
		return err
	}
	var store *orderstore.Store
	var gate *stock.Gate
	if f.wait {
		// Connect before enqueueing: finding Postgres down after the sale
		// started would leave the caller without a summary.
		pool, err := conn.Postgres(ctx, e.conn.DatabaseURL, nil)
		if err != nil {
			return err
		}
		defer pool.Close()
		rdb, err := conn.Redis(ctx, e.conn.RedisURL, e.conn.RedisCluster)
		if err != nil {
			return err
		}
		defer rdb.Close()
		store, gate = orderstore.New(pool), stock.New(rdb, stock.Config{})
	}

	run := cmp.Or(f.run, newID("fs-"))
	ids := make([]string, f.buyers)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", run, i+1)
	}
	prog := newProgress(e.stderr)
	start := time.Now()
	enqueued, already, err := enqueueAll(ctx, e.client, ids, run, f, prog)
	msg := fmt.Sprintf("enqueued %d/%d orders in %.2fs", enqueued, f.buyers, time.Since(start).Seconds())
	if already > 0 {
		msg += fmt.Sprintf(" (%d already submitted under --run %s, skipped)", already, run)
	}
	prog.done(msg)
	if err != nil {
		return fmt.Errorf("%w (%d of %d enqueued)", err, enqueued, f.buyers)
	}
	sum := Summary{Enqueued: enqueued, AlreadySubmitted: already, noLatency: f.run != ""}
	if !f.wait {
		sum.Seconds = time.Since(start).Seconds()
		sum.OrdersPerSec = float64(enqueued) / sum.Seconds
		return printSummary(e.stdout, sum, f.asJSON)
	}

	st, err := waitDecided(ctx, store, ids, f.waitTimeout, prog)
	if err != nil {
		return err
	}
	sum.Seconds = time.Since(start).Seconds()
	// Rows land a moment before their holds are committed; wait for that
	// too, so a reconcile right after --wait sees a settled system.
	if err := waitSettled(ctx, gate, f.sku, 30*time.Second); err != nil {
		return err
	}
	sum.Confirmed, sum.Rejected, sum.Failed, sum.Expired = st.Confirmed, st.Rejected, st.Failed, st.Expired
	sum.OrdersPerSec = float64(st.Decided) / sum.Seconds
	sum.LatencyMS = Latencies{P50: ms(st.P50), P95: ms(st.P95), P99: ms(st.P99)}
	return printSummary(e.stdout, sum, f.asJSON)
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*100) / 100 }

// enqueueAll submits every order and returns how many it enqueued and how
// many were already submitted (an earlier run with the same --run).
func enqueueAll(ctx context.Context, c *stockgate.Client, ids []string, run string, f saleFlags, prog *progress) (enqueued, already int, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var n, dup atomic.Int64
	var firstErr error
	var once sync.Once
	type slot struct {
		i  int
		at time.Time // the order's slot in a --rate schedule; zero without one
	}
	next := make(chan slot)
	var wg sync.WaitGroup
	for range f.concurrency {
		wg.Go(func() {
			for sl := range next {
				i := sl.i
				o := stockgate.Order{
					OrderID:    ids[i],
					CustomerID: fmt.Sprintf("c-%s-%d", run, i+1),
					Lines:      []stockgate.Line{{SKU: f.sku, Qty: f.qty}},
				}
				// A resubmission must be the same payload, or every order
				// already decided would count as a conflict: with --run the
				// orders carry no placed_at (and --wait shows no latency).
				if f.run == "" {
					// Under --rate the order was placed at its slot, even if
					// every submitter was busy then: latency counts the wait.
					placed := cmp.Or(sl.at, time.Now()).UTC()
					o.PlacedAt = &placed
				}
				if err := c.Submit(ctx, o); errors.Is(err, stockgate.ErrDuplicate) {
					// Still queued or retained from an earlier run with this --run.
					dup.Add(1)
				} else if err != nil {
					once.Do(func() { firstErr = err; cancel() })
					continue
				}
				prog.set("submitted", int(n.Add(1)), len(ids))
			}
		})
	}
	start := time.Now()
feed:
	for i := range ids {
		sl := slot{i: i}
		if f.rate > 0 {
			// An absolute schedule: a late slot is sent at once, and the
			// ones after it keep their times, so the offer never drifts.
			sl.at = start.Add(time.Duration(float64(i) / f.rate * float64(time.Second)))
			if d := time.Until(sl.at); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
					break feed
				}
			}
		}
		select {
		case next <- sl:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return int(n.Load() - dup.Load()), int(dup.Load()), firstErr
}

func waitDecided(ctx context.Context, store *orderstore.Store, ids []string, timeout time.Duration, prog *progress) (orderstore.Stats, error) {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	// Only undecided ids are asked about again, so the wait reads each row
	// about once and stays light on the database the sale is running on.
	pending := ids
	for {
		var err error
		if pending, err = store.Undecided(ctx, pending); err != nil {
			return orderstore.Stats{}, err
		}
		prog.set("decided", len(ids)-len(pending), len(ids))
		if len(pending) == 0 {
			prog.done(fmt.Sprintf("decided %d/%d orders", len(ids), len(ids)))
			return store.Stats(ctx, ids)
		}
		if time.Now().After(deadline) {
			prog.done("")
			return orderstore.Stats{}, fmt.Errorf("gave up after %v: %d of %d orders have no row yet (is a worker running?)",
				timeout, len(pending), len(ids))
		}
		select {
		case <-ctx.Done():
			return orderstore.Stats{}, ctx.Err()
		case <-tick.C:
		}
	}
}

func waitSettled(ctx context.Context, gate *stock.Gate, sku string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		lv, err := gate.Show(ctx, sku)
		if err != nil {
			return err
		}
		if len(lv) == 1 && lv[0].Held == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("every order has its row but %d units of %s are still held after %v", lv[0].Held, sku, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func printSummary(w io.Writer, s Summary, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(s)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "enqueued   %d\n", s.Enqueued)
	if s.AlreadySubmitted > 0 {
		fmt.Fprintf(&b, "already    %d (submitted before under this --run; not enqueued again)\n", s.AlreadySubmitted)
	}
	fmt.Fprintf(&b, "confirmed  %d\nrejected   %d\nfailed     %d\nexpired    %d\nseconds    %.2f\norders/s   %.0f\n",
		s.Confirmed, s.Rejected, s.Failed, s.Expired, s.Seconds, s.OrdersPerSec)
	if s.noLatency {
		b.WriteString("latency    n/a (--run orders carry no placed_at)\n")
	} else {
		fmt.Fprintf(&b, "latency    p50 %.1fms  p95 %.1fms  p99 %.1fms (placed_at to decided_at)\n",
			s.LatencyMS.P50, s.LatencyMS.P95, s.LatencyMS.P99)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// progress draws a bar on a terminal and plain lines otherwise, on stderr
// so that stdout stays the summary alone.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	last  time.Time
	shown bool
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	return &progress{w: w, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progress) set(what string, n, total int) {
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if n < total && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	const width = 30
	filled := width * n / max(total, 1)
	fmt.Fprintf(p.w, "\r%-8s [%s%s] %d/%d", what, strings.Repeat("#", filled), strings.Repeat(".", width-filled), n, total)
	p.shown = true
}

func (p *progress) done(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
	if line != "" {
		fmt.Fprintln(p.w, line)
	}
}
