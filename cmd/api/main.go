// Command api is the storefront HTTP API: a stateless server beside the
// workers that places orders, tells their outcome (long-polling on one
// shared poller) and shows the stock, for storefronts in any language.
// api/openapi.yaml describes it; internal/httpapi is the server.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/httpapi"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/telemetry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseConfig(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "api: %v\n", err)
		os.Exit(2)
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "api: %v\n", err)
		os.Exit(1)
	}
}

// Config is everything the API reads from flags and the environment.
type Config struct {
	Conn            config.Conn
	Addr            string
	KeysFile        string
	Keys            []httpapi.Key // read from KeysFile
	RateLimit       float64
	RateBurst       int
	PollInterval    time.Duration
	MaxHold         time.Duration
	ShutdownTimeout time.Duration
	QueueShards     int
	LogLevel        string
}

const usage = `api serves stockgate's storefront HTTP API.

  POST /v1/orders             place an order (the order:place payload; "hold" for a checkout)
  GET  /v1/orders/{id}        its state; ?wait=10s holds until it is decided (or held)
  POST /v1/orders/{id}/confirm  confirm a checkout: its held units are sold
  POST /v1/orders/{id}/cancel   cancel a checkout, or a sale after it; {"reason": "..."} optional
  GET  /v1/stock/{sku}        available, held, sold
  GET  /v1/openapi.yaml       the OpenAPI 3.1 description
  /healthz /readyz /metrics

API keys come from API_KEYS_FILE, one "name:key" (or "name:sha256:HEX") per
line; requests then send "Authorization: Bearer KEY". Without keys the API
listens on loopback only.

Usage:
  api [--addr HOST:PORT] [flags]

Every flag also reads an environment variable, shown in brackets; the flag
wins.

Flags:
`

func parseConfig(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	c.Conn.Register(fs)
	var env config.EnvValues
	envInt, envDur := env.Int, env.Duration
	fs.StringVar(&c.Addr, "addr", config.Env("API_ADDR", httpapi.DefaultAddr), "listen `address` [API_ADDR]")
	fs.StringVar(&c.KeysFile, "keys-file", config.Env("API_KEYS_FILE", ""), "API keys, one name:key or name:sha256:HEX per line [API_KEYS_FILE]")
	fs.Float64Var(&c.RateLimit, "rate-limit", float64(envInt("API_RATE_LIMIT", 0)),
		"requests per second one key may make, per api process; 0 is off [API_RATE_LIMIT]")
	fs.IntVar(&c.RateBurst, "rate-burst", envInt("API_RATE_BURST", 0), "burst above --rate-limit (default: one second's worth) [API_RATE_BURST]")
	fs.DurationVar(&c.PollInterval, "poll-interval", envDur("API_POLL_INTERVAL", stockgate.DefaultPollInterval),
		"how often the shared poller reads the rows of the orders long-polls wait for [API_POLL_INTERVAL]")
	fs.DurationVar(&c.MaxHold, "max-hold", envDur("MAX_HOLD", stockgate.DefaultMaxHold),
		"the longest checkout hold an order may ask for, the workers' --max-hold: longer is refused with 400 [MAX_HOLD]")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", envDur("SHUTDOWN_TIMEOUT", 10*time.Second),
		"on SIGTERM, how long requests in flight may finish; long-polls answer at once [SHUTDOWN_TIMEOUT]")
	config.RegisterQueueShards(fs, &env, &c.QueueShards)
	fs.StringVar(&c.LogLevel, "log-level", config.Env("LOG_LEVEL", "info"), "debug, info, warn or error [LOG_LEVEL]")
	if err := env.Err(); err != nil {
		return c, err
	}
	pos, err := config.Parse(fs, args)
	if err != nil {
		return c, err
	}
	if len(pos) > 0 {
		return c, fmt.Errorf("unexpected argument %q (see api -h)", pos[0])
	}
	if c.KeysFile != "" {
		if c.Keys, err = httpapi.LoadKeys(c.KeysFile); err != nil {
			return c, err
		}
	}
	return c, c.validate()
}

func (c Config) validate() error {
	host, _, err := net.SplitHostPort(c.Addr)
	switch {
	case err != nil:
		return fmt.Errorf("--addr %q: want host:port such as %s", c.Addr, httpapi.DefaultAddr)
	case len(c.Keys) == 0 && !config.IsLoopback(host):
		return fmt.Errorf("--addr %s: %w", c.Addr, httpapi.ErrPublicWithoutKeys)
	case c.RateLimit < 0 || c.RateBurst < 0:
		return errors.New("--rate-limit and --rate-burst must be >= 0")
	case c.PollInterval < time.Millisecond || c.PollInterval > 10*time.Second:
		return errors.New("--poll-interval must be between 1ms and 10s")
	case c.ShutdownTimeout <= 0:
		return errors.New("--shutdown-timeout must be positive")
	case orders.CheckQueueShards(c.QueueShards) != nil:
		return fmt.Errorf("--queue-shards %d must be 1..%d", c.QueueShards, orders.MaxQueueShards)
	case c.MaxHold < time.Second || c.MaxHold > 24*time.Hour:
		return fmt.Errorf("--max-hold %v must be from 1s to 24h", c.MaxHold)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel)
	}
	return c.Conn.Validate()
}

// run wires the client and the server, serves until ctx ends, then drains.
func run(ctx context.Context, cfg Config, stdout io.Writer) error {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	log := telemetry.NewLogger(stdout, lvl)
	slog.SetDefault(log)
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "stockgate-api", Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	// Key names only: their secrets never reach a log.
	log.Info("api starting", "addr", cfg.Addr, "redis_url", config.Redact(cfg.Conn.RedisURL), "redis_cluster", cfg.Conn.RedisCluster, "queue_shards", cfg.QueueShards,
		"database_url", config.Redact(cfg.Conn.DatabaseURL), "keys", httpapi.KeyNames(cfg.Keys),
		"rate_limit", cfg.RateLimit, "poll_interval", cfg.PollInterval.String(), "traces_exporter", tel.Exporter())

	client, err := stockgate.NewClient(ctx, stockgate.Config{
		RedisURL: cfg.Conn.RedisURL, RedisCluster: cfg.Conn.RedisCluster, DatabaseURL: cfg.Conn.DatabaseURL,
		PollInterval: cfg.PollInterval, QueueShards: cfg.QueueShards, MaxHold: cfg.MaxHold,
	})
	if err != nil {
		return err
	}
	defer client.Close()
	srv, err := httpapi.New(client, httpapi.Config{
		Addr: cfg.Addr, Keys: cfg.Keys, RateLimit: cfg.RateLimit, RateBurst: cfg.RateBurst,
		Metrics: tel.MetricsHandler(), Logger: log,
	})
	if err != nil {
		return err
	}
	if err := srv.Start(); err != nil {
		return err
	}
	log.Info("api ready", "addr", srv.Addr())

	<-ctx.Done()
	log.Info("api draining", "shutdown_timeout", cfg.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	log.Info("api stopped")
	return nil
}
