package orders

import (
	"bytes"
	"fmt"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Decode strictly decodes and validates a payload. A valid payload is read
// once, byte by byte, straight into the Order; only a refused one costs a
// second look (for invalid UTF-8, to name it).
//
// Refused: more than MaxPayloadBytes (checked first), invalid UTF-8 (which
// encoding/json would silently turn into U+FFFD), a byte order mark, any
// top level but one object, unknown or duplicate keys (matched exactly:
// encoding/json alone would take "Order_ID" for order_id and keep the last
// of two "lines"), anything after the object, and every bound of DESIGN.md.
// qty must be written as a plain integer: 2.0, 1e3, "2" and -0 are refused.
// placed_at may be absent or null.
//
// On failure the error is an *InvalidError. On success the order is
// normalized: lines naming the same SKU are merged.
func Decode(b []byte) (Order, error) {
	switch {
	case len(b) > MaxPayloadBytes:
		return Order{}, &InvalidError{Reason: fmt.Sprintf("payload is %d bytes, max %d", len(b), MaxPayloadBytes)}
	case bytes.HasPrefix(b, []byte("\uFEFF")):
		return Order{}, &InvalidError{Reason: "payload starts with a byte order mark"}
	case len(bytes.TrimLeft(b, " \t\r\n")) == 0:
		return Order{}, &InvalidError{Reason: "empty payload"}
	}
	d := decoder{b: b}
	o := d.order()
	if d.reason != "" {
		// Invalid UTF-8 never gets this far without a reason: outside strings
		// it is malformed JSON, and inside them no key, charset or timestamp
		// admits a byte above 0x7f. So the happy path needs no second pass
		// over b; this one only names the real problem, which outranks what
		// it caused. The order_id found stays usable.
		if !utf8.Valid(b) {
			d.reason = "payload is not valid UTF-8"
		}
		return Order{}, &InvalidError{OrderID: d.usableID(), Reason: d.reason}
	}
	if err := o.Validate(); err != nil {
		return Order{}, err
	}
	return o.Normalize(), nil
}

// decoder is a single-pass JSON parser for one payload, shaped by what the
// payload may hold. It is not encoding/json because that cannot see
// duplicate keys or the written form of a number, and its Decoder.Token,
// which can, costs a formatted error per scalar.
//
// It keeps the first problem it finds and goes on reading, so that an
// order_id after the problem is still found; only malformed JSON, or JSON
// nested deeper than maxDepth, stops it.
type decoder struct {
	b        []byte
	i        int    // next byte to read
	depth    int    // objects and arrays open
	reason   string // the first problem; "" while there is none
	syntax   bool   // stop reading: the JSON is malformed or too deep
	orderID  string // the top-level order_id when it was a string
	idCount  int    // how many top-level order_id keys were seen
	idOK     bool   // orderID matches the charset
	lineSeen int    // lines counted, including those past MaxLines
}

// maxDepth bounds nesting. A valid order nests three deep; the bound only
// keeps a payload of 64 KiB of '[' from costing milliseconds and megabytes
// of stack. encoding/json's own bound, 10000, is for documents in general.
const maxDepth = 32

// kind is the JSON type of a value.
type kind int

const (
	kindString kind = iota + 1
	kindNumber
	kindBool
	kindNull
	kindObject
	kindArray
)

// scalar is a value read whole: a string's decoded text or a number's
// literal, and only the kind of anything else.
type scalar struct {
	kind kind
	text string
}

// describe names a value for a reason: its kind, and a clipped rendering
// of a string or number.
func (v scalar) describe() string {
	switch v.kind {
	case kindString:
		return "string " + quote(v.text)
	case kindNumber:
		return "number " + clip(v.text, maxQuoted)
	case kindBool:
		return "boolean"
	case kindNull:
		return "null"
	case kindObject:
		return "object"
	}
	return "array"
}

func (d *decoder) fail(format string, args ...any) {
	if d.reason == "" {
		d.reason = fmt.Sprintf(format, args...)
	}
}

// malformed records a syntax error at the current byte. It outranks what
// came before: an earlier problem may be a side effect of the malformed
// part, and the malformed JSON is what the producer must fix first. The
// order_id read before it stays usable: it was a complete top-level string.
func (d *decoder) malformed(what string) bool {
	if !d.syntax {
		d.syntax = true
		if d.i >= len(d.b) {
			d.reason = "malformed JSON: unexpected end of input"
		} else {
			d.reason = fmt.Sprintf("malformed JSON at byte %d: %s", d.i, what)
		}
	}
	return false
}

// tooDeep stops the reading. The wrong-typed value or unknown field that
// holds the deep part has always been named first, so this reason shows
// only if that ever changes.
func (d *decoder) tooDeep() bool {
	d.fail("JSON nested deeper than %d levels", maxDepth)
	d.syntax = true
	return false
}

func (d *decoder) unexpected(context string) bool {
	if d.i >= len(d.b) {
		return d.malformed("")
	}
	r, _ := utf8.DecodeRune(d.b[d.i:])
	return d.malformed(fmt.Sprintf("unexpected %s %s", strconv.QuoteRuneToASCII(r), context))
}

func (d *decoder) usableID() string {
	if d.idCount == 1 && d.idOK {
		return d.orderID
	}
	return ""
}

func (d *decoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte without consuming it, or 0 at the
// end (a NUL in the input is malformed wherever peek is used).
func (d *decoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// Where an object is, for object's line argument.
const (
	topLevel = -1 // the order itself
	skipped  = -2 // a value being skipped, whose keys do not matter
)

// object reads an object whose '{' is next, calling field for each new key
// with the decoder at the key's value; field must read the value. Duplicate
// keys are refused, except in skipped objects. line is the index of the
// line the object is, topLevel or skipped.
func (d *decoder) object(line int, field func(key string) bool) bool {
	d.i++ // '{'
	if d.depth++; d.depth > maxDepth {
		return d.tooDeep()
	}
	defer func() { d.depth-- }()
	if d.peek() == '}' {
		d.i++
		return true
	}
	var seen [4]string // valid objects here have at most four keys
	nseen := 0
	for {
		if d.peek() != '"' {
			return d.unexpected("looking for an object key")
		}
		key, ok := d.str()
		if !ok {
			return false
		}
		if d.peek() != ':' {
			return d.unexpected("after an object key")
		}
		d.i++
		dup := false
		for _, k := range seen[:nseen] {
			dup = dup || k == key
		}
		if line == skipped {
			dup = false
		}
		switch {
		case dup:
			d.fail("duplicate key %s%s", quote(key), in(line))
			if line == topLevel && key == "order_id" {
				d.idCount++
			}
			if !d.skip() {
				return false
			}
		default:
			if nseen < len(seen) {
				seen[nseen] = key
				nseen++
			}
			if !field(key) {
				return false
			}
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return true
		default:
			return d.unexpected("after an object value")
		}
	}
}

// array reads an array whose '[' is next, calling elem with the decoder at
// each element; elem must read it.
func (d *decoder) array(elem func() bool) bool {
	d.i++ // '['
	if d.depth++; d.depth > maxDepth {
		return d.tooDeep()
	}
	defer func() { d.depth-- }()
	if d.peek() == ']' {
		d.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return true
		default:
			return d.unexpected("after an array element")
		}
	}
}

// value reads any value. Objects and arrays are skipped whole.
func (d *decoder) value() (scalar, bool) {
	switch c := d.peek(); {
	case c == '"':
		s, ok := d.str()
		return scalar{kindString, s}, ok
	case c == '-' || '0' <= c && c <= '9':
		n, ok := d.number()
		return scalar{kindNumber, n}, ok
	case c == '{':
		return scalar{kind: kindObject}, d.object(skipped, func(string) bool { return d.skip() })
	case c == '[':
		return scalar{kind: kindArray}, d.array(d.skip)
	case c == 't':
		return scalar{kind: kindBool}, d.literal("true")
	case c == 'f':
		return scalar{kind: kindBool}, d.literal("false")
	case c == 'n':
		return scalar{kind: kindNull}, d.literal("null")
	}
	return scalar{}, d.unexpected("looking for a value")
}

func (d *decoder) skip() bool {
	_, ok := d.value()
	return ok
}

// mismatch refuses the value that is next, as prefix followed by what it
// is, and skips it. The reason is recorded before an object or array is
// skipped, so that nothing found inside it can take precedence.
func (d *decoder) mismatch(prefix string) bool {
	switch d.peek() {
	case '{':
		d.fail("%sobject", prefix)
	case '[':
		d.fail("%sarray", prefix)
	default:
		v, ok := d.value()
		if ok {
			d.fail("%s%s", prefix, v.describe())
		}
		return ok
	}
	return d.skip()
}

func (d *decoder) literal(word string) bool {
	if !bytes.HasPrefix(d.b[d.i:], []byte(word)) {
		return d.unexpected("in a literal")
	}
	d.i += len(word)
	return true
}

// number reads a JSON number and returns it as written.
func (d *decoder) number() (string, bool) {
	start := d.i
	digits := func() int {
		n := 0
		for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
			d.i++
			n++
		}
		return n
	}
	if d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.b) && d.b[d.i] == '0':
		d.i++
	case digits() == 0:
		return "", d.unexpected("in a number")
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if digits() == 0 {
			return "", d.unexpected("in a number")
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if digits() == 0 {
			return "", d.unexpected("in a number")
		}
	}
	return string(d.b[start:d.i]), true
}

