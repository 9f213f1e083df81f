package orderstore

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/orders"
)

// heldRecord is order id held for checkout until until, 1 of SKU-1 and 2 of SKU-2.
func heldRecord(id string, until time.Time) orders.Record {
	return orders.Record{OrderID: id, CustomerID: "c-1", Status: orders.StatusHeld, HoldToken: "t1", HoldUntil: &until,
		Lines: []orders.Line{{SKU: "SKU-1", Qty: 1}, {SKU: "SKU-2", Qty: 2}}}
}

// TestStoreTransition: a guarded move applies once, keeps decided_at,
// records where it came from, and refuses a row elsewhere or past (or
// before) its deadline, answering with the row that stands.
func TestStoreTransition(t *testing.T) {
	t.Parallel()
	b, ctx := setupStore(t)
	now := pgTime("2026-11-26T10:00:00Z")
	live, due := now.Add(time.Minute), now.Add(-time.Minute)
	first, _ := b.decide(t, heldRecord("h-live", live))
	if first.Status != orders.StatusHeld || first.HoldUntil == nil || !first.HoldUntil.Equal(live) {
		t.Fatalf("Decide(held) = %+v, want held until %v", first, live)
	}
	b.decide(t, heldRecord("h-due", due))

	move := func(id string, from, to orders.Status, d orders.Deadline) (orders.Record, bool, error) {
		return b.store.Transition(ctx, orders.Transition{OrderID: id, From: from, To: to, Reason: "r-" + string(to), Detail: "d", At: now, Deadline: d})
	}
	if row, moved, err := move("h-live", orders.StatusHeld, orders.StatusExpired, orders.AfterDeadline); err != nil || moved || row.Status != orders.StatusHeld {
		t.Errorf("expire a live hold = %s, moved %v, %v; want held, not moved", row.Status, moved, err)
	}
	if row, moved, err := move("h-due", orders.StatusHeld, orders.StatusConfirmed, orders.BeforeDeadline); err != nil || moved || row.Status != orders.StatusHeld {
		t.Errorf("confirm a hold past its deadline = %s, moved %v, %v; want held, not moved", row.Status, moved, err)
	}
	row, moved, err := move("h-live", orders.StatusHeld, orders.StatusConfirmed, orders.BeforeDeadline)
	if err != nil || !moved {
		t.Fatalf("confirm a live hold = moved %v, %v; want moved", moved, err)
	}
	if row.Status != orders.StatusConfirmed || row.PreviousStatus != orders.StatusHeld || row.Reason != "r-confirmed" ||
		row.ChangedAt == nil || !row.ChangedAt.Equal(now) || !row.DecidedAt.Equal(first.DecidedAt) || len(row.Lines) != 2 ||
		row.HoldToken != "t1" {
		t.Errorf("confirmed row = %+v, want confirmed from held at %v, decided_at kept, with its lines and token", row, now)
	}
	if again, moved, err := move("h-live", orders.StatusHeld, orders.StatusCancelled, orders.AnyDeadline); err != nil || moved || again.Status != orders.StatusConfirmed {
		t.Errorf("cancel a hold already confirmed = %s, moved %v, %v; want confirmed, not moved", again.Status, moved, err)
	}
	row, moved, err = move("h-live", orders.StatusConfirmed, orders.StatusCancelled, orders.AnyDeadline)
	if err != nil || !moved || !row.CancelledAfterSale() || row.ReturnedAt != nil {
		t.Fatalf("cancel after the sale = %+v, moved %v, %v; want cancelled after sale, not yet returned", row, moved, err)
	}
	if _, _, err := move("nope", orders.StatusHeld, orders.StatusConfirmed, orders.BeforeDeadline); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("move an order without a row = %v, want ErrNotFound", err)
	}
	if _, _, err := move("h-due", orders.StatusRejected, orders.StatusConfirmed, orders.AnyDeadline); err == nil {
		t.Error("a move the state machine has not = nil error, want refused")
	}
}

