package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// slow skips a scenario that waits for Asynq's lease recovery (a killed or
// frozen worker's tasks come back 60-120 s later) unless STOCKGATE_CHAOS=all.
func slow(t *testing.T) {
	t.Helper()
	if os.Getenv("STOCKGATE_CHAOS") != "all" {
		t.Skip("waits for Asynq's lease recovery; run with STOCKGATE_CHAOS=all (make chaos)")
	}
}

// cluster is one scenario's world: a private redis-server, a private
// Postgres server, and the commands' environment.
type cluster struct {
	t     *testing.T
	redis *testsvc.Redis
	dbURL string
	env   []string
	pool  *pgxpool.Pool
	rdb   *redis.Client
	start time.Time
}

type clusterOpts struct {
	redisArgs []string          // extra redis-server arguments, e.g. AOF settings
	pg        *testsvc.Postgres // a Postgres server the scenario owns; default a new private one
}

func newCluster(t *testing.T, o clusterOpts) *cluster {
	t.Helper()
	// Each scenario gets its own Postgres server, not a database on the
	// shared one: a few workers with pools of concurrency+4 connections,
	// times the scenarios running side by side, would exhaust a shared
	// server's max_connections and fail unrelated tests.
	if o.pg == nil {
		o.pg = testsvc.StartPostgres(t, testsvc.PostgresOptions{})
	}
	c := &cluster{t: t, redis: testsvc.NewRedis(t, o.redisArgs...), dbURL: o.pg.URL("postgres"), start: time.Now()}
	c.env = append(os.Environ(),
		"REDIS_URL="+c.redis.URL(0),
		"DATABASE_URL="+c.dbURL,
		// The test's own settings must not leak into the commands.
		"OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_SDK_DISABLED=", "STOCKGATE_FAILPOINTS=",
	)
	// Redis may be down on purpose: no client-side retries hiding it.
	c.rdb = redis.NewClient(&redis.Options{Addr: c.redis.Addr, MaxRetries: -1})
	t.Cleanup(func() { _ = c.rdb.Close() })
	c.must("stockctl", "migrate")
	pool, err := pgxpool.New(context.Background(), c.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	c.pool = pool
	return c
}

// commandTimeout bounds one run of a command.
const commandTimeout = 5 * time.Minute

func (c *cluster) run(env []string, name string, args ...string) testsvc.CommandResult {
	c.t.Helper()
	return testsvc.RunCommand(c.t, commandTimeout, filepath.Join(binDir, name), slices.Concat(c.env, env), args...)
}

func (c *cluster) must(name string, args ...string) string {
	c.t.Helper()
	return testsvc.MustRunCommand(c.t, commandTimeout, filepath.Join(binDir, name), c.env, args...)
}

// startWorker starts a worker and waits until it is ready. env may arm
// failpoints (STOCKGATE_FAILPOINTS=...).
func (c *cluster) startWorker(env []string, args ...string) *testsvc.Process {
	c.t.Helper()
	port, err := testsvc.FreePort()
	if err != nil {
		c.t.Fatal(err)
	}
	admin := fmt.Sprintf("127.0.0.1:%d", port)
	// An idle worker looks for orders every 20ms, not every 200ms, so that
	// every worker of a scenario joins its sale from the start and a fault
	// armed in one lands in the middle of it.
	args = append([]string{"--admin-addr", admin, "--sweep-interval", "500ms", "--retry-base", "100ms", "--retry-max", "5s",
		"--poll-interval", "20ms"}, args...)
	w := testsvc.StartProcess(c.t, filepath.Join(binDir, "worker"), slices.Concat(c.env, env), args...)
	testsvc.WaitReady(c.t, time.Minute, admin, w)
	return w
}

// sale is one flash sale: buyers one-unit orders RUN-1..RUN-buyers for units.
type sale struct {
	name   string
	sku    string
	run    string
	units  int
	buyers int
}

func newSale(name string, units, buyers int) sale {
	id := strings.NewReplacer("/", "-", "_", "-").Replace(name)
	return sale{name: name, sku: "CHAOS-" + id, run: "run-" + id, units: units, buyers: buyers}
}

// stock makes the sale's units available.
func (c *cluster) stock(s sale) {
	c.t.Helper()
	c.must("stockctl", "set", s.sku, fmt.Sprint(s.units))
}

// enqueue submits every order of the sale (again, when called twice:
// orders still queued are skipped, decided ones keep their row).
func (c *cluster) enqueue(s sale) {
	c.t.Helper()
	c.must("enqueue", "flash-sale", "--sku", s.sku, "--buyers", fmt.Sprint(s.buyers), "--run", s.run, "--concurrency", "16")
}

// rows counts the sale's orders that have their terminal row.
func (c *cluster) rows(s sale) int {
	var n int
	if err := c.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM orders WHERE order_id LIKE $1`, s.run+"-%").Scan(&n); err != nil {
		return -1
	}
	return n
}

// waitRows polls until at least n of the sale's orders have a row.
func (c *cluster) waitRows(s sale, n int, timeout time.Duration) {
	c.t.Helper()
	testsvc.Poll(c.t, timeout, fmt.Sprintf("%d rows for %s", n, s.run), func() bool { return c.rows(s) >= n })
}

// eventually polls cond every 100ms until it holds or timeout passes, and
// reports which; unlike testsvc.Poll it does not end the test, so that a
// scenario that never settles still prints its figures.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// midSale fails the scenario when the fault came after the sale had
// finished: it would then have tested nothing.
func (c *cluster) midSale(s sale, rows int) {
	c.t.Helper()
	if rows >= s.buyers {
		c.t.Fatalf("the fault landed after all %d orders had their row; the scenario tested nothing", s.buyers)
	}
}

// figures is a scenario's outcome, printed as one line.
type figures struct {
	Orders, Confirmed, Rejected, Failed, Expired int
	Lost, Oversold, Leaked                       int64
	Seconds                                      float64
}

func (f figures) String() string {
	return fmt.Sprintf("orders=%d confirmed=%d rejected=%d failed=%d expired=%d lost=%d oversold=%d leaked=%d seconds=%.0f",
		f.Orders, f.Confirmed, f.Rejected, f.Failed, f.Expired, f.Lost, f.Oversold, f.Leaked, f.Seconds)
}

// settle waits (up to timeout) until every order of the sale has its row,
// then (up to two minutes) until no hold is left, and measures whatever
// state it finds then; a wait that runs out is reported with the figures,
// not instead of them. Every scenario must end with:
//   - every accepted order has exactly one terminal row (lost = 0);
//   - I1: stocked (Postgres catalogue) = available + held + sold, available >= 0;
//   - sold = the confirmed quantities in Postgres (oversold = 0);
//   - no holds remain: held = 0 and no order in the deadlines set (leaked = 0);
//   - stockctl reconcile exits 0.
//
// It prints the figures line and returns the figures for the scenario's
// own expectations.
func (c *cluster) settle(s sale, timeout time.Duration) figures {
	c.t.Helper()
	t := c.t
	ctx := context.Background()
	decided := eventually(timeout, func() bool { return c.rows(s) >= s.buyers })
	quiet := decided && eventually(2*time.Minute, func() bool {
		lv, err := stock.New(c.rdb, stock.Config{}).Show(ctx, s.sku)
		if err != nil || len(lv) != 1 || lv[0].Held != 0 {
			return false
		}
		n, err := c.rdb.ZCard(ctx, stock.DeadlinesKey(s.sku)).Result()
		return err == nil && n == 0
	})
	f := figures{Orders: s.buyers, Seconds: time.Since(c.start).Seconds()}
	var confirmedQty, stocked int64
	if err := c.pool.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE status = 'confirmed'),
		count(*) FILTER (WHERE status = 'rejected'),
		count(*) FILTER (WHERE status = 'failed'),
		count(*) FILTER (WHERE status = 'expired'),
		coalesce((SELECT sum(qty) FROM order_lines l JOIN orders o USING (order_id)
			WHERE o.status = 'confirmed' AND l.sku = $2), 0),
		coalesce((SELECT stocked FROM products WHERE sku = $2), -1)
		FROM orders WHERE order_id LIKE $1`, s.run+"-%", s.sku).Scan(
		&f.Confirmed, &f.Rejected, &f.Failed, &f.Expired, &confirmedQty, &stocked); err != nil {
		t.Fatalf("read outcome: %v", err)
	}
	lv, err := stock.New(c.rdb, stock.Config{}).Show(ctx, s.sku)
	if err != nil {
		t.Fatalf("show %s: %v", s.sku, err)
	}
	l := lv[0]
	f.Lost = int64(s.buyers - (f.Confirmed + f.Rejected + f.Failed + f.Expired))
	f.Oversold = max(0, confirmedQty-stocked, l.Sold-stocked)
	f.Leaked = l.Held + max(0, stocked-l.Total())
	line := fmt.Sprintf("chaos: %-34s %s", s.name, f)
	printFigures(line)

	if !decided {
		t.Errorf("only %d of %d orders had their row after %v", c.rows(s), s.buyers, timeout)
	} else if !quiet {
		t.Errorf("units still held, or orders left in the deadlines set, two minutes after every order had its row")
	}
	c.checkBooks(f.Lost, f.Oversold, f.Leaked, l, stocked, confirmedQty)
	return f
}

