package httpapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/stockgate/stockgate"
	"github.com/stockgate/stockgate/internal/config"
)

// DefaultAddr keeps the API off the network unless asked.
const DefaultAddr = "127.0.0.1:8090"

// Defaults for Config's timeouts and limits. WriteTimeout is above MaxWait,
// so a long-poll always gets its answer out.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = MaxWait + 10*time.Second
	DefaultIdleTimeout       = time.Minute
	DefaultMaxHeaderBytes    = 16 << 10
	// MaxWait is the longest ?wait= a request may ask for.
	MaxWait = 30 * time.Second
	// DefaultMoveWait is how long a confirm or a cancel waits for its move.
	DefaultMoveWait = 10 * time.Second
)

// ErrPublicWithoutKeys is what New says about a non-loopback address with
// no API keys: anyone who reaches it could place orders.
var ErrPublicWithoutKeys = errors.New("refusing to listen on a non-loopback address without API keys: set API_KEYS_FILE, or listen on 127.0.0.1")

// Orders is what the API needs from the stockgate client (*stockgate.Client).
type Orders interface {
	Submit(ctx context.Context, o stockgate.Order) error
	Status(ctx context.Context, orderID string) (stockgate.Status, error)
	Wait(ctx context.Context, orderID string) (stockgate.Status, error)
	Confirm(ctx context.Context, orderID string) (stockgate.Status, error)
	Cancel(ctx context.Context, orderID, reason string) (stockgate.Status, error)
	Stock(ctx context.Context, sku string) (stockgate.Stock, error)
	Ping(ctx context.Context) error
}

// Config configures a Server.
type Config struct {
	// Addr is host:port; DefaultAddr when empty. Port 0 picks a free port
	// (see Server.Addr).
	Addr string
	// Keys turn on bearer auth for every route but /healthz, /readyz and
	// /v1/openapi.yaml. Without keys the server serves everyone, and so
	// only on a loopback address.
	Keys []Key
	// RateLimit is the requests per second one key may make to /v1/ (and
	// /metrics), with bursts of RateBurst (default: one second's worth), per
	// server process. 0 is off.
	RateLimit float64
	RateBurst int
	// Timeouts and the header limit of the http.Server; the defaults above
	// when zero.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
	// MoveWait is how long a confirm or a cancel waits for a worker to move
	// the order before answering 202; DefaultMoveWait when zero, at most
	// MaxWait.
	MoveWait time.Duration
	// Metrics serves /metrics; without it /metrics is 404.
	Metrics http.Handler
	// Logger gets one line per failed request and the server's errors;
	// none when nil.
	Logger *slog.Logger
}

func (c *Config) validate() error {
	c.Addr = cmp.Or(c.Addr, DefaultAddr)
	host, _, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fmt.Errorf("api address %q: want host:port such as %s", c.Addr, DefaultAddr)
	}
	if len(c.Keys) == 0 && !config.IsLoopback(host) {
		return fmt.Errorf("api address %s: %w", c.Addr, ErrPublicWithoutKeys)
	}
	switch {
	case c.RateLimit < 0 || c.RateLimit != c.RateLimit:
		return fmt.Errorf("api rate limit %v must be >= 0 requests per second", c.RateLimit)
	case c.RateBurst < 0:
		return fmt.Errorf("api rate burst %d must be >= 0", c.RateBurst)
	case c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.MaxHeaderBytes < 0:
		return errors.New("api timeouts and header limit must not be negative")
	case c.MoveWait < 0 || c.MoveWait > MaxWait:
		return fmt.Errorf("api move wait %v must be from 0 to %v", c.MoveWait, MaxWait)
	}
	c.MoveWait = cmp.Or(c.MoveWait, DefaultMoveWait)
	c.RateBurst = cmp.Or(c.RateBurst, max(1, int(c.RateLimit)))
	c.ReadHeaderTimeout = cmp.Or(c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	c.ReadTimeout = cmp.Or(c.ReadTimeout, DefaultReadTimeout)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.IdleTimeout = cmp.Or(c.IdleTimeout, DefaultIdleTimeout)
	c.MaxHeaderBytes = cmp.Or(c.MaxHeaderBytes, DefaultMaxHeaderBytes)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
