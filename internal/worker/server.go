package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Defaults for ServerConfig.
const (
	DefaultConcurrency  = 32
	DefaultDequeueLoops = 4
	DefaultPollInterval = 50 * time.Millisecond
)

// ServerConfig configures the Asynq servers one worker process runs.
type ServerConfig struct {
	// Concurrency is the most tasks processed at once, split evenly across
	// the dequeue loops. Default DefaultConcurrency.
	Concurrency int
	// DequeueLoops is how many asynq.Server values share the process and
	// its Redis client. One server takes tasks one at a time (its processor
	// waits for each Dequeue round trip before the next), so its intake is
	// bounded by one Redis round trip; several loops take tasks in
	// parallel. At most Concurrency. Default DefaultDequeueLoops.
	DequeueLoops int
	// Queues are the queues consumed, all at the same priority.
	Queues []string
	// PollInterval is how long an idle loop waits before it looks for
	// tasks again; Asynq's own default of 1s would park the first buyers of
	// a sale for up to 1.5s. Default DefaultPollInterval.
	PollInterval    time.Duration
	ShutdownTimeout time.Duration
	RetryDelay      func(n int, err error, t *asynq.Task) time.Duration
	Logger          asynq.Logger
	LogLevel        asynq.LogLevel
	ErrorHandler    asynq.ErrorHandler
}

func (c *ServerConfig) validate() error {
	c.Concurrency = cmp.Or(c.Concurrency, DefaultConcurrency)
	c.DequeueLoops = cmp.Or(c.DequeueLoops, DefaultDequeueLoops)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	switch {
	case len(c.Queues) == 0:
		return errors.New("no queue to consume")
	case c.DequeueLoops < 1 || c.DequeueLoops > c.Concurrency:
		return fmt.Errorf("dequeue loops %d must be 1..concurrency (%d)", c.DequeueLoops, c.Concurrency)
	}
	return nil
}

// Servers are the asynq.Server values of one worker process, started and
// stopped together.
type Servers struct {
	srvs []*asynq.Server
}

// StartServers starts cfg.DequeueLoops Asynq servers over one Redis client
// (the caller owns it and closes it after Shutdown), each running h with
// its share of cfg.Concurrency.
func StartServers(rdb redis.UniversalClient, cfg ServerConfig, h asynq.Handler) (*Servers, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	queues := make(map[string]int, len(cfg.Queues))
	for _, q := range cfg.Queues {
		queues[q] = 1
	}
	s := &Servers{}
	for i := range cfg.DequeueLoops {
		// The first loops take the remainder, so the shares sum to Concurrency.
		n := cfg.Concurrency / cfg.DequeueLoops
		if i < cfg.Concurrency%cfg.DequeueLoops {
			n++
		}
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency:       n,
			Queues:            queues,
			ShutdownTimeout:   cfg.ShutdownTimeout,
			TaskCheckInterval: cfg.PollInterval,
			RetryDelayFunc:    cfg.RetryDelay,
			Logger:            cfg.Logger,
			LogLevel:          cfg.LogLevel,
			ErrorHandler:      cfg.ErrorHandler,
		})
		if err := srv.Start(h); err != nil {
			s.Shutdown()
			return nil, fmt.Errorf("start queue server %d of %d: %w", i+1, cfg.DequeueLoops, err)
		}
		s.srvs = append(s.srvs, srv)
	}
	return s, nil
}

// Shutdown stops every loop at once: each stops fetching, waits up to the
// shutdown timeout for its running handlers, and hands unfinished tasks
// back to the queue.
func (s *Servers) Shutdown() {
	var wg sync.WaitGroup
	for _, srv := range s.srvs {
		wg.Go(srv.Shutdown)
	}
	wg.Wait()
}

// NoopHandler acknowledges every task and does nothing else: the Asynq
// ceiling the pipeline benchmark compares the worker with.
var NoopHandler = asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })
