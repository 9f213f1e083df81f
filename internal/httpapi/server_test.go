package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/api"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
	"github.com/stockgate/stockgate/internal/testsvc/testdb"
)

// syncBuffer is a log sink tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testBundle struct {
	srv    *Server
	base   string
	client *stockgate.Client
	store  *orderstore.Store
	gate   *stock.Gate
	insp   *asynq.Inspector
	rdb    *redis.Client
	pool   *pgxpool.Pool
	redis  *testsvc.Redis // set when the test asked for a server of its own
	logs   *syncBuffer
}

type setupOpts struct {
	ownRedis bool // a redis-server the test may stop
}

// setup runs a real server on a free port over a real client, on a Redis
// DB and a migrated database of the test's own. No worker runs: tests
// decide rows through the store, as a worker would.
func setup(t *testing.T, cfg Config, opts setupOpts) *testBundle {
	t.Helper()
	ctx := context.Background()
	b := &testBundle{logs: &syncBuffer{}}
	var redisURL string
	if opts.ownRedis {
		b.redis = testsvc.NewRedis(t)
		redisURL = b.redis.URL(0)
	} else {
		r, db, _ := testsvc.RedisDB(t)
		redisURL = r.URL(db)
	}
	dbURL, pool := testdb.NewURL(t)
	b.store, b.pool = orderstore.New(pool), pool
	var err error
	b.client, err = stockgate.NewClient(ctx, stockgate.Config{RedisURL: redisURL, DatabaseURL: dbURL, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = b.client.Close() })
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rc := redis.NewClient(opt)
	t.Cleanup(func() { _ = rc.Close() })
	b.gate, b.rdb = stock.New(rc, stock.Config{}), rc
	b.insp = asynq.NewInspectorFromRedisClient(rc)

	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if b.srv, err = New(b.client, cfg); err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := b.srv.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.srv.Shutdown(ctx)
	})
	b.base = "http://" + b.srv.Addr()
	return b
}

// response is what a test looks at.
type response struct {
	code   int
	header http.Header
	body   string
	err    errorBody
}

func (b *testBundle) do(t *testing.T, method, path, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, b.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{code: resp.StatusCode, header: resp.Header, body: string(raw)}
	if resp.StatusCode >= 400 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &r.err); err != nil || r.err.Reason == "" || r.err.Error == "" || strings.Contains(r.err.Error, "\n") {
			t.Errorf("%s %s: error body %q, want {\"error\": one line, \"reason\"}", method, path, raw)
		}
	}
	return r
}

func (b *testBundle) queued(t *testing.T) int {
	t.Helper()
	queues, err := b.insp.Queues()
	if err != nil {
		t.Fatalf("Queues: %v", err)
	}
	if !slices.Contains(queues, orders.Queue) {
		return 0
	}
	info, err := b.insp.GetQueueInfo(orders.Queue)
	if err != nil {
		t.Fatalf("GetQueueInfo: %v", err)
	}
	return info.Size
}

func (b *testBundle) decide(t *testing.T, id string, st orders.Status, reason string) {
	t.Helper()
	if _, _, err := b.store.Decide(context.Background(), orders.Record{OrderID: id, CustomerID: "c-1", Status: st, Reason: reason,
		Lines: []orders.Line{{SKU: "SKU-1", Qty: 1}}}); err != nil {
		t.Fatalf("Decide(%s): %v", id, err)
	}
}

func orderJSON(id string, qty int) string {
	return fmt.Sprintf(`{"order_id":%q,"customer_id":"c-1","lines":[{"sku":"SKU-1","qty":%d}]}`, id, qty)
}

func decodeStatus(t *testing.T, body string) stockgate.Status {
	t.Helper()
	var st stockgate.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("order body %q: %v", body, err)
	}
	return st
}

