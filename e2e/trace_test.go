package e2e

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

type span struct {
	Name        string
	SpanContext struct{ TraceID, SpanID string }
	Parent      struct{ TraceID, SpanID string }
	Attributes  []struct {
		Key   string
		Value struct{ Value any }
	}
}

// consoleSpans picks the console exporter's span objects out of mixed
// output (the worker also writes JSON log lines to stdout).
func consoleSpans(out string) []span {
	var spans []span
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, `{"Name":`) {
			continue
		}
		var s span
		if json.Unmarshal([]byte(line), &s) == nil {
			spans = append(spans, s)
		}
	}
	return spans
}

// TestTraceAcrossProcesses: with OTEL_TRACES_EXPORTER=console, one enqueue
// order and the worker print spans that share one trace id and cover every
// step, each step a child of the processing attempt.
func TestTraceAcrossProcesses(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.mustRun(t, "stockctl", "migrate")
	s.mustRun(t, "stockctl", "set", "TR-1", "5")
	console := []string{"OTEL_TRACES_EXPORTER=console", "OTEL_BSP_SCHEDULE_DELAY=100"}
	w := s.startWorker(t, console)

	r := s.run(t, console, "enqueue", "order", "--id", "tr-order-1", "--customer", "c-1", "TR-1=2")
	if r.code != 0 {
		t.Fatalf("enqueue order: exit %d: %s", r.code, r.stderr)
	}
	var publish *span
	for _, sp := range consoleSpans(r.stdout) {
		if sp.Name == "order:place publish" {
			publish = &sp
		}
	}
	if publish == nil {
		t.Fatalf("enqueue printed no producer span; stdout:\n%s", r.stdout)
	}
	trace := publish.SpanContext.TraceID

	// A first attempt does not look its row up (order.lookup is a retry's).
	want := []string{"order:place process", "order.validate", "order.reserve", "order.persist", "order.commit"}
	var got map[string]span
	testsvc.Poll(t, 30*time.Second, "the worker's spans for the order", func() bool {
		got = map[string]span{}
		for _, sp := range consoleSpans(w.Output()) {
			if sp.SpanContext.TraceID == trace {
				got[sp.Name] = sp
			}
		}
		for _, n := range want {
			if _, ok := got[n]; !ok {
				return false
			}
		}
		return true
	})
	process := got["order:place process"]
	if process.Parent.SpanID != publish.SpanContext.SpanID {
		t.Errorf("process span's parent = %s, want the publish span %s", process.Parent.SpanID, publish.SpanContext.SpanID)
	}
	for _, n := range want[1:] {
		if got[n].Parent.SpanID != process.SpanContext.SpanID {
			t.Errorf("%s's parent = %s, want the process span %s", n, got[n].Parent.SpanID, process.SpanContext.SpanID)
		}
	}
	hasAttr := func(sp span, key string, val any) bool {
		for _, a := range sp.Attributes {
			if a.Key == key && (val == nil || a.Value.Value == val) {
				return true
			}
		}
		return false
	}
	if !hasAttr(got["order.persist"], "order.outcome", "confirmed") || !hasAttr(got["order.reserve"], "order.id", "tr-order-1") {
		t.Errorf("step spans lack order.id / order.outcome attributes: reserve %+v, persist %+v", got["order.reserve"].Attributes, got["order.persist"].Attributes)
	}
}
