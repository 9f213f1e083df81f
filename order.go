package stockgate

import (
	"encoding/json"
	"time"

	"github.com/stockgate/stockgate/internal/orders"
)

// Line is one SKU and quantity of an order.
type Line struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// Order is what a storefront submits: the order:place payload (README
// "Contracts"). Ids are 1-64 characters of [A-Za-z0-9_.:-], SKUs 1-64 of
// [A-Za-z0-9_.-], 1-50 lines, each qty 1-10000 (per SKU, once lines naming
// the same SKU are merged). PlacedAt is optional.
//
// Hold, when set, makes the order a checkout (README "Checkout"): a worker
// that can reserve its lines records it held for this long (1s to the
// workers' maximum, 30m by default) instead of confirmed, and the
// storefront then Confirms it once paid, or Cancels it. Its JSON is the
// payload's "hold", a duration such as "10m0s".
type Order struct {
	OrderID    string        `json:"order_id"`
	CustomerID string        `json:"customer_id"`
	Lines      []Line        `json:"lines"`
	PlacedAt   *time.Time    `json:"placed_at,omitempty"`
	Hold       time.Duration `json:"-"`
}

// orderJSON is Order with the hold as the payload writes it.
type orderJSON struct {
	OrderID    string     `json:"order_id"`
	CustomerID string     `json:"customer_id"`
	Lines      []Line     `json:"lines"`
	PlacedAt   *time.Time `json:"placed_at,omitempty"`
	Hold       string     `json:"hold,omitempty"`
}

// MarshalJSON writes o as an order:place payload, the hold as "10m0s".
func (o Order) MarshalJSON() ([]byte, error) {
	j := orderJSON{OrderID: o.OrderID, CustomerID: o.CustomerID, Lines: o.Lines, PlacedAt: o.PlacedAt}
	if o.Hold != 0 {
		j.Hold = o.Hold.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads a payload leniently, as encoding/json does; use
// DecodeOrder to read one as strictly as the workers do. A hold that is not
// a duration is an error.
func (o *Order) UnmarshalJSON(b []byte) error {
	var j orderJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*o = Order{OrderID: j.OrderID, CustomerID: j.CustomerID, Lines: j.Lines, PlacedAt: j.PlacedAt}
	if j.Hold != "" {
		d, err := time.ParseDuration(j.Hold)
		if err != nil {
			return err
		}
		o.Hold = d
	}
	return nil
}

// Validate checks o as the workers do; the error is an *InvalidError.
func (o Order) Validate() error { return publicError(o.internal().Validate()) }

// DecodeOrder reads an order:place payload as strictly as the workers do
// (unknown or duplicate keys, trailing data, invalid UTF-8, a qty written
// 2.0, and every bound are refused); the error is an *InvalidError. Lines
// naming the same SKU are merged.
func DecodeOrder(payload []byte) (Order, error) {
	o, err := orders.Decode(payload)
	if err != nil {
		return Order{}, publicError(err)
	}
	return publicOrder(o), nil
}

func publicOrder(o orders.Order) Order {
	out := Order{OrderID: o.OrderID, CustomerID: o.CustomerID, PlacedAt: o.PlacedAt, Hold: o.HoldDuration()}
	if o.Lines != nil {
		out.Lines = publicLines(o.Lines)
	}
	return out
}

func (o Order) internal() orders.Order {
	out := orders.Order{OrderID: o.OrderID, CustomerID: o.CustomerID, PlacedAt: o.PlacedAt}
	if o.Hold != 0 {
		// A negative one too: Validate refuses it with the payload's reason.
		out.Hold = o.Hold.String()
	}
	if o.Lines != nil {
		out.Lines = make([]orders.Line, len(o.Lines))
		for i, l := range o.Lines {
			out.Lines[i] = orders.Line{SKU: l.SKU, Qty: l.Qty}
		}
	}
	return out
}

// State is where an order is: pending until a worker decides it; held,
// for a checkout, until it is confirmed, cancelled or expires; then one of
// the terminal states. A confirmed order may still be cancelled after its
// sale (a refund, a return), and then stays cancelled.
type State string

const (
	StatePending   State = "pending"   // submitted, no outcome yet
	StateHeld      State = "held"      // a checkout: its units held until HoldUntil; Confirm or Cancel it
	StateConfirmed State = "confirmed" // its units are sold
	StateRejected  State = "rejected"  // refused: see Reason (out_of_stock, unknown_sku, invalid: …, rate_limited)
	StateFailed    State = "failed"    // retries ran out, or its task was archived; nothing is sold
	StateExpired   State = "expired"   // its hold outlived its deadline undecided; nothing is sold
	// StateCancelled is a checkout cancelled before its sale (Reason
	// checkout_cancelled), or a sale cancelled after it (Reason
	// cancelled_after_sale, its units available again).
	StateCancelled State = "cancelled"
)

// Status is an order's state, with what its row says once it is decided.
// Its JSON is the HTTP API's order object.
type Status struct {
	OrderID string `json:"order_id"`
	// CustomerID is "" when the order is known by its id alone (the rows
	// the hold sweeper writes).
	CustomerID string `json:"customer_id"`
	State      State  `json:"status"`
	// Reason is machine-readable (out_of_stock, unknown_sku, invalid: …,
	// rate_limited, retries_exhausted, hold_expired, task_archived), "" for
	// confirmed and pending orders. Detail is the human part.
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	// Lines are merged per SKU: sorted by SKU once decided, in payload order
	// while pending.
	Lines     []Line     `json:"lines"`
	PlacedAt  *time.Time `json:"placed_at"`
	DecidedAt *time.Time `json:"decided_at"` // nil while pending; for a checkout, when it was held
	// HoldUntil is a checkout's deadline: a held order not confirmed by
	// then expires. Nil (and absent from the JSON) for an order without a
	// hold.
	HoldUntil *time.Time `json:"hold_until,omitempty"`
	// ChangedAt is when the order last moved (held to confirmed, cancelled
	// or expired; confirmed to cancelled); nil and absent until it does.
	ChangedAt *time.Time `json:"changed_at,omitempty"`
}

// Decided reports whether a worker has taken the order up: it has an
// outcome, or it is held for checkout.
func (s Status) Decided() bool { return s.State != StatePending && s.State != "" }

func statusOfRecord(r orders.Record) Status {
	decided := r.DecidedAt
	return Status{
		OrderID: r.OrderID, CustomerID: r.CustomerID, State: State(r.Status),
		Reason: r.Reason, Detail: r.Detail, Lines: publicLines(r.Lines),
		PlacedAt: r.PlacedAt, DecidedAt: &decided, HoldUntil: r.HoldUntil, ChangedAt: r.ChangedAt,
	}
}

func pendingStatus(o orders.Order) Status {
	return Status{OrderID: o.OrderID, CustomerID: o.CustomerID, State: StatePending,
		Lines: publicLines(o.Lines), PlacedAt: o.PlacedAt}
}

// publicLines never returns nil, so that JSON says [] rather than null.
func publicLines(in []orders.Line) []Line {
	out := make([]Line, len(in))
	for i, l := range in {
		out[i] = Line{SKU: l.SKU, Qty: l.Qty}
	}
	return out
}

// Stock is one SKU's units. Its JSON is the HTTP API's stock object.
type Stock struct {
	SKU       string `json:"sku"`
	Available int64  `json:"available"`
	Held      int64  `json:"held"` // taken by orders not decided yet, and by checkouts in progress
	Sold      int64  `json:"sold"`
}
