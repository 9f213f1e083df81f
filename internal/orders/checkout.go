package orders

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stockgate/stockgate/internal/stock"
)

// Deadline says how a move from held judges the row's hold deadline.
type Deadline int

const (
	// AnyDeadline: the deadline does not matter (a cancel).
	AnyDeadline Deadline = iota
	// BeforeDeadline: only while the deadline is ahead of Transition.At
	// (a confirm: a hold past its deadline can no longer be paid for).
	BeforeDeadline
	// AfterDeadline: only once the deadline is at or before Transition.At
	// (an expiry).
	AfterDeadline
)

// Transition is one move of an order's row (docs/design.md, "Checkout").
// The store applies it as one guarded update: it moves the row only if the
// row stands in From and its deadline agrees, so of two racing moves the
// first wins and the other finds the row that stands.
type Transition struct {
	OrderID string
	From    Status
	To      Status
	// Reason and Detail replace the row's; DecidedAt is kept.
	Reason, Detail string
	// At is the move's time (the row's changed_at) and the instant the
	// hold deadline is judged at.
	At       time.Time
	Deadline Deadline
}

// Validate refuses a move that is not in the state machine (CanMove), or a
// deadline rule that makes no sense for it.
func (t Transition) Validate() error {
	switch {
	case t.OrderID == "":
		return errors.New("transition: no order id")
	case !CanMove(t.From, t.To):
		return fmt.Errorf("transition %s: no move from %q to %q", t.OrderID, t.From, t.To)
	case t.Deadline != AnyDeadline && t.From != StatusHeld:
		return fmt.Errorf("transition %s: only a held row has a deadline", t.OrderID)
	case t.At.IsZero():
		return fmt.Errorf("transition %s: no time", t.OrderID)
	}
	return nil
}

// Move applies t, then makes the order's holds (or, for a cancellation
// after the sale, its sold units) follow the row that stands, whether or
// not this call moved it: the row comes first, and a retry of a move that a
// crash cut off after its row changed finds the row moved and finishes the
// holds, exactly once (each step is idempotent). ErrNotFound when the order
// has no row.
func (f Flow) Move(ctx context.Context, t Transition) (row Record, moved bool, err error) {
	if err := t.Validate(); err != nil {
		return Record{}, false, err
	}
	row, moved, err = f.Rows.Transition(ctx, t)
	if err != nil {
		return Record{}, false, err
	}
	if moved {
		if err := f.mark(StepAfterTransition); err != nil {
			return row, moved, err
		}
	}
	_, err = f.Settle(ctx, row, row.SKUs())
	return row, moved, err
}

// Confirm moves a held order to confirmed, its holds then sold, while its
// hold deadline is ahead of now. A held order past its deadline expires
// instead: confirming it is too late, whether or not the sweeper got there
// first. Any other row is left as it stands and returned, with moved false.
func (f Flow) Confirm(ctx context.Context, a Action, now time.Time) (row Record, moved bool, err error) {
	row, moved, err = f.Move(ctx, Transition{OrderID: a.OrderID, From: StatusHeld, To: StatusConfirmed,
		Detail: a.Reason, At: now, Deadline: BeforeDeadline})
	if err != nil || moved || row.Status != StatusHeld {
		return row, moved, err
	}
	expired, _, err := f.Expire(ctx, a.OrderID, now)
	return expired, false, err
}

// Cancel moves a held order to cancelled, its holds given back, or a
// confirmed one (a cancellation after the sale, such as a refund or a
// return), its sold units given back, once. A cancel racing a confirm ends
// cancelled either way: before the confirm it cancels the hold, after it
// the sale. Any other row (rejected, failed, expired, cancelled) is left as
// it stands and returned, with moved false.
func (f Flow) Cancel(ctx context.Context, a Action, now time.Time) (row Record, moved bool, err error) {
	row, moved, err = f.Move(ctx, Transition{OrderID: a.OrderID, From: StatusHeld, To: StatusCancelled,
		Reason: ReasonCheckoutCancelled, Detail: a.Reason, At: now})
	if err != nil || moved || row.Status != StatusConfirmed {
		return row, moved, err
	}
	return f.Move(ctx, Transition{OrderID: a.OrderID, From: StatusConfirmed, To: StatusCancelled,
		Reason: ReasonCancelledAfterSale, Detail: a.Reason, At: now})
}

// Expire moves a held order whose deadline is at or before now to
// expired, its holds given back.
func (f Flow) Expire(ctx context.Context, orderID string, now time.Time) (row Record, moved bool, err error) {
	return f.Move(ctx, Transition{OrderID: orderID, From: StatusHeld, To: StatusExpired,
		Reason: ReasonHoldExpired, Detail: "checkout hold passed its deadline", At: now, Deadline: AfterDeadline})
}

// giveBack returns a cancellation after the sale's units to available: in
// Redis first (once, by the order's return marker), then in the stock
// ledger (once per order and SKU), then on the row (returned_at), which
// ends it: a row with ReturnedAt is never given back again, whatever
// happens to the marker later. A crash between the steps leaves the row
// without ReturnedAt, which the next attempt or the sweeper finishes.
func (f Flow) giveBack(ctx context.Context, row Record) error {
	if row.ReturnedAt != nil || len(row.Lines) == 0 {
		return nil
	}
	if f.Ledger == nil {
		return fmt.Errorf("give back %s: the flow has no stock ledger", row.OrderID)
	}
	lines := make([]stock.Line, len(row.Lines))
	for i, l := range row.Lines {
		lines[i] = stock.Line{SKU: l.SKU, Qty: l.Qty}
	}
	if _, err := f.Holds.Cancel(ctx, row.OrderID, row.HoldToken, lines); err != nil {
		return err
	}
	if err := f.Ledger.RecordReturn(ctx, row.OrderID, lines); err != nil {
		return err
	}
	return f.Rows.MarkReturned(ctx, row.OrderID)
}
