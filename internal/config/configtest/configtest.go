// Package configtest is shared by the fuzz targets of the stockgate
// commands' argument parsers: it turns a fuzz input into an argument vector
// and an environment, holds the hostile arguments the targets are seeded
// with, and finds the passwords in a URL or DSN so that a target can check
// none is ever printed. It is imported only from tests.
//
// It must not import the packages it tests, so that the oracle stays
// independent of the redaction it checks.
package configtest

import (
	"net/url"
	"strings"
	"testing"
)

// Args splits a fuzz input into arguments. The first byte is the separator
// and ends every argument (the last one's may be left off), so the fuzzer
// can make any number of arguments, empty ones included, and by picking
// another separator put any byte, NUL or newline, inside one.
func Args(in string) []string {
	if in == "" {
		return nil
	}
	args := strings.Split(in[1:], in[:1])
	if args[len(args)-1] == "" {
		args = args[:len(args)-1]
	}
	return args
}

// Line is the inverse of Args, for seeds: NUL separates the arguments
// unless one holds a NUL, then the first byte of seps that none holds.
func Line(args ...string) string {
	sep := "\x00"
	for _, s := range []string{"\x00", "\n", "\x1f", "\xff", "|"} {
		sep = s
		if !strings.Contains(strings.Join(args, ""), s) {
			break
		}
	}
	var b strings.Builder
	b.WriteString(sep)
	for _, a := range args {
		b.WriteString(a)
		b.WriteString(sep)
	}
	return b.String()
}

// EnvValues reads an environment from a fuzz input: the value of each key
// in keys is what the last KEY=VALUE argument of Args(in) gives it, or ""
// (which the commands read as unset). Other arguments are ignored, and so is
// a value holding NUL, which no real environment can.
func EnvValues(in string, keys ...string) []string {
	vals := make([]string, len(keys))
	for _, kv := range Args(in) {
		k, v, _ := strings.Cut(kv, "=")
		for i, key := range keys {
			if k == key && !strings.ContainsRune(v, 0) {
				vals[i] = v
			}
		}
	}
	return vals
}

// SetEnv sets keys[i] to vals[i] for the rest of the test.
func SetEnv(t *testing.T, keys, vals []string) {
	t.Helper()
	for i, k := range keys {
		t.Setenv(k, vals[i])
	}
}

// OneLine reports whether msg is one line: no newline or carriage return,
// either of which would let a printed error pass for another line.
func OneLine(msg string) bool { return !strings.ContainsAny(msg, "\r\n") }

// Passwords returns what must never be printed from s, a Redis or Postgres
// URL or a Postgres key=value DSN, under any reasonable reading of it; a
// hybrid of the two has passwords under both:
//   - the password and sslpassword values of a DSN, keys in any case,
//     quoted or bare;
//   - the user-info password of anything shaped [scheme:]//…: the text
//     after the first ':' of the user info, which ends at the last '@' (a
//     password may hold an unescaped '/', '?', '#' or '@');
//   - the password and sslpassword query parameters, keys in any case and
//     percent-decoded (as pgx and libpq decode them), each value up to the
//     next '&' (libpq keeps a '#' in it).
//
// It is deliberately written without telemetry.RedactURL's code.
func Passwords(s string) []string {
	out := dsnPasswords(s)
	if _, rest, ok := strings.Cut(s, "//"); ok {
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
				out = append(out, pw)
			}
		}
	}
	if _, q, ok := strings.Cut(s, "?"); ok {
		for kv := range strings.SplitSeq(q, "&") {
			k, v, _ := strings.Cut(kv, "=")
			if k, err := url.QueryUnescape(k); err == nil && passwordKey(k) && v != "" {
				out = append(out, v)
			}
		}
	}
	return out
}

// passwordKey reports whether key names a password in a DSN or a URL query.
func passwordKey(key string) bool {
	return strings.EqualFold(key, "password") || strings.EqualFold(key, "sslpassword")
}

// dsnPasswords reads s as libpq and pgx read a key=value DSN: white space
// may surround the '=', a value is quoted ('…') or bare (up to white
// space), and a backslash escapes the next character in both. It returns
// the raw text of every password and sslpassword value, and stops where the
// text stops being a DSN, as the drivers do.
func dsnPasswords(s string) []string {
	var out []string
	space := func(i int) bool { return i < len(s) && strings.IndexByte(" \t\n\r\f\v", s[i]) >= 0 }
	i := 0
	for {
		for space(i) {
			i++
		}
		k := i
		for i < len(s) && s[i] != '=' && !space(i) {
			i++
		}
		key := s[k:i]
		for space(i) {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return out
		}
		i++
		for space(i) {
			i++
		}
		quoted := i < len(s) && s[i] == '\''
		if quoted {
			i++
		}
		v := i
		for i < len(s) && (quoted && s[i] != '\'' || !quoted && !space(i)) {
			if s[i] == '\\' {
				i++
			}
			i++
		}
		i = min(i, len(s)) // past a trailing backslash
		val := s[v:i]
		if quoted && i < len(s) {
			i++
		}
		if passwordKey(key) && val != "" {
			out = append(out, val)
		}
	}
}

