package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/admin"
	"github.com/stockgate/stockgate/internal/catalog"
	"github.com/stockgate/stockgate/internal/conn"
	"github.com/stockgate/stockgate/internal/lease"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/orderstore"
	"github.com/stockgate/stockgate/internal/ratelimit"
	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/telemetry"
	"github.com/stockgate/stockgate/internal/worker"
	"github.com/stockgate/stockgate/migrations"
)

// run wires every dependency by hand, in one visible place, and blocks
// until ctx is cancelled and the drain is over.
func run(ctx context.Context, cfg Config, stdout io.Writer) error {
	log := telemetry.NewLogger(stdout, levelOf(cfg.LogLevel))
	slog.SetDefault(log)
	tel, err := telemetry.Setup(ctx, telemetry.Config{ServiceName: "stockgate-worker", Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	log.Info("worker starting", append(cfg.logAttrs(), "traces_exporter", tel.Exporter())...)

	// The stock client alone is traced: Asynq's own client polls Redis all
	// the time and would bury the order spans. Arguments stay out of spans.
	ropt, err := cfg.Conn.Redis()
	if err != nil {
		return err
	}
	rdb, err := conn.Open(ctx, cfg.Conn.RedisURL, ropt)
	if err != nil {
		return err
	}
	defer rdb.Close()
	// With nothing exporting spans the hook would still run on every
	// command, for about a tenth of the worker's CPU.
	if tel.Exporting() {
		if err := redisotel.InstrumentTracing(rdb, redisotel.WithDBStatement(false)); err != nil {
			return fmt.Errorf("trace redis: %w", err)
		}
	}
	checkDurability(ctx, rdb, log)

	pool, err := conn.Postgres(ctx, cfg.Conn.DatabaseURL, func(pc *pgxpool.Config) {
		// pgxpool defaults to max(4, NumCPU) connections, which would make
		// most handlers queue for one. pool_max_conns in the URL wins.
		if !strings.Contains(cfg.Conn.DatabaseURL, "pool_max_conns") {
			pc.MaxConns = int32(min(cfg.Concurrency+4, 200))
		}
		pc.ConnConfig.Tracer = otelpgx.NewTracer()
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

	gate := stock.New(rdb, cfg.gateConfig())
	store := orderstore.New(pool)
	cat := catalog.New(pool)
	handler, err := worker.NewHandler(worker.Deps{Gate: gate, Store: store, Catalog: cat, Ledger: cat, Limiter: ratelimit.New(rdb)},
		worker.HandlerConfig{
			HoldTTL: cfg.HoldTTL, HandlerTimeout: cfg.HandlerTimeout, MaxHold: cfg.MaxHold,
			RateLimit: cfg.RateLimit, RateWindow: cfg.RateWindow, Logger: log,
		})
	if err != nil {
		return err
	}

	// Asynq's own client, shared by its servers and the inspector: every
	// running task holds a connection for its completion, and each dequeue
	// loop one more for its round trip and its heartbeats (per node, on a
	// cluster, where go-redis keeps a pool per node).
	qrdb := ropt.WithPoolSize(cfg.Concurrency + 8*cfg.DequeueLoops).NewClient()
	defer qrdb.Close()
	inspector := asynq.NewInspectorFromRedisClient(qrdb)
	queues := consumedQueues(inspector, cfg.QueueShards, log)
	// One sweeper of all the workers sweeps: the lease lapses after three
	// missed sweeps, and another worker's sweeper takes over.
	sweepLease, err := lease.New(rdb, lease.SweeperKey, 3*cfg.SweepInterval)
	if err != nil {
		return err
	}
	sweeper, err := worker.NewSweeper(gate, store, worker.SweeperConfig{
		Interval: cfg.SweepInterval, Archive: inspector, ArchiveClient: asynq.NewClientFromRedisClient(qrdb),
		Queues: queues, Ledger: cat, Logger: log, Lease: sweepLease, FullPassInterval: cfg.FullPassInterval})
	if err != nil {
		return err
	}
	stopGauges, err := registerGauges(ctx, rdb, pool, inspector, gate, queues)
	if err != nil {
		return err
	}
	defer stopGauges()
	// Read in the background: an alert on used/max fires before a sale
	// fills Redis (docs/reliability.md, "Redis is full").
	stopMemory, err := telemetry.RegisterRedisMemory(rdb, 0)
	if err != nil {
		return err
	}
	defer stopMemory()

	// The admin server starts first: a bad --admin-addr should fail the
	// start, not surface after orders were taken.
	adm, err := admin.New(admin.Config{
		Addr: cfg.AdminAddr, User: cfg.AdminUser, Password: cfg.AdminPassword,
		Metrics:            tel.MetricsHandler(),
		Ready:              readiness(rdb, pool),
		RedisConnOpt:       ropt.AsynqOpt(),
		MonitoringWritable: cfg.MonitoringWritable,
		Profiling:          cfg.Profiling,
		Logger:             log,
	})
	if err != nil {
		return err
	}
	if err := adm.Start(); err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = adm.Shutdown(sctx)
	}()

	mux := asynq.NewServeMux()
	mux.Use(telemetry.AsynqMiddleware())
	mux.Handle(orders.TaskType, handler)
	mux.HandleFunc(orders.ConfirmTaskType, handler.ProcessAction)
	mux.HandleFunc(orders.CancelTaskType, handler.ProcessAction)
	srv, err := worker.StartServers(qrdb, worker.ServerConfig{
		Concurrency:     cfg.Concurrency,
		DequeueLoops:    cfg.DequeueLoops,
		Queues:          queues,
		PollInterval:    cfg.PollInterval,
		ShutdownTimeout: cfg.ShutdownTimeout,
		RetryDelay:      func(n int, _ error, _ *asynq.Task) time.Duration { return cfg.retryDelay(n) },
		Logger:          asynqLogger{log},
		LogLevel:        asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			id, _ := asynq.GetTaskID(ctx)
			n, _ := asynq.GetRetryCount(ctx)
			log.WarnContext(ctx, "order attempt failed", "order_id", id, "attempt", n+1, "err", err)
		}),
	}, mux)
	if err != nil {
		return err
	}

	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { sweeper.Run(sweepCtx) })
	watchFailover(sweepCtx, &wg, cfg, rdb, gate, store, pool, log)
	log.Info("worker ready", "queues", queues, "concurrency", cfg.Concurrency, "dequeue_loops", cfg.DequeueLoops, "admin_addr", adm.Addr())

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

// readiness is /readyz: Redis and Postgres answer and no migration is pending.
func readiness(rdb redis.UniversalClient, pool *pgxpool.Pool) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		n, err := migrations.Pending(ctx, pool)
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("postgres: %d migrations pending", n)
		}
		return nil
	}
}

