package orders

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/stockgate/stockgate/internal/stock"
)

// fakeHolds records the calls the flow makes, as "commit o-1/t1 A,B".
type fakeHolds struct {
	calls []string
	err   error
}

func (f *fakeHolds) Commit(_ context.Context, id, token string, skus []string) (stock.CommitResult, error) {
	f.calls = append(f.calls, "commit "+id+"/"+token+" "+strings.Join(skus, ","))
	return stock.CommitResult{}, f.err
}

func (f *fakeHolds) Release(_ context.Context, id string, skus []string) (int64, error) {
	f.calls = append(f.calls, "release "+id+" "+strings.Join(skus, ","))
	return 0, f.err
}

func (f *fakeHolds) Cancel(_ context.Context, id, _ string, lines []stock.Line) (stock.CancelResult, error) {
	var ls []string
	for _, l := range lines {
		ls = append(ls, fmt.Sprintf("%s=%d", l.SKU, l.Qty))
	}
	f.calls = append(f.calls, "cancel "+id+" "+strings.Join(ls, ","))
	return stock.CancelResult{}, f.err
}

// fakeLedger records the returns it is given, as "return o-1 A=1".
type fakeLedger struct{ h *fakeHolds }

func (f fakeLedger) RecordReturn(_ context.Context, id string, lines []stock.Line) error {
	var ls []string
	for _, l := range lines {
		ls = append(ls, fmt.Sprintf("%s=%d", l.SKU, l.Qty))
	}
	f.h.calls = append(f.h.calls, "record "+id+" "+strings.Join(ls, ","))
	return nil
}

// fakeRows is one order's row: Decide inserts only when none stands, and
// Transition moves it as the store's guarded update would.
type fakeRows struct {
	row *Record
	err error
}

func (f *fakeRows) Transition(_ context.Context, t Transition) (Record, bool, error) {
	switch {
	case f.err != nil:
		return Record{}, false, f.err
	case f.row == nil:
		return Record{}, false, ErrNotFound
	}
	r := f.row
	due := r.HoldUntil != nil && !r.HoldUntil.After(t.At)
	if r.Status != t.From || t.Deadline == BeforeDeadline && due || t.Deadline == AfterDeadline && !due {
		return *r, false, nil
	}
	at := t.At
	r.PreviousStatus, r.Status, r.Reason, r.Detail, r.ChangedAt = r.Status, t.To, t.Reason, t.Detail, &at
	return *r, true, nil
}

func (f *fakeRows) MarkReturned(context.Context, string) error {
	if f.row != nil && f.row.ReturnedAt == nil {
		now := time.Now()
		f.row.ReturnedAt = &now
	}
	return nil
}

func (f *fakeRows) Decide(_ context.Context, rec Record) (Record, bool, error) {
	if f.err != nil {
		return Record{}, false, f.err
	}
	if f.row != nil {
		return *f.row, false, nil
	}
	f.row = &rec
	return rec, true, nil
}

func confirmed(id string, skus ...string) Record {
	r := Record{OrderID: id, Status: StatusConfirmed, HoldToken: "t1"}
	for _, s := range skus {
		r.Lines = append(r.Lines, Line{SKU: s, Qty: 1})
	}
	return r
}

