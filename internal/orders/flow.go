package orders

import (
	"context"
	"slices"

	"github.com/stockgate/stockgate/internal/stock"
)

// Holds is what the flow needs from the stock gate: the ways an order's
// holds end, and the way a sale is taken back. *stock.Gate implements it;
// the worker wraps it in spans.
type Holds interface {
	// Commit turns the order's holds on skus under token into sold units,
	// once, and gives back a hold under another token.
	Commit(ctx context.Context, orderID, token string, skus []string) (stock.CommitResult, error)
	// Release gives back what the order's holds on skus recorded, once.
	Release(ctx context.Context, orderID string, skus []string) (int64, error)
	// Cancel gives back to available, once, what the order sold on lines
	// (a cancellation after the sale); a hold under token, the row's, that
	// was never committed is released instead.
	Cancel(ctx context.Context, orderID, token string, lines []stock.Line) (stock.CancelResult, error)
}

// Rows is what the flow needs from the order store (*orderstore.Store).
type Rows interface {
	// Decide records rec only if the order has no row yet, and returns the
	// row that stands afterwards and whether this call inserted it.
	Decide(ctx context.Context, rec Record) (stands Record, inserted bool, err error)
	// Transition moves the order's row as t says, in one guarded update,
	// only if it stands in t.From and its hold deadline agrees: of racing
	// moves, the first wins. It returns the row that stands afterwards and
	// whether this call moved it, or ErrNotFound.
	Transition(ctx context.Context, t Transition) (stands Record, moved bool, err error)
	// MarkReturned records that a cancellation after the sale has its units
	// back in Redis and in the stock ledger. Idempotent.
	MarkReturned(ctx context.Context, orderID string) error
}

// Ledger is what the flow needs from the stock ledger (*catalog.Catalog):
// recording a cancellation after the sale's units as a stock movement.
type Ledger interface {
	// RecordReturn records the units of orderID's lines that went back to
	// available, once per order and SKU.
	RecordReturn(ctx context.Context, orderID string, lines []stock.Line) error
}

// Named steps of the flow where Flow.Mark runs.
const (
	// StepAfterPersist is right after a row was decided, before the holds
	// follow it.
	StepAfterPersist = "after_persist"
	// StepBeforeCommit is right before a confirmed row's holds are committed.
	StepBeforeCommit = "before_commit"
	// StepAfterTransition is right after a row moved (held to confirmed,
	// cancelled or expired, confirmed to cancelled), before its holds or
	// its sold units follow it.
	StepAfterTransition = "after_transition"
)

// Flow holds the central rule of the order flow (docs/design.md, "The
// rule"), written once for the handler, the sweeper and the archived-task
// path: the orders row is the arbiter, and an order's holds follow the row
// that stands.
type Flow struct {
	Rows  Rows
	Holds Holds
	// Ledger records the units a cancellation after the sale gave back.
	// A flow without one refuses to settle such a row.
	Ledger Ledger
	// Mark runs at the named steps (StepAfterPersist, StepBeforeCommit): the
	// chaos suite's failpoints and the tests crash, stall or fail an attempt
	// there. An error stops the flow at that step. Nil marks nothing.
	Mark func(step string) error
}

// Settled says which holds Settle asked the gate to commit and to release,
// and on which SKUs it gave back sold units (a cancellation after the sale).
type Settled struct {
	Committed []string
	Released  []string
	Returned  []string
}

