// Command worker is the stockgate server: it applies pending migrations,
// serves the orders queue, sweeps expired holds and exposes the admin HTTP
// endpoints, until SIGINT or SIGTERM, then drains gracefully.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/stockgate/stockgate/internal/admin"
	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := command(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is the worker as main runs it, returning the exit status: every
// setting is checked (parseConfig) before run connects or migrates.
func command(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 2
	}
	if err := run(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "worker: %v\n", err)
		return 1
	}
	return 0
}

// Config is everything the worker reads from flags and the environment.
type Config struct {
	Conn               config.Conn
	Concurrency        int
	DequeueLoops       int
	AdminAddr          string
	AdminUser          string
	AdminPassword      string // from ADMIN_PASSWORD only: flags show up in ps
	MonitoringWritable bool
	Profiling          bool
	ShutdownTimeout    time.Duration
	HoldTTL            time.Duration
	HandlerTimeout     time.Duration
	MaxHold            time.Duration
	SweepInterval      time.Duration
	FullPassInterval   time.Duration
	RateLimit          int
	RateWindow         time.Duration
	RetryBase          time.Duration
	RetryMax           time.Duration
	PollInterval       time.Duration
	QueueShards        int
	WaitReplicas       int
	WaitTimeout        time.Duration
	FailoverCheck      time.Duration
	LogLevel           string
}

const usage = `worker serves stockgate's order queues: "orders", or with
--queue-shards N every one of "orders-0" … "orders-N-1".

It applies pending migrations (under an advisory lock, so several workers may
start at once), then processes order:place, order:confirm and order:cancel
tasks, sweeps expired holds and checkouts and
serves /healthz, /readyz, /metrics and /monitoring/ on the admin address,
until SIGINT or SIGTERM, when it stops taking tasks and drains.

Usage:
  worker [--concurrency N] [--admin-addr HOST:PORT] [flags]

Every flag also reads an environment variable, shown in brackets; the flag
wins. Basic auth for the admin endpoints comes from ADMIN_USER and
ADMIN_PASSWORD; a non-loopback --admin-addr needs them.

Flags:
`

func parseConfig(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	c.Conn.Register(fs)
	var env config.EnvValues
	envInt, envDur := env.Int, env.Duration
	fs.IntVar(&c.Concurrency, "concurrency", envInt("CONCURRENCY", worker.DefaultConcurrency), "orders processed at once [CONCURRENCY]")
	fs.IntVar(&c.DequeueLoops, "dequeue-loops", envInt("DEQUEUE_LOOPS", worker.DefaultDequeueLoops),
		"Asynq servers in this process while orders arrive, taking tasks in parallel and sharing --concurrency (one alone waits a Redis round trip per task); all but one stop after 30s without an order [DEQUEUE_LOOPS]")
	fs.StringVar(&c.AdminAddr, "admin-addr", config.Env("ADMIN_ADDR", "127.0.0.1:8080"),
		"admin HTTP address for /healthz, /readyz, /metrics, /monitoring/ [ADMIN_ADDR]")
	fs.BoolVar(&c.MonitoringWritable, "monitoring-writable", os.Getenv("MONITORING_WRITABLE") == "true",
		"let /monitoring/ delete, retry and archive tasks (read-only otherwise) [MONITORING_WRITABLE]")
	fs.BoolVar(&c.Profiling, "pprof", os.Getenv("PPROF") == "true",
		"serve Go profiles at /debug/pprof/ on the admin address [PPROF]")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", envDur("SHUTDOWN_TIMEOUT", 20*time.Second),
		"on SIGTERM, how long running orders may finish before their tasks are handed back to the queue [SHUTDOWN_TIMEOUT]")
	fs.DurationVar(&c.HoldTTL, "hold-ttl", envDur("HOLD_TTL", 5*time.Minute),
		"how long an undecided reservation lives before the sweeper expires it [HOLD_TTL]")
	fs.DurationVar(&c.HandlerTimeout, "handler-timeout", envDur("HANDLER_TIMEOUT", 30*time.Second),
		"time limit for one processing attempt [HANDLER_TIMEOUT]")
	fs.DurationVar(&c.MaxHold, "max-hold", envDur("MAX_HOLD", orders.DefaultMaxHold),
		"the longest checkout hold an order may ask for (its \"hold\"); one asking for more is rejected [MAX_HOLD]")
	fs.DurationVar(&c.SweepInterval, "sweep-interval", envDur("SWEEP_INTERVAL", 10*time.Second),
		"how often the hold sweeper runs (one worker's, the holder of a lease in Redis) [SWEEP_INTERVAL]")
	fs.DurationVar(&c.FullPassInterval, "sweep-full-interval", envDur("SWEEP_FULL_INTERVAL", worker.DefaultFullPassInterval),
		"how often, at most, the sweeper starts a full pass over Redis's keys for open holds its index lacks; a pass takes 100,000 keys per sweep [SWEEP_FULL_INTERVAL]")
	fs.IntVar(&c.RateLimit, "rate-limit", envInt("RATE_LIMIT", 0), "orders one customer may place per --rate-window; 0 is off [RATE_LIMIT]")
	fs.DurationVar(&c.RateWindow, "rate-window", envDur("RATE_WINDOW", time.Minute), "the rate limit's window [RATE_WINDOW]")
	fs.DurationVar(&c.RetryBase, "retry-base", envDur("RETRY_BASE", time.Second),
		"first retry delay after an infrastructure error; doubles per attempt [RETRY_BASE]")
	fs.DurationVar(&c.RetryMax, "retry-max", envDur("RETRY_MAX", time.Minute), "longest retry delay [RETRY_MAX]")
	fs.DurationVar(&c.PollInterval, "poll-interval", envDur("POLL_INTERVAL", worker.DefaultPollInterval),
		"how long an idle worker waits before looking for new orders again; while orders arrive, the other dequeue loops look every 5ms [POLL_INTERVAL]")
	config.RegisterQueueShards(fs, &env, &c.QueueShards)
	registerFailover(fs, &env, &c)
	fs.StringVar(&c.LogLevel, "log-level", config.Env("LOG_LEVEL", "info"), "debug, info, warn or error [LOG_LEVEL]")
	if err := env.Err(); err != nil {
		return c, err
	}
	pos, err := config.Parse(fs, args)
	if err != nil {
		return c, err
	}
	if len(pos) > 0 {
		return c, fmt.Errorf("unexpected argument %q (see worker -h)", pos[0])
	}
	c.AdminUser = os.Getenv("ADMIN_USER")
	c.AdminPassword = os.Getenv("ADMIN_PASSWORD")
	return c, c.validate()
}