func TestSettle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		row  Record
		skus []string
		want []string
	}{
		{"confirmed commits the row's lines", confirmed("o-1", "A", "B"), []string{"B", "A"}, []string{"commit o-1/t1 A,B"}},
		{"confirmed releases what only a dropped payload took", confirmed("o-1", "A"), []string{"A", "X"},
			[]string{"release o-1 X", "commit o-1/t1 A"}},
		{"confirmed commits the row's lines the caller did not name", confirmed("o-1", "A", "B"), []string{"A"},
			[]string{"commit o-1/t1 A,B"}},
		{"rejected releases everything", Record{OrderID: "o-1", Status: StatusRejected, Lines: []Line{{SKU: "A", Qty: 1}}},
			[]string{"A", "X"}, []string{"release o-1 A,X"}},
		{"expired without lines releases the caller's", Record{OrderID: "o-1", Status: StatusExpired}, []string{"A"},
			[]string{"release o-1 A"}},
		{"nothing held, nothing to do", Record{OrderID: "o-1", Status: StatusFailed}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &fakeHolds{}
			if _, err := (Flow{Holds: h}).Settle(context.Background(), tt.row, tt.skus); err != nil {
				t.Fatalf("Settle = %v, want nil", err)
			}
			if diff := cmp.Diff(tt.want, h.calls); diff != "" {
				t.Errorf("Settle calls mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSettleStopsAtMark: an error at before_commit leaves the confirmed
// row's holds uncommitted (a crash there), after the extra holds went back.
func TestSettleStopsAtMark(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	h := &fakeHolds{}
	var steps []string
	f := Flow{Holds: h, Mark: func(step string) error {
		steps = append(steps, step)
		return boom
	}}
	if _, err := f.Settle(context.Background(), confirmed("o-1", "A"), []string{"A", "X"}); !errors.Is(err, boom) {
		t.Fatalf("Settle = %v, want %v", err, boom)
	}
	if diff := cmp.Diff([]string{"release o-1 X"}, h.calls); diff != "" {
		t.Errorf("calls mismatch (-want +got):\n%s", diff)
	}
	if !slices.Equal(steps, []string{StepBeforeCommit}) {
		t.Errorf("marked %v, want [%s]", steps, StepBeforeCommit)
	}
}

// TestConclude: the row comes first, and the holds follow whichever row
// stands, this one or the one that got there first.
func TestConclude(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("inserted rejected releases", func(t *testing.T) {
		t.Parallel()
		h, rows := &fakeHolds{}, &fakeRows{}
		row, inserted, _, err := Flow{Rows: rows, Holds: h}.Conclude(ctx, Record{OrderID: "o-1", Status: StatusRejected}, []string{"A"})
		if err != nil || !inserted || row.Status != StatusRejected {
			t.Fatalf("Conclude = %+v, %v, %v; want the rejected row inserted", row, inserted, err)
		}
		if diff := cmp.Diff([]string{"release o-1 A"}, h.calls); diff != "" {
			t.Errorf("calls mismatch (-want +got):\n%s", diff)
		}
	})
	t.Run("a confirmed row that stands wins over expired", func(t *testing.T) {
		t.Parallel()
		stands := confirmed("o-1", "A")
		h, rows := &fakeHolds{}, &fakeRows{row: &stands}
		row, inserted, s, err := Flow{Rows: rows, Holds: h}.Conclude(ctx, Record{OrderID: "o-1", Status: StatusExpired}, []string{"A"})
		if err != nil || inserted || row.Status != StatusConfirmed {
			t.Fatalf("Conclude = %+v, %v, %v; want the confirmed row that stood", row, inserted, err)
		}
		if diff := cmp.Diff([]string{"commit o-1/t1 A"}, h.calls); diff != "" {
			t.Errorf("calls mismatch (-want +got):\n%s", diff)
		}
		if !slices.Equal(s.Committed, []string{"A"}) || len(s.Released) != 0 {
			t.Errorf("Settled = %+v, want A committed and nothing released", s)
		}
	})
	t.Run("no row, no holds touched", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("postgres down")
		h := &fakeHolds{}
		if _, _, _, err := (Flow{Rows: &fakeRows{err: boom}, Holds: h}).Conclude(ctx, confirmed("o-1", "A"), []string{"A"}); !errors.Is(err, boom) {
			t.Fatalf("Conclude = %v, want %v", err, boom)
		}
		if len(h.calls) != 0 {
			t.Errorf("holds touched without a row: %v", h.calls)
		}
	})
	t.Run("a crash after the row leaves the holds", func(t *testing.T) {
		t.Parallel()
		crash := errors.New("crash")
		h, rows := &fakeHolds{}, &fakeRows{}
		f := Flow{Rows: rows, Holds: h, Mark: func(step string) error {
			if step == StepAfterPersist {
				return crash
			}
			return nil
		}}
		if _, inserted, _, err := f.Conclude(ctx, confirmed("o-1", "A"), []string{"A"}); !errors.Is(err, crash) || !inserted {
			t.Fatalf("Conclude = inserted %v, %v; want inserted and %v", inserted, err, crash)
		}
		if len(h.calls) != 0 {
			t.Errorf("holds touched after a crash at %s: %v", StepAfterPersist, h.calls)
		}
	})
}

// TestRefuse: a refusal records its row and touches no hold, whatever row
// stands.
func TestRefuse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, stands := range []*Record{nil, {OrderID: "o-1", Status: StatusConfirmed, HoldToken: "t2", Lines: []Line{{SKU: "A", Qty: 1}}}} {
		h, rows := &fakeHolds{}, &fakeRows{row: stands}
		rec := Record{OrderID: "o-1", Status: StatusRejected, Reason: ReasonOutOfStock, Lines: []Line{{SKU: "A", Qty: 1}}}
		row, inserted, err := Flow{Rows: rows, Holds: h}.Refuse(ctx, rec)
		if err != nil || inserted != (stands == nil) {
			t.Fatalf("Refuse with %+v standing = %+v, %v, %v", stands, row, inserted, err)
		}
		if len(h.calls) != 0 {
			t.Errorf("Refuse with %+v standing touched holds: %v", stands, h.calls)
		}
	}
}
