package orders

import (
	"errors"
	"time"
)

// Status is an order's terminal state. Every accepted order ends in exactly
// one of them (invariant I2, docs/design.md).
type Status string

const (
	StatusConfirmed Status = "confirmed" // its units are sold
	StatusRejected  Status = "rejected"  // a business refusal: see Reason
	StatusFailed    Status = "failed"    // retries ran out; its holds were released
	StatusExpired   Status = "expired"   // its hold outlived its deadline undecided
)

// Valid reports whether s is one of the statuses a row may have.
func (s Status) Valid() bool {
	switch s {
	case StatusConfirmed, StatusRejected, StatusFailed, StatusExpired:
		return true
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
	// Lines are sorted by SKU, one per SKU.
	Lines []Line
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
