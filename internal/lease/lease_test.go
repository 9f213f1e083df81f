package lease_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/lease"
	"github.com/stockgate/stockgate/internal/testsvc"
)

func TestMain(m *testing.M) { os.Exit(testsvc.Finish(m.Run())) }

// TestLease: of several claims racing for a free lease exactly one holds
// it; it renews, the others keep failing until it is released or lapses,
// and then exactly one of them takes it.
func TestLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, _, rdb := testsvc.RedisDB(t)

	claims := make([]*lease.Lease, 5)
	for i := range claims {
		var err error
		if claims[i], err = lease.New(rdb, "lease-test", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	holders := func() []int {
		var mu sync.Mutex
		var out []int
		var wg sync.WaitGroup
		for i, c := range claims {
			wg.Go(func() {
				ok, err := c.Hold(ctx)
				if err != nil {
					t.Errorf("Hold #%d: %v", i, err)
				}
				if ok {
					mu.Lock()
					out = append(out, i)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return out
	}
	first := holders()
	if len(first) != 1 {
		t.Fatalf("claims holding the lease after a race = %v, want exactly one", first)
	}
	if again := holders(); len(again) != 1 || again[0] != first[0] {
		t.Fatalf("holders on the next round = %v, want %v again (renewed)", again, first)
	}
	if got := rdb.Get(ctx, "lease-test").Val(); got != claims[first[0]].ID() {
		t.Errorf("lease value = %q, want the holder's id %q", got, claims[first[0]].ID())
	}
	if ttl := rdb.PTTL(ctx, "lease-test").Val(); ttl <= 0 || ttl > time.Minute {
		t.Errorf("lease PTTL = %v, want within its minute", ttl)
	}

	// A claim that does not hold it cannot give it up.
	other := claims[(first[0]+1)%len(claims)]
	if err := other.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rdb.Get(ctx, "lease-test").Val(); got != claims[first[0]].ID() {
		t.Errorf("after another claim's Release the lease is %q, want still %q", got, claims[first[0]].ID())
	}
	if err := claims[first[0]].Release(ctx); err != nil {
		t.Fatal(err)
	}
	next := holders()
	if len(next) != 1 {
		t.Fatalf("holders after a release = %v, want exactly one", next)
	}

	// A holder that dies lets the lease lapse (here: its key expires).
	if err := rdb.PExpire(ctx, "lease-test", time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	testsvc.Poll(t, 5*time.Second, "the lease to lapse", func() bool { return rdb.Exists(ctx, "lease-test").Val() == 0 })
	if after := holders(); len(after) != 1 {
		t.Errorf("holders after the lease lapsed = %v, want exactly one", after)
	}
}

func TestNewRefuses(t *testing.T) {
	t.Parallel()
	if _, err := lease.New(nil, "", time.Second); err == nil {
		t.Errorf("New with no key = nil error")
	}
	if _, err := lease.New(nil, "k", 0); err == nil {
		t.Errorf("New with no time to live = nil error")
	}
}
