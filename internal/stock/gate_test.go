package stock_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/internal/stock"
	"github.com/stockgate/stockgate/internal/testsvc"
)

func TestReserve(t *testing.T) {
	t.Parallel()

	ctx := context.Background()

	type testBundle struct {
		gate     *stock.Gate
		rdb      *redis.Client
		deadline time.Time
	}

	// setup stocks A with 10 and B with 3 units.
	setup := func(t *testing.T, cfg stock.Config) *testBundle {
		t.Helper()
		g, rdb := newGate(t, cfg)
		stockSKU(t, g, "A", 10)
		stockSKU(t, g, "B", 3)
		return &testBundle{gate: g, rdb: rdb, deadline: time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())}
	}

	reserve := func(t *testing.T, b *testBundle, order string, lines ...stock.Line) stock.Outcome {
		t.Helper()
		o, err := b.gate.Reserve(ctx, order, lines, b.deadline)
		if err != nil {
			t.Fatalf("Reserve(%s, %v) = %v, want nil", order, lines, err)
		}
		return o
	}

	t.Run("TakesEveryLine", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})

		if got := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 2}, stock.Line{SKU: "B", Qty: 3}); got != stock.Reserved {
			t.Errorf("Reserve(o1) = %v, want %v", got, stock.Reserved)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Held: 2, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 0, Held: 3, Stocked: true})
		if diff := cmp.Diff(heldHold(2, b.deadline), readHold(t, b.rdb, "A", "o1")); diff != "" {
			t.Errorf("hold A/o1 mismatch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(heldHold(3, b.deadline), readHold(t, b.rdb, "B", "o1")); diff != "" {
			t.Errorf("hold B/o1 mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("RepeatIsAlreadyHeldAndDecrementsOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})

		lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 1}}
		reserve(t, b, "o1", lines...)
		for range 3 {
			if got := reserve(t, b, "o1", lines...); got != stock.AlreadyHeld {
				t.Errorf("repeated Reserve(o1) = %v, want %v", got, stock.AlreadyHeld)
			}
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Held: 2, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 2, Held: 1, Stocked: true})
	})

	t.Run("RepeatWhenSoldOutIsStillAlreadyHeld", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})

		// The order took the last units: its retry must find its hold, not
		// an empty shelf.
		reserve(t, b, "o1", stock.Line{SKU: "B", Qty: 3})
		if got := reserve(t, b, "o1", stock.Line{SKU: "B", Qty: 3}); got != stock.AlreadyHeld {
			t.Errorf("repeated Reserve(o1) = %v, want %v", got, stock.AlreadyHeld)
		}
	})

	t.Run("RepeatAfterCommitIsAlreadyCommittedWhileTombstoneLives", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: time.Hour})

		reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4})
		if _, err := b.gate.Commit(ctx, "o1", []string{"A"}); err != nil {
			t.Fatalf("Commit(o1) = %v, want nil", err)
		}
		ttl := b.rdb.PTTL(ctx, stock.HoldKey("A", "o1")).Val()
		if ttl <= 0 || ttl > time.Hour {
			t.Errorf("PTTL(tombstone) = %v, want in (0, 1h]", ttl)
		}
		if got := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4}); got != stock.AlreadyCommitted {
			t.Errorf("Reserve(o1) after Commit = %v, want %v", got, stock.AlreadyCommitted)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 6, Sold: 4, Stocked: true})
	})

	t.Run("AfterTombstoneExpiresReserveIsNew", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: 50 * time.Millisecond})

		reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4})
		if _, err := b.gate.Commit(ctx, "o1", []string{"A"}); err != nil {
			t.Fatalf("Commit(o1) = %v, want nil", err)
		}
		if ttl := b.rdb.PTTL(ctx, stock.HoldKey("A", "o1")).Val(); ttl > 50*time.Millisecond {
			t.Errorf("PTTL(tombstone) = %v, want <= 50ms", ttl)
		}
		testsvc.Poll(t, 5*time.Second, "tombstone to expire", func() bool {
			return b.rdb.Exists(ctx, stock.HoldKey("A", "o1")).Val() == 0
		})
		if got := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4}); got != stock.Reserved {
			t.Errorf("Reserve(o1) after the retention = %v, want %v", got, stock.Reserved)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 2, Held: 4, Sold: 4, Stocked: true})
	})

	t.Run("AfterReleaseReserveIsNewAttempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})

		reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4})
		if units, err := b.gate.Release(ctx, "o1", []string{"A"}); err != nil || units != 4 {
			t.Fatalf("Release(o1) = %d, %v, want 4, nil", units, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
		if got := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 5}); got != stock.Reserved {
			t.Errorf("Reserve(o1) after Release = %v, want %v", got, stock.Reserved)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 5, Held: 5, Stocked: true})
	})

	t.Run("ShortLineHoldsNothing", func(t *testing.T) {
		t.Parallel()

		for _, lines := range [][]stock.Line{
			{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 4}},
			{{SKU: "B", Qty: 4}, {SKU: "A", Qty: 2}},
		} {
			b := setup(t, stock.Config{})
			before := snapshot(t, b.rdb)

			_, err := b.gate.Reserve(ctx, "o1", lines, b.deadline)
			var oos *stock.OutOfStockError
			if !errors.As(err, &oos) || !errors.Is(err, stock.ErrOutOfStock) {
				t.Fatalf("Reserve(o1, %v) = %v, want *OutOfStockError", lines, err)
			}
			if diff := cmp.Diff(&stock.OutOfStockError{SKU: "B", Available: 3}, oos); diff != "" {
				t.Errorf("Reserve(o1, %v) error mismatch (-want +got):\n%s", lines, diff)
			}
			if msg := err.Error(); !strings.Contains(msg, "B") || !strings.Contains(msg, "3") {
				t.Errorf("Reserve(o1).Error() = %q, want it to name B and 3 available", msg)
			}
			if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
				t.Errorf("Reserve(o1, %v) changed the database (-before +after):\n%s", lines, diff)
			}
		}
	})

	t.Run("ZeroStockIsOutOfStockNotUnknown", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})
		stockSKU(t, b.gate, "Z", 0)

		_, err := b.gate.Reserve(ctx, "o1", []stock.Line{{SKU: "Z", Qty: 1}}, b.deadline)
		if diff := cmp.Diff(error(&stock.OutOfStockError{SKU: "Z", Available: 0}), err); diff != "" {
			t.Errorf("Reserve(Z) error mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("NotStockedFailsClosed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})
		before := snapshot(t, b.rdb)

		_, err := b.gate.Reserve(ctx, "o1", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "ghost", Qty: 1}}, b.deadline)
		var ns *stock.NotStockedError
		if !errors.As(err, &ns) || !errors.Is(err, stock.ErrNotStocked) || ns.SKU != "ghost" {
			t.Fatalf("Reserve(A, ghost) = %v, want *NotStockedError for ghost", err)
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("Reserve(A, ghost) changed the database (-before +after):\n%s", diff)
		}
		if keys := b.rdb.Keys(ctx, "*ghost*").Val(); len(keys) != 0 {
			t.Errorf("keys of ghost after Reserve = %v, want none", keys)
		}
		if got := levels(t, b.gate, "ghost"); got.Stocked {
			t.Errorf("Show(ghost).Stocked = true, want false")
		}
	})

	t.Run("ConflictingRepeatChangesNothing", func(t *testing.T) {
		t.Parallel()

		for name, second := range map[string][]stock.Line{
			"other qty":         {{SKU: "A", Qty: 3}},
			"extra line":        {{SKU: "A", Qty: 2}, {SKU: "B", Qty: 1}},
			"extra line first":  {{SKU: "B", Qty: 1}, {SKU: "A", Qty: 2}},
			"other qty on both": {{SKU: "A", Qty: 1}, {SKU: "B", Qty: 1}},
		} {
			b := setup(t, stock.Config{})
			reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 2})
			before := snapshot(t, b.rdb)

			if _, err := b.gate.Reserve(ctx, "o1", second, b.deadline); !errors.Is(err, stock.ErrConflict) {
				t.Errorf("Reserve(o1, %s) = %v, want ErrConflict", name, err)
			}
			if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
				t.Errorf("Reserve(o1, %s) changed the database (-before +after):\n%s", name, diff)
			}
		}
	})

	t.Run("InvalidArgumentsNeverReachRedis", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})
		before := snapshot(t, b.rdb)

		for _, tt := range []struct {
			name  string
			order string
			lines []stock.Line
		}{
			{"empty order id", "", []stock.Line{{SKU: "A", Qty: 1}}},
			{"long order id", strings.Repeat("o", 65), []stock.Line{{SKU: "A", Qty: 1}}},
			{"no lines", "o1", nil},
			{"zero qty", "o1", []stock.Line{{SKU: "A", Qty: 0}}},
			{"negative qty", "o1", []stock.Line{{SKU: "A", Qty: -5}}},
			{"qty over max", "o1", []stock.Line{{SKU: "A", Qty: stock.MaxQty + 1}}},
			{"sku with braces", "o1", []stock.Line{{SKU: "{A}", Qty: 1}}},
			{"empty sku", "o1", []stock.Line{{SKU: "", Qty: 1}}},
			{"sku twice", "o1", []stock.Line{{SKU: "A", Qty: 1}, {SKU: "A", Qty: 1}}},
		} {
			if _, err := b.gate.Reserve(ctx, tt.order, tt.lines, b.deadline); !errors.Is(err, stock.ErrInvalid) {
				t.Errorf("Reserve(%s) = %v, want ErrInvalid", tt.name, err)
			}
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("invalid Reserves changed the database (-before +after):\n%s", diff)
		}
	})

	t.Run("RedisErrorIsReturned", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})
		cctx, cancel := context.WithCancel(ctx)
		cancel()

		_, err := b.gate.Reserve(cctx, "o1", []stock.Line{{SKU: "A", Qty: 1}}, b.deadline)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Reserve(cancelled ctx) = %v, want context.Canceled", err)
		}
	})
}

