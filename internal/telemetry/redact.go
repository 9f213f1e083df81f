package telemetry

import (
	"regexp"
	"strings"
)

// redacted replaces every secret; it is short and obviously fake.
const redacted = "xxxxx"

var (
	// queryPassword matches libpq's password and sslpassword URL parameters.
	queryPassword = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)[^&#]*`)
	// dsnPassword matches a key=value DSN's password, quoted or bare, with
	// libpq's backslash escapes in both (a bare "a\ b" is "a b"), and even
	// without its closing quote. White space is libpq's and pgx's, which
	// has \v; RE2's \s does not.
	dsnPassword = regexp.MustCompile(`(?is)(\b(?:ssl)?password[\t\n\v\f\r ]*=[\t\n\v\f\r ]*)('(?:[^'\\]|\\.)*'?|(?:[^\t\n\v\f\r \\]|\\.)*\\?)`)
	urlScheme   = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)
)

// RedactURL hides the password in a Redis or Postgres URL, and the password
// and sslpassword parameters of a URL or key=value DSN, so the string can be
// logged: "redis://:s3cret@h:6379/0" becomes "redis://:xxxxx@h:6379/0".
//
// It works on the text rather than through url.Parse, because the inputs
// most in need of redaction are the malformed ones (a password with an
// unescaped '/', '@' or '%'), which url.Parse rejects or splits in the wrong
// place. When the text is ambiguous it hides more, never less.
func RedactURL(s string) string {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return dsnPassword.ReplaceAllString(s, "${1}"+redacted)
	}
	if !urlScheme.MatchString(scheme) {
		// A DSN with "://" in a value, or a URL with a mistyped scheme
		// (redis_x://u:pw@h): hide what either reading calls a password.
		s = dsnPassword.ReplaceAllString(s, "${1}"+redacted)
		if scheme, rest, ok = strings.Cut(s, "://"); !ok {
			return s
		}
	}

	// The user info ends at the last '@', not at the first '/', '?' or '#':
	// a password may hold those unescaped, and url.Parse would then leak
	// its tail. An '@' in the path or query makes this hide too much, which
	// is the safe way to be wrong.
	at := strings.LastIndex(rest, "@")
	if at >= 0 {
		if user, _, hasPassword := strings.Cut(rest[:at], ":"); hasPassword {
			rest = user + ":" + redacted + rest[at:]
		}
	}
	return scheme + "://" + queryPassword.ReplaceAllString(rest, "${1}"+redacted)
}