// str reads a string whose '"' is next and returns its decoded text. Bytes
// are copied as they are, valid UTF-8 or not (Decode names invalid UTF-8
// once it has failed); escapes are decoded as encoding/json does, a lone
// surrogate becoming U+FFFD.
func (d *decoder) str() (string, bool) {
	d.i++ // '"'
	start := d.i
	// The common case, no escapes: one allocation for the result.
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			s := string(d.b[start:d.i])
			d.i++
			return s, true
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", d.unexpected("in a string")
		}
		d.i++
	}
	return "", d.malformed("")
}

func (d *decoder) escaped(start int) (string, bool) {
	out := append([]byte(nil), d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(out), true
		case c < 0x20:
			return "", d.unexpected("in a string")
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		d.i++ // '\\'
		if d.i >= len(d.b) {
			return "", d.malformed("")
		}
		e := d.b[d.i]
		d.i++
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := d.hex4()
			if !ok {
				return "", false
			}
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if bytes.HasPrefix(d.b[d.i:], []byte(`\u`)) {
					save := d.i
					d.i += 2
					lo, ok := d.hex4()
					if !ok {
						return "", false
					}
					if dec := utf16.DecodeRune(r, lo); dec != utf8.RuneError {
						r2 = dec
					} else {
						d.i = save // not a pair: the next escape stands alone
					}
				}
				r = r2
			}
			out = utf8.AppendRune(out, r)
		default:
			d.i--
			return "", d.unexpected("after a backslash")
		}
	}
	return "", d.malformed("")
}

