package orders

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var allStatuses = []Status{StatusHeld, StatusConfirmed, StatusRejected, StatusFailed, StatusExpired, StatusCancelled}

// TestCanMove pins the state machine: exactly four moves exist.
func TestCanMove(t *testing.T) {
	t.Parallel()
	want := map[[2]Status]bool{
		{StatusHeld, StatusConfirmed}:      true,
		{StatusHeld, StatusCancelled}:      true,
		{StatusHeld, StatusExpired}:        true,
		{StatusConfirmed, StatusCancelled}: true,
	}
	for _, from := range allStatuses {
		for _, to := range allStatuses {
			if got := CanMove(from, to); got != want[[2]Status{from, to}] {
				t.Errorf("CanMove(%s, %s) = %v, want %v", from, to, got, !got)
			}
		}
		if from.Terminal() != (from != StatusHeld) {
			t.Errorf("%s.Terminal() = %v", from, from.Terminal())
		}
	}
}

func held(id string, until time.Time, skus ...string) *Record {
	r := confirmed(id, skus...)
	r.Status, r.HoldUntil = StatusHeld, &until
	return &r
}

// TestCheckoutMoves runs each action against each standing row and checks
// where the row ends and what the holds were asked to do.
func TestCheckoutMoves(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	ahead, past := now.Add(time.Minute), now.Add(-time.Second)
	sold := confirmed("o-1", "A")
	returned := confirmed("o-1", "A")
	returned.Status, returned.PreviousStatus, returned.ReturnedAt = StatusCancelled, StatusConfirmed, &now
	rejected := Record{OrderID: "o-1", Status: StatusRejected, Reason: ReasonOutOfStock, Lines: []Line{{SKU: "A", Qty: 1}}}
	tests := []struct {
		name   string
		act    func(Flow) (Record, bool, error)
		stands *Record
		want   Status
		moved  bool
		calls  []string
	}{
		{"confirm a live hold", confirm, held("o-1", ahead, "A"), StatusConfirmed, true, []string{"commit o-1/t1 A"}},
		{"confirm a hold past its deadline expires it", confirm, held("o-1", past, "A"), StatusExpired, false, []string{"release o-1 A"}},
		{"confirm a confirmed order changes nothing", confirm, &sold, StatusConfirmed, false, []string{"commit o-1/t1 A"}},
		{"confirm a rejected order changes nothing", confirm, &rejected, StatusRejected, false, []string{"release o-1 A"}},
		{"cancel a hold", cancel, held("o-1", ahead, "A"), StatusCancelled, true, []string{"release o-1 A"}},
		{"cancel a hold past its deadline", cancel, held("o-1", past, "A"), StatusCancelled, true, []string{"release o-1 A"}},
		{"cancel after the sale gives the units back", cancel, &sold, StatusCancelled, true,
			[]string{"commit o-1/t1 A", "cancel o-1 A=1", "record o-1 A=1", "release o-1 A"}},
		// Release touches held holds only: a later delivery's, if any.
		{"cancel a given-back order again changes nothing", cancel, &returned, StatusCancelled, false, []string{"release o-1 A"}},
		{"cancel a rejected order changes nothing", cancel, &rejected, StatusRejected, false, []string{"release o-1 A"}},
		{"expire a live hold changes nothing", expire, held("o-1", ahead, "A"), StatusHeld, false, nil},
		{"expire a hold past its deadline", expire, held("o-1", past, "A"), StatusExpired, true, []string{"release o-1 A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stands := *tt.stands
			h := &fakeHolds{}
			f := Flow{Rows: &fakeRows{row: &stands}, Holds: h, Ledger: fakeLedger{h}}
			row, moved, err := tt.act(f)
			if err != nil || row.Status != tt.want || moved != tt.moved {
				t.Fatalf("= %s, moved %v, %v; want %s, moved %v", row.Status, moved, err, tt.want, tt.moved)
			}
			if diff := cmp.Diff(tt.calls, h.calls); diff != "" {
				t.Errorf("holds calls mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

var checkoutNow = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func confirm(f Flow) (Record, bool, error) {
	return f.Confirm(context.Background(), Action{OrderID: "o-1"}, checkoutNow)
}

func cancel(f Flow) (Record, bool, error) {
	return f.Cancel(context.Background(), Action{OrderID: "o-1", Reason: "payment_failed"}, checkoutNow)
}

func expire(f Flow) (Record, bool, error) { return f.Expire(context.Background(), "o-1", checkoutNow) }

// TestMoveCrashAfterTransition: a crash between the row's move and its
// holds leaves the holds alone, and running the same action again finds the
// row moved and finishes them, once.
func TestMoveCrashAfterTransition(t *testing.T) {
	t.Parallel()
	for _, act := range []struct {
		name  string
		do    func(Flow) (Record, bool, error)
		calls []string
	}{
		{"confirm", confirm, []string{"commit o-1/t1 A"}},
		{"cancel", cancel, []string{"release o-1 A"}},
	} {
		t.Run(act.name, func(t *testing.T) {
			t.Parallel()
			h, rows := &fakeHolds{}, &fakeRows{row: held("o-1", checkoutNow.Add(time.Hour), "A")}
			crash := errors.New("crash")
			f := Flow{Rows: rows, Holds: h, Ledger: fakeLedger{h}, Mark: func(step string) error {
				if step == StepAfterTransition {
					return crash
				}
				return nil
			}}
			if _, moved, err := act.do(f); !errors.Is(err, crash) || !moved {
				t.Fatalf("first run = moved %v, %v; want moved and %v", moved, err, crash)
			}
			if len(h.calls) != 0 {
				t.Fatalf("holds touched before the crash point: %v", h.calls)
			}
			f.Mark = nil
			if _, moved, err := act.do(f); err != nil || moved {
				t.Fatalf("retry = moved %v, %v; want not moved (the row had moved), nil", moved, err)
			}
			if diff := cmp.Diff(act.calls, h.calls); diff != "" {
				t.Errorf("retry holds calls mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSettleCheckoutRows: a held row keeps its own holds and gives back a
// dropped payload's; a cancellation after the sale gives its units back
// once, and refuses without a ledger.
func TestSettleCheckoutRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := &fakeHolds{}
	if _, err := (Flow{Holds: h}).Settle(ctx, *held("o-1", checkoutNow, "A"), []string{"A", "X"}); err != nil {
		t.Fatalf("Settle(held) = %v", err)
	}
	if diff := cmp.Diff([]string{"release o-1 X"}, h.calls); diff != "" {
		t.Errorf("Settle(held) calls mismatch (-want +got):\n%s", diff)
	}

	cancelled := confirmed("o-1", "A")
	cancelled.Status, cancelled.PreviousStatus = StatusCancelled, StatusConfirmed
	rows := &fakeRows{row: &cancelled}
	if _, err := (Flow{Rows: rows, Holds: &fakeHolds{}}).Settle(ctx, cancelled, []string{"A"}); err == nil {
		t.Error("Settle(cancelled after sale) without a ledger = nil, want an error")
	}
	h = &fakeHolds{}
	f := Flow{Rows: rows, Holds: h, Ledger: fakeLedger{h}}
	s, err := f.Settle(ctx, cancelled, []string{"A"})
	if err != nil || len(s.Returned) != 1 {
		t.Fatalf("Settle(cancelled after sale) = %+v, %v; want A returned", s, err)
	}
	if rows.row.ReturnedAt == nil {
		t.Error("the row was not marked returned")
	}
	if _, err := f.Settle(ctx, *rows.row, []string{"A"}); err != nil {
		t.Fatalf("Settle(returned row) = %v", err)
	}
	if diff := cmp.Diff([]string{"cancel o-1 A=1", "record o-1 A=1", "release o-1 A", "release o-1 A"}, h.calls); diff != "" {
		t.Errorf("calls mismatch (-want +got):\n%s", diff)
	}
}

func TestTransitionValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []Transition{
		{OrderID: "o-1", From: StatusRejected, To: StatusConfirmed, At: checkoutNow},
		{OrderID: "o-1", From: StatusConfirmed, To: StatusExpired, At: checkoutNow},
		{OrderID: "o-1", From: StatusConfirmed, To: StatusCancelled, At: checkoutNow, Deadline: AfterDeadline},
		{OrderID: "o-1", From: StatusHeld, To: StatusConfirmed},
		{From: StatusHeld, To: StatusConfirmed, At: checkoutNow},
	} {
		if err := tt.Validate(); err == nil {
			t.Errorf("%+v.Validate() = nil, want an error", tt)
		}
	}
}
