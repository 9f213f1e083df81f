// Package ratelimit counts each customer's orders in a fixed window, in
// Redis (lua/ratelimit.lua), so that every worker sees the same count. The
// worker rejects an order over the limit as rate_limited (optional:
// --rate-limit).
//
// It owns the keys sg:rate:{CUSTOMER} and nothing else; it must not touch
// stock.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/lua"
)

// ErrLimited is returned by Allow when the customer is over the limit.
var ErrLimited = errors.New("rate limited")

// ErrInvalid means Allow's arguments, or the customer's counter in Redis
// (a hand edit), could not be used. Nothing was counted.
var ErrInvalid = errors.New("invalid rate limit")

var script = redis.NewScript(lua.RateLimit)

// Key counts a customer's orders in the current window. The customer id is
// the hash tag: under Redis Cluster each customer's counter is a key of its
// own slot.
func Key(customerID string) string { return "sg:rate:{" + customerID + "}" }

// Limiter is the per-customer limit over one Redis (or Redis Cluster). It
// is safe for concurrent use.
type Limiter struct {
	rdb redis.UniversalClient
}

// New returns a Limiter over rdb.
func New(rdb redis.UniversalClient) *Limiter { return &Limiter{rdb: rdb} }

// Allow counts one order by customerID in a fixed window and returns
// ErrLimited once more than limit orders fall in it.
func (l *Limiter) Allow(ctx context.Context, customerID string, limit int, window time.Duration) error {
	if customerID == "" || limit < 1 || window < time.Millisecond {
		return fmt.Errorf("%w: a customer, a limit >= 1 and a window >= 1ms are needed", ErrInvalid)
	}
	res, err := script.Run(ctx, l.rdb, []string{Key(customerID)},
		strconv.Itoa(limit), strconv.FormatInt(window.Milliseconds(), 10)).Int64Slice()
	if err != nil {
		return fmt.Errorf("rate limit %s: %w", customerID, err)
	}
	if len(res) != 2 {
		return fmt.Errorf("rate limit %s: script answered %d values, want 2", customerID, len(res))
	}
	switch res[0] {
	case 1:
		return nil
	case 0:
		return ErrLimited
	}
	return fmt.Errorf("%w: the script refused its arguments or the counter of %s", ErrInvalid, customerID)
}
