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

	reserve := func(t *testing.T, b *testBundle, order string, lines ...stock.Line) stock.Reservation {
		t.Helper()
		return mustReserve(t, b.gate, order, lines, b.deadline)
	}

	t.Run("TakesEveryLineUnderANewToken", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})

		got := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 2}, stock.Line{SKU: "B", Qty: 3})
		if got.Outcome != stock.Reserved || got.Token == "" || got.Partial {
			t.Errorf("Reserve(o1) = %+v, want %v under a token, not partial", got, stock.Reserved)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Held: 2, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 0, Held: 3, Stocked: true})
		if diff := cmp.Diff(heldHold(2, b.deadline, got.Token), readHold(t, b.rdb, "A", "o1")); diff != "" {
			t.Errorf("hold A/o1 mismatch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(heldHold(3, b.deadline, got.Token), readHold(t, b.rdb, "B", "o1")); diff != "" {
			t.Errorf("hold B/o1 mismatch (-want +got):\n%s", diff)
		}

		// Every new hold gets a token of its own.
		if other := reserve(t, b, "o2", stock.Line{SKU: "A", Qty: 1}); other.Token == "" || other.Token == got.Token {
			t.Errorf("Reserve(o2).Token = %q, want a new token (o1 holds under %q)", other.Token, got.Token)
		}
	})

	t.Run("RepeatIsAlreadyHeldUnderTheFirstTokenAndDecrementsOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})

		lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 1}}
		first := reserve(t, b, "o1", lines...)
		for range 3 {
			want := stock.Reservation{Outcome: stock.AlreadyHeld, Token: first.Token}
			if diff := cmp.Diff(want, reserve(t, b, "o1", lines...)); diff != "" {
				t.Errorf("repeated Reserve(o1) mismatch (-want +got):\n%s", diff)
			}
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Held: 2, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 2, Held: 1, Stocked: true})
		if got := readHold(t, b.rdb, "A", "o1").Tok; got != first.Token {
			t.Errorf("tok of hold A/o1 after the repeats = %q, want the first token %q", got, first.Token)
		}
	})

	t.Run("RepeatOfAHoldWithoutTokenIsAlreadyHeldWithNone", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})

		// A hold written before holds had tokens.
		lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 1}}
		reserve(t, b, "o1", lines...)
		setTok(t, b.rdb, "A", "o1", "")
		setTok(t, b.rdb, "B", "o1", "")
		want := stock.Reservation{Outcome: stock.AlreadyHeld, Token: ""}
		if diff := cmp.Diff(want, reserve(t, b, "o1", lines...)); diff != "" {
			t.Errorf("repeated Reserve(o1) of a hold without token mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("RepeatWhenSoldOutIsStillAlreadyHeld", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})

		// The order took the last units: its retry must find its hold, not
		// an empty shelf.
		first := reserve(t, b, "o1", stock.Line{SKU: "B", Qty: 3})
		want := stock.Reservation{Outcome: stock.AlreadyHeld, Token: first.Token}
		if diff := cmp.Diff(want, reserve(t, b, "o1", stock.Line{SKU: "B", Qty: 3})); diff != "" {
			t.Errorf("repeated Reserve(o1) mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("RepeatAfterCommitIsAlreadyCommittedWhileTombstoneLives", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: time.Hour})

		first := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4})
		if _, err := b.gate.Commit(ctx, "o1", first.Token, []string{"A"}); err != nil {
			t.Fatalf("Commit(o1) = %v, want nil", err)
		}
		ttl := b.rdb.PTTL(ctx, stock.HoldKey("A", "o1")).Val()
		if ttl <= 0 || ttl > time.Hour {
			t.Errorf("PTTL(tombstone) = %v, want in (0, 1h]", ttl)
		}
		want := stock.Reservation{Outcome: stock.AlreadyCommitted, Token: first.Token}
		if diff := cmp.Diff(want, reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4})); diff != "" {
			t.Errorf("Reserve(o1) after Commit mismatch (-want +got):\n%s", diff)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 6, Sold: 4, Stocked: true})
	})

	t.Run("AfterTombstoneExpiresReserveIsNew", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: 50 * time.Millisecond})

		first := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4})
		if _, err := b.gate.Commit(ctx, "o1", first.Token, []string{"A"}); err != nil {
			t.Fatalf("Commit(o1) = %v, want nil", err)
		}
		if ttl := b.rdb.PTTL(ctx, stock.HoldKey("A", "o1")).Val(); ttl > 50*time.Millisecond {
			t.Errorf("PTTL(tombstone) = %v, want <= 50ms", ttl)
		}
		testsvc.Poll(t, 5*time.Second, "tombstone to expire", func() bool {
			return b.rdb.Exists(ctx, stock.HoldKey("A", "o1")).Val() == 0
		})
		if got := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4}); got.Outcome != stock.Reserved || got.Token == first.Token {
			t.Errorf("Reserve(o1) after the retention = %+v, want %v under a new token (not %q)", got, stock.Reserved, first.Token)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 2, Held: 4, Sold: 4, Stocked: true})
	})

	t.Run("AfterReleaseReserveIsNewAttempt", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})

		first := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 4})
		if units, err := b.gate.Release(ctx, "o1", []string{"A"}); err != nil || units != 4 {
			t.Fatalf("Release(o1) = %d, %v, want 4, nil", units, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
		if got := reserve(t, b, "o1", stock.Line{SKU: "A", Qty: 5}); got.Outcome != stock.Reserved || got.Token == first.Token {
			t.Errorf("Reserve(o1) after Release = %+v, want %v under a new token (not %q)", got, stock.Reserved, first.Token)
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

	t.Run("LinesUnderTwoTokensAreAConflict", func(t *testing.T) {
		t.Parallel()

		// Two deliveries' holds on one order's lines: no one token names
		// the hold that stands, so no repeat may say AlreadyHeld.
		for name, tokB := range map[string]string{"another token": "other", "no token": ""} {
			b := setup(t, stock.Config{})
			lines := []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 1}}
			reserve(t, b, "o1", lines...)
			setTok(t, b.rdb, "B", "o1", tokB)
			before := snapshot(t, b.rdb)

			if r, err := b.gate.Reserve(ctx, "o1", lines, b.deadline); !errors.Is(err, stock.ErrConflict) {
				t.Errorf("Reserve(o1) with B under %s = %+v, %v, want ErrConflict", name, r, err)
			}
			if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
				t.Errorf("Reserve(o1) with B under %s changed the database (-before +after):\n%s", name, diff)
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
		gate  *stock.Gate
		rdb   *redis.Client
		token string
	}

	// setup stocks A with 10 and B with 5, and has o1 hold A:2, B:3.
	setup := func(t *testing.T) *testBundle {
		t.Helper()
		g, rdb := newGate(t, stock.Config{Retention: time.Hour})
		stockSKU(t, g, "A", 10)
		stockSKU(t, g, "B", 5)
		r := mustReserve(t, g, "o1", []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}, time.Now().Add(time.Hour))
		return &testBundle{gate: g, rdb: rdb, token: r.Token}
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

	t.Run("WhateverTheToken", func(t *testing.T) {
		t.Parallel()
		b := setup(t)

		// The row is not confirmed, so no hold of the order is sold: one
		// another delivery took, or one from before holds had tokens.
		setTok(t, b.rdb, "A", "o1", "other")
		setTok(t, b.rdb, "B", "o1", "")
		if units, err := b.gate.Release(ctx, "o1", []string{"A", "B"}); err != nil || units != 5 {
			t.Errorf("Release(o1) = %d, %v, want 5, nil", units, err)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 5, Stocked: true})
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

		if _, err := b.gate.Commit(ctx, "o1", b.token, []string{"A", "B"}); err != nil {
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

	type testBundle struct {
		gate     *stock.Gate
		rdb      *redis.Client
		deadline time.Time
		token    string
	}

	// setup stocks A with 10 and B with 5, and has o1 hold A:2, B:3.
	setup := func(t *testing.T, cfg stock.Config) *testBundle {
		t.Helper()
		g, rdb := newGate(t, cfg)
		stockSKU(t, g, "A", 10)
		stockSKU(t, g, "B", 5)
		deadline := time.UnixMilli(time.Now().Add(time.Hour).UnixMilli())
		r := mustReserve(t, g, "o1", []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}, deadline)
		return &testBundle{gate: g, rdb: rdb, deadline: deadline, token: r.Token}
	}

	commit := func(t *testing.T, b *testBundle, order, token string, skus ...string) stock.CommitResult {
		t.Helper()
		got, err := b.gate.Commit(ctx, order, token, skus)
		if err != nil {
			t.Fatalf("Commit(%s, %q, %v) = %v, want nil", order, token, skus, err)
		}
		return got
	}

	t.Run("SellsHoldsUnderTheRowTokenOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: time.Hour})

		got := commit(t, b, "o1", b.token, "A", "B", "ghost")
		if diff := cmp.Diff(stock.CommitResult{Units: 5, Missing: 1}, got); diff != "" {
			t.Errorf("Commit(o1) mismatch (-want +got):\n%s", diff)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Sold: 2, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 2, Sold: 3, Stocked: true})
		if diff := cmp.Diff(committedHold(2, b.deadline, b.token), readHold(t, b.rdb, "A", "o1")); diff != "" {
			t.Errorf("hold A/o1 after Commit mismatch (-want +got):\n%s", diff)
		}

		// Idempotent: nothing moves again, and committed holds are neither
		// missing nor released, whatever the token.
		before := snapshot(t, b.rdb)
		for _, tok := range []string{b.token, "other", ""} {
			if diff := cmp.Diff(stock.CommitResult{}, commit(t, b, "o1", tok, "B", "A")); diff != "" {
				t.Errorf("repeated Commit(o1, %q) mismatch (-want +got):\n%s", tok, diff)
			}
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("repeated Commit changed the database (-before +after):\n%s", diff)
		}
	})

	t.Run("ReleasesHoldsUnderAnotherToken", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: time.Hour})

		// The row relied on another delivery's hold: this one's units were
		// never sold, so they go back, and the hold is gone, not a tombstone.
		got := commit(t, b, "o1", "row-token", "A", "B")
		if diff := cmp.Diff(stock.CommitResult{Released: 5}, got); diff != "" {
			t.Errorf("Commit(o1, another token) mismatch (-want +got):\n%s", diff)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 5, Stocked: true})
		for _, sku := range []string{"A", "B"} {
			if diff := cmp.Diff(holdState{}, readHold(t, b.rdb, sku, "o1")); diff != "" {
				t.Errorf("hold %s/o1 after Commit under another token mismatch (-want +got):\n%s", sku, diff)
			}
		}
		if diff := cmp.Diff(stock.CommitResult{Missing: 2}, commit(t, b, "o1", "row-token", "A", "B")); diff != "" {
			t.Errorf("repeated Commit(o1, another token) mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("StaleHoldAfterTheTombstoneExpiredIsReleasedNotSold", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: 50 * time.Millisecond})

		// The row is confirmed under T1 and o1's units are sold; once the
		// tombstone is gone, a late redelivery takes a new hold under T2.
		// The row's Commit under T1 must give those units back.
		t1 := b.token
		commit(t, b, "o1", t1, "A", "B")
		testsvc.Poll(t, 5*time.Second, "tombstones to expire", func() bool {
			return b.rdb.Exists(ctx, stock.HoldKey("A", "o1"), stock.HoldKey("B", "o1")).Val() == 0
		})
		if _, err := b.gate.Add(ctx, "B", 3); err != nil {
			t.Fatal(err)
		}
		r2 := mustReserve(t, b.gate, "o1", []stock.Line{{SKU: "A", Qty: 2}, {SKU: "B", Qty: 3}}, b.deadline)
		if r2.Outcome != stock.Reserved || r2.Token == t1 {
			t.Fatalf("late Reserve(o1) = %+v, want %v under a token other than %q", r2, stock.Reserved, t1)
		}
		if diff := cmp.Diff(stock.CommitResult{Released: 5}, commit(t, b, "o1", t1, "A", "B")); diff != "" {
			t.Errorf("Commit(o1, T1) of the stale hold mismatch (-want +got):\n%s", diff)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Sold: 2, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 5, Sold: 3, Stocked: true})
		if n, err := b.gate.OpenHolds(ctx); err != nil || n != 0 {
			t.Errorf("OpenHolds() = %d, %v, want 0, nil", n, err)
		}
	})

	t.Run("EachHoldFollowsItsOwnToken", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: time.Hour})

		setTok(t, b.rdb, "B", "o1", "other")
		if diff := cmp.Diff(stock.CommitResult{Units: 2, Released: 3}, commit(t, b, "o1", b.token, "A", "B")); diff != "" {
			t.Errorf("Commit(o1) with B under another token mismatch (-want +got):\n%s", diff)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Sold: 2, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 5, Stocked: true})
	})

	t.Run("EmptyTokenMatchesOnlyHoldsWithoutToken", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: time.Hour})

		// A row written before rows had tokens relied on a hold written
		// before holds had them (A); B was taken by a later delivery.
		setTok(t, b.rdb, "A", "o1", "")
		if diff := cmp.Diff(stock.CommitResult{Units: 2, Released: 3}, commit(t, b, "o1", "", "A", "B")); diff != "" {
			t.Errorf("Commit(o1, \"\") mismatch (-want +got):\n%s", diff)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 8, Sold: 2, Stocked: true})
		wantLevels(t, b.gate, stock.Levels{SKU: "B", Available: 5, Stocked: true})
		want := committedHold(2, b.deadline, "")
		if diff := cmp.Diff(want, readHold(t, b.rdb, "A", "o1")); diff != "" {
			t.Errorf("hold A/o1 after Commit mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("ReleasedHoldIsMissing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{Retention: time.Hour})

		if _, err := b.gate.Release(ctx, "o1", []string{"A"}); err != nil {
			t.Fatalf("Release(o1, A) = %v, want nil", err)
		}
		if diff := cmp.Diff(stock.CommitResult{Units: 3, Missing: 1}, commit(t, b, "o1", b.token, "A", "B")); diff != "" {
			t.Errorf("Commit(o1) after Release of A mismatch (-want +got):\n%s", diff)
		}
		wantLevels(t, b.gate, stock.Levels{SKU: "A", Available: 10, Stocked: true})
	})

	t.Run("NoSKUsChangeNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})
		before := snapshot(t, b.rdb)

		for _, skus := range [][]string{nil, {}} {
			if got, err := b.gate.Commit(ctx, "o1", b.token, skus); err != nil || got != (stock.CommitResult{}) {
				t.Errorf("Commit(o1, %#v) = %+v, %v, want nothing done, nil", skus, got, err)
			}
			if units, err := b.gate.Release(ctx, "o1", skus); err != nil || units != 0 {
				t.Errorf("Release(o1, %#v) = %d, %v, want 0, nil", skus, units, err)
			}
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("Commit and Release of no SKUs changed the database (-before +after):\n%s", diff)
		}
		// The batchers still serve calls afterwards.
		if got := commit(t, b, "o1", b.token, "A", "B"); got != (stock.CommitResult{Units: 5}) {
			t.Errorf("Commit(o1) = %+v, want 5 units", got)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		t.Parallel()
		b := setup(t, stock.Config{})
		before := snapshot(t, b.rdb)

		for name, skus := range map[string][]string{"sku brace": {"A}"}, "empty sku": {""}} {
			if _, err := b.gate.Commit(ctx, "o1", b.token, skus); !errors.Is(err, stock.ErrInvalid) {
				t.Errorf("Commit(%s) = %v, want ErrInvalid", name, err)
			}
		}
		for _, order := range []string{"", strings.Repeat("o", 65)} {
			if _, err := b.gate.Commit(ctx, order, b.token, []string{"A"}); !errors.Is(err, stock.ErrInvalid) {
				t.Errorf("Commit(order %q) = %v, want ErrInvalid", order, err)
			}
		}
		if diff := cmp.Diff(before, snapshot(t, b.rdb)); diff != "" {
			t.Errorf("invalid Commits changed the database (-before +after):\n%s", diff)
		}
	})
}
