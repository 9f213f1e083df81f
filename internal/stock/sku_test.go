package stock_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stockgate/stockgate/internal/stock"
)

// TestSKUReasonMatchesDesign holds the hand-written rule to DESIGN.md's
// statement of it, [A-Za-z0-9_.-]{1,64}, over every byte in and around a
// SKU and the edges of its length.
func TestSKUReasonMatchesDesign(t *testing.T) {
	t.Parallel()

	design := regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
	cases := []string{"", "A", "a-b_c.d", "SKU:1", "{A}", "A}", "A B", "A\n", "\u00c4", "A\x00", "A/B", "A+B", "a@b",
		strings.Repeat("S", 64), strings.Repeat("S", 65), strings.Repeat("\u00e9", 32), strings.Repeat("S", 63) + "\u00e9"}
	for c := range 256 {
		cases = append(cases, "X"+string(rune(c)), "X"+string([]byte{byte(c)}), string([]byte{byte(c)}))
	}
	for _, s := range cases {
		r := stock.SKUReason(s)
		if got, want := r == "", design.MatchString(s); got != want {
			t.Errorf("SKUReason(%q) = %q, want valid = %v", s, r, want)
		}
		err := stock.CheckSKU(s)
		if (err == nil) != (r == "") || err != nil && !errors.Is(err, stock.ErrInvalid) {
			t.Errorf("CheckSKU(%q) = %v, want an ErrInvalid exactly when SKUReason says %q", s, err, r)
		}
	}
}

func TestSKUReason(t *testing.T) {
	t.Parallel()

	tests := []struct{ sku, want string }{
		{"SKU-1", ""},
		{"", "must not be empty"},
		{strings.Repeat("S", 65), "must be at most 64 characters, got 65"},
		{strings.Repeat("\u00e9", 33), `must be characters of A-Z a-z 0-9 _ . -, got "` + strings.Repeat(`\u00e9`, 33) + `"`},
		{"{SKU-1}", `must be characters of A-Z a-z 0-9 _ . -, got "{SKU-1}"`},
		{"SKU\u20111", `must be characters of A-Z a-z 0-9 _ . -, got "SKU\u20111"`},
		{"SKU:1", `must be characters of A-Z a-z 0-9 _ . -, got "SKU:1"`},
		{strings.Repeat("S", 50) + "!", `must be characters of A-Z a-z 0-9 _ . -, got "` + strings.Repeat("S", 40) + `..."`},
		{"A\xff", `must be characters of A-Z a-z 0-9 _ . -, got "A\xff"`},
	}
	for _, tt := range tests {
		if got := stock.SKUReason(tt.sku); got != tt.want {
			t.Errorf("SKUReason(%q) = %q, want %q", tt.sku, got, tt.want)
		}
	}
	if got, want := stock.CheckSKU("A}").Error(), `invalid argument: sku must be characters of A-Z a-z 0-9 _ . -, got "A}"`; got != want {
		t.Errorf("CheckSKU(%q) = %q, want %q", "A}", got, want)
	}
}
