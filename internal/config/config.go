// Package config reads the settings the stockgate commands share: the
// Redis and Postgres URLs, from the environment and then from flags (flags
// win). It owns URL parsing and secret redaction for those two settings; it
// must not open connections or know about orders.
package config

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/telemetry"
)

// Defaults match `make run` on a machine with local services.
const (
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/stockgate?sslmode=disable"
)

// Conn holds the connection settings every command needs.
type Conn struct {
	RedisURL    string
	DatabaseURL string
	// RedisCluster reads RedisURL as the seed nodes of a Redis Cluster
	// (ParseRedis).
	RedisCluster bool
}

// Validate parses both URLs, so that a command can refuse a bad one before
// it connects to anything: each command checks every setting, the ones its
// subcommand will not use too.
func (c Conn) Validate() error {
	// Register reads REDIS_CLUSTER leniently, for its default; a value that
	// is neither true nor false is refused here, not taken as false.
	if v := os.Getenv("REDIS_CLUSTER"); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("REDIS_CLUSTER=%q: want true or false", escapeControl(v))
		}
	}
	if _, err := c.Redis(); err != nil {
		return err
	}
	_, err := PostgresConfig(c.DatabaseURL)
	return err
}

// Redis parses RedisURL in the mode RedisCluster says.
func (c Conn) Redis() (Redis, error) { return ParseRedis(c.RedisURL, c.RedisCluster) }

// Register adds -redis-url, -redis-cluster and -database-url to fs,
// defaulting to the REDIS_URL, REDIS_CLUSTER and DATABASE_URL environment
// variables. -h shows the defaults with their passwords redacted.
func (c *Conn) Register(fs *flag.FlagSet) {
	c.RedisURL = Env("REDIS_URL", DefaultRedisURL)
	c.DatabaseURL = Env("DATABASE_URL", DefaultDatabaseURL)
	c.RedisCluster, _ = strconv.ParseBool(os.Getenv("REDIS_CLUSTER"))
	fs.Var(secretURL{&c.RedisURL}, "redis-url",
		"Redis `URL`, redis:// or rediss:// with the DB number; with --redis-cluster a cluster's seed nodes, "+
			"redis://[user:password@]host:port?addr=host2:port2&addr=host3:port3 [REDIS_URL]")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", c.RedisCluster,
		"Redis is a Redis Cluster: --redis-url names one or more of its nodes, DB 0 only [REDIS_CLUSTER]")
	fs.Var(secretURL{&c.DatabaseURL}, "database-url", "Postgres `URL` [DATABASE_URL]")
}

// RegisterQueueShards adds --queue-shards to fs, defaulting to QUEUE_SHARDS
// (1 when unset); a malformed QUEUE_SHARDS is kept in env, for env.Err. The
// producers and the workers must agree on it: see orders.QueueFor.
func RegisterQueueShards(fs *flag.FlagSet, env *EnvValues, p *int) {
	fs.IntVar(p, "queue-shards", env.Int("QUEUE_SHARDS", 1),
		"order queues: 1 is the queue orders, N > 1 the queues orders-0 … orders-N-1, an order's chosen by a hash of its id; producers and workers must agree [QUEUE_SHARDS]")
}

// secretURL is a flag whose printed value (in -h) has its password hidden.
type secretURL struct{ p *string }

func (u secretURL) String() string {
	if u.p == nil {
		return ""
	}
	return Redact(*u.p)
}

func (u secretURL) Set(s string) error { *u.p = s; return nil }

// Parse parses args with fs, allowing flags after positional arguments
// (stockctl show SKU-1 --json) and keeping the flag package's own output
// quiet: a mistake comes back as one error line marked ErrUsage, and -h as
// flag.ErrHelp after the usage was printed.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	return parse(fs, args, true)
}

