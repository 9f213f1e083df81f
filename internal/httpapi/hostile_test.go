package httpapi

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/orders/ordertest"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestHostilePayloads: every hostile payload of the catalogue, and some
// more broken JSON, gets a 4xx with the reason the worker would record,
// and nothing reaches the queue.
func TestHostilePayloads(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, setupOpts{})
	cases := slices.Clone(ordertest.Hostile)
	for _, extra := range []struct{ name, payload, reason string }{
		{"open-brace", `{`, "malformed JSON"},
		{"cut-after-key", `{"order_id":`, "malformed JSON"},
		{"cut-in-lines", `{"order_id":"x-1","customer_id":"c-1","lines":[{"sku":"A","qty":1}`, "malformed JSON"},
		{"not-json", `order please`, "malformed JSON"},
		{"array", `[1,2`, "payload must be a JSON object"},
	} {
		cases = append(cases, ordertest.Case{Name: extra.name, Payload: []byte(extra.payload), Reason: extra.reason})
	}
	for _, c := range cases {
		r := b.do(t, "POST", "/v1/orders", string(c.Payload), "Content-Type", "application/json")
		switch {
		case len(c.Payload) > 64<<10:
			if r.code != 413 || r.err.Reason != "too_large" {
				t.Errorf("%s: POST = %d %s, want 413 too_large", c.Name, r.code, r.body)
			}
		case r.code != 400 || !strings.HasPrefix(r.err.Reason, "invalid: ") || !strings.Contains(r.err.Reason, strings.Fields(c.Reason)[0]):
			t.Errorf("%s: POST = %d %s, want 400 with reason invalid: %s", c.Name, r.code, r.body, c.Reason)
		}
	}
	if n := b.queued(t); n != 0 {
		t.Errorf("queue holds %d tasks after hostile payloads, want 0", n)
	}
	t.Logf("%d hostile payloads refused", len(cases))
}

