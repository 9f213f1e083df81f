package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stockgate/stockgate/internal/telemetry"
	"github.com/stockgate/stockgate/internal/testsvc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type testBundle struct {
	srv  *Server
	base string // http://127.0.0.1:port
}

// start builds and starts a server on a free loopback port, shut down at
// the end of the test.
func start(t *testing.T, cfg Config) *testBundle {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return &testBundle{srv: s, base: "http://" + s.Addr()}
}

// get does one request and returns the status and body; user "" sends no
// credentials.
func (b *testBundle) do(t *testing.T, method, path, user, password string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, b.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("%s %s = 401 without a Basic WWW-Authenticate challenge", method, path)
	}
	return res.StatusCode, string(body)
}

func (b *testBundle) get(t *testing.T, path, user, password string) (int, string) {
	t.Helper()
	return b.do(t, http.MethodGet, path, user, password)
}

func TestHealthz(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{}, {User: "ops", Password: "pw"}} {
		b := start(t, cfg)
		if code, body := b.get(t, "/healthz", "", ""); code != http.StatusOK || body != "ok\n" {
			t.Errorf("GET /healthz (auth configured: %v) = %d %q, want 200 \"ok\\n\" without credentials", cfg.User != "", code, body)
		}
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	r, db, _ := testsvc.RedisDB(t)
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "up 1\n") })
	ready := func(context.Context) error { return nil }
	opt := asynq.RedisClientOpt{Addr: r.Addr, DB: db}

	t.Run("Configured", func(t *testing.T) {
		t.Parallel()
		b := start(t, Config{User: "ops", Password: "s3cret", Metrics: metrics, Ready: ready, RedisConnOpt: opt})
		for _, path := range []string{"/", "/readyz", "/metrics", "/monitoring/", "/monitoring/api/queues", "/nope"} {
			if code, _ := b.get(t, path, "", ""); code != http.StatusUnauthorized {
				t.Errorf("GET %s without credentials = %d, want 401", path, code)
			}
			if code, _ := b.get(t, path, "ops", "wrong"); code != http.StatusUnauthorized {
				t.Errorf("GET %s with a wrong password = %d, want 401", path, code)
			}
			if code, _ := b.get(t, path, "ops2", "s3cret"); code != http.StatusUnauthorized {
				t.Errorf("GET %s with a wrong user = %d, want 401", path, code)
			}
			want := http.StatusOK
			if path == "/nope" {
				want = http.StatusNotFound
			}
			if code, _ := b.get(t, path, "ops", "s3cret"); code != want {
				t.Errorf("GET %s with the right credentials = %d, want %d", path, code, want)
			}
		}
	})

	t.Run("NotConfigured", func(t *testing.T) {
		t.Parallel()
		b := start(t, Config{Metrics: metrics, Ready: ready})
		for _, path := range []string{"/readyz", "/metrics"} {
			if code, _ := b.get(t, path, "", ""); code != http.StatusOK {
				t.Errorf("GET %s on loopback without auth configured = %d, want 200", path, code)
			}
		}
	})
}

func TestRefusePublicWithoutAuth(t *testing.T) {
	t.Parallel()
	s, err := New(Config{Addr: "0.0.0.0:0"})
	if !errors.Is(err, ErrPublicWithoutAuth) {
		t.Fatalf("New(0.0.0.0:0 without auth) = %v, %v; want ErrPublicWithoutAuth", s, err)
	}
	if want := `admin address "0.0.0.0:0": refusing to listen on a non-loopback address without basic auth: set ADMIN_USER and ADMIN_PASSWORD, or listen on 127.0.0.1`; err.Error() != want {
		t.Errorf("New error = %q, want %q", err, want)
	}

	// With auth the same address binds, and the real port is reported.
	b := start(t, Config{Addr: "0.0.0.0:0", User: "ops", Password: "pw"})
	_, port, err := net.SplitHostPort(b.srv.Addr())
	if err != nil || port == "0" {
		t.Fatalf("Addr() = %q, want the bound port", b.srv.Addr())
	}
	b.base = "http://127.0.0.1:" + port
	if code, _ := b.get(t, "/readyz", "", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /readyz on 0.0.0.0 without credentials = %d, want 401", code)
	}
}

func TestStartPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s, err := New(Config{Addr: l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil || !strings.Contains(err.Error(), "admin listen") {
		t.Errorf("Start on a taken port = %v, want an admin listen error", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after a failed Start = %v, want nil", err)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		ready    func(context.Context) error
		wantCode int
		wantBody string
	}{
		{"nil check", nil, http.StatusOK, "ok\n"},
		{"ready", func(context.Context) error { return nil }, http.StatusOK, "ok\n"},
		{"not ready", func(context.Context) error {
			return errors.New("postgres: dial tcp 127.0.0.1:5432: connect: connection refused\n(retrying)")
		}, http.StatusServiceUnavailable, "postgres: dial tcp 127.0.0.1:5432: connect: connection refused (retrying)\n"},
		{"check has a deadline", func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline")
			}
			return nil
		}, http.StatusOK, "ok\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := start(t, Config{Ready: tt.ready})
			if code, body := b.get(t, "/readyz", "", ""); code != tt.wantCode || body != tt.wantBody {
				t.Errorf("GET /readyz = %d %q, want %d %q", code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// TestMetrics serves the real telemetry registry. It installs the global
// MeterProvider, so it is not parallel.
func TestMetrics(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "admin-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	c, err := otel.Meter("admin-test").Int64Counter("stockgate.admin_test.orders")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 5, metric.WithAttributes(attribute.String("outcome", "rejected")))

	b := start(t, Config{User: "prom", Password: "pw", Metrics: tel.MetricsHandler()})
	code, body := b.get(t, "/metrics", "prom", "pw")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, want 200", code)
	}
	for _, want := range []string{"\ngo_goroutines ", `stockgate_admin_test_orders_total{`, `outcome="rejected"} 5`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

func TestMonitoringReadOnly(t *testing.T) {
	t.Parallel()
	r, db, _ := testsvc.RedisDB(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr, DB: db}
	client := asynq.NewClient(opt)
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask("order:place", []byte(`{}`)), asynq.Queue("orders"), asynq.TaskID("o-1")); err != nil {
		t.Fatal(err)
	}
	in := asynq.NewInspector(opt)
	defer in.Close()
	paused := func() bool {
		qi, err := in.GetQueueInfo("orders")
		if err != nil {
			t.Fatal(err)
		}
		return qi.Paused
	}

	ro := start(t, Config{RedisConnOpt: opt})
	code, body := ro.get(t, "/monitoring/api/queues", "", "")
	var list struct {
		Queues []struct{ Queue string } `json:"queues"`
	}
	if err := json.Unmarshal([]byte(body), &list); code != http.StatusOK || err != nil || len(list.Queues) != 1 || list.Queues[0].Queue != "orders" {
		t.Fatalf("GET /monitoring/api/queues = %d %s (%v), want the orders queue", code, body, err)
	}
	if code, _ := ro.do(t, http.MethodPost, "/monitoring/api/queues/orders:pause", "", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("POST pause on a read-only monitor = %d, want 405", code)
	}
	if code, _ := ro.do(t, http.MethodDelete, "/monitoring/api/queues/orders/pending_tasks/o-1", "", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("DELETE task on a read-only monitor = %d, want 405", code)
	}
	if paused() {
		t.Fatal("queue paused through a read-only monitor")
	}

	rw := start(t, Config{RedisConnOpt: opt, MonitoringWritable: true})
	if code, body := rw.do(t, http.MethodPost, "/monitoring/api/queues/orders:pause", "", ""); code >= 300 {
		t.Fatalf("POST pause on a writable monitor = %d %s, want success", code, body)
	}
	if !paused() {
		t.Error("queue not paused after POST pause on a writable monitor")
	}
}

// TestTracingFilter checks which requests become spans. It installs the
// global TracerProvider before New, so it is not parallel.
func TestTracingFilter(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otel.SetTracerProvider(tp)

	b := start(t, Config{Metrics: http.NotFoundHandler()})
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		b.get(t, p, "", "")
	}
	if spans := exp.GetSpans(); len(spans) != 0 {
		t.Errorf("probes made %d spans (first %q), want none", len(spans), spans[0].Name)
	}
	b.get(t, "/", "", "")
	// The server ends its span after the response is written.
	testsvc.Poll(t, 5*time.Second, "a span for GET /", func() bool { return len(exp.GetSpans()) == 1 })
	if got := exp.GetSpans()[0].Name; got != "GET /" {
		t.Errorf("span name = %q, want \"GET /\"", got)
	}
}
