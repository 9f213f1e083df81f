package orderstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stockgate/stockgate/internal/orders"
	"github.com/stockgate/stockgate/internal/testsvc/testdb"
)

// TestDecideBatched fires many concurrent Decides, so that they share
// batches: every id gets exactly one inserted row, duplicates inside and
// across batches see the row that stands, and one record the database
// refuses fails alone without failing its batch-mates.
func TestDecideBatched(t *testing.T) {
	t.Parallel()
	store := New(testdb.New(t))
	ctx := context.Background()
	const ids, copies = 150, 3
	type res struct {
		stands   orders.Record
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
				rec := orders.Record{OrderID: fmt.Sprintf("b-%03d", i), CustomerID: fmt.Sprintf("c-%d", c),
					Status: orders.StatusConfirmed, Lines: []orders.Line{{SKU: "B-1", Qty: int64(c + 1)}}}
				r := &results[i][c]
				r.stands, r.inserted, r.err = store.Decide(ctx, rec)
			})
		}
	}
	var poisonErr error
	wg.Go(func() {
		<-start
		// customer_id over 64 characters breaks a CHECK constraint.
		_, _, poisonErr = store.Decide(ctx, orders.Record{OrderID: "b-poison", CustomerID: strings.Repeat("x", 65), Status: orders.StatusRejected})
	})
	close(start)
	wg.Wait()

	if n := store.decides.Batches(); n >= ids*copies {
		t.Errorf("%d Decide calls ran as %d batches, want fewer batches than calls", ids*copies+1, n)
	} else {
		t.Logf("%d Decide calls ran as %d batches", ids*copies+1, n)
	}
	if poisonErr == nil {
		t.Error("Decide of a record violating a CHECK = nil, want an error")
	}
	for i, rs := range results {
		winners := 0
		var winner orders.Record
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
	if _, err := store.Get(ctx, "b-poison"); err != orders.ErrNotFound {
		t.Errorf("Get(b-poison) = %v, want orders.ErrNotFound", err)
	}
}
