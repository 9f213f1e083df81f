package orders

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"

	"github.com/stockgate/stockgate/internal/stock"
)

// The task contract (DESIGN.md "Contracts"). Storefronts and workers on
// different versions rely on these, so they change only with a migration path.
const (
	// TaskType is the Asynq task type of an order.
	TaskType = "order:place"
	// Queue is the Asynq queue orders travel on.
	Queue = "orders"
	// MaxPayloadBytes is the largest payload Decode reads. It is checked
	// before any parsing, so a huge payload costs nothing but its length.
	MaxPayloadBytes = 64 << 10
	// MaxLines is the most lines one order may have.
	MaxLines = 50
	// MaxQty is the largest quantity of one SKU in one order, after lines
	// naming the same SKU are merged.
	MaxQty = stock.MaxQty
	// maxIDLen bounds order_id, customer_id and sku.
	maxIDLen = 64
	// maxQuoted is how much of an offending value a reason quotes: enough
	// to recognise it, never enough to flood a log line or a column.
	maxQuoted = 40
	// maxReason bounds a whole reason, so that "invalid: " and the reason
	// stay under 200 bytes even when every quoted character is escaped.
	maxReason = 180
)

// Checkout holds (docs/design.md, "Checkout").
const (
	// DefaultMaxHold is the longest hold a worker takes unless its
	// --max-hold says otherwise; CheckHold applies a worker's maximum.
	DefaultMaxHold = 30 * time.Minute
	// MaxHoldLimit is the longest hold any payload may ask for, whatever
	// the workers' maximum: Validate refuses more.
	MaxHoldLimit = 24 * time.Hour
	// MinHold is the shortest hold: less cannot be paid for.
	MinHold = time.Second
	// maxHoldLen bounds the hold text ("10m", "1h30m").
	maxHoldLen = 32
)

// SettledQueue is where the sweeper keeps the archived tasks of queue that
// it has handled (docs/design.md, "The sweeper and archived tasks"): a queue
// no worker consumes, whose archive operators read in /monitoring/ like any
// other. Moving them there keeps queue's own archive down to the tasks
// still to be handled.
func SettledQueue(queue string) string { return queue + ".settled" }

// Line is one SKU and quantity of an order.
type Line struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// Order is the payload of an order:place task.
type Order struct {
	OrderID    string     `json:"order_id"`
	CustomerID string     `json:"customer_id"`
	Lines      []Line     `json:"lines"`
	PlacedAt   *time.Time `json:"placed_at,omitempty"`
	// Hold, when set, asks for a checkout hold of this long: a Go duration
	// such as "10m", from MinHold to MaxHoldLimit (and at most the workers'
	// maximum, CheckHold). A successful reserve then records the order held
	// instead of confirmed, until an order:confirm or order:cancel, or its
	// deadline. "" is an order as before: confirmed on reserve.
	Hold string `json:"hold,omitempty"`
}

// HoldDuration is Hold as a duration; 0 without a hold (or for a hold that
// Validate refuses).
func (o Order) HoldDuration() time.Duration {
	d, _ := parseHold(o.Hold)
	return d
}

// parseHold reads a hold; "" is no hold.
func parseHold(s string) (time.Duration, string) {
	if s == "" {
		return 0, ""
	}
	if len(s) > maxHoldLen {
		return 0, fmt.Sprintf("hold must be at most %d characters, got %d", maxHoldLen, utf8.RuneCountInString(s))
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Sprintf(`hold must be a duration such as "10m", got %s`, quote(s))
	case d < MinHold:
		return 0, fmt.Sprintf("hold must be at least %v, got %s", MinHold, quote(s))
	case d > MaxHoldLimit:
		return 0, fmt.Sprintf("hold must be at most %v, got %s", MaxHoldLimit, quote(s))
	}
	return d, ""
}

// CheckHold refuses an order whose hold is longer than max, a worker's (or
// a client's) --max-hold, with the reason a worker records. A valid order
// without a hold always passes.
func (o Order) CheckHold(max time.Duration) error {
	if d := o.HoldDuration(); d > max {
		return invalid(o.OrderID, fmt.Sprintf("hold %v is over the maximum of %v", d, max))
	}
	return nil
}

// ErrInvalid matches every *InvalidError with errors.Is.
var ErrInvalid = errors.New("invalid order")

