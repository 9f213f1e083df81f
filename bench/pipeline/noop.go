package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/config"
	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/worker"
)

// noopWorker is `pipeline noop-worker`: the worker's Asynq servers, built
// by the same worker.StartServers with the same settings, running a
// handler that does nothing. It runs in a process of its own so that its
// CPU is measured apart from the benchmark's.
func noopWorker(args []string) int {
	fs := flag.NewFlagSet("noop-worker", flag.ContinueOnError)
	var cfg worker.ServerConfig
	fs.IntVar(&cfg.Concurrency, "concurrency", worker.DefaultConcurrency, "tasks processed at once")
	fs.IntVar(&cfg.DequeueLoops, "dequeue-loops", worker.DefaultDequeueLoops, "asynq servers in the process")
	fs.DurationVar(&cfg.PollInterval, "poll-interval", worker.DefaultPollInterval, "idle poll interval")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	opt, err := config.RedisOptions(config.Env("REDIS_URL", config.DefaultRedisURL))
	if err != nil {
		fmt.Fprintf(os.Stderr, "noop-worker: %v\n", err)
		return 2
	}
	opt.PoolSize = cfg.Concurrency + 16
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	cfg.Queues = []string{orders.Queue}
	cfg.ShutdownTimeout = 10 * time.Second
	cfg.LogLevel = asynq.WarnLevel
	srv, err := worker.StartServers(rdb, cfg, worker.NoopHandler)
	if err != nil {
		fmt.Fprintf(os.Stderr, "noop-worker: %v\n", err)
		return 1
	}
	fmt.Println("noop ready")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	srv.Shutdown()
	return 0
}
