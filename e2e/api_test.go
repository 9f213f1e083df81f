package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// apiServer is a running cmd/api process.
type apiServer struct {
	*testsvc.Process
	addr string
}

func (s *stack) startAPI(t *testing.T, env []string, args ...string) *apiServer {
	t.Helper()
	p, addr := s.startServer(t, "api", "--addr", env, args...)
	return &apiServer{Process: p, addr: addr}
}

// TestNodeStorefront: a storefront in Node.js, through the API, places
// 2,000 orders for 100 units at once, retries some, and long-polls every
// outcome. Exactly 100 confirm, every state the API gave is the order's
// row, and Redis agrees with Postgres.
func TestNodeStorefront(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed (Debian package nodejs): the storefront test needs Node.js 20")
	}
	orders, units := 2000, 100
	if testing.Short() {
		orders, units = 300, 30
	}
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "NODE-1", fmt.Sprint(units))
	s.startWorker(t, nil, "--concurrency", "32")
	const key = "node-storefront-key-0123456789"
	keys := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(keys, []byte("node:"+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := s.startAPI(t, []string{"API_KEYS_FILE=" + keys})

	cmd := exec.Command(node, filepath.Join(testsvc.RepoRoot(t), "e2e", "storefront.mjs"))
	cmd.Env = append(os.Environ(), "API_URL=http://"+a.addr, "API_KEY="+key, "SKU=NODE-1", "RUN=ns",
		fmt.Sprintf("ORDERS=%d", orders))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node storefront.mjs: %v\nstderr: %s\nstdout tail: %s", err, stderr.String(), tailOf(string(out), 3000))
	}

	type outcome struct{ OrderID, Status, Reason string }
	got := map[string]outcome{}
	var summary json.RawMessage
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var line struct {
			OrderID string          `json:"order_id"`
			Status  string          `json:"status"`
			Reason  string          `json:"reason"`
			Summary json.RawMessage `json:"summary"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("storefront output line %q: %v", sc.Text(), err)
		}
		if line.Summary != nil {
			summary = line.Summary
			continue
		}
		got[line.OrderID] = outcome{line.OrderID, line.Status, line.Reason}
	}
	t.Logf("storefront summary: %s", summary)
	if len(got) != orders {
		t.Fatalf("storefront reported %d outcomes, want %d", len(got), orders)
	}

	pool, err := pgxpoolFor(t, envOf(s.env, "DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(context.Background(), `SELECT order_id, status, reason FROM orders WHERE order_id LIKE 'ns-%'`)
	if err != nil {
		t.Fatal(err)
	}
	confirmed, inDB := 0, 0
	for rows.Next() {
		var r outcome
		if err := rows.Scan(&r.OrderID, &r.Status, &r.Reason); err != nil {
			t.Fatal(err)
		}
		inDB++
		if got[r.OrderID] != r {
			t.Errorf("order %s: the API said %+v, its row says %+v", r.OrderID, got[r.OrderID], r)
		}
		if r.Status == "confirmed" {
			confirmed++
		} else if r.Status != "rejected" || r.Reason != "out_of_stock" {
			t.Errorf("order %s = %s / %s, want confirmed or rejected / out_of_stock", r.OrderID, r.Status, r.Reason)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if inDB != orders || confirmed != units {
		t.Errorf("%d rows, %d confirmed; want %d rows (one per order, retries included) and exactly %d confirmed", inDB, confirmed, orders, units)
	}
	testsvc.Poll(t, 30*time.Second, "reconcile to be clean once the holds are settled", func() bool {
		return s.run(t, nil, "stockctl", "reconcile").code == 0
	})
	if code, body := getWithKey(t, "http://"+a.addr+"/v1/stock/NODE-1", key); code != 200 || body != fmt.Sprintf(`{"sku":"NODE-1","available":0,"held":0,"sold":%d}`+"\n", units) {
		t.Errorf("GET /v1/stock/NODE-1 = %d %s, want all %d sold", code, body, units)
	}
	code, metrics := getWithKey(t, "http://"+a.addr+"/metrics", key)
	for _, want := range []string{`stockgate_api_requests_total{code="202",`, `key="node"`, `route="/v1/orders/{id}"`, `stockgate_api_request_duration_seconds_bucket{`} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("/metrics (status %d) lacks %q", code, want)
		}
	}
	a.stopAPI(t)
	if strings.Contains(a.Output(), key) {
		t.Error("the API's log shows the key's secret")
	}
}

func (a *apiServer) stopAPI(t *testing.T) {
	t.Helper()
	if err := a.Stop(t, syscall.SIGTERM, 20*time.Second); err != nil {
		t.Errorf("api exit after SIGTERM = %v, want 0", err)
	}
}

func getWithKey(t *testing.T, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, b.String()
}

func tailOf(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

// TestAPITrace: a storefront's traceparent runs through the API and the
// task into the worker: the API's span, the publish span and the worker's
// spans share the storefront's trace id.
func TestAPITrace(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "AT-1", "5")
	console := []string{"OTEL_TRACES_EXPORTER=console", "OTEL_BSP_SCHEDULE_DELAY=100"}
	w := s.startWorker(t, console)
	a := s.startAPI(t, console)

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	req, _ := http.NewRequest("POST", "http://"+a.addr+"/v1/orders",
		strings.NewReader(`{"order_id":"at-1","customer_id":"c-1","lines":[{"sku":"AT-1","qty":1}]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("POST = %v %v, want 202", resp, err)
	}
	resp.Body.Close()
	names := func(out string) []string {
		var n []string
		for _, sp := range consoleSpans(out) {
			if sp.SpanContext.TraceID == traceID {
				n = append(n, sp.Name)
			}
		}
		return n
	}
	testsvc.Poll(t, 30*time.Second, "the API's and the worker's spans in the storefront's trace", func() bool {
		api, wk := names(a.Output()), names(w.Output())
		return slices.Contains(api, "POST /v1/orders") && slices.Contains(api, "order:place publish") &&
			slices.Contains(wk, "order:place process") && slices.Contains(wk, "order.persist")
	})
}

// TestGoModuleClient: a module of its own (e2e/testdata/gostorefront, with
// a replace directive to this repository) imports the public client,
// places an order and waits for its outcome against a real worker; and it
// is, to the byte, the README's Go example.
func TestGoModuleClient(t *testing.T) {
	t.Parallel()
	root := testsvc.RepoRoot(t)
	dir := filepath.Join(root, "e2e", "testdata", "gostorefront")
	src, err := os.ReadFile(filepath.Join(dir, "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+string(src)+"```\n") {
		t.Error("README.md does not hold e2e/testdata/gostorefront/main.go as its Go example, to the byte")
	}

	bin := filepath.Join(t.TempDir(), "storefront")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build in %s (its own module): %v\n%s", dir, err, out)
	}

	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "GO-1", "1")
	s.startWorker(t, nil)
	out := testsvc.MustRunCommand(t, commandTimeout, bin, s.env, "GO-1")
	if !strings.HasPrefix(out, "order go-") || !strings.HasSuffix(out, ": confirmed \n") {
		t.Errorf("storefront GO-1 printed %q, want \"order go-…: confirmed\"", out)
	}
	out = testsvc.MustRunCommand(t, commandTimeout, bin, s.env, "GO-1")
	if !strings.HasSuffix(out, ": rejected out_of_stock\n") {
		t.Errorf("storefront GO-1 once sold out printed %q, want rejected out_of_stock", out)
	}
}

// TestWrkScript: a one-second smoke of make bench/api's wrk script against
// a real API: its orders are accepted, and its summary line parses. The
// load itself is make bench/api's, outside make test.
func TestWrkScript(t *testing.T) {
	t.Parallel()
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk is not installed (make bench/api installs the Debian package)")
	}
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	a := s.startAPI(t, nil)
	cmd := exec.Command(wrk, "-t1", "-c2", "-d1s", "-s", filepath.Join(testsvc.RepoRoot(t), "bench", "api", "post.lua"), "http://"+a.addr+"/v1/orders")
	cmd.Env = append(os.Environ(), "RUN=smoke")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wrk: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var sum struct {
		Requests, Non2xx int
		P99MS            float64 `json:"p99_ms"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &sum); err != nil || sum.Requests == 0 || sum.Non2xx != 0 {
		t.Fatalf("wrk summary %q (%v), want requests, all 2xx", lines[len(lines)-1], err)
	}
	n, err := s.rdb.LLen(context.Background(), "asynq:{orders}:pending").Result()
	// wrk counts the answers it read; a request of each connection may be
	// cut off in flight after its order was enqueued.
	if err != nil || int(n) < sum.Requests || int(n) > sum.Requests+2 {
		t.Errorf("queue holds %d pending tasks (%v), want the %d orders wrk placed (+2 in flight), each once", n, err, sum.Requests)
	}
}
