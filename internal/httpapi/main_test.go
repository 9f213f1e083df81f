package httpapi

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.yaml.in/yaml/v3"

	"github.com/stockgate/stockgate/api"
	"github.com/stockgate/stockgate/internal/testsvc"
)

// answered reads, from the servers' own request counter, every route and
// status the package's tests got answered.
var answered = sdkmetric.NewManualReader()

// TestMain installs a meter provider whose counts the spec check reads, and
// a tracer provider that samples, so that trace context reaches the tasks.
// After a full run it checks api/openapi.yaml against what the servers
// answered: every route and status answered is in the spec, and every one
// in the spec was answered by some test.
func TestMain(m *testing.M) {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(answered))
	otel.SetMeterProvider(mp)
	tp := sdktrace.NewTracerProvider()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	code := m.Run()
	if code == 0 && flag.Lookup("test.run").Value.String() == "" && !testing.Short() {
		if err := checkSpec(); err != nil {
			fmt.Fprintf(os.Stderr, "openapi check: %v\n", err)
			code = 1
		}
	}
	_ = tp.Shutdown(context.Background())
	_ = mp.Shutdown(context.Background())
	os.Exit(testsvc.Finish(code))
}

// specStatuses is "PATH STATUS" for every response of every operation in
// api/openapi.yaml, and the methods each path has.
func specStatuses() (statuses []string, methods map[string][]string, err error) {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]any `yaml:"responses"`
		} `yaml:"paths"`
	}
	if err := yaml.Unmarshal(api.OpenAPI, &doc); err != nil {
		return nil, nil, err
	}
	methods = map[string][]string{}
	for p, ops := range doc.Paths {
		for method, op := range ops {
			methods[p] = append(methods[p], strings.ToUpper(method))
			for code := range op.Responses {
				if !slices.Contains(statuses, p+" "+code) {
					statuses = append(statuses, p+" "+code)
				}
			}
		}
	}
	slices.Sort(statuses)
	return statuses, methods, nil
}

func checkSpec() error {
	spec, _, err := specStatuses()
	if err != nil {
		return err
	}
	var rm metricdata.ResourceMetrics
	if err := answered.Collect(context.Background(), &rm); err != nil {
		return err
	}
	var got []string
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			sum, ok := mt.Data.(metricdata.Sum[int64])
			if mt.Name != "stockgate.api.requests" || !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				route, _ := dp.Attributes.Value("route")
				code, _ := dp.Attributes.Value("code")
				// "other" is a path of no route: its 404 is no route's status.
				if k := route.AsString() + " " + code.AsString(); route.AsString() != "other" && !slices.Contains(got, k) {
					got = append(got, k)
				}
			}
		}
	}
	// net/http answers 431 itself, before any handler: TestHostileHTTP
	// sees it, the counter cannot.
	for _, s := range spec {
		if strings.HasSuffix(s, " "+strconv.Itoa(431)) && !slices.Contains(got, s) {
			got = append(got, s)
		}
	}
	slices.Sort(got)
	var problems []string
	for _, g := range got {
		if !slices.Contains(spec, g) {
			problems = append(problems, "answered but not in api/openapi.yaml: "+g)
		}
	}
	for _, s := range spec {
		if !slices.Contains(got, s) {
			problems = append(problems, "in api/openapi.yaml but no test got it: "+s)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return nil
}