// InvalidError says why a payload or an Order was refused. Its Error is the
// machine-readable reason recorded in Postgres: "invalid: " + Reason.
type InvalidError struct {
	// OrderID is the payload's order_id when it is usable: a top-level
	// string matching the charset, given once. The handler then records the
	// order rejected. It is "" when there is no such id, and the task can
	// only be archived.
	OrderID string
	// Reason says what is wrong, in one short line that quotes at most
	// maxQuoted characters of the offending input.
	Reason string
}

func (e *InvalidError) Error() string { return "invalid: " + e.Reason }

// invalid is the one way an *InvalidError is made, so that every reason is
// bounded: a quote of 40 escaped emoji alone would run to 400 bytes. Reasons
// are ASCII, so the cut cannot split a character.
func invalid(orderID, reason string) *InvalidError {
	if len(reason) > maxReason {
		reason = reason[:maxReason-3] + "..."
	}
	return &InvalidError{OrderID: orderID, Reason: reason}
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Validate checks an order against DESIGN.md: ids and SKUs of 1-64 allowed
// characters, 1-50 lines, each qty in 1..MaxQty and, after lines naming the
// same SKU are merged, each SKU's total in 1..MaxQty too. A zero field is
// an absent one: "order_id is required". The error is an *InvalidError.
// Decode calls it, after the library has checked the payload's shape; the
// client calls it before enqueueing.
func (o Order) Validate() error {
	refuse := func(reason string) error {
		id := ""
		if checkID("order_id", o.OrderID) == "" {
			id = o.OrderID
		}
		return invalid(id, reason)
	}
	if r := checkID("order_id", o.OrderID); r != "" {
		return refuse(r)
	}
	if r := checkID("customer_id", o.CustomerID); r != "" {
		return refuse(r)
	}
	switch {
	case o.Lines == nil:
		return refuse("lines is required")
	case len(o.Lines) == 0:
		return refuse(fmt.Sprintf("lines is empty, want 1-%d lines", MaxLines))
	case len(o.Lines) > MaxLines:
		return refuse(fmt.Sprintf("lines has %d lines, max %d", len(o.Lines), MaxLines))
	}
	for i, l := range o.Lines {
		if r := checkSKU(i, l.SKU); r != "" {
			return refuse(r)
		}
		switch {
		case l.Qty == 0:
			return refuse(fmt.Sprintf("lines[%d].qty is required", i))
		case l.Qty < 1 || l.Qty > MaxQty:
			return refuse(fmt.Sprintf("lines[%d].qty %s, got %d", i, qtyRule, l.Qty))
		}
	}
	// Checking line by line would let two lines of 6000 ask for 12000.
	for _, l := range o.Normalize().Lines {
		if l.Qty > MaxQty {
			return refuse(fmt.Sprintf("sku %s totals %d across its lines, max %d", l.SKU, l.Qty, MaxQty))
		}
	}
	if o.PlacedAt != nil {
		// JSON and RFC 3339 have four-digit years; Encode could not write others.
		if y := o.PlacedAt.Year(); y < 0 || y > 9999 {
			return refuse(fmt.Sprintf("placed_at year %d is outside 0000-9999", y))
		}
	}
	if _, r := parseHold(o.Hold); r != "" {
		return refuse(r)
	}
	return nil
}

// qtyRule is what a qty must be, as Validate and the decoder both say it.
var qtyRule = fmt.Sprintf("must be an integer from 1 to %d", MaxQty)

// Normalize returns a copy of o in which lines naming the same SKU are
// merged into the first of them, their quantities summed. Line order is
// otherwise kept. It does not validate: a merged qty may exceed MaxQty, and
// Validate says so.
func (o Order) Normalize() Order {
	o.Lines = normalizeLines(o.Lines)
	if o.PlacedAt != nil {
		t := *o.PlacedAt
		o.PlacedAt = &t
	}
	// One spelling per hold, so that "600s" and "10m" are the same order.
	if d, r := parseHold(o.Hold); r == "" && d > 0 {
		o.Hold = d.String()
	}
	return o
}

func normalizeLines(in []Line) []Line {
	if len(in) == 0 {
		return nil
	}
	out := make([]Line, 0, len(in))
	for _, l := range in {
		i := slices.IndexFunc(out, func(m Line) bool { return m.SKU == l.SKU })
		if i < 0 {
			out = append(out, l)
			continue
		}
		out[i].Qty = addSat(out[i].Qty, l.Qty)
	}
	return out
}

// addSat adds without wrapping, so that merging hostile quantities of an
// unvalidated order can never wrap around into the valid range.
func addSat(a, b int64) int64 {
	s := a + b
	switch {
	case a > 0 && b > 0 && s < 0:
		return math.MaxInt64
	case a < 0 && b < 0 && s >= 0:
		return math.MinInt64
	}
	return s
}

// Hash is a stable hex SHA-256 of what the order asks for: customer, lines
// merged and sorted by SKU, placed_at in UTC, and the hold if any. Two payloads with the same
// order_id and different hashes are different orders: the first one stands.
// Line order does not count, so a storefront that reorders lines on a
// resend is not in conflict with itself.
func (o Order) Hash() string {
	lines := normalizeLines(o.Lines)
	slices.SortFunc(lines, func(a, b Line) int { return strings.Compare(a.SKU, b.SKU) })
	// Newline and '=' are outside every charset, so fields cannot run together.
	buf := make([]byte, 0, 128)
	buf = append(buf, "stockgate.order.v1\n"...)
	buf = append(buf, o.CustomerID...)
	buf = append(buf, '\n')
	for _, l := range lines {
		buf = append(buf, l.SKU...)
		buf = append(buf, '=')
		buf = strconv.AppendInt(buf, l.Qty, 10)
		buf = append(buf, '\n')
	}
	if o.PlacedAt != nil {
		buf = o.PlacedAt.UTC().AppendFormat(buf, time.RFC3339Nano)
	}
	// Only with a hold, so that every order without one keeps the hash its
	// row was written with. A held order is another order than a sale.
	if d := o.HoldDuration(); d > 0 {
		buf = append(buf, "\nhold="...)
		buf = append(buf, d.String()...)
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:])
}