func (c Config) validate() error {
	switch {
	case c.Concurrency < 1 || c.Concurrency > 10000:
		return fmt.Errorf("--concurrency %d must be 1..10000", c.Concurrency)
	case c.DequeueLoops < 1 || c.DequeueLoops > c.Concurrency || c.DequeueLoops > 64:
		return fmt.Errorf("--dequeue-loops %d must be 1..64 and at most --concurrency (%d)", c.DequeueLoops, c.Concurrency)
	case c.ShutdownTimeout <= 0:
		return errors.New("--shutdown-timeout must be positive")
	case c.HandlerTimeout <= 0:
		return errors.New("--handler-timeout must be positive")
	case c.HoldTTL/2 < c.HandlerTimeout: // HoldTTL < 2*HandlerTimeout, which could overflow
		return fmt.Errorf("--hold-ttl %v must be at least twice --handler-timeout %v, or the sweeper could expire orders still in progress", c.HoldTTL, c.HandlerTimeout)
	case c.MaxHold < orders.MinHold || c.MaxHold > orders.MaxHoldLimit:
		return fmt.Errorf("--max-hold %v must be from %v to %v", c.MaxHold, orders.MinHold, orders.MaxHoldLimit)
	case c.SweepInterval <= 0 || c.SweepInterval > time.Hour:
		// The sweeper's lease lives three sweeps.
		return errors.New("--sweep-interval must be positive and at most 1h")
	case c.FullPassInterval <= 0:
		return errors.New("--sweep-full-interval must be positive")
	case c.RateLimit < 0:
		return errors.New("--rate-limit must be >= 0")
	case c.RateLimit > 0 && c.RateWindow < time.Millisecond:
		return fmt.Errorf("--rate-window %v must be at least 1ms when --rate-limit is on", c.RateWindow)
	case c.PollInterval < time.Millisecond || c.PollInterval > time.Minute:
		return errors.New("--poll-interval must be between 1ms and 1m")
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return errors.New("--retry-base must be positive and at most --retry-max")
	case c.WaitReplicas < 0 || c.WaitReplicas > 16:
		return fmt.Errorf("--redis-wait-replicas %d must be 0..16", c.WaitReplicas)
	case c.WaitReplicas > 0 && (c.WaitTimeout < time.Millisecond || c.WaitTimeout > c.HandlerTimeout/2):
		return fmt.Errorf("--redis-wait-timeout %v must be at least 1ms and at most half of --handler-timeout %v", c.WaitTimeout, c.HandlerTimeout)
	case c.FailoverCheck < 0:
		return errors.New("--failover-check must be >= 0")
	case orders.CheckQueueShards(c.QueueShards) != nil:
		return fmt.Errorf("--queue-shards %d must be 1..%d", c.QueueShards, orders.MaxQueueShards)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	// The admin server and the URLs are checked here, not where run uses
	// them: run migrates first, and a bad setting must change nothing.
	if err := (admin.Config{Addr: c.AdminAddr, User: c.AdminUser, Password: c.AdminPassword}).Validate(); err != nil {
		return err
	}
	return c.Conn.Validate()
}

// logAttrs is the config as logged at start: URLs redacted, no password.
func (c Config) logAttrs() []any {
	return []any{
		"redis_url", config.Redact(c.Conn.RedisURL), "redis_cluster", c.Conn.RedisCluster,
		"database_url", config.Redact(c.Conn.DatabaseURL),
		"concurrency", c.Concurrency, "dequeue_loops", c.DequeueLoops, "admin_addr", c.AdminAddr, "admin_auth", c.AdminUser != "",
		"hold_ttl", c.HoldTTL.String(), "handler_timeout", c.HandlerTimeout.String(), "max_hold", c.MaxHold.String(),
		"shutdown_timeout", c.ShutdownTimeout.String(), "sweep_interval", c.SweepInterval.String(),
		"sweep_full_interval", c.FullPassInterval.String(),
		"rate_limit", c.RateLimit, "retry_base", c.RetryBase.String(), "retry_max", c.RetryMax.String(), "poll_interval", c.PollInterval.String(),
		"queue_shards", c.QueueShards,
		"redis_wait_replicas", c.WaitReplicas, "redis_wait_timeout", c.WaitTimeout.String(), "failover_check", c.FailoverCheck.String(),
	}
}

// retryDelay is exponential backoff from RetryBase, capped at RetryMax.
func (c Config) retryDelay(n int) time.Duration {
	d := c.RetryBase
	for range min(n, 30) {
		if d > c.RetryMax/2 { // d*2 > RetryMax, without overflowing
			return c.RetryMax
		}
		d *= 2
	}
	return d
}

func levelOf(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(strings.ToLower(s)))
	return l
}
