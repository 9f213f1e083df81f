package telemetry

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// NewLogger returns a logger writing one JSON object per line to w. A record
// logged with a context that carries a span gets trace_id and span_id, so an
// operator can jump from a log line to the trace in Jaeger.
//
// As a safety net, string attributes whose key names a password are masked,
// and those whose key ends in "url" or "dsn" go through RedactURL.
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level, ReplaceAttr: redactAttr})
	return slog.New(traceHandler{h})
}

// traceHandler adds the span's ids at Handle time, because the span is only
// known from the context passed to each call, not when the logger is built.
type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(as)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}

func redactAttr(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindString {
		return a
	}
	k := strings.ToLower(a.Key)
	switch {
	case strings.Contains(k, "password") || strings.Contains(k, "secret"):
		return slog.String(a.Key, redacted)
	case strings.HasSuffix(k, "url") || strings.HasSuffix(k, "dsn"):
		return slog.String(a.Key, RedactURL(a.Value.String()))
	}
	return a
}