func (d *decoder) hex4() (rune, bool) {
	if d.i+4 > len(d.b) {
		d.i = len(d.b)
		return 0, d.malformed("")
	}
	var r rune
	for _, c := range d.b[d.i : d.i+4] {
		switch {
		case '0' <= c && c <= '9':
			r = r<<4 | rune(c-'0')
		case 'a' <= c && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case 'A' <= c && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, d.unexpected("in a \\u escape")
		}
		d.i++
	}
	return r, true
}

func (d *decoder) order() Order {
	var o Order
	if d.peek() != '{' {
		d.mismatch("payload must be a JSON object, got ")
		return o
	}
	var has struct{ customer, lines bool }
	ok := d.object(topLevel, func(key string) bool {
		switch key {
		case "order_id":
			d.idCount++
			s, isStr, ok := d.stringField("order_id")
			if isStr {
				d.orderID, o.OrderID = s, s
				if r := checkID("order_id", s); r != "" {
					d.fail("%s", r)
				} else {
					d.idOK = true
				}
			}
			return ok
		case "customer_id":
			has.customer = true
			s, isStr, ok := d.stringField("customer_id")
			if isStr {
				o.CustomerID = s
				if r := checkID("customer_id", s); r != "" {
					d.fail("%s", r)
				}
			}
			return ok
		case "placed_at":
			return d.placedAt(&o)
		case "lines":
			has.lines = true
			return d.lines(&o)
		}
		d.fail("unknown field %s", quote(key))
		return d.skip()
	})
	if !ok {
		return o
	}
	if d.peek() != 0 || d.i < len(d.b) {
		// Whatever follows, a second object or garbage, is not ours to guess.
		d.syntax, d.reason = true, "trailing data after the JSON object"
		return o
	}
	switch {
	case d.idCount == 0:
		d.fail("order_id is required")
	case !has.customer:
		d.fail("customer_id is required")
	case !has.lines:
		d.fail("lines is required")
	}
	return o
}