// rotate maps each digit and letter to the next one of its kind, keeping
// hex digits hex, so that a password and its stand-in parse alike.
func rotate(s string) string {
	return strings.Map(func(r rune) rune {
		for _, class := range []string{"0123456789", "abcdef", "ghijklmnopqrstuvwxyz", "ABCDEF", "GHIJKLMNOPQRSTUVWXYZ"} {
			if i := strings.IndexRune(class, r); i >= 0 {
				return rune(class[(i+1)%len(class)])
			}
		}
		return r
	}, s)
}

// CheckSecrets fails t if a secret from inputs reaches the output. render
// runs the code under test on inputs (the arguments and environment values
// of one fuzz input, in a fixed order) and returns all it printed or
// returned as text; secrets are the passwords the caller knows the code
// read as such (say, Passwords of the parsed -redis-url).
//
// A password can show up in the output by chance (a short one inside a
// fixed message), so a hit counts only if it follows the input: the secret
// must occur once in the inputs, and when render runs again with it
// replaced by a same-shaped stand-in, the stand-in must show up instead.
// Pieces of a secret (split at white space and URL or DSN punctuation, 4
// bytes or more) count too, so that a tail left behind is caught.
func CheckSecrets(t *testing.T, inputs, secrets []string, render func(inputs []string) string) {
	t.Helper()
	var out string
	rendered := false
	all := strings.Join(inputs, "\x00")
	var pieces []string
	for _, pw := range secrets {
		pieces = append(pieces, pw)
		for _, f := range strings.FieldsFunc(pw, func(r rune) bool { return strings.ContainsRune(" \t\n\r\f\v'\\@/:?#&=%", r) }) {
			if len(f) >= 4 && f != pw {
				pieces = append(pieces, f)
			}
		}
	}
	for _, pw := range pieces {
		alt := rotate(pw)
		if alt == pw || strings.Count(all, pw) != 1 || strings.Contains(all, alt) {
			continue
		}
		if !rendered {
			out, rendered = render(inputs), true
		}
		if !strings.Contains(out, pw) || strings.Contains(out, alt) {
			continue
		}
		swapped := make([]string, len(inputs))
		for i, in := range inputs {
			swapped[i] = strings.Replace(in, pw, alt, 1)
		}
		if again := render(swapped); strings.Contains(again, alt) {
			t.Fatalf("password %q printed:\n%s\n(inputs %q)", pw, out, inputs)
		}
	}
}

// Hostile is a catalogue of single arguments that have broken, or could
// break, a command-line parser: numbers at and past every bound, signs and
// bases, white space, control and non-ASCII characters, flag look-alikes,
// and URLs whose passwords hold the characters that confuse url.Parse.
var Hostile = []string{
	// Numbers.
	"0", "-0", "+0", "1", "-1", "+1", "00", "010", "0x10", "0X1f", "0b1", "0o7", "1e3", "1.5", "1_000", " 1", "1 ",
	"9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
	"18446744073709551616", "99999999999999999999999999", "1000000000000", "1000000000001", "10000", "10001",
	"NaN", "Inf", "-Inf", "∞", "٣", "３", "1\x00", "1\n", "１０",
	// Durations.
	"0s", "-1s", "1ns", "1h", "2562047h", "2562048h", "9223372036854775807ns", "292y", "1.5s", "1", "s", "1µs", "1us",
	// Flags and their look-alikes.
	"-", "--", "---", "-h", "--h", "-help", "--help", "help", "-json", "--json", "-json=true", "-json=false",
	"-json=maybe", "--json=", "-=", "--=x", "-=x", "---x", "-x=", "-5", "--5", "-\u2013json", "\u2014json", "-JSON",
	// Strings.
	"", " ", "\t", "\x00", "\n", "\r", "a\nb", "a\rb", "\x1b[31mred\x1b[0m", "SKU-1", "sku.with_all-chars.0",
	strings.Repeat("A", 64), strings.Repeat("A", 65), "SKU{1}", "SKU 1", "SKU\u200b", "\u202eSKU", "é", "日本",
	"\xff\xfe", "\xc0\x80", "SKU=1", "SKU=", "=1", "==", "a=b=c", "SKU-1=0", "SKU-1=-1", "SKU-1=10001",
	"SKU-1=9223372036854775808", "SKU-1=0x10",
	// URLs and DSNs.
	"redis://127.0.0.1:6379/0",
	"redis://user:s3cretpw@h:6379/2",
	"rediss://:s3cretpw@cache.example:6380/1",
	"rediss://u:p@ss/w?rd#x@h:6380/1",
	"redis://u:s3cr%zzet@h/0",
	"redis://u:s3cret pw@h/0",
	"redis://u:s3cretpw@h/abc",
	"redis://u:s3cretpw@h/99999999999999999999",
	"redis://u:s3cretpw@h:99999/0",
	"redis://u:s3cretpw@[::1/0",
	"redis://u:s3cretpw@h/0?dial_timeout=x",
	"redis://u:s3cretpw@h/0?protocol=9&pool_size=-1",
	"REDIS://u:s3cretpw@h/0",
	"redis_x://u:s3cretpw@h/0",
	"http://u:s3cretpw@h/",
	"unix:///tmp/redis.sock?db=1&password=s3cretpw",
	"redis://u:s3cret\npw@h/0",
	"postgres://app:s3cretpw@db:5432/stockgate?sslmode=disable",
	"postgres://app@db/sg?password=s3cretpw&sslmode=require",
	"postgres://app:a@b?c#d@db/sg",
	"host=db user=app password=s3cretpw dbname=sg",
	"host=db password='s3 cr\\'et' dbname=sg",
	"host=db password='s3cretpw",
}

