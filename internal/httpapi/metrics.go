package httpapi

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentation = "github.com/stockgate/stockgate/internal/httpapi"

type metrics struct {
	// sets caches the attribute sets, few as routes, codes and keys are:
	// building one is most of what a measurement costs.
	sets     sync.Map // [3]string or string -> metric.MeasurementOption
	requests metric.Int64Counter
	seconds  metric.Float64Histogram
	waiting  metric.Int64UpDownCounter
}

func newMetrics() (*metrics, error) {
	m := otel.Meter(instrumentation)
	var out metrics
	var err error
	if out.requests, err = m.Int64Counter("stockgate.api.requests",
		metric.WithDescription("API requests answered, by route, status code and key name")); err != nil {
		return nil, err
	}
	if out.seconds, err = m.Float64Histogram("stockgate.api.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to answer one API request, by route (long-polls included)"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)); err != nil {
		return nil, err
	}
	if out.waiting, err = m.Int64UpDownCounter("stockgate.api.waiting",
		metric.WithDescription("GET /v1/orders/{id}?wait= requests being held")); err != nil {
		return nil, err
	}
	return &out, nil
}

func (m *metrics) set(key any, attrs ...attribute.KeyValue) metric.MeasurementOption {
	if v, ok := m.sets.Load(key); ok {
		return v.(metric.MeasurementOption)
	}
	v, _ := m.sets.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(attrs...)))
	return v.(metric.MeasurementOption)
}

func (m *metrics) request(ctx context.Context, route string, code int, key string, d time.Duration) {
	c := strconv.Itoa(code)
	m.requests.Add(ctx, 1, m.set([3]string{route, c, key},
		attribute.String("route", route), attribute.String("code", c), attribute.String("key", key)))
	m.seconds.Record(ctx, d.Seconds(), m.set(route, attribute.String("route", route)))
}
