package worker

import (
	"context"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/stockgate/stockgate/internal/orders"
)

// instrumentation names the worker's tracer and meter. It keeps the name
// the order package had, so dashboards and traces keep matching.
const instrumentation = "github.com/stockgate/stockgate/orders"

type metrics struct {
	// sets caches one attribute set per (status, reason): building it is
	// most of what recording a decision costs, and there are few of them.
	sets sync.Map // [2]string -> metric.MeasurementOption

	orders         metric.Int64Counter
	orderSeconds   metric.Float64Histogram
	reserveSeconds metric.Float64Histogram
	conflicts      metric.Int64Counter
	actions        metric.Int64Counter
	moves          *moveMetrics
}

func newMetrics() (*metrics, error) {
	m := otel.Meter(instrumentation)
	var hm metrics
	var err error
	if hm.orders, err = m.Int64Counter("stockgate.orders",
		metric.WithDescription("Orders decided, by status and reason")); err != nil {
		return nil, err
	}
	if hm.orderSeconds, err = m.Float64Histogram("stockgate.order.duration", metric.WithUnit("s"),
		metric.WithDescription("Time to decide one order attempt, from the handler's start to its terminal row"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	if hm.reserveSeconds, err = m.Float64Histogram("stockgate.reserve.duration", metric.WithUnit("s"),
		metric.WithDescription("Latency of one reserve script call"),
		metric.WithExplicitBucketBoundaries(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)); err != nil {
		return nil, err
	}
	if hm.conflicts, err = m.Int64Counter("stockgate.order.conflicts",
		metric.WithDescription("Payloads dropped because another payload with the same order id stands")); err != nil {
		return nil, err
	}
	if hm.actions, err = m.Int64Counter("stockgate.order.actions",
		metric.WithDescription("order:confirm and order:cancel tasks processed, by task and outcome "+
			"(moved, or the status that stood: confirmed, cancelled, expired, ..., not_found, invalid)")); err != nil {
		return nil, err
	}
	if hm.moves, err = newMoveMetrics(); err != nil {
		return nil, err
	}
	return &hm, nil
}

// moveMetrics count the rows' moves (docs/design.md, "Checkout"), wherever
// they are made: the confirm and cancel handlers and the sweeper.
type moveMetrics struct {
	moves    metric.Int64Counter
	checkout metric.Float64Histogram
}

func newMoveMetrics() (*moveMetrics, error) {
	m := otel.Meter(instrumentation)
	var mm moveMetrics
	var err error
	if mm.moves, err = m.Int64Counter("stockgate.order.transitions",
		metric.WithDescription("Order rows moved, by from and to status (held to confirmed, cancelled or expired; confirmed to cancelled)")); err != nil {
		return nil, err
	}
	if mm.checkout, err = m.Float64Histogram("stockgate.checkout.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from an order held for checkout to its confirm"),
		metric.WithExplicitBucketBoundaries(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)); err != nil {
		return nil, err
	}
	return &mm, nil
}

// moved counts one move of row, which now stands in t.To.
func (m *moveMetrics) moved(ctx context.Context, t orders.Transition, row orders.Record) {
	if m == nil {
		return
	}
	m.moves.Add(ctx, 1, metric.WithAttributes(attribute.String("from", string(t.From)), attribute.String("to", string(t.To))))
	if t.From == orders.StatusHeld && t.To == orders.StatusConfirmed {
		m.checkout.Record(ctx, t.At.Sub(row.DecidedAt).Seconds())
	}
}

func (m *metrics) decided(ctx context.Context, status, reason string, start, end time.Time) {
	// "invalid: <what>" would make one series per message: keep the class.
	if strings.HasPrefix(reason, "invalid") {
		reason = "invalid"
	}
	key := [2]string{status, reason}
	v, ok := m.sets.Load(key)
	if !ok {
		v, _ = m.sets.LoadOrStore(key, metric.WithAttributeSet(attribute.NewSet(
			attribute.String("status", status), attribute.String("reason", reason))))
	}
	attrs := v.(metric.MeasurementOption)
	m.orders.Add(ctx, 1, attrs)
	m.orderSeconds.Record(ctx, end.Sub(start).Seconds(), attrs)
}
