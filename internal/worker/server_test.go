package worker

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestServersFollowTheLoad: an idle worker runs one dequeue loop; tasks
// arriving start the others, and a quiet spell stops them again, with every
// task processed once.
func TestServersFollowTheLoad(t *testing.T) {
	t.Parallel()
	r, db, rdb := testsvc.RedisDB(t)
	var done atomic.Int64
	s, err := StartServers(rdb, ServerConfig{
		Concurrency: 6, DequeueLoops: 3, Queues: []string{"elastic"},
		PollInterval: 20 * time.Millisecond, IdleAfter: 300 * time.Millisecond,
		ShutdownTimeout: 5 * time.Second, LogLevel: asynq.ErrorLevel,
	}, asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		done.Add(1)
		return nil
	}))
	if err != nil {
		t.Fatalf("StartServers: %v", err)
	}
	defer s.Shutdown()
	if n := s.Busy(); n != 1 {
		t.Fatalf("Busy() before any task = %d, want 1", n)
	}
	ac := asynq.NewClient(asynq.RedisClientOpt{Addr: r.Addr, DB: db})
	defer ac.Close()
	const tasks = 200
	for range tasks {
		if _, err := ac.Enqueue(asynq.NewTask("noop", nil, asynq.Queue("elastic"))); err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
	testsvc.Poll(t, 10*time.Second, "the busy loops to start", func() bool { return s.Busy() == 3 })
	testsvc.Poll(t, 10*time.Second, "every task to be processed", func() bool { return done.Load() == tasks })
	testsvc.Poll(t, 10*time.Second, "the busy loops to stop after the quiet spell", func() bool { return s.Busy() == 1 })
	if n := done.Load(); n != tasks {
		t.Errorf("tasks processed = %d, want %d", n, tasks)
	}
}
