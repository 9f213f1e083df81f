package orders

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Decode strictly decodes and validates a payload: the library reads it
// into the Order under decodeOptions, then Validate checks the values.
//
// Refused: more than MaxPayloadBytes (checked first), a byte order mark,
// invalid UTF-8 (which encoding/json would silently turn into U+FFFD), any
// top level but one object, unknown or duplicate keys (matched exactly:
// encoding/json alone would take "Order_ID" for order_id and keep the last
// of two "lines"), anything after the object, null for anything but
// placed_at, and every bound of DESIGN.md. qty must be written as a plain
// integer: 2.0, 1e3, "2" and -0 are refused. placed_at may be absent or null.
//
// On failure the error is an *InvalidError. Its reason is the first problem
// in the document, unless the payload is not valid UTF-8: that is the real
// problem, and outranks what it caused. On success the order is
// normalized: lines naming the same SKU are merged.
func Decode(b []byte) (Order, error) {
	switch {
	case len(b) > MaxPayloadBytes:
		return Order{}, invalid("", fmt.Sprintf("payload is %d bytes, max %d", len(b), MaxPayloadBytes))
	case bytes.HasPrefix(b, []byte("\uFEFF")):
		return Order{}, invalid("", "payload starts with a byte order mark")
	case len(bytes.TrimLeft(b, " \t\r\n")) == 0:
		return Order{}, invalid("", "empty payload")
	}
	var o Order
	if err := json.Unmarshal(b, &o, decodeOptions); err != nil {
		return Order{}, refused(b, err)
	}
	if err := o.Validate(); err != nil {
		return Order{}, err
	}
	return o.Normalize(), nil
}

// decodeOptions hold the payload contract that struct tags cannot say. The
// first four are the library's defaults, written out because the contract
// depends on them; RejectUnknownMembers is not a default. Unmarshal itself
// refuses anything after the top-level value.
//
// The unmarshalers refuse what the library would otherwise let through:
// null, which it takes for a zero value, an empty string, and numbers that
// are not plain counts. What is left zero after decoding was therefore
// absent, and Validate says it is required.
var decodeOptions = json.JoinOptions(
	jsontext.AllowDuplicateNames(false),
	jsontext.AllowInvalidUTF8(false),
	json.MatchCaseInsensitiveNames(false),
	json.RejectUnknownMembers(true),
	json.WithUnmarshalers(json.JoinUnmarshalers(
		json.UnmarshalFromFunc(kindOnly[*Order]('{', "a JSON object")),
		json.UnmarshalFromFunc(kindOnly[*[]Line]('[', fmt.Sprintf("an array of 1-%d lines", MaxLines))),
		json.UnmarshalFromFunc(kindOnly[*Line]('{', "an object")),
		json.UnmarshalFromFunc(unmarshalString),
		json.UnmarshalFromFunc(unmarshalQty),
		json.UnmarshalFromFunc(unmarshalTime),
	)),
)

// refusal is an unmarshaler's verdict on the value it was given, such as
// "must be a string, got null". The library adds the JSON pointer to the
// value, which names it in the reason.
type refusal struct {
	what string
	end  int64 // the offset after the value when it was read, else 0
}

func (r *refusal) Error() string { return r.what }

// kindOnly lets the library decode a T only from a JSON value of kind k:
// for T an object or array it would take null as empty.
func kindOnly[T any](k jsontext.Kind, want string) func(*jsontext.Decoder, T) error {
	return func(dec *jsontext.Decoder, _ T) error {
		if dec.PeekKind() != k {
			return mismatch(dec, "must be "+want)
		}
		return errors.ErrUnsupported // the library's own decoding
	}
}

// mismatch refuses the next value as rule followed by what it is. An
// object or array is named without being read: it may be 64 KiB deep.
func mismatch(dec *jsontext.Decoder, rule string) error {
	switch dec.PeekKind() {
	case '{':
		return &refusal{what: rule + ", got object"}
	case '[':
		return &refusal{what: rule + ", got array"}
	}
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	got := "boolean"
	switch v.Kind() {
	case '"':
		s, _ := jsontext.AppendUnquote(nil, v)
		got = "string " + quote(string(s))
	case '0':
		got = "number " + clip(string(v), maxQuoted)
	case 'n':
		got = "null"
	}
	return read(dec, rule+", got "+got)
}

