package stock

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// maxSKULen bounds a SKU. The charset is ASCII, so bytes and characters
// count the same in a valid one.
const maxSKULen = 64

// SKUReason is the SKU rule, written once for every Go caller: it returns ""
// when sku is 1-64 characters of [A-Za-z0-9_.-], and otherwise why not, in
// words that follow the SKU's name: "must not be empty", "must be at most 64
// characters, got 65", or "must be characters of A-Z a-z 0-9 _ . -, got "A}""
// (in ASCII, at most 40 characters of it). Braces in particular would move
// the key's Redis Cluster hash slot. The Lua scripts check the same again.
//
// It is a loop, not a regexp: the order decoder calls it for every line, and
// the regexp cost a fifth of decoding an order.
func SKUReason(sku string) string {
	switch {
	case sku == "":
		return "must not be empty"
	case len(sku) > maxSKULen && utf8.RuneCountInString(sku) > maxSKULen:
		return fmt.Sprintf("must be at most %d characters, got %d", maxSKULen, utf8.RuneCountInString(sku))
	}
	// A SKU of 64 characters or fewer but more bytes has a non-ASCII one.
	for i := 0; i < len(sku); i++ {
		if !skuByte(sku[i]) {
			return "must be characters of A-Z a-z 0-9 _ . -, got " + quoteSKU(sku)
		}
	}
	return ""
}

// CheckSKU returns nil when sku is valid (see SKUReason), and otherwise an
// error matching ErrInvalid that says why.
func CheckSKU(sku string) error {
	if r := SKUReason(sku); r != "" {
		return fmt.Errorf("%w: sku %s", ErrInvalid, r)
	}
	return nil
}

func skuByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-'
}

// quoteSKU quotes a refused SKU on one line, with every control and
// non-ASCII character escaped (a look-alike such as a non-breaking hyphen
// shows as what it is), cut after 40 characters.
func quoteSKU(s string) string {
	n := 0
	for i := range s {
		if n == 40 {
			return strconv.QuoteToASCII(s[:i] + "...")
		}
		n++
	}
	return strconv.QuoteToASCII(s)
}
