package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stockgate/stockgate/internal/config/configtest"
)

// envKeys are the variables parseConfig and validate read.
var envKeys = []string{
	"REDIS_URL", "DATABASE_URL", "CONCURRENCY", "ADMIN_ADDR", "MONITORING_WRITABLE", "PPROF", "SHUTDOWN_TIMEOUT",
	"HOLD_TTL", "HANDLER_TIMEOUT", "SWEEP_INTERVAL", "RATE_LIMIT", "RATE_WINDOW", "RETRY_BASE", "RETRY_MAX",
	"POLL_INTERVAL", "LOG_LEVEL", "ADMIN_USER", "ADMIN_PASSWORD",
}

type parsed struct {
	cfg    Config
	err    error
	stderr string
}

func parseWith(t *testing.T, env, args []string) parsed {
	configtest.SetEnv(t, envKeys, env)
	var stderr bytes.Buffer
	c, err := parseConfig(args, &stderr)
	return parsed{c, err, stderr.String()}
}

// FuzzWorkerConfig checks parseConfig on any environment and argument
// vector: an error is one line and prints nothing, -h prints the usage,
// neither the URLs' passwords nor ADMIN_PASSWORD are ever printed or logged
// (logAttrs), an accepted config is within the documented bounds (and the
// retry delays it gives too), and the same input always gives the same
// result.
//
// The first argument is the environment (KEY=VALUE for the keys in
// envKeys), the second the argument vector, both split with configtest.Args.
//
//	go test -run '^$' -fuzz '^FuzzWorkerConfig$' -fuzztime 1m ./cmd/worker/
func FuzzWorkerConfig(f *testing.F) {
	env := configtest.Line("REDIS_URL=redis://app:envs3cret@h:6379/1", "DATABASE_URL=postgres://app:dbs3cret@db/sg",
		"ADMIN_USER=ops", "ADMIN_PASSWORD=adm1nS3cret")
	none := configtest.Line()
	for _, a := range configtest.Hostile {
		f.Add(env, configtest.Line(a))
		f.Add(none, configtest.Line("--concurrency", a))
		f.Add(none, configtest.Line("-hold-ttl="+a))
		f.Add(none, configtest.Line("--redis-url", a, "--retry-max", a))
		f.Add(configtest.Line("CONCURRENCY="+a, "HOLD_TTL="+a, "LOG_LEVEL="+a), none)
		f.Add(configtest.Line("REDIS_URL="+a, "ADMIN_PASSWORD="+a), configtest.Line("-h"))
	}
	for _, args := range [][]string{
		{"--handler-timeout", "2562047h", "--hold-ttl", "1s"},
		{"--handler-timeout=1281023h54m", "--hold-ttl=1ms"},
		{"--retry-base", "2000000h", "--retry-max", "2562047h"},
		{"--retry-base=1ns", "--retry-max=2562047h47m16.854775807s"},
		{"--poll-interval", "1ms"}, {"--poll-interval", "1m0.000000001s"}, {"--rate-limit", "-1"},
		{"--log-level", "DEBUG+2"}, {"--log-level", "warn-4"}, {"--log-level="}, {"--pprof", "--monitoring-writable=false"},
		{"--admin-addr", "0.0.0.0:8080"}, {"extra"}, {"--", "--concurrency=5"}, {"-concurrency", "0x10"},
	} {
		f.Add(env, configtest.Line(args...))
	}
	f.Add(configtest.Line("CONCURRENCY=x", "HOLD_TTL=y"), none)
	f.Add(configtest.Line("ADMIN_USER=ops"), none)

	f.Fuzz(func(t *testing.T, envIn, argv string) {
		env := configtest.EnvValues(envIn, envKeys...)
		args := configtest.Args(argv)
		p := parseWith(t, env, args)
		if q := parseWith(t, env, args); p.cfg != q.cfg || fmt.Sprint(p.err) != fmt.Sprint(q.err) || p.stderr != q.stderr {
			t.Fatalf("parseConfig(%q) differs the second time: %+v, %v; then %+v, %v", args, p.cfg, p.err, q.cfg, q.err)
		}
		switch {
		case errors.Is(p.err, flag.ErrHelp):
			if !strings.HasPrefix(p.stderr, usage) {
				t.Fatalf("parseConfig(%q) = ErrHelp, printed %q, want the usage", args, p.stderr)
			}
		case p.stderr != "":
			t.Fatalf("parseConfig(%q) = %v and printed %q, want nothing printed", args, p.err, p.stderr)
		case p.err != nil:
			if !configtest.OneLine(p.err.Error()) {
				t.Fatalf("parseConfig(%q) = %q, want one line", args, p.err)
			}
		default:
			checkBounds(t, args, p.cfg)
		}

		secrets := slices.Concat(configtest.Passwords(env[0]), configtest.Passwords(env[1]),
			configtest.Passwords(p.cfg.Conn.RedisURL), configtest.Passwords(p.cfg.Conn.DatabaseURL))
		if pw := env[len(env)-1]; pw != "" {
			secrets = append(secrets, pw)
		}
		configtest.CheckSecrets(t, slices.Concat(env, args), secrets, func(in []string) string {
			q := parseWith(t, in[:len(envKeys)], in[len(envKeys):])
			return fmt.Sprint(q.err) + "\n" + q.stderr + "\n" + fmt.Sprint(q.cfg.logAttrs()...)
		})
	})
}

