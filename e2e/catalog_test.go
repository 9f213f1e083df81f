package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// The scale test's figures: a catalogue of bigSKUs, and an idle worker
// sweeping every bigSweep.
const (
	bigSKUs  = 200_000
	bigSweep = 2 * time.Second
	// idleWindow is how long the idle worker's Redis commands are counted.
	idleWindow = 20 * time.Second
)

// TestBigCatalog loads 200,000 SKUs with stockctl import, then checks what
// issue 15 asks of a big catalogue (docs/benchmarks.md, "Big catalogues"
// has the figures at a million): an idle worker's Redis commands, counted
// with INFO commandstats over a window, stay under 100 a second; /metrics
// answers without scanning the catalogue; and a sale on a few of the SKUs
// still has its expired holds settled within two sweeps, one of them a
// hold whose index entry Redis lost, which the full pass finds.
//
// It has a redis-server of its own: INFO commandstats counts the whole
// server.
func TestBigCatalog(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 200,000 SKUs; skipped with -short")
	}
	t.Parallel()
	ctx := context.Background()
	r := testsvc.NewRedis(t)
	rdb := r.Client(0)
	t.Cleanup(func() { _ = rdb.Close() })
	dbURL := testsvc.NewDatabase(t)
	s := &stack{rdb: rdb, env: append(os.Environ(), "REDIS_URL="+r.URL(0), "DATABASE_URL="+dbURL,
		"OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_SDK_DISABLED=")}
	s.mustRun(t, "stockctl", "migrate")

	file := filepath.Join(t.TempDir(), "catalogue.csv")
	writeCatalogue(t, file, bigSKUs)
	start := time.Now()
	out := s.mustRun(t, "stockctl", "import", file)
	t.Logf("import of %d SKUs: %.1fs (%s)", bigSKUs, time.Since(start).Seconds(), strings.TrimSpace(out))
	if n, err := rdb.SCard(ctx, stock.SKUsKey).Result(); err != nil || n != bigSKUs {
		t.Fatalf("SCARD %s = %d, %v; want %d", stock.SKUsKey, n, err, bigSKUs)
	}

	w := s.startWorker(t, nil, "--sweep-interval", bigSweep.String(), "--sweep-full-interval", "1h",
		"--handler-timeout", "1s", "--hold-ttl", "2s", "--log-level", "debug")
	// The worker's first full pass walks every key (100,000 a sweep);
	// idle is after it.
	testsvc.Poll(t, 2*time.Minute, "the worker's first full pass", func() bool {
		return strings.Contains(w.Output(), "full pass over the keys done")
	})

	calls0, cpu0 := commandCalls(t, rdb), cpuTicks(t, w.Pid())
	time.Sleep(idleWindow) // the window being measured, not a wait for an outcome
	calls1, cpu1 := commandCalls(t, rdb), cpuTicks(t, w.Pid())
	rate := float64(calls1-calls0) / idleWindow.Seconds()
	cpu := 100 * float64(cpu1-cpu0) / clockTicks / idleWindow.Seconds()
	t.Logf("idle worker over %v at %d SKUs: %.1f Redis commands/s, %.2f%% of a core", idleWindow, bigSKUs, rate, cpu)
	if rate > 100 {
		t.Errorf("idle worker: %.1f Redis commands/s over %v, want at most 100", rate, idleWindow)
	}

	// /metrics reads memory: the slowest of a few scrapes is logged, and
	// it must not be anywhere near a scan of the catalogue (seconds).
	var slowest time.Duration
	for range 5 {
		t0 := time.Now()
		code, body := get(t, "http://"+w.admin+"/metrics")
		slowest = max(slowest, time.Since(t0))
		skus, ok1 := metricValue(body, "stockgate_stock_skus")
		holds, ok2 := metricValue(body, "stockgate_holds_outstanding")
		if code != 200 || !ok1 || !ok2 || skus != bigSKUs || holds != 0 {
			t.Fatalf("/metrics = %d with stockgate_stock_skus %v (%v) and stockgate_holds_outstanding %v (%v); want %d and 0",
				code, skus, ok1, holds, ok2, bigSKUs)
		}
	}
	t.Logf("/metrics at %d SKUs: slowest of 5 scrapes %v", bigSKUs, slowest)
	if slowest > time.Second {
		t.Errorf("/metrics took %v, want well under a second (it serves sampled gauges from memory)", slowest)
	}

	// A sale on a few SKUs: a flash sale the worker decides, and orders
	// whose workers died holding stock (their holds taken as a handler
	// takes them, then left to expire).
	s.mustRun(t, "enqueue", "flash-sale", "--sku", sku(1234), "--buyers", "100", "--wait")
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	gate := stock.New(rdb, stock.Config{})
	deadline := time.Now().Add(time.Second)
	ids := deadHolds(t, gate, "dead", deadline, sku(42), sku(77_777), sku(bigSKUs-1))
	testsvc.Poll(t, time.Minute, "the dead orders' holds expired", func() bool { return expiredRows(t, pool, ids) == len(ids) })
	var last time.Time
	if err := pool.QueryRow(ctx, `SELECT max(decided_at) FROM orders WHERE order_id = ANY($1)`, ids).Scan(&last); err != nil {
		t.Fatal(err)
	}
	t.Logf("the last of %d expired holds was settled %v after its deadline (sweep interval %v)", len(ids), last.Sub(deadline).Round(time.Millisecond), bigSweep)
	if late := last.Sub(deadline); late > 2*bigSweep {
		t.Errorf("expired holds settled %v after their deadline, want within two sweep intervals (%v)", late, 2*bigSweep)
	}

	// A hold whose index entry Redis lost is missed by the sweeps until a
	// full pass finds it: a worker starting now makes one at once.
	lost := deadHolds(t, gate, "lost", time.Now().Add(-time.Second), sku(99_999))
	for b := range stock.IndexBuckets {
		if err := rdb.ZRem(ctx, stock.HoldingKey(b), sku(99_999)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	w.stop(t, 30*time.Second)
	w = s.startWorker(t, nil, "--sweep-interval", bigSweep.String())
	testsvc.Poll(t, 2*time.Minute, "the full pass to find the unindexed hold", func() bool { return expiredRows(t, pool, lost) == len(lost) })
	for _, n := range []int{42, 77_777, bigSKUs - 1, 99_999} {
		if lv, err := gate.Show(ctx, sku(n)); err != nil || lv[0].Held != 0 || lv[0].Available != int64(100+n%900) {
			t.Errorf("%s after the sweeps = %+v, %v; want nothing held, every unit back", sku(n), lv, err)
		}
	}
	if r := s.run(t, nil, "stockctl", "reconcile", "--json"); r.code != 0 {
		t.Errorf("reconcile after the sale: exit %d\n%s", r.code, r.stderr)
	}
	w.stop(t, 30*time.Second)
}

// deadHolds takes, for each SKU, the holds of three orders whose workers
// then died, until deadline, and returns the orders' ids.
func deadHolds(t *testing.T, gate *stock.Gate, prefix string, deadline time.Time, skus ...string) []string {
	t.Helper()
	var ids []string
	for _, s := range skus {
		for j := range 3 {
			id := fmt.Sprintf("%s-%s-%d", prefix, s, j)
			if _, err := gate.Reserve(context.Background(), id, []stock.Line{{SKU: s, Qty: 1}}, deadline); err != nil {
				t.Fatalf("Reserve(%s): %v", id, err)
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// expiredRows counts the orders of ids recorded expired.
func expiredRows(t *testing.T, pool *pgxpool.Pool, ids []string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM orders WHERE order_id = ANY($1) AND status = 'expired'`, ids).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// metricValue is the value of the first series of name in a /metrics
// body.
func metricValue(body, name string) (float64, bool) {
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, name); ok && (rest[0] == '{' || rest[0] == ' ') {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest[strings.LastIndexByte(rest, ' ')+1:]), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// sku is the catalogue's SKU number n.
func sku(n int) string { return fmt.Sprintf("BIG-%07d", n) }

func writeCatalogue(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "sku,qty")
	for i := range n {
		fmt.Fprintf(w, "%s,%d\n", sku(i), 100+i%900)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// commandCalls is how many commands the server has run, INFO (the test's
// own) left out.
func commandCalls(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok || name == "cmdstat_info" {
			continue
		}
		n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		total += n
	}
	return total
}

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat times.
const clockTicks = 100

// cpuTicks is the process's user + system time so far, in clock ticks.
func cpuTicks(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14, stime 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}
