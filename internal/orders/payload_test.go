package orders

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/stockgate/stockgate/internal/orders/ordertest"
	"github.com/stockgate/stockgate/internal/stock"
)

// maxErrorLen bounds an InvalidError's message: it lands in a log line, a
// span status and a Postgres column, whatever the payload held.
const maxErrorLen = 200

func TestDecodeHostile(t *testing.T) {
	t.Parallel()

	if len(ordertest.Hostile) < 25 {
		t.Fatalf("len(ordertest.Hostile) = %d, want at least 25", len(ordertest.Hostile))
	}
	names, ids := map[string]bool{}, map[string]bool{}
	for _, c := range ordertest.Hostile {
		if names[c.Name] {
			t.Errorf("catalogue name %q appears twice", c.Name)
		}
		names[c.Name] = true
		if c.HasOrderID != (c.OrderID != "") {
			t.Errorf("%s: HasOrderID = %v but OrderID = %q", c.Name, c.HasOrderID, c.OrderID)
		}
		if c.OrderID != "" && ids[c.OrderID] {
			t.Errorf("catalogue order id %q appears twice", c.OrderID)
		}
		ids[c.OrderID] = true
	}

	for _, c := range ordertest.Hostile {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			o, err := Decode(c.Payload)
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("Decode(%s) = %+v, %v; want an *InvalidError", c.Name, o, err)
			}
			if !strings.HasPrefix(inv.Reason, c.Reason) {
				t.Errorf("Decode(%s) reason = %q, want it to start with %q", c.Name, inv.Reason, c.Reason)
			}
			if inv.OrderID != c.OrderID {
				t.Errorf("Decode(%s) OrderID = %q, want %q (usable: %v)", c.Name, inv.OrderID, c.OrderID, c.HasOrderID)
			}
			msg := err.Error()
			if msg != "invalid: "+inv.Reason {
				t.Errorf("Decode(%s).Error() = %q, want %q", c.Name, msg, "invalid: "+inv.Reason)
			}
			if strings.ContainsAny(msg, "\n\r") || len(msg) > maxErrorLen || !isPrintable(msg) {
				t.Errorf("Decode(%s).Error() = %q, want one printable line of at most %d bytes", c.Name, msg, maxErrorLen)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("errors.Is(Decode(%s), ErrInvalid) = false, want true", c.Name)
			}
		})
	}
}

func isPrintable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' {
			return false
		}
	}
	return true
}

