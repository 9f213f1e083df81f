package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Defaults for ServerConfig.
const (
	DefaultConcurrency      = 32
	DefaultDequeueLoops     = 4
	DefaultPollInterval     = 200 * time.Millisecond
	DefaultBusyPollInterval = 5 * time.Millisecond
	DefaultIdleAfter        = 30 * time.Second
)

// ServerConfig configures the Asynq servers one worker process runs.
type ServerConfig struct {
	// Concurrency is the most tasks processed at once, split evenly across
	// the dequeue loops. Default DefaultConcurrency.
	Concurrency int
	// DequeueLoops is how many asynq.Server values share the process and
	// its Redis client while orders arrive. One server takes tasks one at a
	// time (its processor waits for each Dequeue round trip before the
	// next), so its intake is bounded by one Redis round trip; several take
	// tasks in parallel. At most Concurrency. Default DefaultDequeueLoops.
	DequeueLoops int
	// Queues are the queues consumed, all at the same priority.
	Queues []string
	// PollInterval is how long the first loop waits, when it finds no task,
	// before it looks again: the cost of an idle worker (a Redis script per
	// look) against how long the first order after a quiet spell waits.
	// Default DefaultPollInterval.
	PollInterval time.Duration
	// BusyPollInterval is the same for the other loops, which run only
	// while orders arrive: an order waits in the queue for at most about
	// this long. Default DefaultBusyPollInterval.
	BusyPollInterval time.Duration
	// IdleAfter is how long without a task the other loops keep running.
	// Default DefaultIdleAfter.
	IdleAfter       time.Duration
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
	c.BusyPollInterval = cmp.Or(c.BusyPollInterval, DefaultBusyPollInterval)
	c.IdleAfter = cmp.Or(c.IdleAfter, DefaultIdleAfter)
	switch {
	case len(c.Queues) == 0:
		return errors.New("no queue to consume")
	case c.DequeueLoops < 1 || c.DequeueLoops > c.Concurrency:
		return fmt.Errorf("dequeue loops %d must be 1..concurrency (%d)", c.DequeueLoops, c.Concurrency)
	}
	return nil
}

// Servers are the Asynq servers of one worker process. The first runs
// always, polling every PollInterval when it finds nothing; the others run
// only while orders arrive, polling every BusyPollInterval, and stop after
// IdleAfter without a task. So an idle worker costs one look every
// PollInterval, and a busy one takes tasks DequeueLoops at a time and
// leaves none waiting for long (docs/benchmarks.md).
type Servers struct {
	rdb    redis.UniversalClient
	cfg    ServerConfig
	queues map[string]int
	h      asynq.Handler

	last atomic.Int64 // unix nanoseconds when the last task started

	mu    sync.Mutex
	base  *asynq.Server
	extra []*asynq.Server // the busy loops while they run
	moves sync.WaitGroup  // busy loops being stopped
	quit  chan struct{}
	done  chan struct{}
}

// StartServers starts the first Asynq server over rdb (the caller owns it
// and closes it after Shutdown), running h, and a supervisor that starts
// and stops the others with the load.
func StartServers(rdb redis.UniversalClient, cfg ServerConfig, h asynq.Handler) (*Servers, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Servers{rdb: rdb, cfg: cfg, queues: map[string]int{}, quit: make(chan struct{}), done: make(chan struct{})}
	for _, q := range cfg.Queues {
		s.queues[q] = 1
	}
	s.h = asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		s.last.Store(time.Now().UnixNano())
		return h.ProcessTask(ctx, t)
	})
	var err error
	if s.base, err = s.start(0, cfg.PollInterval); err != nil {
		return nil, err
	}
	go s.supervise()
	return s, nil
}

// start starts loop i (0-based) of the DequeueLoops, with its share of the
// concurrency.
func (s *Servers) start(i int, poll time.Duration) (*asynq.Server, error) {
	n := s.cfg.Concurrency / s.cfg.DequeueLoops
	if i < s.cfg.Concurrency%s.cfg.DequeueLoops {
		n++
	}
	srv := asynq.NewServerFromRedisClient(s.rdb, asynq.Config{
		Concurrency:       n,
		Queues:            s.queues,
		ShutdownTimeout:   s.cfg.ShutdownTimeout,
		TaskCheckInterval: poll,
		RetryDelayFunc:    s.cfg.RetryDelay,
		Logger:            s.cfg.Logger,
		LogLevel:          s.cfg.LogLevel,
		ErrorHandler:      s.cfg.ErrorHandler,
	})
	if err := srv.Start(s.h); err != nil {
		return nil, fmt.Errorf("start queue server %d of %d: %w", i+1, s.cfg.DequeueLoops, err)
	}
	return srv, nil
}

// supervise starts the busy loops when a task has just started and stops
// them after IdleAfter without one.
func (s *Servers) supervise() {
	defer close(s.done)
	tick := time.NewTicker(min(s.cfg.IdleAfter/4, 20*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-tick.C:
		}
		since := time.Since(time.Unix(0, s.last.Load()))
		s.mu.Lock()
		switch running := len(s.extra) > 0; {
		case !running && since < time.Second && s.cfg.DequeueLoops > 1:
			for i := 1; i < s.cfg.DequeueLoops; i++ {
				srv, err := s.start(i, s.cfg.BusyPollInterval)
				if err != nil {
					// The first loop still takes tasks; try again next tick.
					if s.cfg.Logger != nil {
						s.cfg.Logger.Warn(err.Error())
					}
					break
				}
				s.extra = append(s.extra, srv)
			}
		case running && since > s.cfg.IdleAfter:
			extra := s.extra
			s.extra = nil
			s.moves.Add(1)
			go func() {
				defer s.moves.Done()
				shutdown(extra)
			}()
		}
		s.mu.Unlock()
	}
}

// Busy reports how many loops are running: 1 when idle, up to
// DequeueLoops under load.
func (s *Servers) Busy() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return 1 + len(s.extra)
}

// Shutdown stops every loop at once: each stops fetching, waits up to the
// shutdown timeout for its running handlers, and hands unfinished tasks
// back to the queue.
func (s *Servers) Shutdown() {
	close(s.quit)
	<-s.done
	s.mu.Lock()
	all := append([]*asynq.Server{s.base}, s.extra...)
	s.extra = nil
	s.mu.Unlock()
	shutdown(all)
	s.moves.Wait()
}

func shutdown(srvs []*asynq.Server) {
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Go(srv.Shutdown)
	}
	wg.Wait()
}

// NoopHandler acknowledges every task and does nothing else: the Asynq
// ceiling the pipeline benchmark compares the worker with.
var NoopHandler = asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })
