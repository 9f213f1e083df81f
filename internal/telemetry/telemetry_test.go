package telemetry

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// The tests in this file set the process environment and the otel globals,
// so none of them is parallel.

// clearOTelEnv makes the test independent of the OTEL_* variables of the
// shell that runs it.
func clearOTelEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{
		"OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES",
		"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
		"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	} {
		t.Setenv(k, "")
	}
}

// otelErrors collects what the SDK reports in the background.
func otelErrors(t *testing.T) func() []error {
	t.Helper()
	var (
		mu   sync.Mutex
		errs []error
	)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}))
	return func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), errs...)
	}
}

func setup(t *testing.T, cfg Config) *Telemetry {
	t.Helper()
	tel, err := Setup(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	return tel
}

func TestSetupNothingConfigured(t *testing.T) {
	clearOTelEnv(t)
	errs := otelErrors(t)

	// autoexport's own default is OTLP to localhost:4318. Listen there, when
	// the port is free, to prove nothing dials it.
	var accepted chan struct{}
	if l, err := net.Listen("tcp", "127.0.0.1:4318"); err == nil {
		accepted = make(chan struct{}, 1)
		go func() {
			if c, err := l.Accept(); err == nil {
				accepted <- struct{}{}
				c.Close()
			}
		}()
		t.Cleanup(func() { l.Close() })
	} else {
		t.Logf("port 4318 is taken (%v); checking only the error handler", err)
	}

	tel, err := Setup(context.Background(), Config{ServiceName: "quiet"})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if got := tel.Exporter(); got != ExporterNone {
		t.Errorf("Exporter() = %q, want %q", got, ExporterNone)
	}
	// No spans are built when nothing would export them, but a propagated
	// parent passes through, so logs keep the storefront's trace id.
	_, span := otel.Tracer("test").Start(context.Background(), "quiet.step")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("root span = recording %v, context %v; want a no-op span", span.IsRecording(), span.SpanContext())
	}
	span.End()
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4, 5, 6}, TraceFlags: trace.FlagsSampled, Remote: true})
	_, child := otel.Tracer("test").Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "quiet.child")
	if child.SpanContext().TraceID() != parent.TraceID() {
		t.Errorf("child of a propagated parent has trace id %s, want %s", child.SpanContext().TraceID(), parent.TraceID())
	}
	child.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
	if got := errs(); len(got) != 0 {
		t.Errorf("otel reported %v, want nothing", got)
	}
	select {
	case <-accepted:
		t.Error("something connected to 127.0.0.1:4318, want no export attempt")
	default:
	}
}

