// Package ordertest is test data shared by the tests of stockgate: a
// catalogue of hostile order payloads (and of checkout task payloads) that the decoder's unit tests, its
// fuzz seeds and the end-to-end bad-input test all use. It is imported only
// from tests.
//
// It must not hold test logic or import the packages it describes, so that
// any test, in any package, can use it.
package ordertest

import (
	"fmt"
	"strings"
)

// Case is one hostile payload.
type Case struct {
	Name    string // unique, usable as a subtest and file name
	Payload []byte
	// HasOrderID says whether the payload has a usable order_id: the
	// handler records the order rejected under it. Without one, the task
	// is archived.
	HasOrderID bool
	// OrderID is the usable order_id when HasOrderID, unique in the
	// catalogue so that all cases can run against one database.
	OrderID string
	// Reason is how the decoder's reason starts, after "invalid: ".
	Reason string
}

// Hostile is the catalogue: numbers, strings, sizes, shapes and encodings.
var Hostile = []Case{
	// Sizes.
	{Name: "empty", Payload: []byte(""), Reason: "empty payload"},
	{Name: "whitespace-only", Payload: []byte(" \n\t "), Reason: "empty payload"},
	{Name: "too-large", Payload: padded(`{"order_id":"bad-too-large","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}`, 65<<10),
		Reason: "payload is 66560 bytes, max 65536"},
	{Name: "lines-51", Payload: withLines("bad-lines-51", 51), HasOrderID: true, OrderID: "bad-lines-51",
		Reason: "lines has 51 lines, max 50"},
	{Name: "lines-thousands", Payload: withLines("bad-lines-thousands", 2500), HasOrderID: true, OrderID: "bad-lines-thousands",
		Reason: "lines has 2500 lines, max 50"},
	{Name: "deep-nesting", Payload: []byte(`{"order_id":"bad-deep-nesting","customer_id":"c-1","lines":` +
		strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + `}`), HasOrderID: true, OrderID: "bad-deep-nesting",
		Reason: "lines[0] must be an object, got array"},
	{Name: "deep-nesting-unknown-field", Payload: []byte(`{"order_id":"bad-deep-nesting-unknown-field","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}],"x":` +
		strings.Repeat(`{"a":[`, 5000) + strings.Repeat(`]}`, 5000) + `}`), HasOrderID: true, OrderID: "bad-deep-nesting-unknown-field",
		Reason: `unknown field "x"`},
	{Name: "deep-nesting-top-level", Payload: []byte(strings.Repeat("[", 30000) + strings.Repeat("]", 30000)),
		Reason: "payload must be a JSON object, got array"},

	// Encodings.
	{Name: "byte-order-mark", Payload: []byte("\uFEFF" + `{"order_id":"bad-bom","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}`),
		Reason: "payload starts with a byte order mark"},
	{Name: "utf16le", Payload: utf16le(`{"order_id":"bad-utf16","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}`),
		Reason: "payload is not valid UTF-8"},
	{Name: "invalid-utf8-customer", Payload: []byte(`{"order_id":"bad-invalid-utf8-customer","customer_id":"c-` + "\xff" + `","lines":[{"sku":"SKU-1","qty":1}]}`),
		HasOrderID: true, OrderID: "bad-invalid-utf8-customer", Reason: "payload is not valid UTF-8"},
	{Name: "invalid-utf8-order-id", Payload: []byte(`{"order_id":"bad-` + "\xfe" + `","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}`),
		Reason: "payload is not valid UTF-8"},
	{Name: "overlong-utf8-sku", Payload: []byte(`{"order_id":"bad-overlong-utf8-sku","customer_id":"c-1","lines":[{"sku":"A` + "\xc0\xaf" + `B","qty":1}]}`),
		HasOrderID: true, OrderID: "bad-overlong-utf8-sku", Reason: "payload is not valid UTF-8"},
	{Name: "lone-surrogate-sku", Payload: []byte(`{"order_id":"bad-lone-surrogate-sku","customer_id":"c-1","lines":[{"sku":"A\ud800","qty":1}]}`),
		HasOrderID: true, OrderID: "bad-lone-surrogate-sku", Reason: "lines[0].sku is not valid UTF-8: it escapes a lone surrogate"},
	{Name: "lone-surrogate-order-id", Payload: []byte(`{"order_id":"bad-\udc00","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}`),
		Reason: "order_id is not valid UTF-8: it escapes a lone surrogate"},
	{Name: "escaped-braces-sku", Payload: []byte(`{"order_id":"bad-escaped-braces-sku","customer_id":"c-1","lines":[{"sku":"\u007bSKU\u007d","qty":1}]}`),
		HasOrderID: true, OrderID: "bad-escaped-braces-sku", Reason: `lines[0].sku must be characters of A-Z a-z 0-9 _ . -, got "{SKU}"`},
	{Name: "escaped-nul-order-id", Payload: []byte(`{"order_id":"bad\u0000","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}`),
		Reason: `order_id must be characters of A-Z a-z 0-9 _ . : -, got "bad\x00"`},
	{Name: "raw-nul-byte", Payload: []byte(`{"order_id":"bad-raw-nul-byte","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}` + "\x00"),
		HasOrderID: true, OrderID: "bad-raw-nul-byte", Reason: "trailing data after the JSON object"},
	{Name: "raw-newline-in-string", Payload: []byte(`{"order_id":"bad-raw-newline-in-string","customer_id":"c-1","lines":[{"sku":"A` + "\n" + `B","qty":1}]}`),
		HasOrderID: true, OrderID: "bad-raw-newline-in-string", Reason: "malformed JSON"},

	// Numbers.
	{Name: "qty-nan", Payload: line("bad-qty-nan", `{"sku":"SKU-1","qty":NaN}`), HasOrderID: true, OrderID: "bad-qty-nan", Reason: "malformed JSON"},
	{Name: "qty-infinity", Payload: line("bad-qty-infinity", `{"sku":"SKU-1","qty":Infinity}`), HasOrderID: true, OrderID: "bad-qty-infinity", Reason: "malformed JSON"},
	{Name: "qty-1e400", Payload: line("bad-qty-1e400", `{"sku":"SKU-1","qty":1e400}`), HasOrderID: true, OrderID: "bad-qty-1e400",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got 1e400"},
	{Name: "qty-float", Payload: line("bad-qty-float", `{"sku":"SKU-1","qty":2.0}`), HasOrderID: true, OrderID: "bad-qty-float",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got 2.0"},
	{Name: "qty-fraction", Payload: line("bad-qty-fraction", `{"sku":"SKU-1","qty":1.5}`), HasOrderID: true, OrderID: "bad-qty-fraction",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got 1.5"},
	{Name: "qty-exponent", Payload: line("bad-qty-exponent", `{"sku":"SKU-1","qty":1e3}`), HasOrderID: true, OrderID: "bad-qty-exponent",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got 1e3"},
	{Name: "qty-string", Payload: line("bad-qty-string", `{"sku":"SKU-1","qty":"2"}`), HasOrderID: true, OrderID: "bad-qty-string",
		Reason: `lines[0].qty must be an integer from 1 to 10000, got string "2"`},
	{Name: "qty-negative", Payload: line("bad-qty-negative", `{"sku":"SKU-1","qty":-1}`), HasOrderID: true, OrderID: "bad-qty-negative",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got -1"},
	{Name: "qty-zero", Payload: line("bad-qty-zero", `{"sku":"SKU-1","qty":0}`), HasOrderID: true, OrderID: "bad-qty-zero",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got 0"},
	{Name: "qty-minus-zero", Payload: line("bad-qty-minus-zero", `{"sku":"SKU-1","qty":-0}`), HasOrderID: true, OrderID: "bad-qty-minus-zero",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got -0"},
	{Name: "qty-huge", Payload: line("bad-qty-huge", `{"sku":"SKU-1","qty":99999999999999999999999}`), HasOrderID: true, OrderID: "bad-qty-huge",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got 99999999999999999999999"},
	{Name: "qty-int64-overflow", Payload: line("bad-qty-int64-overflow", `{"sku":"SKU-1","qty":9223372036854775808}`), HasOrderID: true, OrderID: "bad-qty-int64-overflow",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got 9223372036854775808"},
	{Name: "qty-over-max", Payload: line("bad-qty-over-max", `{"sku":"SKU-1","qty":10001}`), HasOrderID: true, OrderID: "bad-qty-over-max",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got 10001"},
	{Name: "qty-null", Payload: line("bad-qty-null", `{"sku":"SKU-1","qty":null}`), HasOrderID: true, OrderID: "bad-qty-null",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got null"},
	{Name: "qty-bool", Payload: line("bad-qty-bool", `{"sku":"SKU-1","qty":true}`), HasOrderID: true, OrderID: "bad-qty-bool",
		Reason: "lines[0].qty must be an integer from 1 to 10000, got boolean"},
	{Name: "qty-hex", Payload: line("bad-qty-hex", `{"sku":"SKU-1","qty":0x10}`), HasOrderID: true, OrderID: "bad-qty-hex", Reason: "malformed JSON"},
	{Name: "qty-leading-zero", Payload: line("bad-qty-leading-zero", `{"sku":"SKU-1","qty":010}`), HasOrderID: true, OrderID: "bad-qty-leading-zero", Reason: "malformed JSON"},
	{Name: "qty-glued-literal", Payload: line("bad-qty-glued-literal", `{"sku":"SKU-1","qty":truex}`), HasOrderID: true, OrderID: "bad-qty-glued-literal", Reason: "malformed JSON"},
	{Name: "qty-plus-sign", Payload: line("bad-qty-plus-sign", `{"sku":"SKU-1","qty":+1}`), HasOrderID: true, OrderID: "bad-qty-plus-sign", Reason: "malformed JSON"},
	{Name: "qty-missing", Payload: line("bad-qty-missing", `{"sku":"SKU-1"}`), HasOrderID: true, OrderID: "bad-qty-missing",
		Reason: "lines[0].qty is required"},
	{Name: "merged-over-max", Payload: line("bad-merged-over-max", `{"sku":"SKU-1","qty":6000},{"sku":"SKU-2","qty":1},{"sku":"SKU-1","qty":5000}`),
		HasOrderID: true, OrderID: "bad-merged-over-max", Reason: "sku SKU-1 totals 11000 across its lines, max 10000"},

	// Strings.
	{Name: "order-id-too-long", Payload: order(`"`+strings.Repeat("o", 65)+`"`, `"c-1"`, `[{"sku":"SKU-1","qty":1}]`),
		Reason: "order_id must be at most 64 characters, got 65"},
	{Name: "order-id-empty", Payload: order(`""`, `"c-1"`, `[{"sku":"SKU-1","qty":1}]`), Reason: "order_id must not be empty"},
	{Name: "order-id-number", Payload: order(`12345`, `"c-1"`, `[{"sku":"SKU-1","qty":1}]`), Reason: "order_id must be a string, got number 12345"},
	{Name: "order-id-null", Payload: order(`null`, `"c-1"`, `[{"sku":"SKU-1","qty":1}]`), Reason: "order_id must be a string, got null"},
	{Name: "order-id-object", Payload: order(`{"id":"bad-1"}`, `"c-1"`, `[{"sku":"SKU-1","qty":1}]`), Reason: "order_id must be a string, got object"},
	{Name: "order-id-slash", Payload: order(`"bad/1"`, `"c-1"`, `[{"sku":"SKU-1","qty":1}]`),
		Reason: `order_id must be characters of A-Z a-z 0-9 _ . : -, got "bad/1"`},
	{Name: "order-id-unicode", Payload: order(`"bad-ö"`, `"c-1"`, `[{"sku":"SKU-1","qty":1}]`),
		Reason: `order_id must be characters of A-Z a-z 0-9 _ . : -, got "bad-\u00f6"`},
	{Name: "order-id-missing", Payload: []byte(`{"customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}`), Reason: "order_id is required"},
	{Name: "customer-id-missing", Payload: []byte(`{"order_id":"bad-customer-id-missing","lines":[{"sku":"SKU-1","qty":1}]}`),
		HasOrderID: true, OrderID: "bad-customer-id-missing", Reason: "customer_id is required"},
	{Name: "customer-id-null", Payload: order(`"bad-customer-id-null"`, `null`, `[{"sku":"SKU-1","qty":1}]`),
		HasOrderID: true, OrderID: "bad-customer-id-null", Reason: "customer_id must be a string, got null"},
	{Name: "customer-id-space", Payload: order(`"bad-customer-id-space"`, `"c 1"`, `[{"sku":"SKU-1","qty":1}]`),
		HasOrderID: true, OrderID: "bad-customer-id-space", Reason: `customer_id must be characters of A-Z a-z 0-9 _ . : -, got "c 1"`},
	{Name: "customer-id-too-long", Payload: order(`"bad-customer-id-too-long"`, `"`+strings.Repeat("c", 1000)+`"`, `[{"sku":"SKU-1","qty":1}]`),
		HasOrderID: true, OrderID: "bad-customer-id-too-long", Reason: "customer_id must be at most 64 characters, got 1000"},
	{Name: "sku-braces", Payload: line("bad-sku-braces", `{"sku":"{SKU-1}","qty":1}`), HasOrderID: true, OrderID: "bad-sku-braces",
		Reason: `lines[0].sku must be characters of A-Z a-z 0-9 _ . -, got "{SKU-1}"`},
	{Name: "sku-space", Payload: line("bad-sku-space", `{"sku":"SKU 1","qty":1}`), HasOrderID: true, OrderID: "bad-sku-space",
		Reason: `lines[0].sku must be characters of A-Z a-z 0-9 _ . -, got "SKU 1"`},
	{Name: "sku-unicode", Payload: line("bad-sku-unicode", `{"sku":"ÄPFEL","qty":1}`), HasOrderID: true, OrderID: "bad-sku-unicode",
		Reason: `lines[0].sku must be characters of A-Z a-z 0-9 _ . -, got "\u00c4PFEL"`},
	{Name: "sku-newline", Payload: line("bad-sku-newline", `{"sku":"SKU\n1","qty":1}`), HasOrderID: true, OrderID: "bad-sku-newline",
		Reason: `lines[0].sku must be characters of A-Z a-z 0-9 _ . -, got "SKU\n1"`},
	{Name: "sku-colon", Payload: line("bad-sku-colon", `{"sku":"SKU:1","qty":1}`), HasOrderID: true, OrderID: "bad-sku-colon",
		Reason: `lines[0].sku must be characters of A-Z a-z 0-9 _ . -, got "SKU:1"`},
	{Name: "sku-control-characters", Payload: line("bad-sku-control-characters", `{"sku":"`+strings.Repeat(`\u0001`, 60)+`","qty":1}`),
		HasOrderID: true, OrderID: "bad-sku-control-characters", Reason: `lines[0].sku must be characters of A-Z a-z 0-9 _ . -, got "\x01\x01`},
	{Name: "sku-null", Payload: line("bad-sku-null", `{"sku":null,"qty":1}`), HasOrderID: true, OrderID: "bad-sku-null",
		Reason: "lines[0].sku must be a string, got null"},
	{Name: "sku-empty", Payload: line("bad-sku-empty", `{"sku":"","qty":1}`), HasOrderID: true, OrderID: "bad-sku-empty",
		Reason: "lines[0].sku must not be empty"},
	{Name: "sku-too-long", Payload: line("bad-sku-too-long", `{"sku":"`+strings.Repeat("S", 65)+`","qty":1}`), HasOrderID: true, OrderID: "bad-sku-too-long",
		Reason: "lines[0].sku must be at most 64 characters, got 65"},
	{Name: "sku-number", Payload: line("bad-sku-number", `{"sku":123,"qty":1}`), HasOrderID: true, OrderID: "bad-sku-number",
		Reason: "lines[0].sku must be a string, got number 123"},
	{Name: "sku-missing", Payload: line("bad-sku-missing", `{"qty":1}`), HasOrderID: true, OrderID: "bad-sku-missing",
		Reason: "lines[0].sku is required"},
	{Name: "sku-long-garbage-quoted-short", Payload: line("bad-sku-long-garbage", `{"sku":"`+strings.Repeat("<script>", 100)+`","qty":1}`),
		HasOrderID: true, OrderID: "bad-sku-long-garbage", Reason: "lines[0].sku must be at most 64 characters, got 800"},
	{Name: "placed-at-space", Payload: placed("bad-placed-at-space", `"2026-11-26 10:00:00"`), HasOrderID: true, OrderID: "bad-placed-at-space",
		Reason: `placed_at must be an RFC 3339 timestamp, got "2026-11-26 10:00:00"`},
	{Name: "placed-at-date-only", Payload: placed("bad-placed-at-date-only", `"2026-11-26"`), HasOrderID: true, OrderID: "bad-placed-at-date-only",
		Reason: `placed_at must be an RFC 3339 timestamp, got "2026-11-26"`},
	{Name: "placed-at-no-zone", Payload: placed("bad-placed-at-no-zone", `"2026-11-26T10:00:00"`), HasOrderID: true, OrderID: "bad-placed-at-no-zone",
		Reason: `placed_at must be an RFC 3339 timestamp, got "2026-11-26T10:00:00"`},
	{Name: "placed-at-month-13", Payload: placed("bad-placed-at-month-13", `"2026-13-26T10:00:00Z"`), HasOrderID: true, OrderID: "bad-placed-at-month-13",
		Reason: `placed_at must be an RFC 3339 timestamp, got "2026-13-26T10:00:00Z"`},
	{Name: "placed-at-unix-number", Payload: placed("bad-placed-at-unix-number", `1795687200`), HasOrderID: true, OrderID: "bad-placed-at-unix-number",
		Reason: "placed_at must be an RFC 3339 timestamp, got number 1795687200"},
	{Name: "hold-not-duration", Payload: hold("bad-hold-not-duration", `"ten minutes"`), HasOrderID: true, OrderID: "bad-hold-not-duration",
		Reason: `hold must be a duration such as "10m", got "ten minutes"`},
	{Name: "hold-number", Payload: hold("bad-hold-number", `600`), HasOrderID: true, OrderID: "bad-hold-number",
		Reason: "hold must be a string, got number 600"},
	{Name: "hold-negative", Payload: hold("bad-hold-negative", `"-10m"`), HasOrderID: true, OrderID: "bad-hold-negative",
		Reason: `hold must be at least 1s, got "-10m"`},
	{Name: "hold-zero", Payload: hold("bad-hold-zero", `"0s"`), HasOrderID: true, OrderID: "bad-hold-zero",
		Reason: `hold must be at least 1s, got "0s"`},
	{Name: "hold-over-limit", Payload: hold("bad-hold-over-limit", `"25h"`), HasOrderID: true, OrderID: "bad-hold-over-limit",
		Reason: `hold must be at most 24h0m0s, got "25h"`},
	{Name: "hold-overflow", Payload: hold("bad-hold-overflow", `"9999999999h"`), HasOrderID: true, OrderID: "bad-hold-overflow",
		Reason: `hold must be a duration such as "10m", got "9999999999h"`},
	{Name: "hold-empty", Payload: hold("bad-hold-empty", `""`), HasOrderID: true, OrderID: "bad-hold-empty",
		Reason: "hold must not be empty"},
	{Name: "hold-null", Payload: hold("bad-hold-null", `null`), HasOrderID: true, OrderID: "bad-hold-null",
		Reason: "hold must be a string, got null"},

	// Shapes.
	{Name: "top-level-array", Payload: []byte(`[{"order_id":"bad-top-level-array","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}]`),
		Reason: "payload must be a JSON object, got array"},
	{Name: "top-level-double-encoded", Payload: []byte(`"{\"order_id\":\"bad-double-encoded\",\"customer_id\":\"c-1\",\"lines\":[{\"sku\":\"SKU-1\",\"qty\":1}]}"`),
		Reason: `payload must be a JSON object, got string "{\"order_id\":\"bad-double-encoded\",\"custom..."`},
	{Name: "top-level-number", Payload: []byte(`42`), Reason: "payload must be a JSON object, got number 42"},
	{Name: "top-level-null", Payload: []byte(`null`), Reason: "payload must be a JSON object, got null"},
	{Name: "top-level-true", Payload: []byte(`true`), Reason: "payload must be a JSON object, got boolean"},
	{Name: "lines-null", Payload: order(`"bad-lines-null"`, `"c-1"`, `null`), HasOrderID: true, OrderID: "bad-lines-null",
		Reason: "lines must be an array of 1-50 lines, got null"},
	{Name: "lines-object", Payload: order(`"bad-lines-object"`, `"c-1"`, `{"sku":"SKU-1","qty":1}`), HasOrderID: true, OrderID: "bad-lines-object",
		Reason: "lines must be an array of 1-50 lines, got object"},
	{Name: "lines-string", Payload: order(`"bad-lines-string"`, `"c-1"`, `"SKU-1=1"`), HasOrderID: true, OrderID: "bad-lines-string",
		Reason: `lines must be an array of 1-50 lines, got string "SKU-1=1"`},
	{Name: "lines-empty", Payload: order(`"bad-lines-empty"`, `"c-1"`, `[]`), HasOrderID: true, OrderID: "bad-lines-empty",
		Reason: "lines is empty, want 1-50 lines"},
	{Name: "lines-missing", Payload: []byte(`{"order_id":"bad-lines-missing","customer_id":"c-1"}`), HasOrderID: true, OrderID: "bad-lines-missing",
		Reason: "lines is required"},
	{Name: "lines-nested-arrays", Payload: order(`"bad-lines-nested-arrays"`, `"c-1"`, `[[{"sku":"SKU-1","qty":1}]]`), HasOrderID: true, OrderID: "bad-lines-nested-arrays",
		Reason: "lines[0] must be an object, got array"},
	{Name: "line-string", Payload: order(`"bad-line-string"`, `"c-1"`, `["SKU-1=2"]`), HasOrderID: true, OrderID: "bad-line-string",
		Reason: `lines[0] must be an object, got string "SKU-1=2"`},
	{Name: "line-null", Payload: order(`"bad-line-null"`, `"c-1"`, `[{"sku":"SKU-1","qty":1},null]`), HasOrderID: true, OrderID: "bad-line-null",
		Reason: "lines[1] must be an object, got null"},
	{Name: "unknown-field", Payload: []byte(`{"order_id":"bad-unknown-field","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}],"coupon":"FREE"}`),
		HasOrderID: true, OrderID: "bad-unknown-field", Reason: `unknown field "coupon"`},
	{Name: "unknown-line-field", Payload: line("bad-unknown-line-field", `{"sku":"SKU-1","qty":1,"price":-5}`), HasOrderID: true, OrderID: "bad-unknown-line-field",
		Reason: `unknown field "price" in lines[0]`},
	{Name: "unknown-field-emoji-key", Payload: []byte(`{"order_id":"bad-unknown-field-emoji-key","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}],"` +
		strings.Repeat("\U0001F600", 40) + `":1}`), HasOrderID: true, OrderID: "bad-unknown-field-emoji-key", Reason: `unknown field "\U0001f600\U0001f600`},
	{Name: "order-id-after-unknown-field", Payload: []byte(`{"coupon":"FREE","order_id":"bad-order-id-after-unknown-field","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}`),
		HasOrderID: true, OrderID: "bad-order-id-after-unknown-field", Reason: `unknown field "coupon"`},
	{Name: "order-id-after-malformed", Payload: []byte(`{"customer_id":NaN,"order_id":"bad-order-id-after-malformed","lines":[{"sku":"SKU-1","qty":1}]}`),
		Reason: "malformed JSON at byte 15"},
	{Name: "duplicate-order-id-after-unknown-field", Payload: []byte(`{"order_id":"bad-dup-c","coupon":"FREE","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}],"order_id":"bad-dup-d"}`),
		Reason: `unknown field "coupon"`},
	{Name: "case-variant-key", Payload: []byte(`{"Order_ID":"bad-case-variant-key","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}`),
		Reason: `unknown field "Order_ID"`},
	{Name: "duplicate-order-id", Payload: []byte(`{"order_id":"bad-dup-a","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}],"order_id":"bad-dup-b"}`),
		Reason: `duplicate key "order_id"`},
	{Name: "duplicate-lines", Payload: []byte(`{"order_id":"bad-duplicate-lines","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}],"lines":[{"sku":"SKU-1","qty":9999}]}`),
		HasOrderID: true, OrderID: "bad-duplicate-lines", Reason: `duplicate key "lines"`},
	{Name: "duplicate-qty", Payload: line("bad-duplicate-qty", `{"sku":"SKU-1","qty":1,"qty":10000}`), HasOrderID: true, OrderID: "bad-duplicate-qty",
		Reason: `duplicate key "qty" in lines[0]`},
	{Name: "trailing-garbage", Payload: []byte(`{"order_id":"bad-trailing-garbage","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}garbage`),
		HasOrderID: true, OrderID: "bad-trailing-garbage", Reason: "trailing data after the JSON object"},
	{Name: "trailing-second-object", Payload: []byte(`{"order_id":"bad-trailing-second-object","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}]}{"order_id":"bad-x"}`),
		HasOrderID: true, OrderID: "bad-trailing-second-object", Reason: "trailing data after the JSON object"},
	{Name: "trailing-comma", Payload: []byte(`{"order_id":"bad-trailing-comma","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}],}`),
		HasOrderID: true, OrderID: "bad-trailing-comma", Reason: "malformed JSON"},
	{Name: "single-quotes", Payload: []byte(`{'order_id':'bad-single-quotes','customer_id':'c-1','lines':[{'sku':'SKU-1','qty':1}]}`),
		Reason: "malformed JSON"},
	{Name: "comment", Payload: []byte("{\"order_id\":\"bad-comment\", // a comment\n\"customer_id\":\"c-1\",\"lines\":[{\"sku\":\"SKU-1\",\"qty\":1}]}"),
		HasOrderID: true, OrderID: "bad-comment", Reason: "malformed JSON"},
	{Name: "truncated", Payload: []byte(`{"order_id":"bad-truncated","customer_id":"c-1","lines":[{"sku":"SKU-1"`),
		HasOrderID: true, OrderID: "bad-truncated", Reason: "malformed JSON: unexpected end of input"},
}

// Action is one hostile order:confirm or order:cancel payload. Every one is
// refused with a reason starting Reason, and archives its task: a checkout
// task changes nothing it cannot read.
type Action struct {
	Name    string
	Payload []byte
	Reason  string
}

// HostileActions is the catalogue of bad checkout task payloads: unknown
// fields, bad ids, oversized and multi-line reasons, and the shapes.
var HostileActions = []Action{
	{Name: "empty", Payload: []byte(""), Reason: "empty payload"},
	{Name: "too-large", Payload: []byte(`{"order_id":"o-1","reason":"` + strings.Repeat("x", 5000) + `"}`),
		Reason: "payload is 5030 bytes, max 4096"},
	{Name: "unknown-field", Payload: []byte(`{"order_id":"o-1","refund":100}`), Reason: `unknown field "refund"`},
	{Name: "unknown-field-case", Payload: []byte(`{"Order_ID":"o-1"}`), Reason: `unknown field "Order_ID"`},
	{Name: "order-id-missing", Payload: []byte(`{"reason":"payment_failed"}`), Reason: "order_id is required"},
	{Name: "order-id-empty", Payload: []byte(`{"order_id":""}`), Reason: "order_id is required"},
	{Name: "order-id-slash", Payload: []byte(`{"order_id":"o/1"}`), Reason: `order_id must be characters of A-Z a-z 0-9 _ . : -, got "o/1"`},
	{Name: "order-id-too-long", Payload: []byte(`{"order_id":"` + strings.Repeat("o", 65) + `"}`), Reason: "order_id must be at most 64 characters, got 65"},
	{Name: "order-id-number", Payload: []byte(`{"order_id":123}`), Reason: "order_id must be a string, got number 123"},
	{Name: "order-id-null", Payload: []byte(`{"order_id":null}`), Reason: "order_id must be a string, got null"},
	{Name: "order-id-twice", Payload: []byte(`{"order_id":"o-1","order_id":"o-2"}`), Reason: `duplicate key "order_id"`},
	{Name: "reason-oversized", Payload: []byte(`{"order_id":"o-1","reason":"` + strings.Repeat("r", 201) + `"}`),
		Reason: "reason is 201 characters, max 200"},
	{Name: "reason-newline", Payload: []byte(`{"order_id":"o-1","reason":"paid\nnot"}`), Reason: `reason must be one line of text, got "paid\nnot"`},
	{Name: "reason-number", Payload: []byte(`{"order_id":"o-1","reason":5}`), Reason: "reason must be a string, got number 5"},
	{Name: "invalid-utf8", Payload: []byte(`{"order_id":"o-1","reason":"` + "\xff" + `"}`), Reason: "payload is not valid UTF-8"},
	{Name: "top-level-array", Payload: []byte(`[{"order_id":"o-1"}]`), Reason: "payload must be a JSON object, got array"},
	{Name: "trailing-data", Payload: []byte(`{"order_id":"o-1"}{}`), Reason: "trailing data after the JSON object"},
	{Name: "malformed", Payload: []byte(`{"order_id":"o-1",}`), Reason: "malformed JSON"},
}

// order builds a payload from raw JSON values.
func order(id, customer, lines string) []byte {
	return []byte(`{"order_id":` + id + `,"customer_id":` + customer + `,"lines":` + lines + `}`)
}

// line builds an order with id and the given raw lines.
func line(id, lines string) []byte {
	return order(`"`+id+`"`, `"c-1"`, `[`+lines+`]`)
}

// placed builds a valid order but for its raw placed_at.
func placed(id, placedAt string) []byte {
	return []byte(`{"order_id":"` + id + `","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}],"placed_at":` + placedAt + `}`)
}

// hold builds a valid order but for its raw hold.
func hold(id, hold string) []byte {
	return []byte(`{"order_id":"` + id + `","customer_id":"c-1","lines":[{"sku":"SKU-1","qty":1}],"hold":` + hold + `}`)
}

// withLines builds an order of n valid lines with distinct SKUs.
func withLines(id string, n int) []byte {
	ls := make([]string, n)
	for i := range ls {
		ls[i] = fmt.Sprintf(`{"sku":"S%d","qty":1}`, i)
	}
	return line(id, strings.Join(ls, ","))
}

// padded pads a JSON object with trailing spaces inside it to exactly n
// bytes: still valid JSON, only too big.
func padded(obj string, n int) []byte {
	return []byte(obj[:len(obj)-1] + strings.Repeat(" ", n-len(obj)) + "}")
}

// utf16le encodes an ASCII string as UTF-16LE with a byte order mark, as
// some Windows tools write JSON.
func utf16le(s string) []byte {
	b := []byte{0xff, 0xfe}
	for i := 0; i < len(s); i++ {
		b = append(b, s[i], 0)
	}
	return b
}
