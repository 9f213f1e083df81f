package ratelimit_test

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stockgate/stockgate/internal/ratelimit"
	"github.com/stockgate/stockgate/internal/testsvc"
)

func TestMain(m *testing.M) { os.Exit(testsvc.Finish(m.Run())) }

func TestAllow(t *testing.T) {
	t.Parallel()

	ctx := context.Background()

	t.Run("LimitThenWindowExpiry", func(t *testing.T) {
		t.Parallel()
		_, _, rdb := testsvc.RedisDB(t)
		g := ratelimit.New(rdb)
		const window = 200 * time.Millisecond

		for i := range 3 {
			if err := g.Allow(ctx, "c1", 3, window); err != nil {
				t.Fatalf("Allow(c1) #%d = %v, want nil", i+1, err)
			}
		}
		for range 2 {
			if err := g.Allow(ctx, "c1", 3, window); !errors.Is(err, ratelimit.ErrLimited) {
				t.Errorf("Allow(c1) over the limit = %v, want ErrRateLimited", err)
			}
		}
		// Another customer has a window of its own.
		if err := g.Allow(ctx, "c2", 3, window); err != nil {
			t.Errorf("Allow(c2) = %v, want nil", err)
		}
		if ttl := rdb.PTTL(ctx, ratelimit.Key("c1")).Val(); ttl <= 0 || ttl > window {
			t.Errorf("PTTL(rate c1) = %v, want in (0, %v]", ttl, window)
		}
		testsvc.Poll(t, 5*time.Second, "the rate window to expire", func() bool {
			return rdb.Exists(ctx, ratelimit.Key("c1")).Val() == 0
		})
		if err := g.Allow(ctx, "c1", 3, window); err != nil {
			t.Errorf("Allow(c1) in a new window = %v, want nil", err)
		}
	})

	t.Run("KeyWithoutTTLGetsOne", func(t *testing.T) {
		t.Parallel()
		_, _, rdb := testsvc.RedisDB(t)
		g := ratelimit.New(rdb)
		// Left by a crash between INCR and EXPIRE in an older client: without
		// a TTL the customer would be limited forever.
		if err := rdb.Set(ctx, ratelimit.Key("c1"), "7", 0).Err(); err != nil {
			t.Fatal(err)
		}

		if err := g.Allow(ctx, "c1", 3, time.Minute); !errors.Is(err, ratelimit.ErrLimited) {
			t.Errorf("Allow(c1) = %v, want ErrRateLimited", err)
		}
		if ttl := rdb.PTTL(ctx, ratelimit.Key("c1")).Val(); ttl <= 0 || ttl > time.Minute {
			t.Errorf("PTTL(rate c1) = %v, want in (0, 1m]", ttl)
		}
	})

	t.Run("InvalidArguments", func(t *testing.T) {
		t.Parallel()
		_, _, rdb := testsvc.RedisDB(t)
		g := ratelimit.New(rdb)
		if err := rdb.Set(ctx, ratelimit.Key("c9"), "x", 0).Err(); err != nil {
			t.Fatal(err)
		}

		for name, call := range map[string]func() error{
			"no customer":  func() error { return g.Allow(ctx, "", 3, time.Second) },
			"zero limit":   func() error { return g.Allow(ctx, "c1", 0, time.Second) },
			"tiny window":  func() error { return g.Allow(ctx, "c1", 3, time.Microsecond) },
			"huge limit":   func() error { return g.Allow(ctx, "c1", 10_000_000_000_000, time.Second) },
			"neg window":   func() error { return g.Allow(ctx, "c1", 3, -time.Second) },
			"neg limit":    func() error { return g.Allow(ctx, "c1", -1, time.Second) },
			"corrupt rate": func() error { return g.Allow(ctx, "c9", 3, time.Second) },
		} {
			if err := call(); !errors.Is(err, ratelimit.ErrInvalid) {
				t.Errorf("Allow(%s) = %v, want ErrInvalid", name, err)
			}
		}
		if n := rdb.Exists(ctx, ratelimit.Key("c1")).Val(); n != 0 {
			t.Errorf("EXISTS rate c1 after refused calls = %d, want 0", n)
		}
	})
}