// TestStoreTransitionRace: many racing moves of one held row, to every
// status it may move to: exactly one wins, every other one answers with
// the winner's row.
func TestStoreTransitionRace(t *testing.T) {
	t.Parallel()
	b, ctx := setupStore(t)
	now := time.Now()
	for round := range 10 {
		id := fmt.Sprintf("race-%d", round)
		// Past its deadline for the expiries, ahead of it for the confirms:
		// each move judges the deadline at its own time.
		b.decide(t, heldRecord(id, now))
		var wg sync.WaitGroup
		var mu sync.Mutex
		moves, stands := 0, map[orders.Status]int{}
		start := make(chan struct{})
		for i := range 12 {
			tr := orders.Transition{OrderID: id, From: orders.StatusHeld, Reason: "r", At: now.Add(-time.Second), Deadline: orders.BeforeDeadline, To: orders.StatusConfirmed}
			switch i % 3 {
			case 1:
				tr.To, tr.Deadline = orders.StatusCancelled, orders.AnyDeadline
			case 2:
				tr.To, tr.At, tr.Deadline = orders.StatusExpired, now.Add(time.Second), orders.AfterDeadline
			}
			wg.Go(func() {
				<-start
				row, moved, err := b.store.Transition(ctx, tr)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					stands["error"]++
					return
				}
				if moved {
					moves++
				}
				stands[row.Status]++
			})
		}
		close(start)
		wg.Wait()
		if moves != 1 || len(stands) != 1 {
			t.Errorf("round %d: %d moves, rows answered %v; want one move and every answer its row", round, moves, stands)
		}
	}
}

// TestStoreCheckoutQueries: ExpiredHeld finds held rows past their
// deadline only, Unreturned the cancellations after the sale until
// MarkReturned, and the per-SKU sums split held, confirmed and returned.
func TestStoreCheckoutQueries(t *testing.T) {
	t.Parallel()
	b, ctx := setupStore(t)
	now := pgTime("2026-11-26T10:00:00Z")
	b.decide(t, heldRecord("q-due", now.Add(-time.Second)))
	b.decide(t, heldRecord("q-live", now.Add(time.Hour)))
	b.decide(t, heldRecord("q-sold", now.Add(time.Hour)))
	if _, _, err := b.store.Transition(ctx, orders.Transition{OrderID: "q-sold", From: orders.StatusHeld, To: orders.StatusConfirmed, At: now, Deadline: orders.BeforeDeadline}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.store.Transition(ctx, orders.Transition{OrderID: "q-sold", From: orders.StatusConfirmed, To: orders.StatusCancelled, At: now}); err != nil {
		t.Fatal(err)
	}
	b.decide(t, orders.Record{OrderID: "q-plain", CustomerID: "c-1", Status: orders.StatusConfirmed, Lines: []orders.Line{{SKU: "SKU-1", Qty: 5}}})

	due, err := b.store.ExpiredHeld(ctx, now, 10)
	if err != nil || len(due) != 1 || due[0].OrderID != "q-due" || len(due[0].Lines) != 2 {
		t.Errorf("ExpiredHeld = %+v, %v; want q-due with its lines", due, err)
	}
	un, err := b.store.Unreturned(ctx, 10)
	if err != nil || len(un) != 1 || un[0].OrderID != "q-sold" || len(un[0].Lines) != 2 {
		t.Errorf("Unreturned = %+v, %v; want q-sold with its lines", un, err)
	}
	for want, f := range map[string]func() (map[string]int64, error){
		"held":      func() (map[string]int64, error) { return Sums(ctx, b.store.EachHeld) },
		"confirmed": func() (map[string]int64, error) { return b.store.ConfirmedBySKU(ctx) },
		"returned":  func() (map[string]int64, error) { return Sums(ctx, b.store.EachReturned) },
	} {
		m, err := f()
		wantMap := map[string]map[string]int64{
			"held":      {"SKU-1": 2, "SKU-2": 4},
			"confirmed": {"SKU-1": 5},
			"returned":  {"SKU-1": 1, "SKU-2": 2},
		}[want]
		if err != nil || fmt.Sprint(m) != fmt.Sprint(wantMap) {
			t.Errorf("%s by SKU = %v, %v; want %v", want, m, err, wantMap)
		}
	}
	for range 2 {
		if err := b.store.MarkReturned(ctx, "q-sold"); err != nil {
			t.Fatalf("MarkReturned: %v", err)
		}
	}
	if un, err := b.store.Unreturned(ctx, 10); err != nil || len(un) != 0 {
		t.Errorf("Unreturned after MarkReturned = %+v, %v; want none", un, err)
	}
	if rec, err := b.store.Get(ctx, "q-sold"); err != nil || rec.ReturnedAt == nil {
		t.Errorf("Get(q-sold) = %+v, %v; want returned_at set", rec, err)
	}
}