// TestHostileHTTP: what a broken or hostile client sends beside payloads.
func TestHostileHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{ReadHeaderTimeout: 300 * time.Millisecond, Metrics: http.NotFoundHandler()}, setupOpts{})

	// Content types and lengths, checked before the body is read.
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "", "application/json-seq", "bogus/"} {
		if r := b.do(t, "POST", "/v1/orders", orderJSON("ct-1", 1), "Content-Type", ct); r.code != 415 || r.err.Reason != "unsupported_media_type" {
			t.Errorf("POST with Content-Type %q = %d %s, want 415", ct, r.code, r.body)
		}
	}
	if r := b.do(t, "POST", "/v1/orders", orderJSON("ct-2", 1), "Content-Type", "application/json; charset=utf-8"); r.code != 202 {
		t.Errorf("POST with charset = %d %s, want 202", r.code, r.body)
	}
	// A chunked body has no length to refuse on: the read stops at the limit.
	req, _ := http.NewRequest("POST", b.base+"/v1/orders", io.MultiReader(strings.NewReader(`{"order_id":"big-1","x":"`),
		strings.NewReader(strings.Repeat("a", 70<<10))))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 413 {
		t.Errorf("POST 70 KiB chunked = %v %v, want 413", resp, err)
	} else {
		resp.Body.Close()
	}

	// A huge header is refused by net/http, before any handler.
	if r := b.do(t, "GET", "/healthz", "", "X-Huge", strings.Repeat("h", 64<<10)); r.code != 431 {
		t.Errorf("GET with a 64 KiB header = %d, want 431", r.code)
	}

	// Ids that are not ids, in the path.
	for _, p := range []string{
		"/v1/orders/a/b", "/v1/orders/..", "/v1/orders/../orders", "/v1/orders/a%2Fb", "/v1/orders/%2F", "/v1/orders/%2e%2e",
		"/v1/orders/%C3%BC", "/v1/orders/o-%E2%80%911", "/v1/orders/" + strings.Repeat("a", 65), "/v1/orders/", "/v1/orders//x",
		"/v1/stock/..", "/v1/stock/%7BSKU%7D", "/v1/stock/a%2Fb", "/v1/stock/%C3%BC", "/v1/nothing", "/",
	} {
		if r := b.do(t, "GET", p, ""); r.code != 404 || r.err.Reason != "not_found" {
			t.Errorf("GET %s = %d %s, want 404 not_found", p, r.code, r.body)
		}
	}

	// A wrong method on each route.
	_, methods, err := specStatuses()
	if err != nil {
		t.Fatal(err)
	}
	for p, allowed := range methods {
		concrete := strings.NewReplacer("{id}", "o-1", "{sku}", "SKU-1").Replace(p)
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH"} {
			if slices.Contains(allowed, m) {
				continue
			}
			r := b.do(t, m, concrete, "")
			if r.code != 405 || r.err.Reason != "method_not_allowed" || r.header.Get("Allow") != strings.Join(allowed, ", ") {
				t.Errorf("%s %s = %d %s (Allow %q), want 405 with Allow %v", m, concrete, r.code, r.body, r.header.Get("Allow"), allowed)
			}
		}
	}

	// A client sending its headers a byte at a time is cut off at the
	// header timeout, and holds nobody else up meanwhile.
	conn, err := net.Dial("tcp", b.srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	cut := make(chan time.Duration, 1)
	go func() {
		_, _ = io.Copy(io.Discard, bufio.NewReader(conn)) // ends when the server closes
		cut <- time.Since(start)
	}()
	go func() {
		for _, c := range []byte("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("s", 100) + "\r\n\r\n") {
			if _, err := conn.Write([]byte{c}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	if r := b.do(t, "GET", "/healthz", ""); r.code != 200 {
		t.Errorf("GET /healthz during the slow client = %d, want 200", r.code)
	}
	select {
	case d := <-cut:
		if d > 2*time.Second {
			t.Errorf("slow client cut after %v, want about the 300ms header timeout", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the slow client still holds its connection after 5s (it needs 2.6s to send its headers)")
	}
}

// TestAuth: with keys, every route but the probes and the spec needs one;
// the key's name, never its secret, is what logs see.
func TestAuth(t *testing.T) {
	t.Parallel()
	const secret = "shop-secret-0123456789"
	keys, err := ParseKeys(strings.NewReader("shop:" + secret + "\nother:sha256:6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b"))
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, Config{Keys: keys, RateLimit: 0.01, Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# metrics\n")
	})}, setupOpts{})

	authed := []struct{ method, path, body string }{
		{"POST", "/v1/orders", orderJSON("au-1", 1)},
		{"GET", "/v1/orders/au-1", ""},
		{"POST", "/v1/orders/au-1/confirm", ""},
		{"POST", "/v1/orders/au-1/cancel", ""},
		{"GET", "/v1/stock/SKU-1", ""},
		{"GET", "/metrics", ""},
	}
	for _, rt := range authed {
		for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong-wrong-wrong-wrong"}, {"Authorization", "Basic " + secret}, {"Authorization", secret}} {
			r := b.do(t, rt.method, rt.path, rt.body, hdr...)
			if r.code != 401 || r.err.Reason != "unauthorized" || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s with %q = %d %s, want 401 with WWW-Authenticate", rt.method, rt.path, hdr, r.code, r.body)
			}
		}
	}
	for _, p := range []string{"/healthz", "/readyz", "/v1/openapi.yaml"} {
		if r := b.do(t, "GET", p, ""); r.code != 200 {
			t.Errorf("GET %s without a key = %d, want 200", p, r.code)
		}
	}
	// "other"'s secret is "1": shorter than a file may hold, but its hash was given.
	if r := b.do(t, "GET", "/metrics", "", "Authorization", "Bearer 1"); r.code != 200 {
		t.Errorf("GET /metrics with other's key = %d %s, want 200", r.code, r.body)
	}
	// With shop's key: one request, then its rate limit (one per 100 s).
	if r := b.do(t, "POST", "/v1/orders", orderJSON("au-1", 1), "Authorization", "Bearer "+secret); r.code != 202 {
		t.Fatalf("POST with shop's key = %d %s, want 202", r.code, r.body)
	}
	for _, rt := range authed {
		r := b.do(t, rt.method, rt.path, rt.body, "Authorization", "bearer "+secret)
		if r.code != 429 || r.err.Reason != "rate_limited" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s over the rate limit = %d %s (Retry-After %q), want 429 with Retry-After", rt.method, rt.path, r.code, r.body, r.header.Get("Retry-After"))
		}
	}
	logs := b.logs.String()
	if strings.Contains(logs, secret) {
		t.Errorf("the log shows a key's secret:\n%s", logs)
	}
	if !strings.Contains(logs, `"key":"shop"`) {
		t.Errorf("the log never names key shop:\n%s", logs)
	}
}

