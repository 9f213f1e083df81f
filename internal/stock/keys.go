package stock

// Every key of one SKU carries the {SKU} hash tag, so that a script touching
// one SKU's counters, holds and deadlines stays in one Redis Cluster slot.
// SKUs may not contain braces (see CheckSKU), which would move the tag.

const keyPrefix = "sg:"

// AvailKey holds the units available to sell. A missing key means the SKU was
// never stocked, which is not the same as zero.
func AvailKey(sku string) string { return keyPrefix + "{" + sku + "}:avail" }

// HeldKey holds the units reserved by orders not yet decided.
func HeldKey(sku string) string { return keyPrefix + "{" + sku + "}:held" }

// SoldKey holds the units sold (committed).
func SoldKey(sku string) string { return keyPrefix + "{" + sku + "}:sold" }

// HoldKey is one order's hold on one SKU: a hash {qty, deadline, state, tok}.
func HoldKey(sku, orderID string) string { return keyPrefix + "{" + sku + "}:hold:" + orderID }

// DeadlinesKey is a sorted set of the orders holding the SKU, scored by
// their hold deadline in unix milliseconds. The sweeper reads it.
func DeadlinesKey(sku string) string { return keyPrefix + "{" + sku + "}:deadlines" }

// SKUsKey is the set of every SKU ever stocked, so that show, reconcile and
// the gauges can find them without SCAN. It lives outside any SKU's slot
// and is written by Set, Add and Rebuild only, never on an order's path.
// The sweeper reads the hold index instead (index.go).
const SKUsKey = keyPrefix + "skus"

// lineKeys is the five-key layout every order script shares.
func lineKeys(sku, orderID string) []string {
	return []string{AvailKey(sku), HeldKey(sku), SoldKey(sku), HoldKey(sku, orderID), DeadlinesKey(sku)}
}