// checkBounds holds an accepted config to the bounds the flags document,
// written without overflow, and checks the retry delays it gives.
func checkBounds(t *testing.T, args []string, c Config) {
	t.Helper()
	var lvl slog.Level
	switch {
	case c.Concurrency < 1 || c.Concurrency > 10000:
		t.Fatalf("parseConfig(%q) accepted concurrency %d", args, c.Concurrency)
	case c.ShutdownTimeout <= 0 || c.HandlerTimeout <= 0 || c.SweepInterval <= 0:
		t.Fatalf("parseConfig(%q) accepted a timeout or interval <= 0: %+v", args, c)
	case c.HoldTTL/2 < c.HandlerTimeout:
		t.Fatalf("parseConfig(%q) accepted hold TTL %v, less than twice the handler timeout %v", args, c.HoldTTL, c.HandlerTimeout)
	case c.RateLimit < 0:
		t.Fatalf("parseConfig(%q) accepted rate limit %d", args, c.RateLimit)
	case c.PollInterval < time.Millisecond || c.PollInterval > time.Minute:
		t.Fatalf("parseConfig(%q) accepted poll interval %v", args, c.PollInterval)
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		t.Fatalf("parseConfig(%q) accepted retry base %v and max %v", args, c.RetryBase, c.RetryMax)
	case (c.AdminUser == "") != (c.AdminPassword == ""):
		t.Fatalf("parseConfig(%q) accepted an admin user without a password, or the reverse", args)
	case lvl.UnmarshalText([]byte(c.LogLevel)) != nil:
		t.Fatalf("parseConfig(%q) accepted log level %q", args, c.LogLevel)
	case c.RateLimit > 0 && c.RateWindow < time.Millisecond:
		t.Fatalf("parseConfig(%q) accepted rate limit %d per %v", args, c.RateLimit, c.RateWindow)
	case c.AdminUser == "" && !loopback(c.AdminAddr):
		t.Fatalf("parseConfig(%q) accepted admin address %q without auth", args, c.AdminAddr)
	}
	if u, err := url.Parse(c.Conn.RedisURL); err != nil || u.Scheme != "redis" && u.Scheme != "rediss" {
		t.Fatalf("parseConfig(%q) accepted Redis URL %q", args, c.Conn.RedisURL)
	}
	if _, err := pgxpool.ParseConfig(c.Conn.DatabaseURL); err != nil {
		t.Fatalf("parseConfig(%q) accepted database URL %q: %v", args, c.Conn.DatabaseURL, err)
	}
	prev := time.Duration(0)
	for n := range 40 {
		d := c.retryDelay(n)
		if d < c.RetryBase || d > c.RetryMax || d < prev {
			t.Fatalf("parseConfig(%q): retryDelay(%d) = %v, want %v..%v and no less than retryDelay(%d) = %v",
				args, n, d, c.RetryBase, c.RetryMax, n-1, prev)
		}
		prev = d
	}
}

// loopback reports whether addr is host:port on a loopback host, which the
// admin server may serve without auth.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	ip, perr := netip.ParseAddr(host)
	return err == nil && (strings.EqualFold(host, "localhost") || perr == nil && ip.Unmap().IsLoopback())
}