func TestRelease(t *testing.T) {
	t.Parallel()

	ctx := context.Background()

	type testBundle struct {
		gate *stock.Gate
		rdb  *redis.Client
	}

	// setup stocks A with 10 and B with 5, and has o1 hold A:2, B:3.
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		g, rdb := newGate(t, stock.Config{Retention: time.Hour})
		stockSKU(t, g, "A", 10)
		stockSKU(t, g, "B", 5)
		lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}
		if _, err := g.Reserve(ctx, "o1", lines, time.Now().Add(time.Hour)); err != nil {
			t.Fatalf("Reserve(o1) = %v, want nil", err)
		}
		return &testBundle{gate: g, rdb: rdb}
	}

	t.Run("GivesBackWhatTheHoldRecordedOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		if units, err := b.gate.Release(ctx, "o1", []string{"A", "B"}); err != nil || units != 5 {
			t.Fatalf("Release(o1) = %d, %v, want 5, nil", units, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 5, Stocked: true})
		if diff := cmp.Diff(holdState{}, readHold(t, b.rdb, "A", "o1")); diff != "" {
			t.Errorf("hold A/o1 after Release mismatch (-want +got):\n%s", diff)
		}

		before := snapshot(t, b.rdb)
		if units, err := b.gate.Release(ctx, "o1", []string{"A", "B"}); err != nil || units != 0 {
			t.Errorf("second Release(o1) = %d, %v, want 0, nil", units, err)
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("second Release(o1) changed the database (-before +after):\n%s", diff)
		}
	})

	t.Run("RepeatedSKUIsGivenBackOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		if units, err := b.gate.Release(ctx, "o1", []string{"A", "A", "B", "A"}); err != nil || units != 5 {
			t.Errorf("Release(o1, A A B A) = %d, %v, want 5, nil", units, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
	})

	t.Run("PartialThenRest", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		if units, err := b.gate.Release(ctx, "o1", []string{"B"}); err != nil || units != 3 {
			t.Errorf("Release(o1, B) = %d, %v, want 3, nil", units, err)
		}
		if units, err := b.gate.Release(ctx, "o1", []string{"A", "B"}); err != nil || units != 2 {
			t.Errorf("Release(o1, A B) = %d, %v, want 2, nil", units, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 5, Stocked: true})
	})

	t.Run("AfterCommitChangesNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		if _, err := b.gate.Commit(ctx, "o1", []string{"A", "B"}); err != nil {
			t.Fatalf("Commit(o1) = %v, want nil", err)
		}
		before := snapshot(t, b.rdb)
		if units, err := b.gate.Release(ctx, "o1", []string{"A", "B"}); err != nil || units != 0 {
			t.Errorf("Release(o1) after Commit = %d, %v, want 0, nil", units, err)
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("Release after Commit changed the database (-before +after):\n%s", diff)
		}
	})

	t.Run("UnknownOrderAndSKUChangeNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		before := snapshot(t, b.rdb)

		if units, err := b.gate.Release(ctx, "nobody", []string{"A", "B", "ghost"}); err != nil || units != 0 {
			t.Errorf("Release(nobody) = %d, %v, want 0, nil", units, err)
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("Release(nobody) changed the database (-before +after):\n%s", diff)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		for name, call := range map[string]func() error{
			"empty order": func() error { _, err := b.gate.Release(ctx, "", []string{"A"}); return err },
			"sku brace":   func() error { _, err := b.gate.Release(ctx, "o1", []string{"A}"}); return err },
		} {
			if err := call(); !errors.Is(err, stock.ErrInvalid) {
				t.Errorf("Release(%s) = %v, want ErrInvalid", name, err)
			}
		}
	})
}