func TestSetupOTLPEndpoint(t *testing.T) {
	clearOTelEnv(t)
	errs := otelErrors(t)

	var (
		mu   sync.Mutex
		reqs []*coltracepb.ExportTraceServiceRequest
		bad  []string
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			bad = append(bad, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
			http.Error(w, "unexpected", http.StatusBadRequest)
			return
		}
		req := new(coltracepb.ExportTraceServiceRequest)
		if err := proto.Unmarshal(body, req); err != nil {
			bad = append(bad, err.Error())
		}
		reqs = append(reqs, req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(nil)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_SERVICE_NAME", "from-env")

	tel, err := Setup(context.Background(), Config{ServiceName: "from-config", Version: "1.2.3"})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if got := tel.Exporter(); got != "otlp" {
		t.Errorf("Exporter() = %q, want otlp", got)
	}
	_, span := otel.Tracer("test").Start(context.Background(), "otlp.step")
	span.End()
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown() = %v, want nil", err)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(bad) != 0 {
		t.Fatalf("collector got unexpected requests: %v", bad)
	}
	if len(reqs) == 0 {
		t.Fatal("collector got no export, want the span flushed by Shutdown")
	}
	rs := reqs[0].GetResourceSpans()[0]
	res := map[string]string{}
	for _, kv := range rs.GetResource().GetAttributes() {
		res[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	if res["service.name"] != "from-env" || res["service.version"] != "1.2.3" {
		t.Errorf("resource = %v, want service.name=from-env (OTEL_SERVICE_NAME wins) and service.version=1.2.3", res)
	}
	if got := rs.GetScopeSpans()[0].GetSpans()[0].GetName(); got != "otlp.step" {
		t.Errorf("exported span name = %q, want otlp.step", got)
	}
	if got := errs(); len(got) != 0 {
		t.Errorf("otel reported %v, want nothing", got)
	}
}

func TestSetupDisabled(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_SDK_DISABLED", "true")
	t.Setenv("OTEL_TRACES_EXPORTER", "console") // disabled wins

	tel := setup(t, Config{})
	if got := tel.Exporter(); got != ExporterDisabled {
		t.Errorf("Exporter() = %q, want %q", got, ExporterDisabled)
	}
	_, span := otel.Tracer("test").Start(context.Background(), "x")
	defer span.End()
	if span.IsRecording() {
		t.Error("span.IsRecording() = true, want false with OTEL_SDK_DISABLED=true")
	}
	if body := scrape(t, tel.MetricsHandler()); !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics lacks go_goroutines when disabled:\n%s", body)
	}
}

func TestSetupUnknownExporter(t *testing.T) {
	clearOTelEnv(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "jaegr")
	tel, err := Setup(context.Background(), Config{})
	if err == nil {
		_ = tel.Shutdown(context.Background())
		t.Fatal("Setup with OTEL_TRACES_EXPORTER=jaegr = nil error, want one naming the exporter")
	}
	if !strings.Contains(err.Error(), `"jaegr"`) {
		t.Errorf("Setup error = %q, want it to name \"jaegr\"", err)
	}
}

// TestConsoleExporter runs itself as a child process with
// OTEL_TRACES_EXPORTER=console, because the console exporter writes to the
// real stdout.
func TestConsoleExporter(t *testing.T) {
	if os.Getenv("STOCKGATE_TELEMETRY_CONSOLE_CHILD") == "1" {
		consoleChild(t)
		return
	}
	clearOTelEnv(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestConsoleExporter$", "-test.count=1")
	cmd.Env = append(os.Environ(), "STOCKGATE_TELEMETRY_CONSOLE_CHILD=1", "OTEL_TRACES_EXPORTER=console")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	_, wantTrace, ok := strings.Cut(strings.TrimSpace(stderr.String()), "trace_id=")
	if !ok {
		t.Fatalf("child stderr = %q, want trace_id=...", stderr.String())
	}
	wantTrace, _, _ = strings.Cut(wantTrace, "\n")

	type consoleSpan struct {
		Name        string
		SpanContext struct{ TraceID string }
		Parent      struct{ SpanID string }
		Resource    []struct {
			Key   string
			Value struct{ Value any }
		}
	}
	var spans []consoleSpan
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("{")) {
			continue // the child's own "PASS"
		}
		var s consoleSpan
		if err := json.Unmarshal(line, &s); err != nil {
			t.Fatalf("stdout line %q: %v", line, err)
		}
		spans = append(spans, s)
	}
	names := map[string]consoleSpan{}
	for _, s := range spans {
		names[s.Name] = s
		if s.SpanContext.TraceID != wantTrace {
			t.Errorf("span %q trace id = %s, want %s", s.Name, s.SpanContext.TraceID, wantTrace)
		}
	}
	if _, ok := names["console.parent"]; !ok {
		t.Fatalf("stdout spans = %+v, want console.parent and console.child", spans)
	}
	if _, ok := names["console.child"]; !ok {
		t.Fatalf("stdout spans = %+v, want console.parent and console.child", spans)
	}
	var service any
	for _, kv := range names["console.parent"].Resource {
		if kv.Key == "service.name" {
			service = kv.Value.Value
		}
	}
	if service != "console-test" {
		t.Errorf("service.name on stdout = %v, want console-test", service)
	}
}

func consoleChild(t *testing.T) {
	tel, err := Setup(context.Background(), Config{ServiceName: "console-test"})
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	if got := tel.Exporter(); got != "console" {
		t.Fatalf("Exporter() = %q, want console", got)
	}
	ctx, parent := otel.Tracer("test").Start(context.Background(), "console.parent")
	_, child := otel.Tracer("test").Start(ctx, "console.child")
	child.End()
	parent.End()
	os.Stderr.WriteString("trace_id=" + parent.SpanContext().TraceID().String() + "\n")
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestMetricsHandler(t *testing.T) {
	clearOTelEnv(t)
	tel := setup(t, Config{ServiceName: "metrics-test"})

	orders, err := otel.Meter("test").Int64Counter("stockgate.test.orders")
	if err != nil {
		t.Fatal(err)
	}
	orders.Add(context.Background(), 3, metric.WithAttributes(attribute.String("outcome", "confirmed")))
	if err := RegisterHolds(func(context.Context) (int64, error) { return 7, nil }); err != nil {
		t.Fatalf("RegisterHolds: %v", err)
	}

	body := scrape(t, tel.MetricsHandler())
	for _, want := range []string{
		"go_goroutines ",
		"process_open_fds ",
		`stockgate_test_orders_total{otel_scope_name="test",otel_scope_schema_url="",otel_scope_version="",outcome="confirmed"} 3`,
		`stockgate_holds_outstanding{otel_scope_name="` + ScopeName + `",otel_scope_schema_url="",otel_scope_version=""} 7`,
		`service_name="metrics-test"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, body)
		}
	}
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d, want 200: %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}
