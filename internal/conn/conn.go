// Package conn opens the Redis and Postgres connections every stockgate
// command needs, checks they answer, and words the failure so an operator
// knows which service and which URL (password redacted) to look at. It must
// not know about stock or orders.
package conn

import (
	"context"
	"errors"
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

// Redis opens a client on rawURL (a ClusterClient when cluster is set) and
// pings it. A wrong password, an ACL refusal or the wrong mode for the
// server comes back as a one-line error naming the redacted URL.
func Redis(ctx context.Context, rawURL string, cluster bool) (redis.UniversalClient, error) {
	r, err := config.ParseRedis(rawURL, cluster)
	if err != nil {
		return nil, err
	}
	return Open(ctx, rawURL, r)
}

// Open is Redis for options already parsed from rawURL (rawURL names the
// server in errors).
func Open(ctx context.Context, rawURL string, r config.Redis) (redis.UniversalClient, error) {
	c := r.NewClient()
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := check(ctx, c, r.Cluster != nil); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis at %s %s", config.Redact(rawURL), err)
	}
	return c, nil
}

// check pings c and makes sure the server runs in the mode the client
// does. A cluster node served as one Redis answers MOVED for the keys of
// other nodes' slots and CROSSSLOT for an order over several slots; one
// Redis served as a cluster has no slots to route by.
func check(ctx context.Context, c redis.UniversalClient, cluster bool) error {
	if err := c.Ping(ctx).Err(); err != nil {
		if cluster && strings.Contains(err.Error(), "cluster support disabled") {
			return errors.New("is not a Redis Cluster node (cluster support disabled): drop --redis-cluster / REDIS_CLUSTER")
		}
		return fmt.Errorf("does not answer: %s", oneLine(err))
	}
	if cluster {
		return nil
	}
	info, err := c.Info(ctx, "cluster").Result()
	if err == nil && strings.Contains(info, "cluster_enabled:1") {
		return errors.New("is a Redis Cluster node: set --redis-cluster or REDIS_CLUSTER=true, and name the nodes as redis://host:port?addr=host2:port2")
	}
	return nil
}

// ForEachMaster runs fn on every master of a cluster, or on the one server
// of a single-node client, and joins the errors.
func ForEachMaster(ctx context.Context, c redis.UniversalClient, fn func(ctx context.Context, node *redis.Client) error) error {
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	}
	return fmt.Errorf("redis client %T is neither one node nor a cluster", c)
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