func TestCommit(t *testing.T) {
	t.Parallel()

	ctx := context.Background()
	g, rdb := newGate(t, stock.Config{Retention: time.Hour})
	stockSKU(t, g, "A", 10)
	stockSKU(t, g, "B", 5)
	deadline := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
	if _, err := g.Reserve(ctx, "o1", []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}, deadline); err != nil {
		t.Fatalf("Reserve(o1) = %v, want nil", err)
	}

	got, err := g.Commit(ctx, "o1", []string{"A", "B", "ghost"})
	if err != nil {
		t.Fatalf("Commit(o1) = %v, want nil", err)
	}
	if diff := cmp.Diff(stock.CommitResult{Units: 5, Missing: 1}, got); diff != "" {
		t.Errorf("Commit(o1) mismatch (-want +got):\n%s", diff)
	}
	wantLevels(t, g, stock.Levels{SKU: "A", Available: 8, Sold: 2, Stocked: true})
	wantLevels(t, g, stock.Levels{SKU: "B", Available: 2, Sold: 3, Stocked: true})
	wantHold := holdState{Qty: "2", Deadline: heldHold(2, deadline).Deadline, State: "committed"}
	if diff := cmp.Diff(wantHold, readHold(t, rdb, "A", "o1")); diff != "" {
		t.Errorf("hold A/o1 after Commit mismatch (-want +got):\n%s", diff)
	}

	// Idempotent: nothing moves again, and committed holds are not "missing".
	before := snapshot(t, rdb)
	for range 2 {
		got, err := g.Commit(ctx, "o1", []string{"B", "A"})
		if err != nil {
			t.Fatalf("repeated Commit(o1) = %v, want nil", err)
		}
		if diff := cmp.Diff(stock.CommitResult{}, got); diff != "" {
			t.Errorf("repeated Commit(o1) mismatch (-want +got):\n%s", diff)
		}
	}
	if diff := cmp.Diff(before, snapshot(t, rdb)); diff != "" {
		t.Errorf("repeated Commit changed the database (-before +after):\n%s", diff)
	}

	// A released hold is missing, not committed.
	if _, err := g.Reserve(ctx, "o2", []stock.Line{{SKU: "A", Qty: 1}}, deadline); err != nil {
		t.Fatalf("Reserve(o2) = %v, want nil", err)
	}
	if _, err := g.Release(ctx, "o2", []string{"A"}); err != nil {
		t.Fatalf("Release(o2) = %v, want nil", err)
	}
	got, err = g.Commit(ctx, "o2", []string{"A"})
	if err != nil {
		t.Fatalf("Commit(o2) = %v, want nil", err)
	}
	if diff := cmp.Diff(stock.CommitResult{Missing: 1}, got); diff != "" {
		t.Errorf("Commit(o2) after Release mismatch (-want +got):\n%s", diff)
	}
	wantLevels(t, g, stock.Levels{SKU: "A", Available: 8, Sold: 2, Stocked: true})

	if _, err := g.Commit(ctx, "", []string{"A"}); !errors.Is(err, stock.ErrInvalid) {
		t.Errorf("Commit(empty order) = %v, want ErrInvalid", err)
	}
}
