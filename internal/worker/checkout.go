package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/stockgate/stockgate/internal/orders"
)

// ProcessAction handles order:confirm and order:cancel tasks: one move of a
// checkout's row (docs/design.md, "Checkout"), then its holds, or for a
// cancellation after the sale its sold units, follow the row that stands.
//
// A nil return means the row stands where it will stay for this task:
// moved by it, or found where no move of this kind applies (a confirm of an
// order already confirmed, cancelled or expired; a cancel of a rejected or
// failed one; an order with no row), which changes nothing. A payload that
// cannot be read is archived (asynq.SkipRetry) with its one-line reason,
// and nothing changes. Any other error is an infrastructure failure: Asynq
// retries, and the retry finds the row moved or not and finishes the rest.
func (h *Handler) ProcessAction(ctx context.Context, t *asynq.Task) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.HandlerTimeout)
	defer cancel()
	kind := t.Type()
	a, err := orders.DecodeAction(t.Payload())
	if err == nil && kind != orders.ConfirmTaskType && kind != orders.CancelTaskType {
		err = fmt.Errorf("%s is not a checkout task", kind)
	}
	if err != nil {
		h.action(ctx, kind, "invalid")
		h.log.WarnContext(ctx, "checkout task archived: bad payload", "task", kind, "reason", err.Error())
		return fmt.Errorf("%s: %w", err.Error(), asynq.SkipRetry)
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("order.id", a.OrderID))

	var row orders.Record
	var moved bool
	if kind == orders.ConfirmTaskType {
		row, moved, err = h.flow.Confirm(ctx, a, h.cfg.Now())
	} else {
		row, moved, err = h.flow.Cancel(ctx, a, h.cfg.Now())
	}
	switch {
	case errors.Is(err, orders.ErrNotFound):
		// The client waits for an order's row before it enqueues a confirm
		// or a cancel, so this is a task enqueued by hand for an order never
		// decided: nothing to move.
		h.action(ctx, kind, "not_found")
		h.log.WarnContext(ctx, "checkout task for an order with no row; nothing changed", "task", kind, "order_id", a.OrderID)
		return nil
	case err != nil:
		return err
	}
	outcome := "moved"
	if !moved {
		outcome = string(row.Status)
		h.log.InfoContext(ctx, "checkout task changed nothing", "task", kind, "order_id", a.OrderID, "status", row.Status)
	}
	h.action(ctx, kind, outcome)
	return nil
}

func (h *Handler) action(ctx context.Context, kind, outcome string) {
	h.m.actions.Add(ctx, 1, metric.WithAttributes(attribute.String("task", kind), attribute.String("outcome", outcome)))
}
