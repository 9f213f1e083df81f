// Package lease is a lease in Redis (lua/lease.lua): one of several
// processes holds it at a time and does a job that needs doing once, here
// the hold sweeper's (docs/design.md, "The hold index"). The holder renews
// it before it lapses; a holder that dies lets it lapse, and another
// process takes it over.
//
// A lease is no lock: a holder frozen past the lease's life may still be
// working when another takes over, so the job must be safe to run twice at
// once. It owns the key it is given and nothing else.
package lease

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/stockgate/stockgate/lua"
)

// SweeperKey is the hold sweeper's lease.
const SweeperKey = "sg:sweeper:lease"

var script = redis.NewScript(lua.Lease)

// Lease is one process's claim on a lease key. It is safe for concurrent
// use.
type Lease struct {
	rdb redis.Scripter
	key string
	id  string
	ttl time.Duration
}

// New returns a claim on key, under a fresh holder id, that lives ttl
// (at least a millisecond) from each Hold.
func New(rdb redis.Scripter, key string, ttl time.Duration) (*Lease, error) {
	if key == "" || ttl < time.Millisecond {
		return nil, errors.New("lease: a key and a time to live of at least 1ms are needed")
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Lease{rdb: rdb, key: key, id: hex.EncodeToString(b[:]), ttl: ttl}, nil
}

// ID is the holder id the lease is claimed under.
func (l *Lease) ID() string { return l.id }

// Hold takes the lease when it is free, renews it when this claim holds
// it, and reports whether this claim holds it now.
func (l *Lease) Hold(ctx context.Context) (bool, error) {
	n, err := l.call(ctx, l.ttl.Milliseconds())
	return n == 1, err
}

// Release gives the lease up if this claim holds it, so that another
// process takes over at once instead of after it lapses.
func (l *Lease) Release(ctx context.Context) error {
	_, err := l.call(ctx, 0)
	return err
}

func (l *Lease) call(ctx context.Context, ttl int64) (int64, error) {
	n, err := script.Run(ctx, l.rdb, []string{l.key}, l.id, strconv.FormatInt(ttl, 10)).Int64()
	if err != nil {
		return 0, fmt.Errorf("lease %s: %w", l.key, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("lease %s: the script refused its arguments", l.key)
	}
	return n, nil
}
