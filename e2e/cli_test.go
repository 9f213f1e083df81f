package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// stack is one private Redis DB and Postgres database, with the commands'
// environment pointing at them.
type stack struct {
	env []string
	rdb *redis.Client
	// redact, when set, keeps secrets out of the worker output a failed
	// test logs.
	redact func(string) string
}

func newStack(t *testing.T, extraEnv ...string) *stack {
	t.Helper()
	r, db, rdb := testsvc.RedisDB(t)
	s := &stack{rdb: rdb, env: append(os.Environ(),
		"REDIS_URL="+r.URL(db),
		"DATABASE_URL="+testsvc.NewDatabase(t),
	)}
	// The test's own OTEL settings must not leak into the commands.
	s.env = append(s.env, "OTEL_TRACES_EXPORTER=", "OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_SDK_DISABLED=")
	s.env = append(s.env, extraEnv...)
	return s
}

type result struct {
	stdout, stderr string
	code           int
}

// commandTimeout bounds one run of a command.
const commandTimeout = 2 * time.Minute

func (s *stack) run(t *testing.T, env []string, name string, args ...string) result {
	t.Helper()
	r := testsvc.RunCommand(t, commandTimeout, filepath.Join(binDir, name), slices.Concat(s.env, env), args...)
	return result{r.Stdout, r.Stderr, r.Code}
}

func (s *stack) mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	return testsvc.MustRunCommand(t, commandTimeout, filepath.Join(binDir, name), s.env, args...)
}

// worker is a running worker process.
type worker struct {
	*testsvc.Process
	admin string
}

func (s *stack) startWorker(t *testing.T, env []string, args ...string) *worker {
	t.Helper()
	p, addr := s.startServer(t, "worker", "--admin-addr", env, append([]string{"--sweep-interval", "200ms"}, args...)...)
	return &worker{Process: p, admin: addr}
}

// startServer runs bin/NAME with addrFlag on a free loopback port and
// waits until /readyz there answers 200.
func (s *stack) startServer(t *testing.T, name, addrFlag string, env []string, args ...string) (*testsvc.Process, string) {
	t.Helper()
	port, err := testsvc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p := testsvc.StartProcess(t, filepath.Join(binDir, name), slices.Concat(s.env, env), append([]string{addrFlag, addr}, args...)...)
	if s.redact != nil {
		p.Redact(s.redact)
	}
	testsvc.WaitReady(t, 30*time.Second, addr, p)
	return p, addr
}

// stop sends SIGTERM and waits for a clean exit. On failure the worker's
// output is logged by its cleanup, redacted where the stack asks for it.
func (w *worker) stop(t *testing.T, within time.Duration) {
	t.Helper()
	if err := w.Stop(t, syscall.SIGTERM, within); err != nil {
		t.Fatalf("worker exit after SIGTERM = %v, want 0", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestFlashSaleCommands is the README's path through the real binaries:
// migrate, stock, a worker, a flash sale with --wait --json, show --json,
// reconcile, the admin endpoints, and a graceful stop.
func TestFlashSaleCommands(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "FS-1", "40")
	w := s.startWorker(t, nil)

	out := s.mustRun(t, "enqueue", "flash-sale", "--sku", "FS-1", "--buyers", "300", "--wait", "--json")
	var sum struct {
		Enqueued     int                `json:"enqueued"`
		Confirmed    int                `json:"confirmed"`
		Rejected     int                `json:"rejected"`
		Failed       int                `json:"failed"`
		Expired      int                `json:"expired"`
		Seconds      float64            `json:"seconds"`
		OrdersPerSec float64            `json:"orders_per_sec"`
		LatencyMS    map[string]float64 `json:"latency_ms"`
	}
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sum); err != nil {
		t.Fatalf("flash-sale --json output %q: %v", out, err)
	}
	if sum.Enqueued != 300 || sum.Confirmed != 40 || sum.Rejected != 260 || sum.Failed+sum.Expired != 0 {
		t.Errorf("flash-sale summary = %+v, want 300 enqueued, 40 confirmed, 260 rejected", sum)
	}
	for _, k := range []string{"p50", "p95", "p99"} {
		if _, ok := sum.LatencyMS[k]; !ok || sum.Seconds <= 0 || sum.OrdersPerSec <= 0 {
			t.Errorf("summary = %+v, want seconds, orders_per_sec and latency_ms.%s", sum, k)
		}
	}

	var levels []map[string]any
	if err := json.Unmarshal([]byte(s.mustRun(t, "stockctl", "show", "--json", "FS-1")), &levels); err != nil {
		t.Fatalf("show --json: %v", err)
	}
	if len(levels) != 1 || levels[0]["sku"] != "FS-1" || levels[0]["available"] != 0.0 || levels[0]["held"] != 0.0 || levels[0]["sold"] != 40.0 {
		t.Errorf("show --json FS-1 = %v, want available 0, held 0, sold 40", levels)
	}
	if r := s.run(t, nil, "stockctl", "reconcile"); r.code != 0 {
		t.Errorf("reconcile exit %d, want 0:\n%s%s", r.code, r.stdout, r.stderr)
	}

	if code, _ := get(t, "http://"+w.admin+"/healthz"); code != 200 {
		t.Errorf("/healthz = %d, want 200", code)
	}
	code, metrics := get(t, "http://"+w.admin+"/metrics")
	for _, want := range []string{
		`stockgate_orders_total{`, `status="confirmed"`, `reason="out_of_stock"`,
		`stockgate_reserve_duration_seconds_bucket`, `stockgate_stock_units{`, `sku="FS-1"`,
		`stockgate_queue_tasks{`, `go_goroutines`, `stockgate_redis_used_memory_bytes{`, `stockgate_redis_maxmemory_bytes{`,
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics (status %d) lacks %q", code, want)
		}
	}
	if code, body := get(t, "http://"+w.admin+"/monitoring/"); code != 200 || !strings.Contains(body, "Asynq monitoring") {
		t.Errorf("/monitoring/ = %d, want 200 with the asynqmon page", code)
	}
	w.stop(t, 30*time.Second)
	if strings.Contains(w.Output(), `"level":"ERROR"`) {
		t.Errorf("worker logged errors:\n%s", w.Output())
	}
}

// TestReconcileDrift: reconcile exits non-zero and names the drift when
// Redis and Postgres disagree.
func TestReconcileDrift(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "DR-1", "10")
	if r := s.run(t, nil, "stockctl", "reconcile"); r.code != 0 {
		t.Fatalf("reconcile of a fresh SKU: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// Five units appear in Redis that the catalogue never heard of.
	if err := s.rdb.IncrBy(context.Background(), stock.AvailKey("DR-1"), 5).Err(); err != nil {
		t.Fatal(err)
	}
	r := s.run(t, nil, "stockctl", "reconcile")
	if r.code != 1 || !strings.Contains(r.stdout, "DRIFT: stocked +5") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
		t.Errorf("reconcile after drift: exit %d, stdout %q, stderr %q; want exit 1, the drift named, one stderr line", r.code, r.stdout, r.stderr)
	}
}

func pgxpoolFor(t *testing.T, url string) (*pgxpool.Pool, error) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		return nil, err
	}
	t.Cleanup(pool.Close)
	return pool, nil
}

// envOf is the last value of key in env, as exec would see it.
func envOf(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}
