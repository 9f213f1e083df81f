package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/conn"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/migrations"
)

// run wires every dependency by hand, in one visible place, and blocks
// until ctx is cancelled and the drain is over.
func run(ctx context.Context, cfg Config, stdout io.Writer) error {
	log := slog.New(slog.NewJSONHandler(stdout, &slog.HandlerOptions{Level: levelOf(cfg.LogLevel)}))
	log.Info("worker starting", cfg.logAttrs()...)

	rdb, err := conn.Redis(ctx, cfg.Conn.RedisURL)
	if err != nil {
		return err
	}
	defer rdb.Close()
	checkDurability(ctx, rdb, log)

	pool, err := conn.Postgres(ctx, cfg.Conn.DatabaseURL, func(pc *pgxpool.Config) {
		// pgxpool defaults to max(4, NumCPU) connections, which would make
		// most handlers queue for a connection. pool_max_conns in the URL wins.
		if !strings.Contains(cfg.Conn.DatabaseURL, "pool_max_conns") {
			pc.MaxConns = int32(min(cfg.Concurrency+4, 200))
		}
	})
	if err != nil {
		return err
	}
	defer pool.Close()
	res, err := migrations.Up(ctx, pool)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	log.Info("migrations current", "applied_now", len(res.Applied), "version", res.Version)

	gate := stock.New(rdb, stock.Config{})
	store := orders.NewStore(pool)
	handler, err := orders.NewHandler(gate, store, orders.HandlerConfig{
		HoldTTL: cfg.HoldTTL, HandlerTimeout: cfg.HandlerTimeout,
		RateLimit: cfg.RateLimit, RateWindow: cfg.RateWindow, Logger: log,
	})
	if err != nil {
		return err
	}
	sweeper, err := orders.NewSweeper(gate, store, orders.SweeperConfig{Interval: cfg.SweepInterval, Logger: log})
	if err != nil {
		return err
	}

	ropt, err := config.RedisOptions(cfg.Conn.RedisURL)
	if err != nil {
		return err
	}
	srv := asynq.NewServer(config.AsynqRedisOpt(ropt), asynq.Config{
		Concurrency:     cfg.Concurrency,
		Queues:          map[string]int{orders.Queue: 1},
		ShutdownTimeout: cfg.ShutdownTimeout,
		RetryDelayFunc:  func(n int, _ error, _ *asynq.Task) time.Duration { return cfg.retryDelay(n) },
		Logger:          asynqLogger{log},
		LogLevel:        asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			id, _ := asynq.GetTaskID(ctx)
			n, _ := asynq.GetRetryCount(ctx)
			log.WarnContext(ctx, "order attempt failed", "order_id", id, "attempt", n, "err", err)
		}),
	})
	mux := asynq.NewServeMux()
	mux.Handle(orders.TaskType, handler)
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("start queue server: %w", err)
	}

	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { sweeper.Run(sweepCtx) })
	log.Info("worker ready", "queue", orders.Queue, "concurrency", cfg.Concurrency)

	<-ctx.Done()
	log.Info("worker draining", "shutdown_timeout", cfg.ShutdownTimeout.String())
	// Shutdown stops fetching, waits up to ShutdownTimeout for running
	// handlers, and hands unfinished tasks back to the queue.
	srv.Shutdown()
	stopSweep()
	wg.Wait()
	log.Info("worker stopped")
	return nil
}

// checkDurability warns loudly when Redis can lose stock or queued orders:
// without AOF a restart forgets both, and an evicting policy can drop a
// stock key, which the scripts then read as "not stocked".
func checkDurability(ctx context.Context, rdb *redis.Client, log *slog.Logger) {
	vals, err := rdb.ConfigGet(ctx, "appendonly").Result()
	if err != nil {
		log.Warn("could not check redis durability (CONFIG GET refused?); make sure AOF is on and maxmemory-policy is noeviction", "err", err)
		return
	}
	if vals["appendonly"] != "yes" {
		log.Warn("REDIS DURABILITY: appendonly is off; a Redis restart loses stock counters, holds and queued orders. Run redis with --appendonly yes")
	}
	pol, err := rdb.ConfigGet(ctx, "maxmemory-policy").Result()
	if err == nil && pol["maxmemory-policy"] != "noeviction" {
		log.Warn("REDIS DURABILITY: maxmemory-policy is "+pol["maxmemory-policy"]+"; Redis may evict stock keys and queued orders. Use noeviction",
			"maxmemory_policy", pol["maxmemory-policy"])
	}
}

// asynqLogger sends Asynq's own logs through slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "component", "asynq")
	panic(errors.New(fmt.Sprint(args...)))
}
