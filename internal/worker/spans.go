package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/ratelimit"
	"github.com/stockgate/stockgate/internal/stock"
)

// tracedRows is the handler's order store as the flow sees it: each Decide
// is an order.persist span.
type tracedRows struct {
	rows  orders.Rows
	tr    trace.Tracer
	moves *moveMetrics // nil counts nothing
}

func (t tracedRows) Decide(ctx context.Context, rec orders.Record) (orders.Record, bool, error) {
	ctx, span := t.tr.Start(ctx, "order.persist", trace.WithAttributes(
		attribute.String("order.id", rec.OrderID), attribute.String("order.status", string(rec.Status))))
	defer span.End()
	row, inserted, err := t.rows.Decide(ctx, rec)
	endSpan(span, err)
	if err != nil {
		return orders.Record{}, false, fmt.Errorf("record %s: %w", rec.Status, err)
	}
	span.SetAttributes(attribute.Bool("order.inserted", inserted),
		attribute.String("order.outcome", string(row.Status)), attribute.String("order.reason", row.Reason))
	return row, inserted, nil
}

// Transition is an order.transition span: one guarded move of the row.
func (t tracedRows) Transition(ctx context.Context, tr orders.Transition) (orders.Record, bool, error) {
	ctx, span := t.tr.Start(ctx, "order.transition", trace.WithAttributes(
		attribute.String("order.id", tr.OrderID), attribute.String("order.from", string(tr.From)),
		attribute.String("order.to", string(tr.To))))
	defer span.End()
	row, moved, err := t.rows.Transition(ctx, tr)
	if err != nil {
		if !errors.Is(err, orders.ErrNotFound) {
			endSpan(span, err)
		}
		return orders.Record{}, false, err
	}
	span.SetAttributes(attribute.Bool("order.moved", moved), attribute.String("order.outcome", string(row.Status)))
	if moved {
		t.moves.moved(ctx, tr, row)
	}
	return row, moved, nil
}

func (t tracedRows) MarkReturned(ctx context.Context, orderID string) error {
	err := t.rows.MarkReturned(ctx, orderID)
	if err != nil {
		trace.SpanFromContext(ctx).RecordError(err)
	}
	return err
}

// tracedHolds is the handler's stock gate as the flow sees it: each commit
// and release is a span, and a commit that finds no hold is logged.
type tracedHolds struct {
	holds orders.Holds
	tr    trace.Tracer
	log   *slog.Logger
}

func (t tracedHolds) Commit(ctx context.Context, orderID, token string, skus []string) (stock.CommitResult, error) {
	ctx, span := t.tr.Start(ctx, "order.commit", trace.WithAttributes(attribute.String("order.id", orderID)))
	defer span.End()
	res, err := t.holds.Commit(ctx, orderID, token, skus)
	endSpan(span, err)
	if err != nil {
		return res, err
	}
	span.SetAttributes(attribute.Int64("stock.units", res.Units), attribute.Int64("stock.units_released", res.Released))
	if res.Released > 0 {
		// A delivery the row did not rely on took these (its old hold's
		// tombstone had expired, or Redis lost it): given back, never sold.
		t.log.WarnContext(ctx, "confirmed order: gave back a hold a later delivery took", "order_id", orderID, "units", res.Released)
	}
	if res.Missing > 0 {
		// A confirmed order whose hold is gone means its units went back to
		// available: reconcile will show the drift. Say so loudly.
		t.log.ErrorContext(ctx, "confirmed order has no hold to commit; stock drift likely",
			"order_id", orderID, "missing", res.Missing)
	}
	return res, nil
}

func (t tracedHolds) Release(ctx context.Context, orderID string, skus []string) (int64, error) {
	ctx, span := t.tr.Start(ctx, "order.release", trace.WithAttributes(attribute.String("order.id", orderID)))
	defer span.End()
	n, err := t.holds.Release(ctx, orderID, skus)
	endSpan(span, err)
	span.SetAttributes(attribute.Int64("stock.units", n))
	return n, err
}

// Cancel is an order.return span: a cancellation after the sale's units
// going back to available.
func (t tracedHolds) Cancel(ctx context.Context, orderID, token string, lines []stock.Line) (stock.CancelResult, error) {
	ctx, span := t.tr.Start(ctx, "order.return", trace.WithAttributes(attribute.String("order.id", orderID)))
	defer span.End()
	res, err := t.holds.Cancel(ctx, orderID, token, lines)
	endSpan(span, err)
	if err != nil {
		return res, err
	}
	span.SetAttributes(attribute.Int64("stock.units", res.Returned), attribute.Int64("stock.units_released", res.Released))
	return res, nil
}

// endSpan marks a span failed unless err is nil or a business outcome (an
// order refused for a reason its row records), which is recorded as
// attributes instead, with the same machine-readable reason.
func endSpan(span trace.Span, err error) {
	if err == nil {
		return
	}
	if reason, ok := businessReason(err); ok {
		span.SetAttributes(attribute.String("order.outcome", "rejected"), attribute.String("order.reason", reason))
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// businessReason maps the stock gate's refusals to the reason a span
// records; ok is false for infrastructure errors.
func businessReason(err error) (reason string, ok bool) {
	switch {
	case errors.Is(err, stock.ErrOutOfStock):
		return orders.ReasonOutOfStock, true
	case errors.Is(err, stock.ErrNotStocked):
		return orders.ReasonUnknownSKU, true
	case errors.Is(err, ratelimit.ErrLimited):
		return orders.ReasonRateLimited, true
	case errors.Is(err, stock.ErrConflict):
		return "conflict", true
	}
	return "", false
}
