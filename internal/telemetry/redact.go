package telemetry

import (
	"net/url"
	"regexp"
	"strings"
)

// redacted replaces every secret; it is short and obviously fake.
const redacted = "xxxxx"

// dsnKey matches a key=value DSN's password or sslpassword key, in any case,
// with the white space libpq and pgx allow around its '=' (which has \v;
// RE2's \s does not). A DSN key follows the start, white space or the quote
// that closed the previous value, so anything but a word character may come
// before it, except '?' and '&': there it is a URL query parameter, whose
// value ends at the next '&', not at white space, and stays readable.
var dsnKey = regexp.MustCompile(`(?i)(?:^|[^?&\w])(?:ssl)?password[\t\n\v\f\r ]*=[\t\n\v\f\r ]*`)

// RedactURL hides the passwords in a Redis or Postgres URL or a key=value
// DSN, so the string can be logged: "redis://:s3cret@h:6379/0" becomes
// "redis://:xxxxx@h:6379/0".
//
// It works on the text rather than through url.Parse, because the inputs
// most in need of redaction are the malformed ones (a password with an
// unescaped '/', '@' or '%'), which url.Parse rejects or splits in the wrong
// place. Every string is read both as a URL and as a DSN, and what either
// reading calls a password is hidden: a hybrid such as "pAssword=://: 0@"
// has one under each. When the text is ambiguous it hides more, never less.
func RedactURL(s string) string {
	hide := make([]bool, len(s))
	mark := func(from, to int) {
		for i := from; i < to; i++ {
			hide[i] = true
		}
	}
	for _, m := range dsnKey.FindAllStringIndex(s, -1) {
		mark(m[1], dsnValueEnd(s, m[1]))
	}
	// Query parameters: pgx and libpq decode the key ("pass%77ord"), and
	// libpq reads a '#' as part of the value, so only '&' ends it.
	for i := range len(s) {
		if s[i] != '?' && s[i] != '&' {
			continue
		}
		param, _, _ := strings.Cut(s[i+1:], "&")
		if key, _, ok := strings.Cut(param, "="); ok && isPasswordKey(key) {
			mark(i+1+len(key)+1, i+1+len(param))
		}
	}
	// The user info ends at the last '@', not at the first '/', '?' or '#':
	// a password may hold those unescaped, and url.Parse would then leak
	// its tail. An '@' in the path or query makes this hide too much, which
	// is the safe way to be wrong. "//" rather than "://": url.Parse finds
	// a password in "//u:pw@h" too.
	if _, rest, ok := strings.Cut(s, "//"); ok {
		start := len(s) - len(rest)
		if at := strings.LastIndexByte(rest, '@'); at >= 0 {
			if c := strings.IndexByte(rest[:at], ':'); c >= 0 {
				mark(start+c+1, start+at)
			}
		}
	}

	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if !hide[i] {
			b.WriteByte(s[i])
			continue
		}
		b.WriteString(redacted)
		for i+1 < len(s) && hide[i+1] {
			i++
		}
	}
	return b.String()
}

// dsnValueEnd returns where the DSN value that starts at s[i:] ends, as
// libpq and pgx read it: after its closing quote, or at white space when it
// is bare; a backslash escapes the next byte in both. An unclosed quote runs
// to the end.
func dsnValueEnd(s string, i int) int {
	quoted := i < len(s) && s[i] == '\''
	if quoted {
		i++
	}
	for ; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++
		case quoted && s[i] == '\'':
			return i + 1
		case !quoted && strings.IndexByte("\t\n\v\f\r ", s[i]) >= 0:
			return i
		}
	}
	return len(s)
}

// isPasswordKey reports whether a URL query key names a password once
// decoded; a key that does not decode names nothing.
func isPasswordKey(key string) bool {
	k, err := url.QueryUnescape(key)
	return err == nil && (strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword"))
}