// Settle makes an order's holds agree with row, the row that stands: they
// are committed when it is confirmed and released otherwise. A confirmed
// row commits only the holds under its own token, those the delivery that
// wrote it relied on: a hold a later delivery took (after the old hold's
// tombstone expired, or after Redis lost it) is given back. skus are the
// SKUs the caller knows the order may hold (a payload's, or the sweeper's
// expired holds); holds on SKUs the row does not list belong to a payload
// the row dropped (another payload with this id) and always go back: their
// units were never sold. Both steps are idempotent, so Settle may run any
// number of times, in any worker.
//
// A held row (a checkout) keeps its own holds until it moves; only the
// extra ones go back. A row cancelled after its sale gives its sold units
// back, once (Holds.Cancel), and a hold of it never committed is released.
func (f Flow) Settle(ctx context.Context, row Record, skus []string) (Settled, error) {
	rowSKUs, extra := splitByRow(row, skus)
	if row.Status == StatusHeld || row.CancelledAfterSale() {
		var s Settled
		if len(extra) > 0 {
			if _, err := f.Holds.Release(ctx, row.OrderID, extra); err != nil {
				return s, err
			}
			s.Released = extra
		}
		if row.Status == StatusHeld {
			return s, nil
		}
		if err := f.giveBack(ctx, row); err != nil {
			return s, err
		}
		s.Returned = rowSKUs
		// Given back now or before: a hold of the row's SKUs still held
		// was taken by a delivery after that (its marker had expired), and
		// goes back too. Release touches held holds only.
		if len(rowSKUs) > 0 {
			if _, err := f.Holds.Release(ctx, row.OrderID, rowSKUs); err != nil {
				return s, err
			}
		}
		return s, nil
	}
	if row.Status != StatusConfirmed {
		all := append(rowSKUs, extra...)
		if len(all) == 0 {
			return Settled{}, nil
		}
		_, err := f.Holds.Release(ctx, row.OrderID, all)
		return Settled{Released: all}, err
	}
	var s Settled
	if len(extra) > 0 {
		if _, err := f.Holds.Release(ctx, row.OrderID, extra); err != nil {
			return s, err
		}
		s.Released = extra
	}
	if err := f.mark(StepBeforeCommit); err != nil {
		return s, err
	}
	if len(rowSKUs) == 0 {
		return s, nil
	}
	if _, err := f.Holds.Commit(ctx, row.OrderID, row.HoldToken, rowSKUs); err != nil {
		return s, err
	}
	s.Committed = rowSKUs
	return s, nil
}

// Conclude records rec unless the order already has a row, then makes the
// holds on skus follow whichever row stands: rec's, or the one that got
// there first (another delivery's, or the sweeper's). The row always comes
// first: holds are keyed by order id, not by delivery, so giving them back
// before the row is written could take the hold of a duplicate delivery
// that is confirming at that moment. A crash between the two leaves holds
// on a decided order, which the next delivery (Settle on the row) or the
// sweeper settles.
func (f Flow) Conclude(ctx context.Context, rec Record, skus []string) (row Record, inserted bool, s Settled, err error) {
	row, inserted, err = f.Rows.Decide(ctx, rec)
	if err != nil {
		return Record{}, false, s, err
	}
	if err := f.mark(StepAfterPersist); err != nil {
		return row, inserted, s, err
	}
	s, err = f.Settle(ctx, row, skus)
	return row, inserted, s, err
}

// Refuse records rec, a refusal that the reserve answered without taking
// anything (out of stock, an unknown SKU, a rate limit, an invalid
// payload), unless the order already has a row. Nothing is settled: the
// order held nothing when the reserve looked, and a hold another delivery
// took since is that delivery's to settle. It saves a flash sale's many
// rejections a round trip each.
func (f Flow) Refuse(ctx context.Context, rec Record) (row Record, inserted bool, err error) {
	row, inserted, err = f.Rows.Decide(ctx, rec)
	if err != nil {
		return Record{}, false, err
	}
	return row, inserted, f.mark(StepAfterPersist)
}

func (f Flow) mark(step string) error {
	if f.Mark == nil {
		return nil
	}
	return f.Mark(step)
}

// splitByRow splits the SKUs an order may hold into the standing row's own
// SKUs and the extra ones, which only a dropped payload with this id could
// have taken.
func splitByRow(row Record, skus []string) (rowSKUs, extra []string) {
	rowSKUs = row.SKUs()
	for _, s := range skus {
		if !slices.Contains(rowSKUs, s) {
			extra = append(extra, s)
		}
	}
	return rowSKUs, extra
}