// stringField reads a value that must be a string. isStr reports whether
// it was.
func (d *decoder) stringField(path string) (s string, isStr, ok bool) {
	if d.peek() != '"' {
		return "", false, d.mismatch(path + " must be a string, got ")
	}
	s, ok = d.str()
	return s, ok, ok
}

func (d *decoder) placedAt(o *Order) bool {
	switch d.peek() {
	case 'n':
		return d.literal("null") // an explicit null is an absent placed_at
	case '"':
		s, ok := d.str()
		if !ok {
			return false
		}
		var ts time.Time
		// UnmarshalText is RFC 3339 to the letter; time.Parse(time.RFC3339)
		// still tolerates forms the RFC does not allow.
		if err := ts.UnmarshalText([]byte(s)); err != nil {
			d.fail("placed_at must be an RFC 3339 timestamp, got %s", quote(s))
			return true
		}
		ts = ts.UTC()
		o.PlacedAt = &ts
		return true
	}
	return d.mismatch("placed_at must be an RFC 3339 timestamp, got ")
}

func (d *decoder) lines(o *Order) bool {
	if d.peek() != '[' {
		return d.mismatch(fmt.Sprintf("lines must be an array of 1-%d lines, got ", MaxLines))
	}
	ok := d.array(func() bool {
		i := d.lineSeen
		d.lineSeen++
		if i >= MaxLines {
			// Too many lines is the reason now, unless an earlier line had
			// one: what the rest hold does not matter, only their count.
			return d.skip()
		}
		if d.peek() != '{' {
			return d.mismatch(fmt.Sprintf("lines[%d] must be an object, got ", i))
		}
		var l Line
		var hasSKU, hasQty bool
		ok := d.object(i, func(key string) bool {
			switch key {
			case "sku":
				hasSKU = true
				if d.peek() != '"' {
					return d.mismatch(fmt.Sprintf("lines[%d].sku must be a string, got ", i))
				}
				s, ok := d.str()
				if ok {
					l.SKU = s
					if r := checkSKU(i, s); r != "" {
						d.fail("%s", r)
					}
				}
				return ok
			case "qty":
				hasQty = true
				return d.qty(i, &l)
			}
			d.fail("unknown field %s%s", quote(key), in(i))
			return d.skip()
		})
		if !ok {
			return false
		}
		if !hasSKU {
			d.fail("lines[%d].sku is required", i)
		}
		if !hasQty {
			d.fail("lines[%d].qty is required", i)
		}
		o.Lines = append(o.Lines, l)
		return true
	})
	if !ok {
		return false
	}
	switch {
	case d.lineSeen == 0:
		d.fail("lines is empty, want 1-%d lines", MaxLines)
	case d.lineSeen > MaxLines:
		d.fail("lines has %d lines, max %d", d.lineSeen, MaxLines)
	}
	return true
}

// qty accepts only the plain decimal form of an integer in 1..MaxQty:
// 2.0 and 1e3 are numbers JSON allows, but a producer sending them has a
// float where it should have a count, and -0 is not a quantity.
func (d *decoder) qty(i int, l *Line) bool {
	if c := d.peek(); c != '-' && (c < '0' || c > '9') {
		return d.mismatch(fmt.Sprintf("lines[%d].qty must be an integer from 1 to %d, got ", i, MaxQty))
	}
	text, ok := d.number()
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n < 1 || n > MaxQty {
		d.fail("lines[%d].qty must be an integer from 1 to %d, got %s", i, MaxQty, clip(text, maxQuoted))
		return true
	}
	l.Qty = n
	return true
}
