package stockgate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/telemetry"
)

// Confirm confirms a checkout (an order submitted with a Hold, now held):
// its held units are sold. It enqueues the order:confirm task and waits,
// until ctx ends, for the order to leave held, then returns the state that
// stands. An order already confirmed is returned as it is, with a nil
// error: Confirm may be called again. A checkout that expired or was
// cancelled first, and an order that was never held and did not sell
// (rejected, failed), return their state and ErrTooLate. An order still
// pending is waited for first; one never submitted is ErrNotFound.
//
// When ctx ends before a worker has moved the order, Confirm returns the
// state standing then (held) and ctx's error; the task stays queued and a
// worker applies it, unless the hold's deadline passes first.
func (c *Client) Confirm(ctx context.Context, orderID string) (Status, error) {
	return c.act(ctx, orders.ConfirmTaskType, orders.Action{OrderID: orderID})
}

// Cancel cancels a checkout (held: its units go back to available), or a
// confirmed order after its sale (a refund, a return: its sold units go
// back to available, once). reason is optional, at most 200 characters on
// one line, and kept as the order's detail. It enqueues the order:cancel
// task and waits, until ctx ends, for the order to be cancelled, then
// returns the state that stands. An order already cancelled is returned as
// it is, with a nil error. An order that sold nothing (rejected, failed,
// expired) returns its state and ErrTooLate. An order still pending is
// waited for first; one never submitted is ErrNotFound. A cancel racing a
// confirm ends cancelled either way: before the confirm it cancels the
// hold, after it the sale.
func (c *Client) Cancel(ctx context.Context, orderID, reason string) (Status, error) {
	return c.act(ctx, orders.CancelTaskType, orders.Action{OrderID: orderID, Reason: reason})
}

// standingTimeout bounds the read of where an order stands once a wait
// for its move has ended.
const standingTimeout = 2 * time.Second

// verdict is what a standing state means for a confirm or a cancel.
type verdict int

const (
	verdictMove    verdict = iota // the task moves it: enqueue and wait
	verdictDone                   // it already stands where asked
	verdictTooLate                // no move can take it there any more
)

func judge(taskType string, s State) verdict {
	switch {
	case s == StateHeld, taskType == orders.CancelTaskType && s == StateConfirmed:
		return verdictMove
	case taskType == orders.ConfirmTaskType && s == StateConfirmed, taskType == orders.CancelTaskType && s == StateCancelled:
		return verdictDone
	}
	return verdictTooLate
}

func (c *Client) act(ctx context.Context, taskType string, a orders.Action) (Status, error) {
	if c.store == nil {
		return Status{}, ErrNoDatabase
	}
	if orders.CheckID(a.OrderID) != nil {
		return Status{}, fmt.Errorf("%w: order %q", ErrNotFound, a.OrderID)
	}
	if err := a.Validate(); err != nil {
		return Status{}, publicError(err)
	}
	// The row first: a pending order is waited for, so that the task never
	// reaches a worker before the order it moves.
	st, err := c.Wait(ctx, a.OrderID)
	if err != nil {
		return st, err
	}
	switch judge(taskType, st.State) {
	case verdictDone:
		return st, nil
	case verdictTooLate:
		return st, tooLate(taskType, st)
	}
	if err := c.enqueueAction(ctx, taskType, a); err != nil {
		return st, err
	}
	rec, err := c.waits.wait(ctx, a.OrderID, func(r orders.Record) bool {
		return judge(taskType, State(r.Status)) != verdictMove
	})
	if err != nil {
		// Not moved yet, or moved a moment ago: say where it stands now.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), standingTimeout)
		defer cancel()
		if now, ok, rerr := c.row(rctx, a.OrderID); rerr == nil && ok {
			st = now
		}
		return st, err
	}
	st = statusOfRecord(rec)
	if judge(taskType, st.State) == verdictTooLate {
		return st, tooLate(taskType, st)
	}
	return st, nil
}

func tooLate(taskType string, st Status) error {
	verb := "confirm"
	if taskType == orders.CancelTaskType {
		verb = "cancel"
	}
	return fmt.Errorf("%w to %s order %s: it is %s", ErrTooLate, verb, st.OrderID, st.State)
}

// enqueueAction enqueues the order:confirm or order:cancel task. Its
// TaskID is one per operation and order, so a second Confirm (or Cancel)
// while the first task is queued, running or retained enqueues nothing and
// waits for the same move.
func (c *Client) enqueueAction(ctx context.Context, taskType string, a orders.Action) error {
	queue := c.queueFor(a.OrderID)
	ctx, span := telemetry.StartProducerSpan(ctx, taskType, queue, orders.ActionTaskID(taskType, a.OrderID))
	defer span.End()
	span.SetAttributes(attribute.String("order.id", a.OrderID))
	t, err := orders.NewActionTask(ctx, taskType, a, orders.TaskOptions{Retention: c.cfg.Retention, MaxRetry: c.cfg.MaxRetry, Queue: queue})
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return publicError(err)
	}
	_, err = c.queue.EnqueueContext(ctx, t)
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		span.SetAttributes(attribute.String("order.outcome", "duplicate"))
		return nil
	case err != nil:
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return fmt.Errorf("enqueue %s %s: %w", taskType, a.OrderID, err)
	}
	return nil
}