// StockLines is the order's normalized lines in the stock gate's form.
func (o Order) StockLines() []stock.Line {
	lines := normalizeLines(o.Lines)
	out := make([]stock.Line, len(lines))
	for i, l := range lines {
		out[i] = stock.Line{SKU: l.SKU, Qty: l.Qty}
	}
	return out
}

// SKUs is the order's distinct SKUs, in first-seen order.
func (o Order) SKUs() []string {
	out := make([]string, 0, len(o.Lines))
	for _, l := range o.Lines {
		if !slices.Contains(out, l.SKU) {
			out = append(out, l.SKU)
		}
	}
	return out
}

// Encode validates o and returns its payload. Decode(Encode(o)) is
// o.Normalize() for every valid o.
func Encode(o Order) ([]byte, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("encode order %s: %w", o.OrderID, err)
	}
	if len(b) > MaxPayloadBytes {
		// Unreachable with today's bounds (50 lines of 64-byte SKUs), kept so
		// that loosening a bound cannot make Encode write what Decode refuses.
		return nil, invalid(o.OrderID, fmt.Sprintf("payload is %d bytes, max %d", len(b), MaxPayloadBytes))
	}
	return b, nil
}

// CheckID returns nil when id is usable as an order_id or customer_id: 1-64
// characters of [A-Za-z0-9_.:-].
func CheckID(id string) error {
	if r := checkID("id", id); r != "" {
		return errors.New(r)
	}
	return nil
}

// checkID returns "" when s is 1-64 characters of [A-Za-z0-9_.:-], and
// otherwise the reason. An empty id is an absent one: the decoder has
// already refused an empty string written in the payload.
func checkID(field, s string) string {
	if s == "" {
		return field + " is required"
	}
	// 64 characters or fewer in more bytes: a non-ASCII one, refused below.
	if len(s) > maxIDLen && utf8.RuneCountInString(s) > maxIDLen {
		return fmt.Sprintf("%s must be at most %d characters, got %d", field, maxIDLen, utf8.RuneCountInString(s))
	}
	for i := 0; i < len(s); i++ {
		if !idByte(s[i]) {
			return fmt.Sprintf("%s must be characters of A-Z a-z 0-9 _ . : -, got %s", field, quote(s))
		}
	}
	return ""
}

func idByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '.' || c == ':' || c == '-'
}

// checkSKU is the stock gate's SKU rule with the line it is on; an empty
// SKU is an absent one, as in checkID.
func checkSKU(line int, s string) string {
	if s == "" {
		return fmt.Sprintf("lines[%d].sku is required", line)
	}
	if r := stock.SKUReason(s); r != "" {
		return fmt.Sprintf("lines[%d].sku %s", line, r)
	}
	return ""
}

// quote quotes at most maxQuoted characters of s on one line, in ASCII:
// newlines and control characters are escaped, and so is every non-ASCII
// rune, which is what makes a look-alike such as a non-breaking hyphen
// visible as the reason the value was refused.
func quote(s string) string {
	return strconv.QuoteToASCII(clip(s, maxQuoted))
}

// clip cuts s to n runes, marking the cut.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for range n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + "..."
}
