package orders

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
	"github.com/google/go-cmp/cmp"

	"github.com/stockgate/stockgate/internal/orders/ordertest"
	"github.com/stockgate/stockgate/internal/stock"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite testdata/fuzz/FuzzDecode/hostile-* from ordertest.Hostile")

// surrogateEscape matches an escape of half a UTF-16 surrogate pair.
var surrogateEscape = regexp.MustCompile(`\\u[dD][89abcdefABCDEF]`)

// seedDir is where `go test` reads FuzzDecode's committed corpus from, and
// where `go test -fuzz` writes any failing input it finds.
var seedDir = filepath.Join("testdata", "fuzz", "FuzzDecode")

// FuzzDecode checks that Decode never panics, that every refusal is an
// *InvalidError with a short one-line message and an order id that is
// either "" or valid, and that whatever it accepts re-encodes and decodes
// to the same order, passes Validate, and is what encoding/json reads too.
//
// The corpus is the hostile catalogue (committed under testdata) plus the
// valid payloads added here.
//
//	go test -run '^$' -fuzz FuzzDecode -fuzztime 3m ./internal/orders/
func FuzzDecode(f *testing.F) {
	for _, p := range []string{
		`{"order_id":"o-123","customer_id":"c-9","lines":[{"sku":"SKU-1","qty":2}],"placed_at":"2026-11-26T10:00:00Z"}`,
		`{"order_id":"o-1","customer_id":"c-1","lines":[{"sku":"A","qty":1},{"sku":"B","qty":10000},{"sku":"A","qty":9}],"placed_at":null}`,
		`{"placed_at":"2026-11-26T12:00:00.5+02:00","lines":[{"qty":3,"sku":"x.y_z-1"}],"customer_id":"c:1","order_id":"o.1"}`,
	} {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := Decode(b)
		if err != nil {
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("Decode(%q) = %T %v, want an *InvalidError", b, err, err)
			}
			if inv.OrderID != "" && checkID("order_id", inv.OrderID) != "" {
				t.Fatalf("Decode(%q) OrderID = %q, want \"\" or a valid id", b, inv.OrderID)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || len(msg) > maxErrorLen || !utf8.ValidString(msg) {
				t.Fatalf("Decode(%q).Error() = %q, want one valid UTF-8 line of at most %d bytes", b, msg, maxErrorLen)
			}
			// encoding/json is the oracle for syntax.
			malformed := strings.HasPrefix(inv.Reason, "malformed JSON") || inv.Reason == "trailing data after the JSON object"
			if malformed && json.Valid(b) {
				t.Fatalf("Decode(%q) = %v, but encoding/json finds the JSON valid", b, err)
			}
			if strings.HasSuffix(inv.Reason, "escapes a lone surrogate") && !surrogateEscape.Match(b) {
				t.Fatalf("Decode(%q) = %v, but the payload escapes no surrogate", b, err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("Decode(%q) accepted JSON that encoding/json finds invalid", b)
		}
		if err := stock.CheckLines(o.StockLines()); err != nil {
			t.Fatalf("Decode(%q) = %+v, which the stock gate refuses: %v", b, o, err)
		}

		if len(b) > MaxPayloadBytes || !utf8.Valid(b) {
			t.Fatalf("Decode accepted %d bytes (valid UTF-8: %v)", len(b), utf8.Valid(b))
		}
		if err := o.Validate(); err != nil {
			t.Fatalf("Decode(%q) = %+v, which fails Validate: %v", b, o, err)
		}
		if diff := cmp.Diff(o.Normalize(), o); diff != "" {
			t.Fatalf("Decode(%q) is not normalized (-normalized +got):\n%s", b, diff)
		}
		enc, err := Encode(o)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)) = %v, want nil", b, err)
		}
		again, err := Decode(enc)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v, want nil; encoded %s", b, err, enc)
		}
		if diff := cmp.Diff(o, again); diff != "" {
			t.Fatalf("re-decoded order differs (-first +again):\n%s", diff)
		}
		if o.Hash() != again.Hash() {
			t.Fatalf("Hash() changed over a round trip: %s, then %s", o.Hash(), again.Hash())
		}

		// encoding/json is laxer (case-insensitive keys, duplicates, floats
		// into ints fail differently), but anything Decode accepts it must
		// read the same way.
		var std Order
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&std); err != nil {
			t.Fatalf("encoding/json refuses what Decode accepts: %v; payload %q", err, b)
		}
		if diff := cmp.Diff(o, std.Normalize()); diff != "" {
			t.Fatalf("encoding/json reads another order (-Decode +encoding/json):\n%s", diff)
		}
	})
}