// Subcommand parses the flags of "prog name", defined by define (nil for
// none), with Parse; -h prints "Usage: prog [flags] synopsis" and the flags.
func Subcommand(prog, name, synopsis string, stderr io.Writer, args []string, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(prog+" "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if define != nil {
		define(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [flags] %s\n", prog, synopsis)
		fs.PrintDefaults()
	}
	return Parse(fs, args)
}

// ParseLeading is Parse for a command's own flags, which come before its
// subcommand: parsing stops at the first positional argument.
func ParseLeading(fs *flag.FlagSet, args []string) ([]string, error) {
	return parse(fs, args, false)
}

func parse(fs *flag.FlagSet, args []string, interleave bool) ([]string, error) {
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer func() { fs.SetOutput(out); fs.Usage = usage }()

	var flags, positional []string
	if interleave {
		flags, positional = splitArgs(fs, args)
	} else {
		flags = args
	}
	if err := fs.Parse(flags); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(out)
			usage()
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s (see -h)", ErrUsage, escapeControl(err.Error()))
	}
	return append(positional, fs.Args()...), nil
}

// escapeControl writes control characters as Go escapes (\n, \x1b): the
// flag package quotes a bad flag as typed, and an error must stay one line
// that cannot move the terminal's cursor.
func escapeControl(s string) string {
	if !strings.ContainsFunc(s, unicode.IsControl) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) {
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// splitArgs separates flags (with their values) from positional arguments
// anywhere on the line. A negative number is an argument, not a flag, so
// that "stockctl set SKU -5" gets a clear reason instead of "no such flag".
func splitArgs(fs *flag.FlagSet, args []string) (flags, positional []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(positional, args[i+1:]...)
		}
		if len(a) < 2 || a[0] != '-' || (a[1] >= '0' && a[1] <= '9') {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		f := fs.Lookup(name)
		if f == nil {
			continue // fs.Parse reports it
		}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, positional
}

// Env returns the environment variable key, or def when it is unset or empty.
func Env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// EnvInt is Env for integers; a malformed value is reported, not ignored.
func EnvInt(key string, def int) (int, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not an integer", key, v)
	}
	return n, nil
}

// EnvDuration is Env for durations such as "30s".
func EnvDuration(key string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a duration like 30s", key, v)
	}
	return d, nil
}

// EnvValues reads typed environment variables for a command's flag
// defaults and keeps every malformed one, so that a command reports them
// all at once, in one line (Err), instead of the first alone.
type EnvValues struct{ errs []error }

// Int is EnvInt, remembering a malformed value.
func (e *EnvValues) Int(key string, def int) int {
	v, err := EnvInt(key, def)
	e.errs = append(e.errs, err)
	return v
}

// Duration is EnvDuration, remembering a malformed value.
func (e *EnvValues) Duration(key string, def time.Duration) time.Duration {
	v, err := EnvDuration(key, def)
	e.errs = append(e.errs, err)
	return v
}