// checkBooks is the end of every scenario: reconcile exits 0, nothing was
// lost, oversold or leaked, and the SKU's counters agree with Postgres (I1).
func (c *cluster) checkBooks(lost, oversold, leaked int64, l stock.Levels, stocked, confirmedQty int64) {
	c.t.Helper()
	t := c.t
	if r := c.run(nil, "stockctl", "reconcile"); r.Code != 0 {
		t.Errorf("stockctl reconcile: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if lost != 0 || oversold != 0 || leaked != 0 {
		t.Errorf("lost %d, oversold %d, leaked %d; want 0, 0, 0", lost, oversold, leaked)
	}
	if l.Available < 0 || l.Total() != stocked {
		t.Errorf("I1: available %d + held %d + sold %d = %d, stocked %d in Postgres", l.Available, l.Held, l.Sold, l.Total(), stocked)
	}
	if l.Sold != confirmedQty {
		t.Errorf("sold %d in Redis, confirmed quantities %d in Postgres", l.Sold, confirmedQty)
	}
}

// printFigures prints a scenario's figures line and appends it to
// $CHAOS_FIGURES, which make chaos prints at the end.
func printFigures(line string) {
	fmt.Println(line)
	if path := os.Getenv("CHAOS_FIGURES"); path != "" {
		if fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
			fmt.Fprintln(fh, line)
			fh.Close()
		}
	}
}

// wantSoldOut checks the outcome of a sale that every order reached: all
// units sold, every other buyer rejected out_of_stock, nothing failed.
func (c *cluster) wantSoldOut(s sale, f figures) {
	c.t.Helper()
	var oos int
	if err := c.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM orders WHERE order_id LIKE $1 AND status = 'rejected' AND reason = 'out_of_stock'`,
		s.run+"-%").Scan(&oos); err != nil {
		c.t.Fatal(err)
	}
	if f.Confirmed != s.units || oos != s.buyers-s.units || f.Failed != 0 || f.Expired != 0 {
		c.t.Errorf("%d confirmed, %d out_of_stock of %d rejected, %d failed, %d expired; want %d, %d, 0, 0",
			f.Confirmed, oos, f.Rejected, f.Failed, f.Expired, s.units, s.buyers-s.units)
	}
}
