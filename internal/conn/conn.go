// Package conn opens the Redis and Postgres connections every stockgate
// command needs, checks they answer, and words the failure so an operator
// knows which service and which URL (password redacted) to look at. It must
// not know about stock or orders.
package conn

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/config"
)

const pingTimeout = 5 * time.Second

// go-redis prints its dial retries straight to stderr, which would turn a
// command's one-line error into a screenful. Route them through slog at
// debug level instead; the error itself still comes back to the caller.
func init() { redis.SetLogger(slogPrintf{}) }

type slogPrintf struct{}

func (slogPrintf) Printf(ctx context.Context, format string, v ...any) {
	slog.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// Redis opens a client on rawURL and pings it. A wrong password or an ACL
// refusal comes back as a one-line error naming the redacted URL.
func Redis(ctx context.Context, rawURL string) (*redis.Client, error) {
	opt, err := config.RedisOptions(rawURL)
	if err != nil {
		return nil, err
	}
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis at %s does not answer: %s", config.Redact(rawURL), oneLine(err))
	}
	return c, nil
}

// Postgres opens a pool on rawURL and pings it. tune, if not nil, may adjust
// the pool's config (for example to add a tracer) before it connects.
func Postgres(ctx context.Context, rawURL string, tune func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	cfg, err := config.PostgresConfig(rawURL)
	if err != nil {
		return nil, err
	}
	if tune != nil {
		tune(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres at %s: %s", config.Redact(rawURL), oneLine(err))
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres at %s does not answer: %s", config.Redact(rawURL), oneLine(err))
	}
	return pool, nil
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}