// Outcome is the part of a parsed command line that every command's fuzz
// target checks the same way; each target embeds it in its own result.
type Outcome struct {
	Err    string
	Usage  bool   // Err is an ErrUsage
	Help   bool   // -h, help: run prints Stderr and exits 0
	NoCmd  bool   // no command: run prints Stderr and exits 2
	Stderr string // what parsing printed
	// Other is a command in the usage that the target's parser mirror does
	// not know; run would connect for it.
	Other bool
}

// Command is what CheckCommandLine needs of one command's fuzz target.
type Command struct {
	Name    string   // as run prefixes its errors: "stockctl", "enqueue"
	EnvKeys []string // the environment variables the target sets, vals in that order
	// Parse parses args with the environment as set, Run runs the command
	// on a line Parse refused or answered with help (it must not connect),
	// and Accepted checks a line that parsed.
	Parse    func(args []string) Outcome
	Run      func(args []string) (code int, stdout, stderr string)
	Accepted func()
}

// CheckCommandLine holds one fuzzed command line, parsed as o with the
// environment c.EnvKeys=vals, to the rules every command shares: a refusal
// is one usage line with nothing printed while parsing; run refuses it with
// exit status 2 (or answers help with 0), nothing on stdout and one line
// naming the command; and no password from the environment, the flags or
// urls (the URLs the parse ended with) reaches any of it.
func CheckCommandLine(t *testing.T, c Command, vals, args []string, o Outcome, urls ...string) {
	t.Helper()
	switch {
	case o.Err != "":
		if !o.Usage || !OneLine(o.Err) || o.Stderr != "" && !o.NoCmd {
			t.Fatalf("%s %q: %q (usage error %v), printed %q; want one usage line and nothing printed", c.Name, args, o.Err, o.Usage, o.Stderr)
		}
	case o.Help || o.Other:
	default:
		c.Accepted()
	}

	ran := o.Err != "" || o.Help
	if ran {
		code, stdout, stderr := c.Run(args)
		want := 0
		if o.Err != "" {
			want = 2
		}
		if code != want || stdout != "" {
			t.Fatalf("run(%q) = %d, stdout %q; want %d and nothing on stdout", args, code, stdout, want)
		}
		line, ok := strings.CutSuffix(stderr, "\n")
		if code == 2 && !o.NoCmd && (!ok || !OneLine(line) || !strings.HasPrefix(line, c.Name)) {
			t.Fatalf("run(%q) printed %q, want one line naming %s", args, stderr, c.Name)
		}
		if (code == 0 || o.NoCmd) && stderr != o.Stderr {
			t.Fatalf("run(%q) printed %q, want the usage %q", args, stderr, o.Stderr)
		}
	}

	var secrets []string
	for _, s := range append(append([]string{}, vals...), urls...) {
		secrets = append(secrets, Passwords(s)...)
	}
	n := len(c.EnvKeys)
	CheckSecrets(t, append(append([]string{}, vals...), args...), secrets, func(in []string) string {
		SetEnv(t, c.EnvKeys, in[:n])
		q := c.Parse(in[n:])
		s := q.Err + "\n" + q.Stderr
		if ran {
			_, stdout, stderr := c.Run(in[n:])
			s += "\n" + stdout + stderr
		}
		return s
	})
}