// read refuses the value just read.
func read(dec *jsontext.Decoder, what string) error {
	return &refusal{what: what, end: dec.InputOffset()}
}

// unmarshalString reads order_id, customer_id, sku and hold, the order
// payload's strings. Their charsets, lengths and forms are Validate's.
func unmarshalString(dec *jsontext.Decoder, s *string) error {
	if dec.PeekKind() != '"' {
		return mismatch(dec, "must be a string")
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	if *s = tok.String(); *s == "" {
		return read(dec, "must not be empty")
	}
	return nil
}

// unmarshalQty reads a qty written as a positive integer in plain decimal:
// 2.0 and 1e3 are numbers JSON allows, but a producer sending them has a
// float where it should have a count, and 0 and -0 are not quantities. The
// upper bound is Validate's.
func unmarshalQty(dec *jsontext.Decoder, q *int64) error {
	if dec.PeekKind() != '0' {
		return mismatch(dec, qtyRule)
	}
	v, err := dec.ReadValue()
	if err != nil {
		return err
	}
	// ParseInt refuses fractions, exponents and what int64 cannot hold.
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil || n < 1 {
		return read(dec, qtyRule+", got "+clip(string(v), maxQuoted))
	}
	*q = n
	return nil
}

// unmarshalTime reads placed_at; the library has already made a null one
// nil. time.Time.UnmarshalText is RFC 3339 to the letter, while
// time.Parse(time.RFC3339) still tolerates forms the RFC does not allow.
func unmarshalTime(dec *jsontext.Decoder, t *time.Time) error {
	const rule = "must be an RFC 3339 timestamp"
	if dec.PeekKind() != '"' {
		return mismatch(dec, rule)
	}
	tok, err := dec.ReadToken()
	if err != nil {
		return err
	}
	s := tok.String()
	if err := t.UnmarshalText([]byte(s)); err != nil {
		return read(dec, rule+", got "+quote(s))
	}
	*t = t.UTC()
	return nil
}

// refused turns what Unmarshal refused into an *InvalidError, with the
// order_id when the payload has a usable one.
func refused(b []byte, err error) *InvalidError {
	s := scanTop(b)
	if !utf8.Valid(b) {
		return invalid(s.id, "payload is not valid UTF-8")
	}
	return invalid(s.id, s.reason(err))
}

// reason words what the library reported, naming the value by its JSON
// pointer.
func (s topLevel) reason(err error) string {
	if serr, ok := errors.AsType[*jsontext.SyntacticError](err); ok {
		ptr := serr.JSONPointer
		switch {
		case serr.Err == jsontext.ErrDuplicateName:
			return "duplicate key " + quote(ptr.LastToken()) + in(ptr.Parent())
		case errors.Is(serr.Err, io.ErrUnexpectedEOF):
			return malformed(serr)
		case s.end > 0 && serr.ByteOffset >= s.end:
			// A second object or garbage: not ours to guess which.
			return "trailing data after the JSON object"
		case s.errAt < 0 || serr.ByteOffset < s.errAt:
			// The scan, which takes any escape, read past it: the JSON is
			// well formed and the bytes are UTF-8, so this is an escape of
			// half a UTF-16 surrogate pair, which no UTF-8 can hold.
			return where(ptr) + " is not valid UTF-8: it escapes a lone surrogate"
		}
		return malformed(serr)
	}
	if sem, ok := errors.AsType[*json.SemanticError](err); ok {
		ptr := sem.JSONPointer
		r, isRefusal := sem.Err.(*refusal)
		switch {
		case sem.Err == json.ErrUnknownName:
			return "unknown field " + quote(ptr.LastToken()) + in(ptr.Parent())
		case isRefusal && r.end > 0 && r.end == s.errAt:
			// The value runs on into malformed JSON, as in 010, 0x10 or
			// truex: the library only read the first token of it.
			return s.malformed
		case isRefusal:
			return where(ptr) + " " + r.what
		}
	}
	// Not reached by any payload found so far; kept one line and short.
	return "payload refused: " + ascii(clip(err.Error(), 2*maxQuoted))
}

// malformed words a syntax error.
func malformed(serr *jsontext.SyntacticError) string {
	if errors.Is(serr.Err, io.ErrUnexpectedEOF) {
		return "malformed JSON: unexpected end of input"
	}
	return fmt.Sprintf("malformed JSON at byte %d: %s", serr.ByteOffset, ascii(serr.Err.Error()))
}

// where names the value at ptr as a reason does: "payload" for the top
// level, "lines[0].sku" inside it.
func where(ptr jsontext.Pointer) string {
	if ptr == "" {
		return "payload"
	}
	var b strings.Builder
	for tok := range ptr.Tokens() {
		if _, err := strconv.Atoi(tok); err == nil {
			b.WriteString("[" + tok + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(tok)
	}
	return b.String()
}

// in says where a key is: nothing at the top level, " in lines[0]" in a line.
func in(parent jsontext.Pointer) string {
	if parent == "" {
		return ""
	}
	return " in " + where(parent)
}

// ascii escapes what is not printable ASCII in the library's own words,
// which quote the offending byte as it is.
func ascii(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r >= 0x7f {
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// topLevel is what a second, lenient read of a refused payload finds: the
// order_id, so that the order can be recorded rejected, and where the
// reading stopped, so that reason can tell malformed JSON from trailing
// data and from the escapes only the strict read refuses.
type topLevel struct {
	id        string // the order_id when usable: a string, given once, matching the charset
	end       int64  // the offset after the top-level object; 0 when not reached
	errAt     int64  // the offset of the first syntax error; -1 when there is none
	malformed string // the reason for that error
}

// scanTop reads b's top level, and only reads past each other value. It
// takes duplicate keys and invalid UTF-8, so that an order_id after those
// is still found, and one given twice is found twice.
func scanTop(b []byte) topLevel {
	s := topLevel{errAt: -1}
	var id string
	ids := 0
	dec := jsontext.NewDecoder(bytes.NewReader(b), jsontext.AllowDuplicateNames(true), jsontext.AllowInvalidUTF8(true))
	err := func() error {
		if dec.PeekKind() != '{' {
			return skip(dec)
		}
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
		for dec.PeekKind() != '}' {
			name, err := dec.ReadToken()
			if err != nil {
				return err
			}
			if name.String() == "order_id" {
				ids++
				id = ""
				if dec.PeekKind() == '"' {
					tok, err := dec.ReadToken()
					if err != nil {
						return err
					}
					id = tok.String()
					continue
				}
			}
			if err := skip(dec); err != nil {
				return err
			}
		}
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
		s.end = dec.InputOffset()
		return nil
	}()
	var deep *tooDeep
	serr, isSyntax := errors.AsType[*jsontext.SyntacticError](err)
	switch {
	case errors.As(err, &deep):
		// Not malformed, only not worth reading into: the library has
		// refused the value around it without reading it.
		s.errAt, s.malformed = deep.at, fmt.Sprintf("JSON nested deeper than %d levels", maxDepth)
	case isSyntax && !errors.Is(err, io.ErrUnexpectedEOF):
		s.errAt, s.malformed = serr.ByteOffset, malformed(serr)
	case err != nil: // io.EOF or io.ErrUnexpectedEOF: the input ended too soon
		eof := &jsontext.SyntacticError{ByteOffset: int64(len(b)), Err: io.ErrUnexpectedEOF}
		s.errAt, s.malformed = eof.ByteOffset, malformed(eof)
	}
	if ids == 1 && checkID("order_id", id) == "" {
		s.id = id
	}
	return s
}

// maxDepth is as deep as the lenient read follows a value. A valid order
// nests three deep; without a bound, 64 KiB of '[' cost a millisecond and
// half a megabyte to read through, which the library's own Unmarshal never
// does: it refuses a value of the wrong kind before reading into it.
const maxDepth = 32

// tooDeep stops the lenient read at maxDepth.
type tooDeep struct{ at int64 }

func (e *tooDeep) Error() string { return "too deep" }

// skip reads past the next value, as SkipValue does, but token by token, so
// that it can stop at maxDepth.
func skip(dec *jsontext.Decoder) error {
	base := dec.StackDepth()
	for {
		if _, err := dec.ReadToken(); err != nil {
			return err
		}
		switch d := dec.StackDepth(); {
		case d == base:
			return nil
		case d > base+maxDepth:
			return &tooDeep{at: dec.InputOffset()}
		}
	}
}
