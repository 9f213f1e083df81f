package telemetry

import (
	"context"
	"fmt"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the spans and instruments made
// here.
const ScopeName = "github.com/stockgate/stockgate/internal/telemetry"

// Span attributes for Asynq tasks, beyond the semconv messaging.* ones
// (messaging.system=asynq, messaging.destination.name=queue,
// messaging.message.id=task id, which for orders is the order id).
const (
	// TaskTypeKey is the task type, e.g. "order:place".
	TaskTypeKey = attribute.Key("asynq.task.type")
	// AttemptKey counts processing attempts from 1: asynq's retry count + 1.
	AttemptKey = attribute.Key("asynq.task.attempt")
	// MaxRetryKey is how many retries the task may have in all.
	MaxRetryKey = attribute.Key("asynq.task.max_retry")
)

var messagingSystem = semconv.MessagingSystemKey.String("asynq")

// InjectHeaders writes the W3C trace context (traceparent, tracestate) and
// baggage of ctx into h, the headers of a task about to be enqueued with
// asynq.NewTaskWithHeaders. h must not be nil. Without a span in ctx it
// writes nothing, and the worker starts a new trace.
func InjectHeaders(ctx context.Context, h map[string]string) {
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(h))
}

// StartProducerSpan starts the span for enqueueing one task: "<type> publish",
// kind producer. Call InjectHeaders with the returned context so the
// worker's consumer spans become its children, and end the span once
// Enqueue returns (recording its error).
func StartProducerSpan(ctx context.Context, taskType, queue, taskID string) (context.Context, trace.Span) {
	attrs := []attribute.KeyValue{
		messagingSystem,
		semconv.MessagingOperationTypeSend,
		semconv.MessagingOperationName("publish"),
		semconv.MessagingDestinationName(queue),
		TaskTypeKey.String(taskType),
	}
	if taskID != "" {
		attrs = append(attrs, semconv.MessagingMessageID(taskID))
	}
	return otel.Tracer(ScopeName).Start(ctx, taskType+" publish",
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
}

// AsynqMiddleware continues the producer's trace in the worker: it extracts
// the trace context from the task headers and wraps each processing attempt
// in a consumer span "<type> process" (e.g. "order:place process"). A retry
// is a new attempt, so it gets its own span in the same trace, with
// asynq.task.attempt one higher. A returned error, or a panic, marks the
// span as failed.
//
// The tracer is looked up on every task rather than once, so the middleware
// follows whatever TracerProvider is global at the time, even one installed
// after the mux was built.
func AsynqMiddleware() asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) (err error) {
			ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(t.Headers()))
			attrs := []attribute.KeyValue{
				messagingSystem,
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingOperationName("process"),
				TaskTypeKey.String(t.Type()),
			}
			if q, ok := asynq.GetQueueName(ctx); ok {
				attrs = append(attrs, semconv.MessagingDestinationName(q))
			}
			if id, ok := asynq.GetTaskID(ctx); ok {
				attrs = append(attrs, semconv.MessagingMessageID(id))
			}
			if n, ok := asynq.GetRetryCount(ctx); ok {
				attrs = append(attrs, AttemptKey.Int(n+1))
			}
			if n, ok := asynq.GetMaxRetry(ctx); ok {
				attrs = append(attrs, MaxRetryKey.Int(n))
			}
			ctx, span := otel.Tracer(ScopeName).Start(ctx, t.Type()+" process",
				trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
			defer func() {
				// asynq turns a panic into an error after this returns; end
				// the span first so it is not lost.
				if r := recover(); r != nil {
					span.SetStatus(codes.Error, fmt.Sprintf("panic: %v", r))
					span.End()
					panic(r)
				}
				if err != nil {
					span.RecordError(err)
					span.SetStatus(codes.Error, err.Error())
				}
				span.End()
			}()
			return next.ProcessTask(ctx, t)
		})
	}
}
