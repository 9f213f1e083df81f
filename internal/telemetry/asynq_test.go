package telemetry

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/stockgate/stockgate/internal/testsvc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// useTracing installs an in-memory exporter as the global tracer provider.
// Tests that call it must not be parallel.
func useTracing(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return exp
}

// quietLogger keeps asynq's retry warnings out of the test output.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

// TestTraceAcrossAsynq follows one order through a real Asynq server on a
// private redis-server: the producer span, the trace context in the task
// headers, and one consumer span per attempt (the first fails, the retry
// succeeds), each with a step span below it.
func TestTraceAcrossAsynq(t *testing.T) {
	exp := useTracing(t)
	r, db, _ := testsvc.RedisDB(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr, DB: db}

	client := asynq.NewClient(opt)
	defer client.Close()
	ctx, producer := StartProducerSpan(context.Background(), "order:place", "orders", "o-1")
	h := map[string]string{}
	InjectHeaders(ctx, h)
	if h["traceparent"] == "" {
		t.Fatalf("InjectHeaders wrote %v, want a traceparent", h)
	}
	task := asynq.NewTaskWithHeaders("order:place", []byte(`{"order_id":"o-1"}`), h,
		asynq.TaskID("o-1"), asynq.Queue("orders"), asynq.MaxRetry(3))
	if _, err := client.EnqueueContext(ctx, task); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
	producer.End()

	var attempts atomic.Int32
	mux := asynq.NewServeMux()
	mux.Use(AsynqMiddleware())
	mux.HandleFunc("order:place", func(ctx context.Context, _ *asynq.Task) error {
		_, step := otel.Tracer("test").Start(ctx, "order.reserve")
		step.End()
		if attempts.Add(1) == 1 {
			return errors.New("redis: connection refused")
		}
		return nil
	})
	srv := asynq.NewServer(opt, asynq.Config{
		Concurrency:              1,
		Queues:                   map[string]int{"orders": 1},
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return 0 },
		DelayedTaskCheckInterval: 20 * time.Millisecond,
		Logger:                   quietLogger{},
	})
	if err := srv.Start(mux); err != nil {
		t.Fatalf("asynq server: %v", err)
	}
	defer srv.Shutdown()

	consumers := func() []tracetest.SpanStub {
		var out []tracetest.SpanStub
		for _, s := range exp.GetSpans() {
			if s.SpanKind == trace.SpanKindConsumer {
				out = append(out, s)
			}
		}
		return out
	}
	testsvc.Poll(t, 20*time.Second, "two consumer spans (a failed attempt and its retry)", func() bool {
		return len(consumers()) >= 2
	})
	srv.Shutdown()

	spans := exp.GetSpans()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		byID[s.SpanContext.SpanID()] = s
	}
	// One row per span, with its parent by name, in the order they ended.
	type row struct {
		Name, Parent string
		Kind         trace.SpanKind
		Attempt      int64
		Status       codes.Code
		StatusDesc   string
	}
	var got []row
	for _, s := range spans {
		if s.SpanContext.TraceID() != producer.SpanContext().TraceID() {
			t.Errorf("span %q trace id = %s, want %s (one trace per order)", s.Name, s.SpanContext.TraceID(), producer.SpanContext().TraceID())
		}
		parent := ""
		if s.Parent.IsValid() {
			parent = byID[s.Parent.SpanID()].Name
		}
		var attempt int64
		for _, kv := range s.Attributes {
			if kv.Key == AttemptKey {
				attempt = kv.Value.AsInt64()
			}
		}
		got = append(got, row{s.Name, parent, s.SpanKind, attempt, s.Status.Code, s.Status.Description})
	}
	want := []row{
		{Name: "order:place publish", Kind: trace.SpanKindProducer},
		{Name: "order.reserve", Parent: "order:place process", Kind: trace.SpanKindInternal},
		{Name: "order:place process", Parent: "order:place publish", Kind: trace.SpanKindConsumer, Attempt: 1, Status: codes.Error, StatusDesc: "redis: connection refused"},
		{Name: "order.reserve", Parent: "order:place process", Kind: trace.SpanKindInternal},
		{Name: "order:place process", Parent: "order:place publish", Kind: trace.SpanKindConsumer, Attempt: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("span tree mismatch (-want +got):\n%s", diff)
	}

	// Each step hangs under its own attempt, not just any consumer span.
	cs := consumers()
	for _, s := range spans {
		if s.Name == "order.reserve" && s.Parent.SpanID() != cs[0].SpanContext.SpanID() && s.Parent.SpanID() != cs[1].SpanContext.SpanID() {
			t.Errorf("order.reserve parent = %s, want one of the consumer spans", s.Parent.SpanID())
		}
	}
	if cs[0].Parent.SpanID() != producer.SpanContext().SpanID() || !cs[0].Parent.IsRemote() {
		t.Errorf("consumer parent = %v (remote %v), want the producer span %s arriving through the headers",
			cs[0].Parent.SpanID(), cs[0].Parent.IsRemote(), producer.SpanContext().SpanID())
	}
	wantAttrs := map[attribute.Key]attribute.Value{
		"messaging.system":           attribute.StringValue("asynq"),
		"messaging.operation.type":   attribute.StringValue("process"),
		"messaging.destination.name": attribute.StringValue("orders"),
		"messaging.message.id":       attribute.StringValue("o-1"),
		TaskTypeKey:                  attribute.StringValue("order:place"),
		MaxRetryKey:                  attribute.IntValue(3),
	}
	for _, c := range cs {
		gotAttrs := map[attribute.Key]attribute.Value{}
		for _, kv := range c.Attributes {
			if _, ok := wantAttrs[kv.Key]; ok {
				gotAttrs[kv.Key] = kv.Value
			}
		}
		if diff := cmp.Diff(wantAttrs, gotAttrs, cmp.AllowUnexported(attribute.Value{})); diff != "" {
			t.Errorf("consumer span attributes mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestAsynqMiddlewarePanic(t *testing.T) {
	exp := useTracing(t)
	h := AsynqMiddleware()(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { panic("boom") }))

	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Errorf("recover() = %v, want the handler's panic passed on", r)
			}
		}()
		_ = h.ProcessTask(context.Background(), asynq.NewTask("hold:sweep", nil))
	}()

	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("exported %d spans, want the one consumer span ended despite the panic", len(spans))
	}
	if s := spans[0]; s.Name != "hold:sweep process" || s.Status.Code != codes.Error || s.Parent.IsValid() {
		t.Errorf("span = %q status %v parent %v, want a root \"hold:sweep process\" with an error status", s.Name, s.Status, s.Parent)
	}
}
