package stock

import (
	"errors"
	"fmt"
)

// ErrOutOfStock is matched (errors.Is) by an *OutOfStockError: a line asked
// for more than is available. Nothing was reserved.
var ErrOutOfStock = errors.New("out of stock")

// ErrNotStocked is matched by a *NotStockedError: a SKU was never stocked.
// A missing stock key fails closed: it is never read as zero or decremented.
var ErrNotStocked = errors.New("not stocked")

// ErrConflict means the order already holds stock with different lines, so a
// reserve with these lines is refused rather than merged. Nothing changed.
var ErrConflict = errors.New("order holds different lines")

// ErrInvalid means an argument failed validation in Go or in Lua. Nothing changed.
var ErrInvalid = errors.New("invalid argument")

// OutOfStockError names the short SKU and how many units were left.
type OutOfStockError struct {
	SKU       string
	Available int64
}

func (e *OutOfStockError) Error() string {
	return fmt.Sprintf("out of stock: %s has %d available", e.SKU, e.Available)
}

// Is makes errors.Is(err, ErrOutOfStock) true.
func (e *OutOfStockError) Is(target error) bool { return target == ErrOutOfStock }

// NotStockedError names the SKU that was never stocked.
type NotStockedError struct{ SKU string }

func (e *NotStockedError) Error() string { return "not stocked: " + e.SKU }

// Is makes errors.Is(err, ErrNotStocked) true.
func (e *NotStockedError) Is(target error) bool { return target == ErrNotStocked }