func TestOrders(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, setupOpts{})

	r := b.do(t, "POST", "/v1/orders", orderJSON("o-1", 2))
	if r.code != 202 || r.header.Get("Location") != "/v1/orders/o-1" || r.body != `{"order_id":"o-1","status":"pending"}`+"\n" {
		t.Fatalf("POST o-1 = %d %q (Location %q), want 202 pending with Location /v1/orders/o-1", r.code, r.body, r.header.Get("Location"))
	}
	// A storefront retrying gets the order's state, and no second task.
	r = b.do(t, "POST", "/v1/orders", orderJSON("o-1", 2))
	if st := decodeStatus(t, r.body); r.code != 200 || st.State != stockgate.StatePending || len(st.Lines) != 1 {
		t.Errorf("POST o-1 again = %d %q, want 200 with the pending order", r.code, r.body)
	}
	if r = b.do(t, "POST", "/v1/orders", orderJSON("o-1", 3)); r.code != 409 || r.err.Reason != "conflict" {
		t.Errorf("POST o-1 with another qty = %d %q, want 409 conflict", r.code, r.body)
	}
	if n := b.queued(t); n != 1 {
		t.Errorf("queue holds %d tasks, want 1", n)
	}

	r = b.do(t, "GET", "/v1/orders/o-1", "")
	want := `{"order_id":"o-1","customer_id":"c-1","status":"pending","reason":"","detail":"","lines":[{"sku":"SKU-1","qty":2}],"placed_at":null,"decided_at":null}` + "\n"
	if r.code != 200 || r.body != want {
		t.Errorf("GET o-1 = %d %s, want 200 %s", r.code, r.body, want)
	}
	if r = b.do(t, "GET", "/v1/orders/o-1?wait=50ms", ""); r.code != 200 || decodeStatus(t, r.body).State != stockgate.StatePending {
		t.Errorf("GET o-1?wait=50ms undecided = %d %s, want 200 pending", r.code, r.body)
	}

	// A long-poll returns once the row lands.
	done := make(chan response, 1)
	go func() { done <- b.do(t, "GET", "/v1/orders/o-1?wait=20s", "") }()
	testsvc.Poll(t, 10*time.Second, "the long-poll to wait", func() bool { return b.client.Waiting() > 0 })
	b.decide(t, "o-1", orders.StatusRejected, orders.ReasonOutOfStock)
	select {
	case r = <-done:
		if st := decodeStatus(t, r.body); r.code != 200 || st.State != stockgate.StateRejected || st.Reason != "out_of_stock" || st.DecidedAt == nil {
			t.Errorf("long-poll = %d %s, want 200 rejected out_of_stock", r.code, r.body)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the long-poll did not return after the row landed")
	}
	// The retry of a decided order shows its outcome.
	if r = b.do(t, "POST", "/v1/orders", orderJSON("o-1", 2)); r.code != 200 || decodeStatus(t, r.body).State != stockgate.StateRejected {
		t.Errorf("POST o-1 after its row = %d %s, want 200 rejected", r.code, r.body)
	}

	for _, q := range []string{"31s", "abc", "-1s", "1h"} {
		if r = b.do(t, "GET", "/v1/orders/o-1?wait="+q, ""); r.code != 400 || r.err.Reason != "invalid_wait" {
			t.Errorf("GET ?wait=%s = %d %s, want 400 invalid_wait", q, r.code, r.body)
		}
	}
	if r = b.do(t, "GET", "/v1/orders/never-1", ""); r.code != 404 || r.err.Reason != "not_found" {
		t.Errorf("GET never-1 = %d %s, want 404", r.code, r.body)
	}
	if r = b.do(t, "GET", "/v1/orders/never-1?wait=1s", ""); r.code != 404 {
		t.Errorf("GET never-1?wait=1s = %d %s, want 404 at once", r.code, r.body)
	}

	if _, err := b.gate.Set(context.Background(), "SKU-1", 5); err != nil {
		t.Fatal(err)
	}
	if r = b.do(t, "GET", "/v1/stock/SKU-1", ""); r.code != 200 || r.body != `{"sku":"SKU-1","available":5,"held":0,"sold":0}`+"\n" {
		t.Errorf("GET stock SKU-1 = %d %s, want 200 with 5 available", r.code, r.body)
	}
	if r = b.do(t, "GET", "/v1/stock/NEVER", ""); r.code != 404 || r.err.Reason != "not_found" {
		t.Errorf("GET stock NEVER = %d %s, want 404", r.code, r.body)
	}
	if r = b.do(t, "GET", "/v1/openapi.yaml", ""); r.code != 200 || r.body != string(api.OpenAPI) {
		t.Errorf("GET /v1/openapi.yaml = %d, want 200 with api/openapi.yaml", r.code)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if r = b.do(t, "GET", p, ""); r.code != 200 || r.body != "ok\n" {
			t.Errorf("GET %s = %d %q, want 200 ok", p, r.code, r.body)
		}
	}
}

