package main

import (
	"context"
	"flag"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/catalog"
	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/failover"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/stock"
)

// registerFailover adds the settings of docs/design.md, "Failover": the WAIT
// after each reserve and commit, and the failover watcher.
func registerFailover(fs *flag.FlagSet, env *config.EnvValues, c *Config) {
	fs.IntVar(&c.WaitReplicas, "redis-wait-replicas", env.Int("REDIS_WAIT_REPLICAS", 0),
		"after every reserve and commit, wait until this many replicas of the master that ran it have the write (Redis WAIT) before the order goes on; fewer is an infrastructure error, retried, so a failover cannot lose a hold a confirmed row relies on; 0 is off [REDIS_WAIT_REPLICAS]")
	fs.DurationVar(&c.WaitTimeout, "redis-wait-timeout", env.Duration("REDIS_WAIT_TIMEOUT", stock.DefaultWaitTimeout),
		"the longest one WAIT blocks [REDIS_WAIT_TIMEOUT]")
	fs.DurationVar(&c.FailoverCheck, "failover-check", env.Duration("FAILOVER_CHECK", failover.DefaultInterval),
		"with --redis-cluster, how often to read every master's replication id; a changed one (a promoted replica, a restarted master) fences that master's SKUs and reconciles them from Postgres; 0 is off [FAILOVER_CHECK]")
}

func (c Config) gateConfig() stock.Config {
	return stock.Config{WaitReplicas: c.WaitReplicas, WaitTimeout: c.WaitTimeout}
}

// watchFailover starts the failover watcher under Redis Cluster, on wg
// until ctx ends.
func watchFailover(ctx context.Context, wg *sync.WaitGroup, cfg Config, rdb redis.UniversalClient, gate *stock.Gate,
	store *orderstore.Store, pool *pgxpool.Pool, log *slog.Logger) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok || cfg.FailoverCheck == 0 {
		return
	}
	w, err := failover.New(cc, gate, store, catalog.NewLedger(gate, catalog.New(pool), store), failover.Config{
		Interval: cfg.FailoverCheck,
		Fence:    orderstore.WriteFence(cfg.HandlerTimeout),
		Logger:   log,
		Now:      time.Now,
	})
	if err != nil {
		// Only a non-positive fence, which validate refuses.
		log.Error("failover watcher not started", "err", err)
		return
	}
	wg.Go(func() { w.Run(ctx) })
}
