package orders

import (
	"errors"
	"time"
)

// Status is the state an order's row is in. Every accepted order ends in
// exactly one terminal status (invariant I2, docs/design.md), reached from
// its first row through allowed moves only (CanMove).
type Status string

const (
	// StatusHeld is the one status that is not terminal: a checkout hold
	// (an order:place with "hold"), its units held until it is confirmed,
	// cancelled, or its HoldUntil passes.
	StatusHeld      Status = "held"
	StatusConfirmed Status = "confirmed" // its units are sold
	StatusRejected  Status = "rejected"  // a business refusal: see Reason
	StatusFailed    Status = "failed"    // retries ran out; its holds were released
	StatusExpired   Status = "expired"   // its hold outlived its deadline undecided
	// StatusCancelled is a held order given up before the sale (its holds
	// released), or a confirmed one taken back after it (a refund or a
	// return: its units available again); PreviousStatus says which.
	StatusCancelled Status = "cancelled"
)

// Valid reports whether s is one of the statuses a row may have.
func (s Status) Valid() bool {
	switch s {
	case StatusHeld, StatusConfirmed, StatusRejected, StatusFailed, StatusExpired, StatusCancelled:
		return true
	}
	return false
}

// Terminal reports whether s is final. Only held is not; confirmed is
// final as a sale, and may still be cancelled after it (a return).
func (s Status) Terminal() bool { return s.Valid() && s != StatusHeld }

// CanMove reports whether a row in status from may move to status to
// (docs/design.md, "Checkout"): held to confirmed, cancelled or expired,
// and confirmed to cancelled. No other move exists.
func CanMove(from, to Status) bool {
	switch from {
	case StatusHeld:
		return to == StatusConfirmed || to == StatusCancelled || to == StatusExpired
	case StatusConfirmed:
		return to == StatusCancelled
	}
	return false
}

// Reasons recorded beside a status. They are machine-readable: dashboards
// and storefronts match on them. Record.Detail carries the human part.
// Invalid payloads get "invalid: <what>" (InvalidError.Error).
const (
	ReasonOutOfStock       = "out_of_stock"
	ReasonUnknownSKU       = "unknown_sku"
	ReasonRateLimited      = "rate_limited"
	ReasonRetriesExhausted = "retries_exhausted"
	ReasonHoldExpired      = "hold_expired"
	// ReasonTaskArchived is recorded for an order whose task Asynq archived
	// before any attempt could decide it.
	ReasonTaskArchived = "task_archived"
	// ReasonCheckoutCancelled is a held order cancelled before its sale;
	// ReasonCancelledAfterSale a confirmed one cancelled after it. The
	// storefront's own words, if any, are in Detail.
	ReasonCheckoutCancelled  = "checkout_cancelled"
	ReasonCancelledAfterSale = "cancelled_after_sale"
)

// Record is an order's row in Postgres with its lines: the arbiter of the
// order's fate. The first terminal write wins and every later step follows
// the row that stands.
type Record struct {
	OrderID string
	// CustomerID is "" when the order is known only by its id, as for the
	// rows the sweeper writes.
	CustomerID string
	Status     Status
	// Reason is machine-readable: out_of_stock, unknown_sku, invalid: <what>,
	// rate_limited, ... and "" for confirmed orders.
	Reason string
	// Detail is the human part beside Reason, such as which SKU ran out.
	Detail      string
	PlacedAt    *time.Time
	DecidedAt   time.Time
	PayloadHash string // Order.Hash of the payload decided on; "" when unknown
	// HoldToken names the holds a confirmed row relied on (the token of the
	// reserve that took them): Commit sells holds under it and gives back
	// any other (docs/design.md, "The rule"). "" for rows that rely on no
	// hold, and for rows written before rows had one.
	HoldToken string
	// HoldUntil is a checkout hold's deadline, set on rows first written
	// held: past it, a held row can only expire. Nil otherwise.
	HoldUntil *time.Time
	// PreviousStatus is the status the row moved from in its last move,
	// "" for a row never moved: a cancelled row that was confirmed is a
	// cancellation after the sale, whose units go back to available.
	PreviousStatus Status
	// ChangedAt is when the row last moved; nil for a row never moved.
	// DecidedAt stays the time of the first decision (for a checkout, when
	// the hold was taken).
	ChangedAt *time.Time
	// ReturnedAt is when the units of a cancellation after the sale were
	// back in Redis and recorded in stock_movements; nil until then.
	ReturnedAt *time.Time
	// Lines are sorted by SKU, one per SKU.
	Lines []Line
}

// CancelledAfterSale reports whether the row is a cancellation after the
// sale, whose sold units must go back to available, once.
func (r Record) CancelledAfterSale() bool {
	return r.Status == StatusCancelled && r.PreviousStatus == StatusConfirmed
}

// SKUs is the row's SKUs, in its line order.
func (r Record) SKUs() []string {
	out := make([]string, len(r.Lines))
	for i, l := range r.Lines {
		out[i] = l.SKU
	}
	return out
}

// ErrNotFound means no row exists for the order id.
var ErrNotFound = errors.New("order not found")