// TestTraceIntoTask: the storefront's traceparent reaches the task's
// headers, so the worker's spans join the storefront's trace.
func TestTraceIntoTask(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, setupOpts{})
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := b.do(t, "POST", "/v1/orders", orderJSON("tr-1", 1), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if r.code != 202 {
		t.Fatalf("POST = %d %s", r.code, r.body)
	}
	info, err := b.insp.GetTaskInfo(orders.Queue, "tr-1")
	if err != nil {
		t.Fatal(err)
	}
	tp := info.Headers["traceparent"]
	if !strings.HasPrefix(tp, "00-"+traceID+"-") || strings.Contains(tp, "00f067aa0ba902b7") {
		t.Errorf("task traceparent = %q, want trace %s under a span of the API's own", tp, traceID)
	}
}

func TestConfigRefused(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Addr: "0.0.0.0:8090"},
		{Addr: ":8090"},
		{Addr: "nohost"},
		{RateLimit: -1},
	} {
		if _, err := New(nil, cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want a refusal", cfg)
		}
	}
	_, err := New(nil, Config{Addr: "0.0.0.0:8090"})
	if !errors.Is(err, ErrPublicWithoutKeys) || strings.Contains(err.Error(), "\n") {
		t.Errorf("New(public, no keys) = %v, want one line wrapping ErrPublicWithoutKeys", err)
	}
	keys, _ := ParseKeys(strings.NewReader("shop:0123456789abcdef0123"))
	if _, err := New(nil, Config{Addr: "0.0.0.0:0", Keys: keys}); err != nil {
		t.Errorf("New(public, with keys) = %v, want nil", err)
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-s3cret-s3cret"
	keys, err := ParseKeys(strings.NewReader("# storefronts\n\nshop:" + secret + "\nother:sha256:" +
		"6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b\n"))
	if err != nil || len(keys) != 2 || keys[0].Name != "shop" || keys[1].Name != "other" {
		t.Fatalf("ParseKeys = %+v, %v; want shop and other", keys, err)
	}
	if name, err := match(keys, secret); err != nil || name != "shop" {
		t.Errorf("match(shop's secret) = %q, %v; want shop", name, err)
	}
	if name, err := match(keys, "1"); err != nil || name != "other" {
		t.Errorf("match(sha256 of \"1\") = %q, %v; want other", name, err)
	}
	if _, err := match(keys, secret+"x"); err == nil {
		t.Error("match(wrong secret) = nil error, want one")
	}
	for _, in := range []string{
		"shop",            // no secret
		"shop:short",      // too short
		"sh op:" + secret, // bad name
		"shop:" + secret + "\nshop:" + secret + "2", // twice
		"shop:sha256:zz", // bad hex
	} {
		_, err := ParseKeys(strings.NewReader(in))
		if err == nil {
			t.Errorf("ParseKeys(%q) = nil error, want one", in)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "short") && strings.Contains(err.Error(), ":short") {
			t.Errorf("ParseKeys error %q shows the secret", err)
		}
	}
}
