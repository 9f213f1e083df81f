package config

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockgate/stockgate/internal/config/configtest"
)

var envKeys = []string{"REDIS_URL", "DATABASE_URL"}

// parsed is everything one Parse or ParseLeading call shows.
type parsed struct {
	Pos    []string
	Err    string
	Kind   string // "", "help" or "usage"
	Output string // what the flag set printed
	Help   string // what -h would print, with the defaults from the environment
	Conn   Conn
	Shown  [2]string // the URL flags' printed values
	JSON   bool
	N      int
	D      time.Duration
	S      string
}

// parseArgs parses args the way the commands do, with the URL flags and one
// flag of each other kind they use.
func parseArgs(args []string, leading bool) parsed {
	var out bytes.Buffer
	var p parsed
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&out)
	p.Conn.Register(fs)
	fs.BoolVar(&p.JSON, "json", false, "a bool")
	fs.IntVar(&p.N, "n", 0, "an int")
	fs.DurationVar(&p.D, "d", 0, "a duration")
	fs.StringVar(&p.S, "s", "", "a string")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: t")
		fs.PrintDefaults()
	}
	var help bytes.Buffer
	fs.SetOutput(&help)
	fs.Usage()
	p.Help = help.String()
	fs.SetOutput(&out)

	var err error
	if leading {
		p.Pos, err = ParseLeading(fs, args)
	} else {
		p.Pos, err = Parse(fs, args)
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		p.Kind = "help"
	case errors.Is(err, ErrUsage):
		p.Kind = "usage"
	}
	if err != nil {
		p.Err = err.Error()
	}
	p.Output = out.String()
	p.Shown = [2]string{fs.Lookup("redis-url").Value.String(), fs.Lookup("database-url").Value.String()}
	return p
}

// FuzzConfigParse checks Parse (flags anywhere) and ParseLeading (flags
// before the first argument) on any argument vector and any REDIS_URL and
// DATABASE_URL: a refusal is one ErrUsage line and prints nothing, -h prints
// the usage and nothing else, no password of a URL from the environment or
// the arguments is ever printed (-h shows the defaults), the arguments come
// back in order (ParseLeading: a tail of args), and the same input always
// gives the same result.
//
// The first argument is the environment (REDIS_URL=… DATABASE_URL=…), the
// second the argument vector, both split with configtest.Args.
//
//	go test -run '^$' -fuzz '^FuzzConfigParse$' -fuzztime 1m ./internal/config/
func FuzzConfigParse(f *testing.F) {
	env := configtest.Line("REDIS_URL=redis://app:envs3cret@h:6379/1", "DATABASE_URL=postgres://app:dbs3cret@db/sg")
	for _, a := range configtest.Hostile {
		f.Add(env, configtest.Line(a))
		f.Add(env, configtest.Line("--redis-url", a, "x"))
		f.Add(env, configtest.Line("-database-url="+a, "-json"))
		f.Add(configtest.Line("REDIS_URL="+a, "DATABASE_URL="+a), configtest.Line("-h"))
	}
	for _, args := range [][]string{
		{"SKU-1", "--json"}, {"--json", "SKU-1", "SKU-2"}, {"-n", "7", "SKU-1"}, {"SKU-1", "-n=3"}, {"SKU-1", "-5"},
		{"--", "--json"}, {"-json", "false"}, {"-n"}, {"-n", "-5"}, {"-d", "-1s", "a"}, {"-s", "--", "a"}, {"-s", "-h"},
		{"a", "--", "-h"}, {"--redis-url", "--database-url", "x"}, {"-redis-url=rediss://u:p@h/0", "--redis-url", "redis://h/1"},
		{"-bogus\nline"}, {"-n", "1\n2"}, {"---json"}, {"-json=1", "-json=0"}, {"-help"}, {"a", "b", "-h"},
	} {
		f.Add(env, configtest.Line(args...))
	}
	f.Fuzz(func(t *testing.T, envIn, argv string) {
		vals := configtest.EnvValues(envIn, envKeys...)
		args := configtest.Args(argv)
		configtest.SetEnv(t, envKeys, vals)
		if vals[0] == "" {
			vals[0] = DefaultRedisURL
		}
		if vals[1] == "" {
			vals[1] = DefaultDatabaseURL
		}
		for _, leading := range []bool{false, true} {
			p := parseArgs(args, leading)
			if again := parseArgs(args, leading); !cmp.Equal(p, again) {
				t.Fatalf("parse(%q) differs the second time (-first +second):\n%s", args, cmp.Diff(p, again))
			}
			switch p.Kind {
			case "help":
				if p.Output != p.Help {
					t.Fatalf("parse(%q) = ErrHelp, printed %q, want the usage %q", args, p.Output, p.Help)
				}
			case "usage":
				if !configtest.OneLine(p.Err) || p.Output != "" {
					t.Fatalf("parse(%q) = %q and printed %q, want one line and nothing printed", args, p.Err, p.Output)
				}
			default:
				if p.Err != "" || p.Output != "" {
					t.Fatalf("parse(%q) = %q (not ErrUsage nor ErrHelp), printed %q", args, p.Err, p.Output)
				}
			}
			if p.Err == "" {
				checkPositional(t, args, p.Pos, leading)
			}
			if p.Shown != [2]string{Redact(p.Conn.RedisURL), Redact(p.Conn.DatabaseURL)} {
				t.Fatalf("the URL flags print %q, want them redacted", p.Shown)
			}

			secrets := slices.Concat(configtest.Passwords(vals[0]), configtest.Passwords(vals[1]),
				configtest.Passwords(p.Conn.RedisURL), configtest.Passwords(p.Conn.DatabaseURL))
			configtest.CheckSecrets(t, slices.Concat(vals, args), secrets, func(in []string) string {
				configtest.SetEnv(t, envKeys, in[:2])
				q := parseArgs(in[2:], leading)
				return strings.Join([]string{q.Err, q.Output, q.Help, q.Shown[0], q.Shown[1]}, "\n")
			})
		}
	})
}