// FuzzString holds the decoder's reading of strings to encoding/json's:
// for every JSON string literal as a customer_id, Decode reads the same
// text, or refuses it with the reason that text deserves, and refuses
// every literal that is not one JSON string. (On escapes of a lone UTF-16
// surrogate the two differ by design: encoding/json makes them U+FFFD,
// Decode refuses them as it refuses invalid UTF-8.)
//
//	go test -run '^$' -fuzz FuzzString -fuzztime 1m ./internal/orders/
func FuzzString(f *testing.F) {
	for _, s := range []string{`"abc"`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u0041\u00e9\u20ac"`, `"\ud83d\ude00"`,
		`"\ud800"`, `"\udc00\ud800x"`, `"\ud800\u0041"`, `"\ud800\ud800\udc00"`, `"\u12"`, `"\x"`, "\"a\tb\"", `"é"`, `"`,
		`"c-1"`, `"c\u002d1"`, `""`, `"\ufffd"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, lit []byte) {
		if len(lit) == 0 || lit[0] != '"' || !utf8.Valid(lit) {
			return
		}
		o, err := Decode([]byte(`{"order_id":"o-1","customer_id":` + string(lit) + `,"lines":[{"sku":"A","qty":1}]}`))
		var want string
		if stdErr := json.Unmarshal(lit, &want); stdErr != nil {
			if err == nil {
				t.Fatalf("Decode(customer_id %s) = %q, but encoding/json refuses the literal: %v", lit, o.CustomerID, stdErr)
			}
			return
		}
		var inv *InvalidError
		switch {
		case err == nil:
			if o.CustomerID != want {
				t.Fatalf("Decode(customer_id %s) = %q, encoding/json reads %q", lit, o.CustomerID, want)
			}
			return
		case !errors.As(err, &inv):
			t.Fatalf("Decode(customer_id %s) = %T %v, want an *InvalidError", lit, err, err)
		}
		wantReason := checkID("customer_id", want)
		switch {
		case want == "":
			wantReason = "customer_id must not be empty"
		case !jsontext.Value(lit).IsValid():
			wantReason = "customer_id is not valid UTF-8: it escapes a lone surrogate"
		case wantReason == "":
			t.Fatalf("Decode(customer_id %s) = %v, but encoding/json reads a valid id %q", lit, err, want)
		}
		if inv.Reason != wantReason {
			t.Fatalf("Decode(customer_id %s) reason = %q, want %q (encoding/json reads %q)", lit, inv.Reason, wantReason, want)
		}
	})
}

// TestFuzzSeedsMatchCatalogue keeps the committed corpus in step with
// ordertest.Hostile. After changing the catalogue, run
//
//	go test ./internal/orders/ -run TestFuzzSeedsMatchCatalogue -args -update-seeds
func TestFuzzSeedsMatchCatalogue(t *testing.T) {
	t.Parallel()

	if *updateSeeds {
		old, _ := filepath.Glob(filepath.Join(seedDir, "hostile-*"))
		for _, p := range old {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(seedDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{}
	for _, c := range ordertest.Hostile {
		name := filepath.Join(seedDir, "hostile-"+c.Name)
		want[name] = true
		content := "go test fuzz v1\n[]byte(" + strconv.Quote(string(c.Payload)) + ")\n"
		if *updateSeeds {
			if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("seed for %s: %v; run with -update-seeds", c.Name, err)
			continue
		}
		if string(got) != content {
			t.Errorf("seed %s differs from ordertest.Hostile; run with -update-seeds", name)
		}
	}
	stale, _ := filepath.Glob(filepath.Join(seedDir, "hostile-*"))
	for _, p := range stale {
		if !want[p] {
			t.Errorf("seed %s has no catalogue entry; run with -update-seeds", p)
		}
	}
}