// consumedQueues are the queues of --queue-shards and, after a change of
// the shard count, every other order queue Asynq knows: their tasks were
// placed under the old count and would otherwise never be processed.
func consumedQueues(in *asynq.Inspector, shards int, log *slog.Logger) []string {
	queues := orders.Queues(shards)
	known, err := in.Queues()
	if err != nil {
		log.Warn("could not list asynq's queues; consuming only this worker's shards", "err", err)
		return queues
	}
	slices.Sort(known)
	for _, q := range known {
		if orders.IsQueue(q) && !slices.Contains(queues, q) {
			log.Warn("also consuming an order queue outside --queue-shards (the shard count changed?), so that its tasks are not stranded",
				"queue", q, "queue_shards", shards)
			queues = append(queues, q)
		}
	}
	return queues
}

// checkDurability warns loudly when Redis can lose stock or queued orders:
// without AOF a restart forgets both, and an evicting policy can drop a
// stock key, which the scripts then read as "not stocked". On a cluster it
// asks every master, since each holds its slots' counters and queues.
func checkDurability(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) {
	err := conn.ForEachMaster(ctx, rdb, func(ctx context.Context, node *redis.Client) error {
		checkNodeDurability(ctx, node, log.With("redis_node", node.Options().Addr))
		return nil
	})
	if err != nil {
		log.Warn("could not list the redis masters to check their durability; make sure AOF is on and maxmemory-policy is noeviction on each", "err", err)
	}
}

func checkNodeDurability(ctx context.Context, rdb *redis.Client, log *slog.Logger) {
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