// checkPositional holds pos, the arguments Parse or ParseLeading returned,
// to args: in order, and for ParseLeading a tail of args.
func checkPositional(t *testing.T, args, pos []string, leading bool) {
	t.Helper()
	if leading {
		if len(pos) > len(args) || !slices.Equal(pos, args[len(args)-len(pos):]) {
			t.Fatalf("ParseLeading(%q) = %q, want a tail of the arguments", args, pos)
		}
		return
	}
	rest := args
	for _, p := range pos {
		i := slices.Index(rest, p)
		if i < 0 {
			t.Fatalf("Parse(%q) = %q, want the arguments in their order", args, pos)
		}
		rest = rest[i+1:]
	}
	flagLike := func(a string) bool { return len(a) > 1 && a[0] == '-' && (a[1] < '0' || a[1] > '9') }
	if !slices.ContainsFunc(args, flagLike) && !slices.Equal(pos, args) {
		t.Fatalf("Parse(%q) = %q, want every argument back when none is a flag", args, pos)
	}
}

// FuzzRedisOptions checks RedisOptions and Redact on any text: an error is
// one line naming the URL without its password, Redact never shows a
// password, and an accepted URL is redis:// or rediss://
// with TLS (1.2 or later) exactly for rediss://, giving Asynq the same
// server, credentials and DB as go-redis.
//
//	go test -run '^$' -fuzz '^FuzzRedisOptions$' -fuzztime 1m ./internal/config/
func FuzzRedisOptions(f *testing.F) {
	for _, a := range configtest.Hostile {
		f.Add(a)
	}
	for _, a := range []string{
		DefaultRedisURL, DefaultDatabaseURL, "redis://h", "redis://:@h", "redis://u:@h", "redis://h:6379/15?dial_timeout=3s",
		"rediss://u:p@cache.example:6380/3", "rediss://h/0?skip_verify=true", "redis://u:p@/0", "redis://[::1]:6379/0",
		"redis://u:p%40ss@h/0", "redis://u:p@ss@h/0", "redis://u:p/ss@h/0", "redis://u:p?ss@h/0", "redis://u:p#ss@h/0",
		"redis://u:pw@h/0?password=other", "redis://%zz:pw@h", "redis:/u:pw@h", "redis:u:pw@h", " redis://u:pw@h",
		"re dis://u:pw@h/0", "r=edis://u:pw@h/0", "password=pw redis://u:pw2@h", "redis://u:s3cret\r@h",
	} {
		f.Add(a)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		opt, err := RedisOptions(raw)
		if opt2, err2 := RedisOptions(raw); fmt.Sprint(err) != fmt.Sprint(err2) || (opt == nil) != (opt2 == nil) ||
			(opt != nil && (opt.Addr != opt2.Addr || opt.Password != opt2.Password || opt.DB != opt2.DB)) {
			t.Fatalf("RedisOptions(%q) differs the second time: %v, then %v", raw, err, err2)
		}
		configtest.CheckSecrets(t, []string{raw}, configtest.Passwords(raw), func(in []string) string {
			_, err := RedisOptions(in[0])
			return fmt.Sprint(err) + "\n" + Redact(in[0])
		})
		if err != nil {
			if msg := err.Error(); !configtest.OneLine(msg) || !strings.HasPrefix(msg, "redis url ") {
				t.Fatalf("RedisOptions(%q) = %q, want one line starting \"redis url \"", raw, msg)
			}
			return
		}
		u, perr := url.Parse(raw)
		if perr != nil {
			t.Fatalf("RedisOptions(%q) accepted what url.Parse refuses: %v", raw, perr)
		}
		switch {
		case u.Scheme != "redis" && u.Scheme != "rediss":
			t.Fatalf("RedisOptions(%q) accepted scheme %q", raw, u.Scheme)
		case (u.Scheme == "rediss") != (opt.TLSConfig != nil):
			t.Fatalf("RedisOptions(%q): TLS %v for scheme %q", raw, opt.TLSConfig != nil, u.Scheme)
		case opt.TLSConfig != nil && opt.TLSConfig.MinVersion < tls.VersionTLS12:
			t.Fatalf("RedisOptions(%q): TLS min version %#x", raw, opt.TLSConfig.MinVersion)
		case opt.DB < 0:
			t.Fatalf("RedisOptions(%q): DB %d", raw, opt.DB)
		}
		if pw, _ := u.User.Password(); opt.Password != pw {
			t.Fatalf("RedisOptions(%q): password %q, the URL has %q", raw, opt.Password, pw)
		}
		a := AsynqRedisOpt(opt)
		if a.Addr != opt.Addr || a.Network != opt.Network || a.Username != opt.Username || a.Password != opt.Password ||
			a.DB != opt.DB || a.TLSConfig != opt.TLSConfig {
			t.Fatalf("AsynqRedisOpt(%q) = %+v, differs from go-redis's %+v", raw, a, opt)
		}
	})
}
