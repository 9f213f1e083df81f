package stockgate

import (
	"errors"

	"github.com/stockgate/stockgate/internal/orders"
)

// ErrDuplicate means the order id was already submitted, with the same
// order, and its task is still queued, running or retained (Config.Retention):
// nothing was enqueued. A storefront retrying a Submit gets it, and can ask
// Status for the order's state.
var ErrDuplicate = errors.New("order already submitted")

// ErrConflict means the order id was already submitted with a different
// order (other customer, lines or placed_at): nothing was enqueued, and the
// first order stands. errors.Is(err, ErrDuplicate) holds for it too, since
// the id is taken either way.
var ErrConflict = errors.New("order id already submitted with a different order")

// ErrNotFound means no order with this id was submitted, as far as the
// queue and Postgres know (see Client.Status for the limits), or that a SKU
// was never stocked (Client.Stock).
var ErrNotFound = errors.New("not found")

// ErrTooLate means a Confirm or Cancel can no longer move the order: the
// state returned beside it is what stands (a checkout that expired or was
// cancelled before its confirm; an order rejected, failed or expired, which
// sold nothing to cancel). errors.Is matches it; nothing changed.
var ErrTooLate = errors.New("too late")

// ErrRedisFull means Redis refused the order because it reached its
// maxmemory (stockgate runs it with noeviction, so it refuses writes rather
// than dropping keys): nothing was enqueued. Orders accepted before wait
// until an operator raises maxmemory, then complete; submitting this one
// again later is safe (docs/reliability.md, "Redis is full").
var ErrRedisFull = errors.New("redis is full (maxmemory reached): nothing was enqueued; raise maxmemory, see docs/reliability.md")

// ErrNoDatabase is returned by Status and Wait on a client made without
// Config.DatabaseURL.
var ErrNoDatabase = errors.New("stockgate client has no DatabaseURL: Status and Wait read the order rows in Postgres")

// ErrClosed is returned by a Wait that the client's Close ended.
var ErrClosed = errors.New("stockgate client closed")

// ErrInvalid matches every *InvalidError with errors.Is. It is the same
// value the workers' validation uses, so there is one "invalid order" to
// test for, whichever side refused the order.
var ErrInvalid = orders.ErrInvalid

// InvalidError says why Submit refused an order before enqueueing it. Reason
// is the one the workers would record: the order's reason column holds
// "invalid: " + Reason.
type InvalidError struct {
	Reason string
}

func (e *InvalidError) Error() string { return "invalid: " + e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// conflictError is ErrConflict, which is also an ErrDuplicate.
type conflictError struct{ orderID string }

func (e *conflictError) Error() string {
	return "order " + e.orderID + " already submitted with a different order"
}

func (e *conflictError) Is(target error) bool { return target == ErrConflict || target == ErrDuplicate }

// publicError turns the internal packages' validation error into the
// public one, keeping every other error as it is.
func publicError(err error) error {
	var inv *orders.InvalidError
	if errors.As(err, &inv) {
		return &InvalidError{Reason: inv.Reason}
	}
	return err
}
