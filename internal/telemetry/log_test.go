package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestNewLogger(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		buf *bytes.Buffer
		log *slog.Logger
		tp  *sdktrace.TracerProvider
	}
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		// An SDK provider with no exporter still mints real ids.
		tp := sdktrace.NewTracerProvider()
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		buf := new(bytes.Buffer)
		return &testBundle{buf: buf, log: NewLogger(buf, slog.LevelInfo), tp: tp}
	}
	lines := func(t *testing.T, buf *bytes.Buffer) []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("log line %q is not JSON: %v", l, err)
			}
			out = append(out, m)
		}
		return out
	}

	t.Run("TraceIDs", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		ctx, span := b.tp.Tracer("test").Start(context.Background(), "step")
		defer span.End()
		sc := span.SpanContext()

		b.log.InfoContext(ctx, "reserved", "order_id", "o-1")
		b.log.With("worker", 1).WithGroup("g").InfoContext(ctx, "grouped")
		b.log.Info("no span")

		got := lines(t, b.buf)
		if len(got) != 3 {
			t.Fatalf("logged %d lines, want 3:\n%s", len(got), b.buf)
		}
		if got[0]["trace_id"] != sc.TraceID().String() || got[0]["span_id"] != sc.SpanID().String() {
			t.Errorf("line 1 trace_id, span_id = %v, %v, want %s, %s", got[0]["trace_id"], got[0]["span_id"], sc.TraceID(), sc.SpanID())
		}
		// slog puts Handle-time attributes inside open groups.
		g, _ := got[1]["g"].(map[string]any)
		if g["trace_id"] != sc.TraceID().String() || got[1]["worker"] != float64(1) {
			t.Errorf("line 2 = %v, want worker=1 and g.trace_id=%s", got[1], sc.TraceID())
		}
		if _, ok := got[2]["trace_id"]; ok {
			t.Errorf("line 3 = %v, want no trace_id without a span", got[2])
		}
	})

	t.Run("Level", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.log.Debug("hidden")
		b.log.Warn("shown")
		if got := b.buf.String(); strings.Contains(got, "hidden") || !strings.Contains(got, "shown") {
			t.Errorf("log at LevelInfo = %q, want only the warning", got)
		}
	})

	t.Run("RedactsSecrets", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.log.Info("start", "redis_url", "redis://:s3cret@h:6379/0", "DATABASE_URL", "postgres://a:s3cret@db/sg",
			"admin_password", "s3cret", "concurrency", 10)
		got := b.buf.String()
		if strings.Contains(got, "s3cret") {
			t.Fatalf("log = %s, leaks the password", got)
		}
		m := lines(t, b.buf)[0]
		if m["redis_url"] != "redis://:xxxxx@h:6379/0" || m["admin_password"] != "xxxxx" || m["concurrency"] != float64(10) {
			t.Errorf("log = %v, want redis_url and admin_password masked, concurrency kept", m)
		}
	})
}