func TestDecodeValid(t *testing.T) {
	t.Parallel()

	at := func(s string) *time.Time {
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		ts = ts.UTC()
		return &ts
	}
	id64 := strings.Repeat("A", 64)
	fifty := make([]Line, MaxLines)
	var fiftyJSON []string
	for i := range fifty {
		fifty[i] = Line{SKU: fmt.Sprintf("S%d", i), Qty: MaxQty}
		fiftyJSON = append(fiftyJSON, fmt.Sprintf(`{"qty":10000,"sku":"S%d"}`, i))
	}
	exact := `{"order_id":"o-exact","customer_id":"c","lines":[{"sku":"A","qty":1}]}`
	exact = exact[:len(exact)-1] + strings.Repeat(" ", MaxPayloadBytes-len(exact)) + "}"

	tests := []struct {
		name    string
		payload string
		want    Order
	}{
		{
			name:    "design example",
			payload: `{"order_id":"o-123","customer_id":"c-9","lines":[{"sku":"SKU-1","qty":2}],"placed_at":"2026-11-26T10:00:00Z"}`,
			want:    Order{OrderID: "o-123", CustomerID: "c-9", Lines: []Line{{"SKU-1", 2}}, PlacedAt: at("2026-11-26T10:00:00Z")},
		},
		{
			name:    "no placed_at",
			payload: `{"order_id":"o-1","customer_id":"c-1","lines":[{"sku":"A","qty":1}]}`,
			want:    Order{OrderID: "o-1", CustomerID: "c-1", Lines: []Line{{"A", 1}}},
		},
		{
			name:    "null placed_at is absent",
			payload: `{"order_id":"o-1","customer_id":"c-1","lines":[{"sku":"A","qty":1}],"placed_at":null}`,
			want:    Order{OrderID: "o-1", CustomerID: "c-1", Lines: []Line{{"A", 1}}},
		},
		{
			name:    "placed_at with offset and nanoseconds becomes UTC",
			payload: `{"placed_at":"2026-11-26T12:00:00.123456789+02:00","lines":[{"qty":1,"sku":"A"}],"customer_id":"c-1","order_id":"o-1"}`,
			want:    Order{OrderID: "o-1", CustomerID: "c-1", Lines: []Line{{"A", 1}}, PlacedAt: at("2026-11-26T10:00:00.123456789Z")},
		},
		{
			name:    "duplicate SKUs merge into the first",
			payload: `{"order_id":"o-1","customer_id":"c-1","lines":[{"sku":"B","qty":1},{"sku":"A","qty":2},{"sku":"B","qty":9999}]}`,
			want:    Order{OrderID: "o-1", CustomerID: "c-1", Lines: []Line{{"B", 10000}, {"A", 2}}},
		},
		{
			name:    "every bound at its maximum",
			payload: `{"order_id":"` + id64 + `","customer_id":"` + id64 + `","lines":[` + strings.Join(fiftyJSON, ",") + `]}`,
			want:    Order{OrderID: id64, CustomerID: id64, Lines: fifty},
		},
		{
			name:    "all allowed characters",
			payload: `{"order_id":"aZ09_.:-","customer_id":"-:._90Za","lines":[{"sku":"aZ09_.-","qty":1}]}`,
			want:    Order{OrderID: "aZ09_.:-", CustomerID: "-:._90Za", Lines: []Line{{"aZ09_.-", 1}}},
		},
		{
			name:    "escapes that decode to allowed characters",
			payload: `{"order_id":"o\u002d1","customer_id":"c-1","lines":[{"sku":"\u0041","qty":1}]}`,
			want:    Order{OrderID: "o-1", CustomerID: "c-1", Lines: []Line{{"A", 1}}},
		},
		{
			name:    "whitespace around and inside",
			payload: "\n\t { \"order_id\" : \"o-1\" ,\r\n \"customer_id\":\"c-1\", \"lines\" : [ { \"sku\" : \"A\" , \"qty\" : 7 } ] } \n",
			want:    Order{OrderID: "o-1", CustomerID: "c-1", Lines: []Line{{"A", 7}}},
		},
		{
			name:    "exactly MaxPayloadBytes",
			payload: exact,
			want:    Order{OrderID: "o-exact", CustomerID: "c", Lines: []Line{{"A", 1}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode([]byte(tt.payload))
			if err != nil {
				t.Fatalf("Decode(%s) = %v, want nil", tt.name, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decode(%s) mismatch (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()

	valid := func() Order {
		return Order{OrderID: "o-1", CustomerID: "c-1", Lines: []Line{{"A", 1}, {"B", 2}}}
	}
	year10k := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		mutate     func(*Order)
		wantReason string // "" when valid
		wantID     string
	}{
		{name: "valid", mutate: func(*Order) {}},
		{name: "merged exactly MaxQty", mutate: func(o *Order) { o.Lines = []Line{{"A", 4000}, {"A", 6000}} }},
		{name: "empty order id", mutate: func(o *Order) { o.OrderID = "" },
			wantReason: "order_id is required"},
		{name: "bad order id", mutate: func(o *Order) { o.OrderID = "o 1" },
			wantReason: `order_id must be characters of A-Z a-z 0-9 _ . : -, got "o 1"`},
		{name: "bad customer", mutate: func(o *Order) { o.CustomerID = strings.Repeat("c", 65) },
			wantReason: "customer_id must be at most 64 characters, got 65", wantID: "o-1"},
		{name: "no lines", mutate: func(o *Order) { o.Lines = nil },
			wantReason: "lines is required", wantID: "o-1"},
		{name: "empty lines", mutate: func(o *Order) { o.Lines = []Line{} },
			wantReason: "lines is empty, want 1-50 lines", wantID: "o-1"},
		{name: "51 lines", mutate: func(o *Order) { o.Lines = make([]Line, 51) },
			wantReason: "lines has 51 lines, max 50", wantID: "o-1"},
		{name: "qty zero", mutate: func(o *Order) { o.Lines[1].Qty = 0 },
			wantReason: "lines[1].qty is required", wantID: "o-1"},
		{name: "qty negative", mutate: func(o *Order) { o.Lines[0].Qty = -5 },
			wantReason: "lines[0].qty must be an integer from 1 to 10000, got -5", wantID: "o-1"},
		{name: "sku with brace", mutate: func(o *Order) { o.Lines[1].SKU = "B}" },
			wantReason: `lines[1].sku must be characters of A-Z a-z 0-9 _ . -, got "B}"`, wantID: "o-1"},
		{name: "empty sku", mutate: func(o *Order) { o.Lines[0].SKU = "" },
			wantReason: "lines[0].sku is required", wantID: "o-1"},
		{name: "id of 64 characters in 65 bytes", mutate: func(o *Order) { o.CustomerID = strings.Repeat("c", 63) + "\u00e9" },
			wantReason: `customer_id must be characters of A-Z a-z 0-9 _ . : -, got "` + strings.Repeat("c", 40) + `..."`, wantID: "o-1"},
		{name: "merged over MaxQty", mutate: func(o *Order) { o.Lines = []Line{{"A", 10000}, {"B", 1}, {"A", 1}} },
			wantReason: "sku A totals 10001 across its lines, max 10000", wantID: "o-1"},
		{name: "placed_at past year 9999", mutate: func(o *Order) { o.PlacedAt = &year10k },
			wantReason: "placed_at year 10000 is outside 0000-9999", wantID: "o-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := valid()
			tt.mutate(&o)
			err := o.Validate()
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("Validate() = %v, want an *InvalidError", err)
			}
			if diff := cmp.Diff(&InvalidError{OrderID: tt.wantID, Reason: tt.wantReason}, inv); diff != "" {
				t.Errorf("Validate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()

	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	in := Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &at,
		Lines: []Line{{"C", 1}, {"A", 2}, {"C", 3}, {"B", 4}, {"A", 5}}}
	orig := slices.Clone(in.Lines)

	got := in.Normalize()
	want := Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &at, Lines: []Line{{"C", 4}, {"A", 7}, {"B", 4}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Normalize() mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(orig, in.Lines); diff != "" {
		t.Errorf("Normalize() changed its receiver's lines (-want +got):\n%s", diff)
	}
	if got.PlacedAt == in.PlacedAt {
		t.Errorf("Normalize().PlacedAt aliases the receiver's, want a copy")
	}
	if diff := cmp.Diff(got, got.Normalize()); diff != "" {
		t.Errorf("Normalize() is not idempotent (-once +twice):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"C", "A", "B"}, in.SKUs()); diff != "" {
		t.Errorf("SKUs() mismatch (-want +got):\n%s", diff)
	}
	wantStock := []stock.Line{{SKU: "C", Qty: 4}, {SKU: "A", Qty: 7}, {SKU: "B", Qty: 4}}
	if diff := cmp.Diff(wantStock, in.StockLines()); diff != "" {
		t.Errorf("StockLines() mismatch (-want +got):\n%s", diff)
	}
	if err := stock.CheckLines(in.StockLines()); err != nil {
		t.Errorf("stock.CheckLines(StockLines()) = %v, want nil: the gate refuses a SKU twice", err)
	}

	// Hostile quantities must saturate, not wrap into the valid range.
	huge := Order{Lines: []Line{{"A", 1 << 62}, {"A", 1 << 62}, {"A", 1 << 62}}}
	if q := huge.Normalize().Lines[0].Qty; q <= MaxQty {
		t.Errorf("Normalize() of three 2^62 lines = qty %d, want it to stay above MaxQty", q)
	}
}

func TestHash(t *testing.T) {
	t.Parallel()

	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	base := Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &at, Lines: []Line{{"A", 2}, {"B", 1}}}

	// The hash is persisted in orders.payload_hash: its scheme must not
	// drift, or every stored order would look like a conflict.
	canon := "stockgate.order.v1\nc-1\nA=2\nB=1\n2026-11-26T10:00:00Z"
	sum := sha256.Sum256([]byte(canon))
	if got, want := base.Hash(), hex.EncodeToString(sum[:]); got != want {
		t.Errorf("Hash() = %s, want sha256(%q) = %s", got, canon, want)
	}

	berlin := time.FixedZone("CET", 3600)
	sameAt := at.In(berlin)
	same := []struct {
		name string
		o    Order
	}{
		{"other order id", Order{OrderID: "o-2", CustomerID: "c-1", PlacedAt: &at, Lines: []Line{{"A", 2}, {"B", 1}}}},
		{"lines reordered", Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &at, Lines: []Line{{"B", 1}, {"A", 2}}}},
		{"a line split in two", Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &at, Lines: []Line{{"A", 1}, {"B", 1}, {"A", 1}}}},
		{"same instant, other zone", Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &sameAt, Lines: []Line{{"A", 2}, {"B", 1}}}},
	}
	for _, s := range same {
		if got, want := s.o.Hash(), base.Hash(); got != want {
			t.Errorf("Hash() with %s = %s, want %s", s.name, got, want)
		}
	}

	later := at.Add(time.Nanosecond)
	differ := []struct {
		name string
		o    Order
	}{
		{"other customer", Order{OrderID: "o-1", CustomerID: "c-2", PlacedAt: &at, Lines: []Line{{"A", 2}, {"B", 1}}}},
		{"other qty", Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &at, Lines: []Line{{"A", 3}, {"B", 1}}}},
		{"a line less", Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &at, Lines: []Line{{"A", 2}}}},
		{"other sku", Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &at, Lines: []Line{{"A", 2}, {"C", 1}}}},
		{"no placed_at", Order{OrderID: "o-1", CustomerID: "c-1", Lines: []Line{{"A", 2}, {"B", 1}}}},
		{"placed_at 1ns later", Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &later, Lines: []Line{{"A", 2}, {"B", 1}}}},
	}
	seen := map[string]string{base.Hash(): "base"}
	for _, d := range differ {
		h := d.o.Hash()
		if prev, ok := seen[h]; ok {
			t.Errorf("Hash() with %s = %s, the same as %s; want them to differ", d.name, h, prev)
		}
		seen[h] = d.name
	}
}

func TestEncode(t *testing.T) {
	t.Parallel()

	at := time.Date(2026, 11, 26, 10, 0, 0, 500, time.FixedZone("", -5*3600))
	o := Order{OrderID: "o-1", CustomerID: "c-1", PlacedAt: &at, Lines: []Line{{"A", 1}, {"B", 2}, {"A", 3}}}
	b, err := Encode(o)
	if err != nil {
		t.Fatalf("Encode(%+v) = %v, want nil", o, err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(o)) = %v, want nil; payload %s", err, b)
	}
	if diff := cmp.Diff(o.Normalize(), got); diff != "" {
		t.Errorf("Decode(Encode(o)) mismatch (-want +got):\n%s", diff)
	}

	o.Lines[0].Qty = 0
	_, err = Encode(o)
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.OrderID != "o-1" {
		t.Errorf("Encode(qty 0) = %v, want an *InvalidError for o-1", err)
	}
}

// TestEncodeDecodeProperty checks, over generated valid orders, that what
// Encode writes Decode reads back as the normalized order, and that the
// hash depends on what is ordered, not on how the lines are written.
func TestEncodeDecodeProperty(t *testing.T) {
	t.Parallel()

	idGen := rapid.StringMatching(`[A-Za-z0-9_.:-]{1,64}`)
	skuGen := rapid.SampledFrom([]string{"A", "b.c", "SKU-1", "x_y", strings.Repeat("Z", 64)})
	rapid.Check(t, func(t *rapid.T) {
		var o Order
		o.OrderID = idGen.Draw(t, "order_id")
		o.CustomerID = idGen.Draw(t, "customer_id")
		n := rapid.IntRange(1, MaxLines).Draw(t, "lines")
		for i := range n {
			o.Lines = append(o.Lines, Line{
				SKU: skuGen.Draw(t, fmt.Sprintf("sku%d", i)),
				Qty: rapid.Int64Range(1, 200).Draw(t, fmt.Sprintf("qty%d", i)),
			})
		}
		if rapid.Bool().Draw(t, "placed") {
			ts := time.Unix(rapid.Int64Range(0, 1<<35).Draw(t, "unix"), rapid.Int64Range(0, 999999999).Draw(t, "nanos"))
			o.PlacedAt = &ts
		}
		if rapid.Bool().Draw(t, "held") {
			// Any spelling Go writes or reads: "90s" and "1m30s" are one hold.
			d := time.Duration(rapid.Int64Range(int64(MinHold), int64(MaxHoldLimit)).Draw(t, "hold"))
			o.Hold = rapid.SampledFrom([]string{d.String(), fmt.Sprintf("%ds", int64(d/time.Second)), fmt.Sprintf("%dms", d.Milliseconds())}).Draw(t, "spelling")
		}
		b, err := Encode(o)
		if err != nil {
			t.Fatalf("Encode(%+v) = %v, want nil", o, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(Encode(o)) = %v, want nil; payload %s", err, b)
		}
		if diff := cmp.Diff(o.Normalize(), got); diff != "" {
			t.Fatalf("Decode(Encode(o)) mismatch (-want +got):\n%s", diff)
		}
		shuffled := o
		shuffled.Lines = rapid.Permutation(o.Lines).Draw(t, "permutation")
		if shuffled.Hash() != o.Hash() || got.Hash() != o.Hash() {
			t.Fatalf("Hash() changed with line order or normalization")
		}
	})
}

func TestQuoteIsShortAndOneLine(t *testing.T) {
	t.Parallel()

	long := strings.Repeat("é\n", 1000)
	_, err := Decode([]byte(`{"order_id":"o-1","customer_id":"c-1","lines":[{"sku":` + fmt.Sprintf("%q", long) + `,"qty":1}]}`))
	if err == nil {
		t.Fatal("Decode(long sku) = nil, want an error")
	}
	_, err = Decode([]byte(`{"order_id":"o-1","customer_id":"c-1","lines":[{"sku":"A","qty":1}],` + fmt.Sprintf("%q", long) + `:1}`))
	want := `invalid: unknown field "` + strings.Repeat(`\u00e9\n`, 20) + `..."`
	if err == nil || err.Error() != want {
		t.Errorf("Decode(long unknown key) = %v, want %s", err, want)
	}
}

func BenchmarkDecode(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmark")
	}
	payloads := map[string][]byte{
		"one-line": []byte(`{"order_id":"o-123","customer_id":"c-9","lines":[{"sku":"SKU-1","qty":2}],"placed_at":"2026-11-26T10:00:00Z"}`),
	}
	var ls []string
	for i := range MaxLines {
		ls = append(ls, fmt.Sprintf(`{"sku":"SKU-%d","qty":%d}`, i, i+1))
	}
	payloads["fifty-lines"] = []byte(`{"order_id":"o-123","customer_id":"c-9","lines":[` + strings.Join(ls, ",") + `]}`)
	// decode benchmarks Decode of p, which it must accept, or refuse.
	decode := func(name string, p []byte, refuse bool) {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if _, err := Decode(p); (err != nil) != refuse {
					b.Fatalf("Decode = %v, want refused: %v", err, refuse)
				}
			}
		})
	}
	decode("one-line", payloads["one-line"], false)
	decode("fifty-lines", payloads["fifty-lines"], false)
	// The baseline: what encoding/json alone, without the strictness
	// (duplicates, exact keys, number forms, UTF-8), costs on the same input.
	b.Run("one-line-encoding-json", func(b *testing.B) {
		p := payloads["one-line"]
		b.ReportAllocs()
		b.SetBytes(int64(len(p)))
		for b.Loop() {
			var o Order
			if err := json.Unmarshal(p, &o); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A refused payload costs more than an accepted one: the reason, and a
	// second read for a usable order_id. Bad input is rare, but a hostile
	// producer chooses how much of it there is.
	decode("refused-unknown-field", []byte(`{"order_id":"o-123","customer_id":"c-9","lines":[{"sku":"SKU-1","qty":2}],"coupon":"FREE"}`), true)
	for _, c := range ordertest.Hostile {
		if c.Name == "deep-nesting" { // 60 KB of brackets
			decode("refused-deep-nesting", c.Payload, true)
		}
	}
	// An oversized task is refused on its length alone, before a byte of
	// it is parsed: 64 KiB + 1 and 16 MiB should cost the same.
	for name, n := range map[string]int{"too-large": MaxPayloadBytes + 1, "too-large-16MiB": 16 << 20} {
		b.Run(name, func(b *testing.B) {
			p := bytes.Repeat([]byte(" "), n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(p); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

func TestDecodeHostileActions(t *testing.T) {
	t.Parallel()
	names := map[string]bool{}
	for _, c := range ordertest.HostileActions {
		if names[c.Name] {
			t.Errorf("catalogue name %q appears twice", c.Name)
		}
		names[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			a, err := DecodeAction(c.Payload)
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("DecodeAction(%s) = %+v, %v; want an *InvalidError", c.Name, a, err)
			}
			if !strings.HasPrefix(inv.Reason, c.Reason) {
				t.Errorf("DecodeAction(%s) reason = %q, want it to start with %q", c.Name, inv.Reason, c.Reason)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || len(msg) > maxErrorLen || !isPrintable(msg) {
				t.Errorf("DecodeAction(%s).Error() = %q, want one printable line of at most %d bytes", c.Name, msg, maxErrorLen)
			}
		})
	}
}

func TestDecodeAction(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		payload string
		want    Action
	}{
		{`{"order_id":"o-1"}`, Action{OrderID: "o-1"}},
		{`{"order_id":"o-1","reason":""}`, Action{OrderID: "o-1"}},
		{` {"reason":"payment failed: card declined","order_id":"o:1"} `, Action{OrderID: "o:1", Reason: "payment failed: card declined"}},
		{`{"order_id":"o-1","reason":"` + strings.Repeat("é", 200) + `"}`, Action{OrderID: "o-1", Reason: strings.Repeat("é", 200)}},
	} {
		got, err := DecodeAction([]byte(tt.payload))
		if err != nil || got != tt.want {
			t.Errorf("DecodeAction(%s) = %+v, %v; want %+v", tt.payload, got, err, tt.want)
		}
	}
}

func TestActionTaskID(t *testing.T) {
	t.Parallel()
	if got := ActionTaskID(ConfirmTaskType, "o-1"); got != "confirm@o-1" {
		t.Errorf("ActionTaskID(confirm, o-1) = %q", got)
	}
	if got := ActionTaskID(CancelTaskType, "confirm:o-1"); got != "cancel@confirm:o-1" {
		t.Errorf("ActionTaskID(cancel, confirm:o-1) = %q", got)
	}
	// No order id can be a checkout task's id: '@' is outside the charset.
	if CheckID(ActionTaskID(ConfirmTaskType, "o-1")) == nil {
		t.Error("a confirm TaskID is a valid order id: it could collide with an order:place TaskID")
	}
	task, err := NewActionTask(context.Background(), CancelTaskType, Action{OrderID: "o-1", Reason: "r"}, TaskOptions{})
	if err != nil {
		t.Fatalf("NewActionTask: %v", err)
	}
	if a, err := DecodeAction(task.Payload()); err != nil || a != (Action{OrderID: "o-1", Reason: "r"}) {
		t.Errorf("DecodeAction(NewActionTask payload) = %+v, %v", a, err)
	}
	if _, err := NewActionTask(context.Background(), CancelTaskType, Action{OrderID: "o 1"}, TaskOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("NewActionTask(bad id) = %v, want ErrInvalid", err)
	}
}

func TestHold(t *testing.T) {
	t.Parallel()
	o, err := Decode([]byte(`{"order_id":"o-1","customer_id":"c-1","lines":[{"sku":"A","qty":1}],"hold":"600s"}`))
	if err != nil {
		t.Fatalf("Decode(hold 600s) = %v", err)
	}
	if o.Hold != "10m0s" || o.HoldDuration() != 10*time.Minute {
		t.Errorf("Decode(hold 600s).Hold = %q (%v), want 10m0s", o.Hold, o.HoldDuration())
	}
	plain := o
	plain.Hold = ""
	if o.Hash() == plain.Hash() {
		t.Error("an order with a hold hashes as the same order without one")
	}
	tenMin := o
	tenMin.Hold = "10m"
	if o.Hash() != tenMin.Hash() {
		t.Error("hold 600s and 10m hash differently")
	}
	if err := o.CheckHold(30 * time.Minute); err != nil {
		t.Errorf("CheckHold(30m) of a 10m hold = %v", err)
	}
	err = o.CheckHold(5 * time.Minute)
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.OrderID != "o-1" || inv.Error() != "invalid: hold 10m0s is over the maximum of 5m0s" {
		t.Errorf("CheckHold(5m) of a 10m hold = %v, want invalid: hold 10m0s is over the maximum of 5m0s", err)
	}
	if err := plain.CheckHold(time.Second); err != nil {
		t.Errorf("CheckHold of an order without a hold = %v", err)
	}
	b, err := Encode(o)
	if err != nil || !strings.Contains(string(b), `"hold":"10m0s"`) {
		t.Errorf("Encode(held order) = %s, %v", b, err)
	}
}
