package orders

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/testsvc"
)

// TestDecideBatched fires many concurrent Decides, so that they share
// batches: every id gets exactly one inserted row, duplicates inside and
// across batches see the row that stands, and one record the database
// refuses fails alone without failing its batch-mates.
func TestDecideBatched(t *testing.T) {
	t.Parallel()
	store := NewStore(testPool(t))
	ctx := context.Background()
	const ids, copies = 150, 3
	type res struct {
		stands   Record
		inserted bool
		err      error
	}
	results := make([][]res, ids)
	for i := range results {
		results[i] = make([]res, copies)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range ids {
		for c := range copies {
			wg.Go(func() {
				<-start
				rec := Record{OrderID: fmt.Sprintf("b-%03d", i), CustomerID: fmt.Sprintf("c-%d", c),
					Status: StatusConfirmed, Lines: []Line{{SKU: "B-1", Qty: int64(c + 1)}}}
				r := &results[i][c]
				r.stands, r.inserted, r.err = store.Decide(ctx, rec)
			})
		}
	}
	var poisonErr error
	wg.Go(func() {
		<-start
		// customer_id over 64 characters breaks a CHECK constraint.
		_, _, poisonErr = store.Decide(ctx, Record{OrderID: "b-poison", CustomerID: strings.Repeat("x", 65), Status: StatusRejected})
	})
	close(start)
	wg.Wait()

	if n := store.decides.batches.Load(); n >= ids*copies {
		t.Errorf("%d Decide calls ran as %d batches, want fewer batches than calls", ids*copies+1, n)
	} else {
		t.Logf("%d Decide calls ran as %d batches", ids*copies+1, n)
	}
	if poisonErr == nil {
		t.Error("Decide of a record violating a CHECK = nil, want an error")
	}
	for i, rs := range results {
		winners := 0
		var winner Record
		for _, r := range rs {
			if r.err != nil {
				t.Fatalf("Decide(b-%03d) = %v, want nil", i, r.err)
			}
			if r.inserted {
				winners++
				winner = r.stands
			}
		}
		if winners != 1 {
			t.Fatalf("b-%03d: %d calls inserted, want exactly 1", i, winners)
		}
		for c, r := range rs {
			if r.stands.CustomerID != winner.CustomerID || len(r.stands.Lines) != 1 || r.stands.Lines[0] != winner.Lines[0] {
				t.Errorf("b-%03d copy %d sees %+v, want the winner %+v", i, c, r.stands, winner)
			}
		}
		got, err := store.Get(ctx, winner.OrderID)
		if err != nil || got.CustomerID != winner.CustomerID || len(got.Lines) != 1 || got.Lines[0] != winner.Lines[0] {
			t.Errorf("Get(%s) = %+v, %v; want the winner %+v", winner.OrderID, got, err, winner)
		}
	}
	if _, err := store.Get(ctx, "b-poison"); err != ErrNotFound {
		t.Errorf("Get(b-poison) = %v, want ErrNotFound", err)
	}
}

// TestBatcherDropsAbandonedCalls: a request whose caller gave up before its
// batch ran is never executed. stockctl rebuild's fence relies on it: a
// confirmed row must not land after its handler's deadline.
func TestBatcherDropsAbandonedCalls(t *testing.T) {
	t.Parallel()
	running, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var ran []string
	b := &batcher[string, string]{
		maxBatch: 10, maxInflight: 1, timeout: time.Minute,
		exec: func(_ context.Context, reqs []string) []string {
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
		},
	}
	leader := make(chan bool)
	go func() {
		_, ok := b.do(context.Background(), "leader")
		leader <- ok
	}()
	<-running

	// Queued behind the running batch, then abandoned.
	ctx, cancel := context.WithCancel(context.Background())
	abandoned := make(chan bool)
	go func() {
		_, ok := b.do(ctx, "abandoned")
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
		r, _ := b.do(context.Background(), "live")
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
