package batch

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestBatcherDropsAbandonedCalls: a request whose caller gave up before its
// batch ran is never executed. The rebuild fence relies on it: a
// confirmed row must not land after its handler's deadline.
func TestBatcherDropsAbandonedCalls(t *testing.T) {
	t.Parallel()
	running, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var ran []string
	b := New(Config{MaxBatch: 10, MaxInflight: 1, Timeout: time.Minute},
		func(_ context.Context, reqs []string) []string {
			mu.Lock()
			ran = append(ran, reqs...)
			first := len(ran) == len(reqs)
			mu.Unlock()
			if first {
				// Hold the only batch slot so later calls queue behind it.
				close(running)
				<-release
			}
			return reqs
		})
	leader := make(chan bool)
	go func() {
		_, ok := b.Do(context.Background(), "leader")
		leader <- ok
	}()
	<-running

	// Queued behind the running batch, then abandoned.
	ctx, cancel := context.WithCancel(context.Background())
	abandoned := make(chan bool)
	go func() {
		_, ok := b.Do(ctx, "abandoned")
		abandoned <- ok
	}()
	testsvc.Poll(t, 10*time.Second, "the call to queue", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.pending) == 1
	})
	cancel()
	if ok := <-abandoned; ok {
		t.Fatal("do with a cancelled context reported ok")
	}
	// A live call queued too, so the leader runs one more batch.
	live := make(chan string)
	go func() {
		r, _ := b.Do(context.Background(), "live")
		live <- r
	}()
	testsvc.Poll(t, 10*time.Second, "the live call to queue", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.pending) == 2
	})
	close(release)
	if ok := <-leader; !ok {
		t.Fatal("leader's call failed")
	}
	if r := <-live; r != "live" {
		t.Fatalf("live call got %q", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(ran, ",") != "leader,live" {
		t.Errorf("executed %v, want [leader live]: the abandoned request must not run", ran)
	}
}
