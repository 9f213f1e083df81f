package telemetry

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// The costs the hot path pays per order: the consumer span (with the header
// extraction), the header injection on enqueue, and a log line with ids.
//
//	go test -run '^$' -bench . -benchmem ./internal/telemetry/

func BenchmarkAsynqMiddleware(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark")
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter())))
	defer tp.Shutdown(context.Background())
	otel.SetTracerProvider(tp)
	ctx, span := tp.Tracer("bench").Start(context.Background(), "publish")
	h := map[string]string{}
	InjectHeaders(ctx, h)
	span.End()
	task := asynq.NewTaskWithHeaders("order:place", nil, h)
	mw := AsynqMiddleware()(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil }))
	b.ReportAllocs()
	for b.Loop() {
		_ = mw.ProcessTask(context.Background(), task)
	}
}

func BenchmarkInjectHeaders(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark")
	}
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("bench").Start(context.Background(), "publish")
	defer span.End()
	b.ReportAllocs()
	for b.Loop() {
		InjectHeaders(ctx, make(map[string]string, 2))
	}
}

func BenchmarkLogger(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark")
	}
	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("bench").Start(context.Background(), "step")
	defer span.End()
	log := NewLogger(io.Discard, slog.LevelInfo)
	b.ReportAllocs()
	for b.Loop() {
		log.InfoContext(ctx, "order decided", "order_id", "o-123", "outcome", "confirmed")
	}
}

func BenchmarkRedactURL(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark")
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = RedactURL("postgres://app:s3cret@db:5432/stockgate?sslmode=disable&password=x")
	}
}