// Err is every malformed value, joined on one line; nil when there is none.
func (e *EnvValues) Err() error {
	if err := errors.Join(e.errs...); err != nil {
		return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return nil
}

// RedisOptions parses a redis:// or rediss:// URL. rediss:// turns TLS on,
// verifying the server against the system roots (or SSL_CERT_FILE).
func RedisOptions(rawURL string) (*redis.Options, error) {
	u, err := checkRedisURL(rawURL, "redis://[user:password@]host:port/db or rediss://")
	if err != nil {
		return nil, err
	}
	if u.Query().Has("addr") {
		return nil, errors.New(escapeControl(fmt.Sprintf("redis url %s names cluster seeds (addr=), which only cluster mode reads: set --redis-cluster or REDIS_CLUSTER=true",
			Redact(rawURL))))
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		// go-redis errors can quote the URL; keep the password out of them.
		msg := strings.ReplaceAll(err.Error(), rawURL, Redact(rawURL))
		return nil, errors.New(escapeControl("redis url " + Redact(rawURL) + ": " + msg))
	}
	if opt.DB < 0 {
		// go-redis only sends SELECT for a DB above 0: "/-1" would quietly be DB 0.
		return nil, errors.New(escapeControl(fmt.Sprintf("redis url %s: db %d must be >= 0", Redact(rawURL), opt.DB)))
	}
	if opt.TLSConfig != nil && opt.TLSConfig.MinVersion == 0 {
		opt.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return opt, nil
}

// Redis is a parsed REDIS_URL: the options of one node, or (cluster mode)
// of a Redis Cluster. Exactly one of Node and Cluster is set.
type Redis struct {
	Node    *redis.Options
	Cluster *redis.ClusterOptions
}

// ParseRedis parses rawURL as one node's URL (RedisOptions) or, when
// cluster is set, as a cluster's seeds (RedisClusterOptions). Each mode
// refuses the other's URL with a line saying which setting to change.
func ParseRedis(rawURL string, cluster bool) (Redis, error) {
	if cluster {
		o, err := RedisClusterOptions(rawURL)
		return Redis{Cluster: o}, err
	}
	o, err := RedisOptions(rawURL)
	return Redis{Node: o}, err
}

// WithPoolSize returns r with its pool size set to n connections (per
// node, for a cluster); 0 keeps go-redis's default.
func (r Redis) WithPoolSize(n int) Redis {
	if r.Node != nil {
		o := *r.Node
		o.PoolSize = n
		r.Node = &o
	}
	if r.Cluster != nil {
		o := *r.Cluster
		o.PoolSize = n
		r.Cluster = &o
	}
	return r
}

// NewClient builds a client of r's kind; it does not connect yet.
func (r Redis) NewClient() redis.UniversalClient {
	if r.Cluster != nil {
		return redis.NewClusterClient(r.Cluster)
	}
	return redis.NewClient(r.Node)
}

// AsynqOpt is r for Asynq: a RedisClusterClientOpt in cluster mode.
func (r Redis) AsynqOpt() asynq.RedisConnOpt {
	if c := r.Cluster; c != nil {
		return asynq.RedisClusterClientOpt{
			Addrs: c.Addrs, MaxRedirects: c.MaxRedirects, Username: c.Username, Password: c.Password,
			DialTimeout: c.DialTimeout, ReadTimeout: c.ReadTimeout, WriteTimeout: c.WriteTimeout, TLSConfig: c.TLSConfig,
		}
	}
	return AsynqRedisOpt(r.Node)
}

// RedisClusterOptions parses a Redis Cluster's seed nodes in go-redis's
// cluster URL form, redis://[user:password@]host:port?addr=host2:port2&…
// (rediss:// for TLS); one seed is enough, go-redis finds the rest. A
// cluster has database 0 alone, so a URL naming another is refused rather
// than quietly served from 0.
func RedisClusterOptions(rawURL string) (*redis.ClusterOptions, error) {
	u, err := checkRedisURL(rawURL, "redis://[user:password@]host:port?addr=host2:port2 or rediss://")
	if err != nil {
		return nil, err
	}
	if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
		return nil, errors.New(escapeControl(fmt.Sprintf("redis url %s: a Redis Cluster has database 0 only, not %q: drop it from the URL",
			Redact(rawURL), db)))
	}
	opt, err := redis.ParseClusterURL(rawURL)
	if err != nil {
		msg := strings.ReplaceAll(err.Error(), rawURL, Redact(rawURL))
		return nil, errors.New(escapeControl("redis url " + Redact(rawURL) + ": " + msg))
	}
	if opt.TLSConfig != nil && opt.TLSConfig.MinVersion == 0 {
		opt.TLSConfig.MinVersion = tls.VersionTLS12
	}
	return opt, nil
}

// checkRedisURL is what both modes check before go-redis parses a URL.
func checkRedisURL(rawURL, want string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		return nil, fmt.Errorf("redis url %s: want %s", escapeControl(Redact(rawURL)), want)
	}
	// An '@' past the user info is a password with an unescaped '/', '?' or
	// '#' that url.Parse cut short: go-redis would quote its tail as a DB
	// number or an option. Print nothing of such a URL.
	if strings.Contains(u.Opaque+u.EscapedPath()+u.RawQuery+u.EscapedFragment(), "@") {
		return nil, errors.New("redis url (not shown) has an '@' after its user info: escape '/', '?', '#' and '@' in the password as %2F, %3F, %23 and %40")
	}
	return u, nil
}

// PostgresConfig parses a Postgres URL or key=value DSN for pgxpool. pgx
// quotes the DSN in some of its parse errors, so the error names only the
// redacted URL.
func PostgresConfig(rawURL string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(rawURL)
	if err != nil {
		return nil, errors.New(escapeControl("database url " + Redact(rawURL) + " is not a valid Postgres URL"))
	}
	return cfg, nil
}

// AsynqRedisOpt builds Asynq's connection options from go-redis options, so
// Asynq gets the same user, password, DB and TLS as the stock client
// (asynq.ParseRedisURI drops the ACL user name).
func AsynqRedisOpt(o *redis.Options) asynq.RedisClientOpt {
	return asynq.RedisClientOpt{
		Network:   o.Network,
		Addr:      o.Addr,
		Username:  o.Username,
		Password:  o.Password,
		DB:        o.DB,
		TLSConfig: o.TLSConfig,
		PoolSize:  o.PoolSize,
	}
}

// IsLoopback reports whether a listen address's host keeps a server off
// the network. It is strict: an empty host means every interface.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// ErrUsage marks errors caused by how a command was called; commands print
// them with a hint to run -h and exit with status 2.
var ErrUsage = errors.New("usage")

// Redact hides the password in a URL or key=value DSN so it can be logged.
// It is telemetry.RedactURL, named here for the commands that print URLs.
func Redact(s string) string { return telemetry.RedactURL(s) }