// TestUnavailable: with Redis down, the API says 503 with Retry-After, and
// is ready again once Redis is back.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, setupOpts{ownRedis: true})
	if _, err := b.gate.Set(context.Background(), "SKU-1", 5); err != nil {
		t.Fatal(err)
	}
	b.redis.Stop()
	for _, rt := range []struct{ method, path, body string }{
		{"POST", "/v1/orders", orderJSON("un-1", 1)},
		{"GET", "/v1/orders/un-1", ""},
		{"POST", "/v1/orders/un-1/confirm", ""},
		{"POST", "/v1/orders/un-1/cancel", ""},
		{"GET", "/v1/stock/SKU-1", ""},
		{"GET", "/readyz", ""},
	} {
		r := b.do(t, rt.method, rt.path, rt.body)
		if r.code != 503 || r.err.Reason != "unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s with Redis down = %d %s, want 503 with Retry-After", rt.method, rt.path, r.code, r.body)
		}
	}
	if err := b.redis.Start(); err != nil {
		t.Fatal(err)
	}
	testsvc.Poll(t, 30*time.Second, "/readyz once Redis is back", func() bool { return b.do(t, "GET", "/readyz", "").code == 200 })
}

// TestRedisFull: a Redis at its maxmemory refuses new orders with 503
// redis_full and Retry-After, while reads go on answering.
func TestRedisFull(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, setupOpts{ownRedis: true})
	if _, err := b.gate.Set(context.Background(), "SKU-1", 5); err != nil {
		t.Fatal(err)
	}
	rdb := b.redis.Client(0)
	t.Cleanup(func() { _ = rdb.Close() })
	if err := rdb.ConfigSet(context.Background(), "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	r := b.do(t, "POST", "/v1/orders", orderJSON("full-1", 1))
	if r.code != 503 || r.err.Reason != "redis_full" || r.header.Get("Retry-After") == "" {
		t.Errorf("POST /v1/orders with Redis full = %d %s, want 503 redis_full with Retry-After", r.code, r.body)
	}
	if r := b.do(t, "GET", "/v1/stock/SKU-1", ""); r.code != 200 {
		t.Errorf("GET /v1/stock/SKU-1 with Redis full = %d %s, want 200", r.code, r.body)
	}
	if r := b.do(t, "GET", "/v1/orders/full-1", ""); r.code != 404 {
		t.Errorf("GET /v1/orders/full-1 with Redis full = %d %s, want 404 (never enqueued)", r.code, r.body)
	}
}

// TestShutdownDrains: SIGTERM's Shutdown answers long-polls at once with
// their order's state instead of waiting out their 30 s.
func TestShutdownDrains(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{}, setupOpts{})
	if r := b.do(t, "POST", "/v1/orders", orderJSON("dr-1", 1)); r.code != 202 {
		t.Fatalf("POST = %d", r.code)
	}
	done := make(chan response, 1)
	go func() { done <- b.do(t, "GET", "/v1/orders/dr-1?wait=30s", "") }()
	testsvc.Poll(t, 10*time.Second, "the long-poll to wait", func() bool { return b.client.Waiting() > 0 })
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v with a long-poll in flight, want well under its 30s", d)
	}
	if r := <-done; r.code != 200 || !strings.Contains(r.body, `"status":"pending"`) {
		t.Errorf("long-poll across Shutdown = %d %s, want 200 pending", r.code, r.body)
	}
}

// TestLongPollOutlivesReadTimeout: a ?wait= longer than the server's read
// timeout still answers at its end, with the order's state.
func TestLongPollOutlivesReadTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t, Config{ReadTimeout: 200 * time.Millisecond}, setupOpts{})
	if r := b.do(t, "POST", "/v1/orders", orderJSON("lp-1", 1)); r.code != 202 {
		t.Fatalf("POST = %d", r.code)
	}
	start := time.Now()
	r := b.do(t, "GET", "/v1/orders/lp-1?wait=1s", "")
	if d := time.Since(start); r.code != 200 || !strings.Contains(r.body, `"status":"pending"`) || d < time.Second {
		t.Errorf("GET ?wait=1s with a 200ms read timeout = %d %s after %v, want 200 pending after 1s", r.code, r.body, d)
	}
}
